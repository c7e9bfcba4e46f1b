package vswitch_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/acl"
	"github.com/vswitch/vswitch/nat"
	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
)

func stageText(res *vswitch.TraceResult) string {
	var s []string
	for _, st := range res.Stages {
		s = append(s, st.Stage+": "+st.Decision)
	}
	return strings.Join(s, "; ")
}

func trace(t *testing.T, r *rig, port string, f []byte) (*vswitch.TraceResult, string) {
	t.Helper()
	res, err := r.sw.Trace(port, f)
	if err != nil {
		t.Fatal(err)
	}
	return res, stageText(res)
}

func outputs(res *vswitch.TraceResult) string {
	var s []string
	for _, o := range res.Outputs {
		s = append(s, o.Port)
	}
	return strings.Join(s, ",")
}

// A trace shows each zone's conntrack state and the filters' decisions,
// and commits nothing: connections and TCP states stay as they were.
func TestTraceConntrack(t *testing.T) {
	r := filterRig(t, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "default"}},
		Ports:          []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"default"}}},
	})
	a, b := mac(0), mac(1)
	ct := r.sw.Conntrack()
	syn := l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 80, &layers.TCP{SYN: true, Seq: 100}, 0)
	res, st := trace(t, r, "p0", syn)
	if !strings.Contains(st, "conntrack: zone 1: +trk+new") || !strings.Contains(st, "filter: egress: security groups admit a new connection") ||
		outputs(res) != "p1" || len(res.Dropped) != 0 || ct.Len() != 0 {
		t.Fatalf("SYN: %s -> %s, %d connections", st, outputs(res), ct.Len())
	}
	r.fes[0].SendPacket(0, syn)
	r.poll()
	one(t, r, 1)
	synack := l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 80, 40000, &layers.TCP{SYN: true, ACK: true, Seq: 900, Ack: 101}, 0)
	res, st = trace(t, r, "p1", synack)
	if !strings.Contains(st, "conntrack: zone 1: +trk+est+rpl tcp SYN_RECV") || !strings.Contains(st, "filter: ingress: pass (part of a connection)") ||
		outputs(res) != "p0" {
		t.Fatalf("SYN-ACK: %s -> %s", st, outputs(res))
	}
	// The trace moved nothing: the connection is still SYN_SENT.
	l, err := r.sw.Connections(vswitch.ConnFilter{Port: "p0"})
	if err != nil || l.Total != 1 || l.Rows[0].TCPState != "SYN_SENT" || l.Rows[0].Owner != "port p0" {
		t.Fatalf("listing %+v %v", l, err)
	}
	// Unsolicited and invalid packets: the drop and why.
	res, st = trace(t, r, "p1", l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 41000, 22, &layers.TCP{SYN: true, Seq: 1}, 0))
	if len(res.Outputs) != 0 || len(res.Dropped) != 1 || res.Dropped[0] != "sg_ingress_denied" || !strings.Contains(st, "+trk+new") {
		t.Fatalf("unsolicited: %s %+v", st, res)
	}
	res, st = trace(t, r, "p0", l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40001, 80, &layers.TCP{ACK: true, Seq: 5, Ack: 5}, 0))
	if len(res.Outputs) != 0 || res.Dropped[0] != "ct_tcp_bad_flags" || !strings.Contains(st, "conntrack: zone 1: +trk+inv") {
		t.Fatalf("mid-stream: %s %+v", st, res)
	}
	none(t, r, 0)
	none(t, r, 1)
	if ct.Len() != 1 {
		t.Fatalf("%d connections after traces", ct.Len())
	}
	// A live trace records the same decisions for real packets.
	r.fes[1].SendPacket(0, synack)
	r.poll()
	one(t, r, 0)
	if err := r.sw.ArmTrace("p0", 1); err != nil {
		t.Fatal(err)
	}
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 80, &layers.TCP{ACK: true, Seq: 101, Ack: 901}, 0))
	r.poll()
	one(t, r, 1)
	lt, _ := r.sw.LiveTrace("p0")
	var live []string
	for _, s := range lt.Records[0].Stages {
		live = append(live, s.Stage+": "+s.Decision)
	}
	if got := strings.Join(live, "; "); !strings.Contains(got, "conntrack: zone 1: +trk+est tcp ESTABLISHED; filter: egress: pass (part of a connection)") {
		t.Fatalf("live stages %q", got)
	}
}

