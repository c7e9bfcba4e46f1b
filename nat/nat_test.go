package nat

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/switch/header"
)

// The example router.
var exampleRules = []RuleConfig{
	{Type: "snat", Source: "10.10.0.0/24", To: "10.20.0.1"},
	{Type: "dnat", Destination: "10.20.0.100", To: "10.10.0.2"},
	{Type: "dnat", Destination: "10.20.0.1", Protocol: "tcp", Port: 8080, To: "10.10.0.2:80"},
}

func natRig(t *testing.T) *rig {
	r := newRig(t, Config{Capacity: 1 << 17, Window: WindowStrict})
	rs, err := Compile(r.tab, "routers[0].nat", exampleRules)
	if err != nil {
		t.Fatal(err)
	}
	r.rules = rs
	return r
}

func want(t *testing.T, b []byte, src, dst string, sp, dp uint16) {
	t.Helper()
	checkSums(t, b)
	s, d, p1, p2 := addrs(t, b)
	if s != netip.MustParseAddr(src) || d != netip.MustParseAddr(dst) || p1 != sp || p2 != dp {
		t.Fatalf("got %s:%d -> %s:%d, want %s:%d -> %s:%d", s, p1, d, p2, src, sp, dst, dp)
	}
}

func TestSNATRoundTrip(t *testing.T) {
	r := natRig(t)
	in, ext, out := "10.10.0.5", "10.20.0.1", "8.8.8.8"
	b := tcpPkt(t, in, out, 40000, 443, fSyn, 1, 0)
	res := r.send(b)
	wantState(t, res, StateTrk|StateNew|StateSNAT)
	want(t, b, ext, out, 40000, 443) // the original port is kept when free
	b = tcpPkt(t, out, ext, 443, 40000, fSyn|fAck, 50, 2)
	wantState(t, r.send(b), StateTrk|StateEst|StateRpl|StateSNAT)
	want(t, b, out, in, 443, 40000)
	// A second inside host with the same source port gets another port.
	b = udpPkt(t, in, out, 40000, 53)
	r.send(b)
	b2 := udpPkt(t, "10.10.0.6", out, 40000, 53)
	r.send(b2)
	_, _, p1, _ := addrs(t, b)
	_, _, p2, _ := addrs(t, b2)
	if p1 == p2 || p2 < minPort {
		t.Fatalf("ports %d %d", p1, p2)
	}
	checkSums(t, b2)
	back := udpPkt(t, out, ext, 53, p2)
	r.send(back)
	want(t, back, out, "10.10.0.6", 53, 40000)
	// UDP without a checksum stays without.
	nc := build(t, seg{src: "10.10.0.7", dst: out, sport: 7, dport: 9, payload: 5, noUDPChecksum: true}, 17)
	r.send(nc)
	s, _, _, _ := addrs(t, nc)
	if s.String() != ext || nc[header.EthernetLen+20+6] != 0 || nc[header.EthernetLen+20+7] != 0 {
		t.Fatalf("zero UDP checksum: %x", nc)
	}
	// Echo: the id is the port.
	e := echoPkt(t, in, out, 1, false)
	r.send(e)
	checkSums(t, e)
	_, _, id, _ := addrs(t, e)
	rep := echoPkt(t, out, ext, id, true)
	wantState(t, r.send(rep), StateTrk|StateEst|StateRpl|StateSNAT)
	want(t, rep, out, in, 1, 1)
	// Inside to inside is not translated.
	b = udpPkt(t, in, "10.10.0.9", 1, 2)
	wantState(t, r.send(b), StateTrk|StateNew)
	want(t, b, in, "10.10.0.9", 1, 2)
}

func TestDNATFloatingIP(t *testing.T) {
	r := natRig(t)
	fip, fixed, client := "10.20.0.100", "10.10.0.2", "1.2.3.4"
	b := tcpPkt(t, client, fip, 5555, 22, fSyn, 1, 0)
	wantState(t, r.send(b), StateTrk|StateNew|StateDNAT)
	want(t, b, client, fixed, 5555, 22)
	b = tcpPkt(t, fixed, client, 22, 5555, fSyn|fAck, 70, 2)
	r.send(b)
	want(t, b, fip, client, 22, 5555)
	// The fixed IP's own connections leave as the floating IP, port kept.
	b = udpPkt(t, fixed, "9.9.9.9", 123, 123)
	wantState(t, r.send(b), StateTrk|StateNew|StateSNAT)
	want(t, b, fip, "9.9.9.9", 123, 123)
	b = udpPkt(t, "9.9.9.9", fip, 123, 123)
	r.send(b)
	want(t, b, "9.9.9.9", fixed, 123, 123)
}

