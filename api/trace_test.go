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

func (fakeTracer) ArmTrace(port string, n int) error {
	if port != "vm1" {
		return fmt.Errorf("no port %q", port)
	}
	return nil
}

func (fakeTracer) LiveTrace(port string) (*LiveTrace, error) {
	if port != "vm1" {
		return nil, fmt.Errorf("no port %q", port)
	}
	return &LiveTrace{Port: port, Armed: true, Count: 5, Captured: 1, Records: []LiveTraceRecord{{Len: 60, Headers: "a > b",
		Stages: []TraceStage{{Stage: "classify", Decision: "untagged: vlan 0"}}, Outputs: []TraceOutput{{Port: "vm2"}}}}}, nil
}

func (fakeTracer) DisarmTrace(port string) error { return fakeTracer{}.ArmTrace(port, 1) }

func TestLiveTraceEndpoint(t *testing.T) {
	r := newRig(t)
	rec := r.do("POST", "/v1/ports/vm1/trace", `{"count":5}`)
	if rec.Code != 201 {
		t.Fatalf("arm: %d %s", rec.Code, rec.Body)
	}
	rec = r.do("GET", "/v1/ports/vm1/trace", "")
	var lt LiveTrace
	if err := json.Unmarshal(rec.Body.Bytes(), &lt); err != nil || rec.Code != 200 || !lt.Armed || len(lt.Records) != 1 || lt.Records[0].Outputs[0].Port != "vm2" {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/v1/ports/vm1/trace", `{"count":0}`, 422},
		{"POST", "/v1/ports/vm1/trace", `{"count":1001}`, 422},
		{"POST", "/v1/ports/vm1/trace", `{"count":"x"}`, 400},
		{"POST", "/v1/ports/vm1/trace", `{"count":5,"bogus":1}`, 400},
		{"POST", "/v1/ports/nope/trace", `{"count":5}`, 404},
		{"GET", "/v1/ports/nope/trace", ``, 404},
		{"DELETE", "/v1/ports/nope/trace", ``, 404},
		{"DELETE", "/v1/ports/vm1/trace", ``, 204},
	} {
		if rec := r.do(tc.method, tc.path, tc.body); rec.Code != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, rec.Code, rec.Body, tc.code)
		}
	}
}

// TCP flags and numbers make a packet of a tracked connection; they are
// for TCP only.
func TestTraceTCPFlags(t *testing.T) {
	req := TraceRequest{InPort: "vm1", IPv4Src: "10.0.0.1", IPv4Dst: "10.0.0.2", IPProto: 6, L4Src: 1, L4Dst: 2,
		TCPFlags: "ack, PSH", TCPSeq: 101, TCPAck: 4000000000}
	f, err := req.Frame()
	if err != nil {
		t.Fatal(err)
	}
	tcp, _ := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil || tcp.SYN || !tcp.ACK || !tcp.PSH || tcp.Seq != 101 || tcp.Ack != 4000000000 {
		t.Fatalf("tcp %+v", tcp)
	}
	req.TCPFlags, req.TCPSeq, req.TCPAck = "", 0, 0
	f, _ = req.Frame()
	if tcp, _ := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP); tcp == nil || !tcp.SYN || tcp.ACK {
		t.Fatalf("default flags %+v", tcp)
	}
	r := newRig(t)
	for _, body := range []string{
		`{"in_port":"vm1","ipv4_dst":"10.0.0.2","ip_proto":6,"tcp_flags":"syn,ece"}`,
		`{"in_port":"vm1","ipv4_dst":"10.0.0.2","ip_proto":17,"tcp_flags":"ack"}`,
		`{"in_port":"vm1","tcp_seq":5}`,
	} {
		if rec := r.do("POST", "/v1/trace", body); rec.Code != 422 || !strings.Contains(rec.Body.String(), "tcp_flags") {
			t.Errorf("%s: %d %s", body, rec.Code, rec.Body)
		}
	}
}
