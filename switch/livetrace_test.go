package vswitch_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/acl"
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

// A live trace goes on through the output ports' filters, as the offline
// trace does: each output port's conntrack zone and ingress decision,
// the drop there, and as outputs only the ports the packet left by.
func TestLiveTraceOutputFilter(t *testing.T) {
	r := newRig(t, 3)
	setFilter(t, r.sw, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "dns", Rules: []acl.SGRule{
			{Direction: "ingress", EtherType: "ipv4", Protocol: "udp", Ports: "53"}}}},
		Ports: []acl.PortFilter{{Name: "p1", SecurityGroups: []string{"dns"}}},
		ACLs:  []acl.ACL{{Name: "no-telnet", Port: "p1", Direction: "ingress", Priority: 10, Protocol: "tcp", Ports: "23", Action: "reject"}},
	})
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	a, b := mac(0), mac(1)
	r.fes[1].SendPacket(0, frame(t, b, a, 50)) // learns b on p1
	r.poll()
	r.fes[0].Received(0)
	r.fes[2].Received(0)
	texts := func(st []vswitch.TraceStage) string {
		var s []string
		for _, x := range st {
			s = append(s, x.Stage+": "+x.Decision)
		}
		return strings.Join(s, "; ")
	}
	names := func(o []vswitch.TraceOutput) string {
		var s []string
		for _, x := range o {
			s = append(s, x.Port)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	for k, c := range []struct {
		name    string
		frame   []byte
		outs    string
		dropped string
		want    string // in the live stages
	}{
		{"admitted", l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 53, nil, 20), "p1", "",
			"conntrack: zone 2: +trk+new; filter: ingress: security group rule dns/rules[0] admits a new connection"},
		{"denied", l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5001, 99, nil, 20), "", "sg_ingress_denied",
			"conntrack: zone 2: +trk+new; filter: ingress: sg_ingress_denied; acl: drop: sg_ingress_denied"},
		{"flood", l4frame(t, a, mac(9), "10.0.0.1", "10.0.0.9", 5002, 99, nil, 20), "p2", "sg_ingress_denied",
			"filter: ingress: sg_ingress_denied; acl: drop: sg_ingress_denied"},
		{"rejected", l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 23, &layers.TCP{SYN: true, Seq: 1}, 0), "", "acl_reject",
			"filter: ingress: acl no-telnet reject; acl: drop: acl_reject"},
	} {
		off, err := r.sw.Trace("p0", c.frame)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.sw.ArmTrace("p0", 1); err != nil {
			t.Fatal(err)
		}
		r.fes[0].SendPacket(0, c.frame)
		r.poll()
		lt, err := r.sw.LiveTrace("p0")
		if err != nil || len(lt.Records) != 1 {
			t.Fatalf("%s: %v %+v", c.name, err, lt)
		}
		rec := lt.Records[0]
		live := texts(rec.Stages)
		if !strings.Contains(live, c.want) || names(rec.Outputs) != c.outs || strings.Join(rec.Dropped, ",") != c.dropped || rec.MoreOutputs != 0 {
			t.Errorf("%s: live %q -> %q dropped %v", c.name, live, names(rec.Outputs), rec.Dropped)
		}
		// The offline trace says the same (it adds the reject's reply).
		if o := texts(off.Stages); !strings.HasPrefix(o, live) || names(off.Outputs) != c.outs {
			t.Errorf("%s: offline %q -> %q, live %q", c.name, o, names(off.Outputs), live)
		}
		if got := len(r.fes[1].Received(0)); (got == 1) != strings.Contains(c.outs, "p1") {
			t.Errorf("%s: p1 got %d", c.name, got)
		}
		r.fes[2].Received(0)
		if got := len(r.fes[0].Received(0)); got != k/3 { // the RST of the reject
			t.Errorf("%s: p0 got %d", c.name, got)
		}
	}
}

// Tracing through a stateful group on the output port allocates nothing
// past what arming did.
func TestLiveTraceFilterAllocatesNothing(t *testing.T) {
	l := sgLoop(t, 16)
	if err := l.r.sw.ArmTrace("p0", vswitch.MaxLiveTrace); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(50, l.step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch while tracing, want 0", allocs)
	}
	res, _ := l.r.sw.LiveTrace("p0")
	if res.Captured < 16*50 || l.forwarded == 0 {
		t.Fatalf("captured %d, forwarded %d", res.Captured, l.forwarded)
	}
	var out bool
	for _, st := range res.Records[len(res.Records)-1].Stages {
		out = out || st.Stage == "filter" && strings.HasPrefix(st.Decision, "ingress: ")
	}
	if !out || len(res.Records[0].Outputs) != 1 {
		t.Fatalf("no output filter in %+v", res.Records[len(res.Records)-1])
	}
}
