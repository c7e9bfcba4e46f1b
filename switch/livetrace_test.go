package vswitch_test

import (
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	vswitch "github.com/vswitch/vswitch/switch"
)

// A live trace records the next N packets received on a port, each with
// its headers, stage decisions and outputs, and then stops recording.
func TestLiveTrace(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b := mac(0), mac(1)
	if err := r.sw.ArmTrace("p0", 0); err == nil {
		t.Fatal("count 0 accepted")
	}
	if err := r.sw.ArmTrace("p0", vswitch.MaxLiveTrace+1); err == nil {
		t.Fatal("count over the bound accepted")
	}
	if err := r.sw.ArmTrace("nope", 3); err == nil {
		t.Fatal("unknown port accepted")
	}
	if err := r.sw.ArmTrace("p0", 3); err != nil {
		t.Fatal(err)
	}
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.poll() // p1 is not traced
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64))
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 1))
	r.fes[0].SendPacket(0, echo4(t, a, m10, "10.10.0.2", "10.10.0.1", 56))
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64))
	r.poll()
	res, err := r.sw.LiveTrace("p0")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Armed || res.Count != 3 || res.Captured != 3 || len(res.Records) != 3 {
		t.Fatalf("%+v", res)
	}
	stages := func(rec vswitch.LiveRecord) string {
		var s []string
		for _, st := range rec.Stages {
			s = append(s, st.Stage+": "+st.Decision)
		}
		return strings.Join(s, "; ")
	}
	r0, r1, r2 := res.Records[0], res.Records[1], res.Records[2]
	if !strings.Contains(r0.Headers, "ipv4 10.10.0.2 > 10.20.0.2 ttl 64, udp 40000 > 40001") ||
		!strings.HasPrefix(stages(r0), "classify: untagged: vlan 10; route: via r1-v20 vlan 20; l2: ") ||
		len(r0.Outputs) != 1 || r0.Outputs[0].Port != "p1" || r0.Outputs[0].VLAN != 20 || len(r0.Dropped) != 0 {
		t.Fatalf("routed: %+v (%s)", r0, stages(r0))
	}
	if len(r1.Dropped) != 1 || r1.Dropped[0] != "ttl_exceeded" || len(r1.Outputs) != 1 || r1.Outputs[0].Port != "p0" ||
		!strings.Contains(stages(r1), "icmp error to p0") {
		t.Fatalf("TTL 1: %+v (%s)", r1, stages(r1))
	}
	if !strings.Contains(r2.Headers, "icmp type 8") || !strings.Contains(stages(r2), "echo reply from 10.10.0.1 to p0") {
		t.Fatalf("echo: %+v (%s)", r2, stages(r2))
	}
	// The fourth packet went through, unrecorded.
	if got := len(r.fes[1].Received(0)); got != 2 {
		t.Fatalf("p1 got %d frames", got)
	}
	if err := r.sw.DisarmTrace("p0"); err != nil {
		t.Fatal(err)
	}
	if res, _ := r.sw.LiveTrace("p0"); res.Armed || len(res.Records) != 0 {
		t.Fatalf("after disarm: %+v", res)
	}
}

// Recording into an armed trace allocates nothing past what arming did.
func TestLiveTraceAllocatesNothing(t *testing.T) {
	l := routedLoop(t, 16)
	if err := l.r.sw.ArmTrace("p0", vswitch.MaxLiveTrace); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(50, l.step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch while tracing, want 0", allocs)
	}
	res, _ := l.r.sw.LiveTrace("p0")
	if res.Captured < 16*50 || len(res.Records[0].Stages) != 3 {
		t.Fatalf("captured %d: %+v", res.Captured, res.Records[0])
	}
}
