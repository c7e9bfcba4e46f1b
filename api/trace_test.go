package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// fakeTracer answers with what it decoded from the frame.
type fakeTracer struct{}

func (fakeTracer) Trace(in string, frame []byte) (*TraceResult, error) {
	if in != "vm1" {
		return nil, fmt.Errorf("no port %q", in)
	}
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	var names []string
	for _, l := range p.Layers() {
		names = append(names, l.LayerType().String())
	}
	return &TraceResult{InPort: in, Stages: []TraceStage{{Stage: "decode", Decision: strings.Join(names, "/")}},
		Outputs: []TraceOutput{{Port: "vm2", VLAN: 10, Tagged: true}}}, nil
}

func TestTraceEndpoint(t *testing.T) {
	r := newRig(t)
	rec := r.do("POST", "/v1/trace", `{"in_port":"vm1","eth_src":"52:54:00:00:00:01","vlan":10,"ipv6_src":"fd10::2","ipv6_dst":"fd20::2","ip_proto":6,"l4_src":1234,"l4_dst":80}`)
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var res TraceResult
	json.Unmarshal(rec.Body.Bytes(), &res)
	if len(res.Stages) != 1 || res.Stages[0].Decision != "Ethernet/Dot1Q/IPv6/TCP/Payload" || res.Outputs[0].Port != "vm2" {
		t.Fatalf("got %+v", res)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"in_port":"vm1","ipv4_src":"fd10::1"}`, "ipv4_src"},
		{`{"in_port":"vm1","eth_dst":"nope"}`, "eth_dst"},
		{`{"in_port":"vm1","vlan":4095}`, "vlan"},
		{`{"in_port":"vm1","l4_dst":70000}`, "l4_dst"},
		{`{"in_port":"vm1","ipv4_dst":"10.0.0.1","ipv6_dst":"fd00::1"}`, "ipv6_src"},
		{`{"eth_src":"52:54:00:00:00:01"}`, "in_port"},
	} {
		rec := r.do("POST", "/v1/trace", tc.body)
		if rec.Code != 422 || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: %d %s, want 422 naming %s", tc.body, rec.Code, rec.Body, tc.want)
		}
	}
	if rec := r.do("POST", "/v1/trace", `{"in_port":"nope"}`); rec.Code != 404 {
		t.Errorf("unknown port: %d", rec.Code)
	}
	if rec := r.do("POST", "/v1/trace", `{"in_port":"vm1","bogus":1}`); rec.Code != 400 {
		t.Errorf("unknown field: %d", rec.Code)
	}
}