func TestPortForward(t *testing.T) {
	r := natRig(t)
	client := "1.2.3.4"
	b := tcpPkt(t, client, "10.20.0.1", 6000, 8080, fSyn, 1, 0)
	wantState(t, r.send(b), StateTrk|StateNew|StateDNAT)
	want(t, b, client, "10.10.0.2", 6000, 80)
	b = tcpPkt(t, "10.10.0.2", client, 80, 6000, fSyn|fAck, 70, 2)
	r.send(b)
	want(t, b, "10.20.0.1", client, 8080, 6000)
	// Another port on the router address is not forwarded.
	b = tcpPkt(t, client, "10.20.0.1", 6000, 8081, fSyn, 1, 0)
	wantState(t, r.send(b), StateTrk|StateNew)
	want(t, b, client, "10.20.0.1", 6000, 8081)
}

func TestHairpin(t *testing.T) {
	r := natRig(t)
	a, srv := "10.10.0.3", "10.10.0.2"
	// Through the forwarded port.
	b := tcpPkt(t, a, "10.20.0.1", 7000, 8080, fSyn, 1, 0)
	wantState(t, r.send(b), StateTrk|StateNew|StateSNAT|StateDNAT)
	s, d, sp, dp := addrs(t, b)
	checkSums(t, b)
	if s.String() != "10.20.0.1" || d.String() != srv || dp != 80 {
		t.Fatalf("hairpin out: %s:%d -> %s:%d", s, sp, d, dp)
	}
	back := tcpPkt(t, srv, "10.20.0.1", 80, sp, fSyn|fAck, 9, 2)
	wantState(t, r.send(back), StateTrk|StateEst|StateRpl|StateSNAT|StateDNAT)
	want(t, back, "10.20.0.1", a, 8080, 7000)
	// Through the floating IP.
	b = udpPkt(t, a, "10.20.0.100", 1111, 2222)
	r.send(b)
	s, d, sp, _ = addrs(t, b)
	if s.String() != "10.20.0.1" || d.String() != srv {
		t.Fatalf("hairpin fip: %s -> %s", s, d)
	}
	back = udpPkt(t, srv, "10.20.0.1", 2222, sp)
	r.send(back)
	want(t, back, "10.20.0.100", a, 2222, 1111)
}

func TestICMPErrorTranslation(t *testing.T) {
	r := natRig(t)
	in, ext, out, rtr := "10.10.0.5", "10.20.0.1", "8.8.8.8", "7.7.7.7"
	for _, mk := range []func() []byte{
		func() []byte { return udpPkt(t, in, out, 3000, 53) },
		func() []byte { return tcpPkt(t, in, out, 3001, 443, fSyn, 1, 0) },
		func() []byte { return echoPkt(t, in, out, 77, false) },
	} {
		b := mk()
		r.send(b)
		_, _, sp, _ := addrs(t, b)
		// A router outside reports the translated packet back to ext.
		e := icmpErr(t, rtr, ext, b)
		res := r.send(e)
		wantState(t, res, StateTrk|StateRel|StateRpl|StateSNAT)
		checkSums(t, e)
		s, d, _, _ := addrs(t, e)
		if s.String() != rtr || d.String() != in {
			t.Fatalf("outer %s -> %s", s, d)
		}
		// The embedded packet is the original one again.
		inner := append(make([]byte, header.EthernetLen), e[header.EthernetLen+20+8:]...)
		inner[12], inner[13] = 0x08, 0x00
		s, d, isp, _ := addrs(t, inner)
		orig := mk()
		_, _, osp, _ := addrs(t, orig)
		if s.String() != in || d.String() != out || isp != osp {
			t.Fatalf("inner %s:%d -> %s (was port %d)", s, isp, d, sp)
		}
	}
	// Port forward: the server's port unreachable goes out as the router's.
	b := udpPkt(t, "1.2.3.4", "10.20.0.100", 5000, 69)
	r.send(b)
	e := icmpErr(t, "10.10.0.2", "1.2.3.4", b)
	wantState(t, r.send(e), StateTrk|StateRel|StateRpl|StateDNAT)
	checkSums(t, e)
	want(t, e, "10.20.0.100", "1.2.3.4", 0, 0)
}