// A trace through the router's NAT shows the rewrite and routes the
// rewritten packet, taking no port and making no connection.
func TestTraceNAT(t *testing.T) {
	r, m10, m20 := natRig(t)
	a, b := mac(0), mac(1)
	ct := r.sw.Conntrack()
	res, st := trace(t, r, "p0", l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", 40000, 7000, nil, 10))
	if !strings.Contains(st, "nat: router r1 zone 2048: +trk+new+snat; source 10.10.0.3 port 40000 -> 10.20.0.1 port 40000") ||
		!strings.Contains(st, "route: via r1-v20") || outputs(res) != "p1" {
		t.Fatalf("masquerade: %s -> %s", st, outputs(res))
	}
	if ct.Len() != 0 || ct.PortsInUse(netip.MustParseAddr("10.20.0.1"), 17) != 0 {
		t.Fatalf("a trace made %d connections, took %d ports", ct.Len(), ct.PortsInUse(netip.MustParseAddr("10.20.0.1"), 17))
	}
	_, st = trace(t, r, "p1", l4frame(t, b, m20, "10.20.0.2", "10.20.0.1", 41000, 8080, &layers.TCP{SYN: true, Seq: 5}, 0))
	if !strings.Contains(st, "+trk+new+dnat; destination 10.20.0.1 port 8080 -> 10.10.0.2 port 80") || !strings.Contains(st, "route: via r1-v10") {
		t.Fatalf("port forward: %s", st)
	}
	// After a real connection, its reply is shown un-translated.
	r.fes[0].SendPacket(0, l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", 40000, 7000, nil, 10))
	r.poll()
	one(t, r, 1)
	_, st = trace(t, r, "p1", l4frame(t, b, m20, "10.20.0.2", "10.20.0.1", 7000, 40000, nil, 10))
	if !strings.Contains(st, "+trk+est+rpl+snat; destination 10.20.0.1 port 40000 -> 10.10.0.3 port 40000") {
		t.Fatalf("reply: %s", st)
	}
	if ct.Len() != 1 {
		t.Fatalf("%d connections", ct.Len())
	}
}

// An ingress reject on the destination port answers the sender: a TCP
// RST and an ICMP unreachable reach p0 (untagged on its access VLAN)
// from p1 (a trunk), through p0's own security group.
func TestIngressRejectBridged(t *testing.T) {
	r := newRigPorts(t, []vswitch.PortOptions{
		{VLAN: vswitch.VLANConfig{Tag: 10}},
		{VLAN: vswitch.VLANConfig{Mode: "trunk", Trunks: []uint16{10}}},
	}, vhostusertest.Options{})
	setFilter(t, r.sw, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "default"}},
		Ports:          []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"default"}}},
		ACLs: []acl.ACL{
			{Name: "no-telnet", Port: "p1", Direction: "ingress", Priority: 10, Protocol: "tcp", Ports: "23", Action: "reject"},
			{Name: "no-tftp", Port: "p1", Direction: "ingress", Priority: 10, Protocol: "udp", Ports: "69", Action: "reject"},
		},
	})
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	a, b := mac(0), mac(1)
	// p1's guest is learned on VLAN 10.
	r.fes[1].SendPacket(0, vframe(t, b, a, 10, 20))
	r.poll()
	r.fes[0].Received(0)

	syn := l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 23, &layers.TCP{SYN: true, Seq: 7}, 0)
	res, st := trace(t, r, "p0", syn)
	if len(res.Outputs) != 0 || !strings.Contains(st, "filter: ingress: acl no-telnet reject") ||
		!strings.Contains(st, "reject: a TCP RST back through the pipeline as from p1") {
		t.Fatalf("trace: %s -> %s", st, outputs(res))
	}
	r.fes[0].SendPacket(0, syn)
	r.poll()
	none(t, r, 1)
	p := one(t, r, 0)
	if p.Layer(layers.LayerTypeDot1Q) != nil {
		t.Fatalf("reply tagged on an access port: %v", p)
	}
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	eth := p.LinkLayer().(*layers.Ethernet)
	if tcp == nil || !tcp.RST || !tcp.ACK || tcp.Ack != 8 || tcp.SrcPort != 23 || tcp.DstPort != 40000 ||
		ip.SrcIP.String() != "10.0.0.2" || ip.DstIP.String() != "10.0.0.1" || eth.SrcMAC.String() != b.String() || eth.DstMAC.String() != a.String() {
		t.Fatalf("RST: %v", p)
	}
	checksumsOK(t, p)
	// The RST closed p0's connection (it came back through p0's group).
	l, _ := r.sw.Connections(vswitch.ConnFilter{Port: "p0", Proto: 6})
	if l.Total != 1 || l.Rows[0].TCPState != "CLOSE" {
		t.Fatalf("p0's connection: %+v", l)
	}
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 69, nil, 30))
	r.poll()
	none(t, r, 1)
	p = one(t, r, 0)
	ic, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ic == nil || ic.TypeCode != layers.CreateICMPv4TypeCode(3, 13) {
		t.Fatalf("unreachable: %v", p)
	}
	if d := r.drops(1)["acl_reject"]; d != 2 {
		t.Fatalf("p1 acl_reject %d (p0 %v p1 %v)", d, r.drops(0), r.drops(1))
	}
	// Other traffic goes through, tagged for the trunk.
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 70, nil, 30))
	r.poll()
	if p := one(t, r, 1); p.Layer(layers.LayerTypeDot1Q) == nil {
		t.Fatalf("to the trunk: %v", p)
	}
}