func TestPortExhaustionAndReuse(t *testing.T) {
	r := newRig(t, Config{Capacity: 70000})
	rs, err := Compile(r.tab, "nat", []RuleConfig{{Type: "snat", Source: "10.10.0.0/16", To: "10.20.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	r.rules = rs
	n := maxPort - minPort + 1
	ports := map[uint16]bool{}
	for i := range n {
		b := udpPkt(t, "10.10.0.5", "8.8.8.8", uint16(i%60000+1), uint16(i/60000+1))
		if res := r.send(b); res.Reason != 0 {
			t.Fatalf("connection %d: %v", i, res.Reason)
		}
		_, _, sp, _ := addrs(t, b)
		if ports[sp] || sp < minPort {
			t.Fatalf("port %d given twice or out of range", sp)
		}
		ports[sp] = true
	}
	if got := r.tab.PortsInUse(netip.MustParseAddr("10.20.0.1"), header.ProtoUDP); got != n {
		t.Fatalf("%d ports in use", got)
	}
	res := r.send(udpPkt(t, "10.10.0.6", "8.8.8.8", 1, 1))
	if res.Reason != ReasonNoPort || r.w.Counters[ReasonNoPort] != 1 {
		t.Fatalf("exhausted pool: %v", res.Reason)
	}
	// TCP has its own pool.
	if res := r.send(tcpPkt(t, "10.10.0.6", "8.8.8.8", 1, 1, fSyn, 1, 0)); res.Reason != 0 {
		t.Fatalf("tcp: %v", res.Reason)
	}
	r.now += 31
	sweepAll(r)
	if got := r.tab.PortsInUse(netip.MustParseAddr("10.20.0.1"), header.ProtoUDP); got != 0 {
		t.Fatalf("%d ports in use after expiry", got)
	}
	if res := r.send(udpPkt(t, "10.10.0.6", "8.8.8.8", 1, 1)); res.Reason != 0 {
		t.Fatalf("no port after expiry: %v", res.Reason)
	}
}

func TestNATv6(t *testing.T) {
	r := newRig(t, Config{Capacity: 64})
	rs, err := Compile(r.tab, "nat", []RuleConfig{{Type: "snat", Source: "fd00::/64", To: "2001:db8::1"}})
	if err != nil {
		t.Fatal(err)
	}
	r.rules = rs
	b := tcpPkt(t, "fd00::5", "2001:db8:1::9", 41000, 80, fSyn, 1, 0)
	r.send(b)
	want(t, b, "2001:db8::1", "2001:db8:1::9", 41000, 80)
	e := icmpErr(t, "2001:db8:2::1", "2001:db8::1", b)
	wantState(t, r.send(e), StateTrk|StateRel|StateRpl|StateSNAT)
	checkSums(t, e)
	_, d, _, _ := addrs(t, e)
	if d.String() != "fd00::5" {
		t.Fatalf("outer dst %s", d)
	}
}

func TestValidate(t *testing.T) {
	bad := []RuleConfig{
		{Type: "snat", Source: "10.10.0.0/24", To: "10.20.0.1"},
		{Type: "masq", To: "1.1.1.1"},
		{Type: "dnat", Destination: "10.20.0.1", Protocol: "tcp", Port: 8080, To: "10.10.0.2:99999"},
		{Type: "snat", To: "10.20.0.1"},
		{Type: "dnat", Destination: "10.20.0.1", Port: 80, To: "10.10.0.2:80"},
		{Type: "dnat", Destination: "10.20.0.7", To: "fd00::1"},
		{Type: "dnat", Destination: "10.20.0.100", To: "10.10.0.2"},
		{Type: "dnat", Destination: "10.20.0.100", To: "10.10.0.3"},
	}
	err := Validate("routers[0].nat", bad)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		"routers[0].nat[1].type:", "routers[0].nat[2].to:", "routers[0].nat[3].source:",
		"routers[0].nat[4].port:", "routers[0].nat[5].to:", "routers[0].nat[7].destination:",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "nat[0].") || strings.Contains(err.Error(), "nat[6].") {
		t.Errorf("good rules reported:\n%v", err)
	}
	if err := Validate("routers[0].nat", exampleRules); err != nil {
		t.Fatal(err)
	}
}

func TestTranslateAllocs(t *testing.T) {
	r := natRig(t)
	frames := [][]byte{
		tcpPkt(t, "10.10.0.5", "8.8.8.8", 1, 2, fSyn, 1, 0),
		udpPkt(t, "1.2.3.4", "10.20.0.100", 1, 2),
		echoPkt(t, "10.10.0.5", "8.8.8.8", 1, false),
	}
	ps := make([]header.Parsed, len(frames))
	res := make([]Result, len(frames))
	for i, b := range frames {
		header.Parse(b, len(b), &ps[i])
	}
	n := testing.AllocsPerRun(100, func() {
		r.w.Lookup(frames, ps, 0, r.now, res)
		for i := range res {
			res[i].Admit = true
		}
		r.w.Commit(frames, ps, res, r.rules, r.now)
		r.w.Translate(frames, ps, res)
	})
	if n != 0 {
		t.Fatalf("%v allocs per batch", n)
	}
}