// An ingress reject behind the router's floating IP: the RST goes back
// through the router, its source translated back to the floating IP.
func TestIngressRejectRoutedNAT(t *testing.T) {
	r, _, m20 := natRig(t)
	setFilter(t, r.sw, &acl.Config{ACLs: []acl.ACL{
		{Name: "no-ssh", Port: "p0", Direction: "ingress", Priority: 10, Protocol: "tcp", Ports: "22", Action: "reject"},
	}})
	b := mac(1)
	r.fes[1].SendPacket(0, l4frame(t, b, m20, "10.20.0.2", "10.20.0.100", 41000, 22, &layers.TCP{SYN: true, Seq: 50}, 0))
	r.poll()
	none(t, r, 0)
	p := one(t, r, 1)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	eth := p.LinkLayer().(*layers.Ethernet)
	if tcp == nil || !tcp.RST || tcp.Ack != 51 || tcp.SrcPort != 22 || tcp.DstPort != 41000 ||
		ip.SrcIP.String() != "10.20.0.100" || ip.DstIP.String() != "10.20.0.2" || eth.SrcMAC.String() != m20.String() {
		t.Fatalf("RST through the router: %v", p)
	}
	checksumsOK(t, p)
	if d := r.drops(0)["acl_reject"]; d != 1 {
		t.Fatalf("p0 drops %v", r.drops(0))
	}
	// The router's connection is closed by the RST.
	l, _ := r.sw.Connections(vswitch.ConnFilter{Router: "r1"})
	if l.Total != 1 || l.Rows[0].TCPState != "CLOSE" || !l.Rows[0].DNAT {
		t.Fatalf("router connection %+v", l)
	}
}

// Rejecting SYNs on p1's ingress and sending the RSTs back to p0
// allocates nothing.
func TestIngressRejectAllocatesNothing(t *testing.T) {
	r := newRig(t, 2)
	setFilter(t, r.sw, &acl.Config{ACLs: []acl.ACL{
		{Name: "rej", Port: "p1", Direction: "ingress", Priority: 1, Protocol: "tcp", Action: "reject"},
	}})
	r.fes[1].SendPacket(0, frame(t, mac(1), mac(0), 50))
	r.poll()
	rx0 := r.fes[0].Rx(0)
	for range 64 {
		rx0.AddRxBuffer(2048)
	}
	used := rx0.UsedIdx()
	l := newLoopFrame(r, vswitch.BatchSize, l4frame(t, mac(0), mac(1), "10.0.0.1", "10.0.0.2", 40000, 80, &layers.TCP{SYN: true, Seq: 1}, 0))
	replies := 0
	step := func() {
		l.step()
		for ; used != rx0.UsedIdx(); used++ {
			id, _ := rx0.UsedEntry(used)
			rx0.PushAvail(uint16(id))
			replies++
		}
	}
	if allocs := testing.AllocsPerRun(100, step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
	if replies < vswitch.BatchSize*100 || l.forwarded != 0 {
		t.Fatalf("%d RSTs back, %d forwarded (p0 %v p1 %v)", replies, l.forwarded, r.drops(0), r.drops(1))
	}
}

// SetConntrack applies live; Connections filters and bounds; a flush
// by port or router empties that zone only.
func TestConntrackSettingsListFlush(t *testing.T) {
	r, m10, _ := natRig(t)
	setFilter(t, r.sw, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "default"}},
		Ports:          []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"default"}}},
	})
	a := mac(0)
	for sp := uint16(1000); sp < 1005; sp++ {
		r.fes[0].SendPacket(0, l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", sp, 53, nil, 10))
	}
	r.poll()
	if got := len(r.fes[1].Received(0)); got != 5 {
		t.Fatalf("p1 got %d", got)
	}
	all, err := r.sw.Connections(vswitch.ConnFilter{})
	if err != nil || all.Total != 10 || len(all.Rows) != 10 || all.Entries != 10 || all.Limit != vswitch.DefaultConntrackSize {
		t.Fatalf("all: %+v %v", all, err)
	}
	l, _ := r.sw.Connections(vswitch.ConnFilter{Router: "r1", Limit: 2})
	if l.Total != 5 || len(l.Rows) != 2 || l.Rows[0].Owner != "router r1" || !l.Rows[0].SNAT || l.Rows[0].ExpiresIn != 30 ||
		l.Rows[0].Reply.DstAddr() != netip.MustParseAddr("10.20.0.1") {
		t.Fatalf("router: %+v", l)
	}
	if l, _ := r.sw.Connections(vswitch.ConnFilter{Addr: netip.MustParseAddr("10.20.0.1")}); l.Total != 5 {
		t.Fatalf("by address: %d", l.Total)
	}
	if l, _ := r.sw.Connections(vswitch.ConnFilter{Proto: 6}); l.Total != 0 {
		t.Fatalf("tcp: %d", l.Total)
	}
	if l, _ := r.sw.Connections(vswitch.ConnFilter{Port: "p0", Router: "r1"}); l.Total != 0 {
		t.Fatalf("port and router: %d", l.Total)
	}
	if _, err := r.sw.Connections(vswitch.ConnFilter{Port: "nope"}); err == nil {
		t.Fatal("unknown port accepted")
	}
	// Settings: a lower limit applies at once, a higher one than the
	// table's is refused.
	if err := r.sw.SetConntrack(nat.Config{Capacity: vswitch.DefaultConntrackSize + 1}); err == nil {
		t.Fatal("growing the table accepted")
	}
	cfg := vswitch.DefaultConntrack()
	cfg.Capacity, cfg.Timeouts.UDP = 11, 7
	if err := r.sw.SetConntrack(cfg); err != nil {
		t.Fatal(err)
	}
	if s := r.sw.ConntrackSettings(); s.Capacity != 11 || s.Timeouts.UDP != 7 || s.Window != nat.WindowStrict {
		t.Fatalf("settings %+v", s)
	}
	r.fes[0].SendPacket(0, l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", 2000, 53, nil, 10))
	r.fes[0].SendPacket(0, l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", 2001, 53, nil, 10))
	r.poll()
	if got := len(r.fes[1].Received(0)); got != 0 {
		t.Fatalf("p1 got %d over the limit", got)
	}
	if d := r.drops(0)["conntrack_full"]; d != 2 {
		t.Fatalf("p0 drops %v", r.drops(0))
	}
	// The first packet was committed in p0's zone, not in the router's.
	if n, err := r.sw.FlushConnections(vswitch.ConnFilter{Port: "p0"}); n != 6 || err != nil {
		t.Fatalf("flush p0: %d %v", n, err)
	}
	if l, _ := r.sw.Connections(vswitch.ConnFilter{}); l.Total != 5 || l.Rows[0].Owner != "router r1" {
		t.Fatalf("after the port flush: %+v", l)
	}
	if n, _ := r.sw.FlushConnections(vswitch.ConnFilter{}); n != 5 || r.sw.Conntrack().Len() != 0 {
		t.Fatalf("flush all: %d", n)
	}
	if n := r.sw.Conntrack().PortsInUse(netip.MustParseAddr("10.20.0.1"), 17); n != 0 {
		t.Fatalf("%d ports held after the flush", n)
	}
}

// Before the table exists, settings wait for it: its size comes from
// them.
func TestConntrackSettingsBeforeTable(t *testing.T) {
	r := newRig(t, 2)
	cfg := vswitch.DefaultConntrack()
	cfg.Capacity, cfg.Window = 100, nat.WindowLoose
	if err := r.sw.SetConntrack(cfg); err != nil {
		t.Fatal(err)
	}
	if r.sw.Conntrack() != nil {
		t.Fatal("table made early")
	}
	setFilter(t, r.sw, &acl.Config{SecurityGroups: []acl.SecurityGroup{{Name: "g"}}, Ports: []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"g"}}}})
	ct := r.sw.Conntrack()
	if ct == nil || ct.Capacity() != 100 || ct.Settings().Window != nat.WindowLoose {
		t.Fatalf("table %+v", ct.Settings())
	}
}

// Traces, listings and flushes run beside forwarding without a data race
// (run with -race).
func TestConntrackReadersBesideForwarding(t *testing.T) {
	r, m10, _ := natRig(t)
	setFilter(t, r.sw, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "default"}},
		Ports:          []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"default"}}},
	})
	a := mac(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			if _, err := r.sw.Trace("p0", l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", uint16(1000+i%7), 7000, nil, 10)); err != nil {
				t.Error(err)
				return
			}
			if _, err := r.sw.Connections(vswitch.ConnFilter{Limit: 3}); err != nil {
				t.Error(err)
				return
			}
			if i%25 == 24 {
				r.sw.FlushConnections(vswitch.ConnFilter{Router: "r1"})
			}
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		default:
		}
		r.fes[0].SendPacket(0, l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", uint16(1000+i%7), 7000, nil, 10))
		r.poll()
		r.fes[1].Received(0)
	}
}
