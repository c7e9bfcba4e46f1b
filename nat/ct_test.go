package nat

import (
	"testing"

	"github.com/vswitch/vswitch/switch/header"
)

const (
	fSyn = header.TCPSyn
	fAck = header.TCPAck
	fFin = header.TCPFin | header.TCPAck
	fRst = header.TCPRst
)

func TestTCPHandshakeAndCloseBothSides(t *testing.T) {
	for _, mode := range []WindowCheck{WindowOff, WindowLoose, WindowStrict} {
		t.Run(mode.String(), func(t *testing.T) {
			r := newRig(t, Config{Capacity: 16, Window: mode})
			a, b := "10.0.0.1", "10.0.0.2"
			res := r.send(tcpPkt(t, a, b, 1000, 80, fSyn, 100, 0))
			wantState(t, res, StateTrk|StateNew)
			h := res.Conn
			if r.tcpState(h) != TCPSynSent {
				t.Fatal("want SYN_SENT")
			}
			// A retransmitted SYN is still new (not answered yet).
			wantState(t, r.send(tcpPkt(t, a, b, 1000, 80, fSyn, 100, 0)), StateTrk|StateNew)
			wantState(t, r.send(tcpPkt(t, b, a, 80, 1000, fSyn|fAck, 500, 101)), StateTrk|StateEst|StateRpl)
			if r.tcpState(h) != TCPSynRecv {
				t.Fatal("want SYN_RECV")
			}
			wantState(t, r.send(tcpPkt(t, a, b, 1000, 80, fAck, 101, 501)), StateTrk|StateEst)
			if r.tcpState(h) != TCPEstablished {
				t.Fatal("want ESTABLISHED")
			}
			if _, exp, _ := r.tab.State(h); exp != r.now+432000 {
				t.Fatalf("established expiry %d", exp-r.now)
			}
			wantState(t, r.send(tcpPkt(t, a, b, 1000, 80, fFin, 101, 501)), StateTrk|StateEst)
			if r.tcpState(h) != TCPFinWait {
				t.Fatal("want FIN_WAIT")
			}
			wantState(t, r.send(tcpPkt(t, b, a, 80, 1000, fAck, 501, 102)), StateTrk|StateEst|StateRpl)
			if r.tcpState(h) != TCPCloseWait {
				t.Fatal("want CLOSE_WAIT")
			}
			r.send(tcpPkt(t, b, a, 80, 1000, fFin, 501, 102))
			if r.tcpState(h) != TCPLastAck {
				t.Fatal("want LAST_ACK")
			}
			r.send(tcpPkt(t, a, b, 1000, 80, fAck, 102, 502))
			if r.tcpState(h) != TCPTimeWait {
				t.Fatal("want TIME_WAIT")
			}
			// TIME_WAIT lasts 120 s, then the keys are free again.
			r.now += 119
			wantState(t, r.send(tcpPkt(t, a, b, 1000, 80, fAck, 102, 502)), StateTrk|StateEst)
			r.now += 120
			res = r.send(tcpPkt(t, a, b, 1000, 80, fAck, 102, 502))
			wantState(t, res, StateTrk|StateInv)
			if res.Reason != ReasonTCPFlags {
				t.Fatalf("reason %v", res.Reason)
			}
			sweepAll(r)
			if r.tab.Len() != 0 {
				t.Fatalf("%d connections after expiry", r.tab.Len())
			}
		})
	}
}

func TestTCPRst(t *testing.T) {
	r := newRig(t, Config{Capacity: 16, Window: WindowStrict})
	a, b := "10.0.0.1", "10.0.0.2"
	h := r.send(tcpPkt(t, a, b, 1000, 80, fSyn, 100, 0)).Conn
	// A RST to a SYN must acknowledge it.
	wantState(t, r.send(tcpPkt(t, b, a, 80, 1000, fRst|fAck, 0, 77)), StateTrk|StateInv)
	r.send(tcpPkt(t, b, a, 80, 1000, fSyn|fAck, 500, 101))
	r.send(tcpPkt(t, a, b, 1000, 80, fAck, 101, 501))
	// An out-of-window RST cannot kill the connection.
	res := r.send(tcpPkt(t, b, a, 80, 1000, fRst, 900000, 0))
	if res.Reason != ReasonTCPWindow || r.tcpState(h) != TCPEstablished {
		t.Fatalf("out-of-window RST: %v, state %d", res.Reason, r.tcpState(h))
	}
	wantState(t, r.send(tcpPkt(t, b, a, 80, 1000, fRst, 501, 0)), StateTrk|StateEst|StateRpl)
	if r.tcpState(h) != TCPClose {
		t.Fatal("want CLOSE")
	}
	_, exp, _ := r.tab.State(h)
	if exp != r.now+10 {
		t.Fatalf("CLOSE timeout %d", exp-r.now)
	}
	// A new SYN on the closed keys opens a new connection.
	res = r.send(tcpPkt(t, a, b, 1000, 80, fSyn, 7000, 0))
	wantState(t, res, StateTrk|StateNew)
	if res.Conn == h || r.tab.Len() != 1 {
		t.Fatalf("reopen: %x %x len %d", res.Conn, h, r.tab.Len())
	}
}

func TestTCPWindow(t *testing.T) {
	for _, mode := range []WindowCheck{WindowLoose, WindowStrict} {
		r := newRig(t, Config{Capacity: 16, Window: mode})
		a, b := "10.0.0.1", "10.0.0.2"
		r.send(tcpPkt(t, a, b, 1000, 80, fSyn, 100, 0))
		r.send(tcpPkt(t, b, a, 80, 1000, fSyn|fAck, 500, 101))
		r.send(tcpPkt(t, a, b, 1000, 80, fAck, 101, 501))
		res := r.send(tcpPkt(t, a, b, 1000, 80, fAck, 50_000_000, 501))
		if mode == WindowStrict && res.Reason != ReasonTCPWindow {
			t.Fatalf("strict: %v", res.Reason)
		}
		if mode == WindowLoose && (res.Reason != 0 || r.w.LooseWindow != 1) {
			t.Fatalf("loose: %v %d", res.Reason, r.w.LooseWindow)
		}
	}
}

func TestTCPFlagsInvalid(t *testing.T) {
	r := newRig(t, Config{Capacity: 16})
	for _, f := range []uint8{fAck, fFin, fRst, fSyn | header.TCPFin, 0, fSyn | fAck} {
		res := r.send(tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, f, 1, 1))
		if res.State&StateInv == 0 || res.Reason != ReasonTCPFlags {
			t.Fatalf("flags %x opened: %s", f, stateString(res.State))
		}
	}
	if r.tab.Len() != 0 || r.w.Counters[ReasonTCPFlags] != 6 {
		t.Fatal("invalid packets created state or were not counted")
	}
}

func TestUDPTimeouts(t *testing.T) {
	r := newRig(t, Config{Capacity: 16, Timeouts: Timeouts{UDP: 30, UDPReplied: 120}})
	a, b := "10.0.0.1", "10.0.0.2"
	h := r.send(udpPkt(t, a, b, 5000, 53)).Conn
	r.now += 29
	wantState(t, r.send(udpPkt(t, a, b, 5000, 53)), StateTrk|StateNew) // unreplied, refreshed
	r.now += 30
	res := r.send(udpPkt(t, a, b, 5000, 53))
	wantState(t, res, StateTrk|StateNew)
	if res.Conn == h {
		t.Fatal("unreplied UDP did not expire after 30")
	}
	wantState(t, r.send(udpPkt(t, b, a, 53, 5000)), StateTrk|StateEst|StateRpl)
	r.now += 119
	wantState(t, r.send(udpPkt(t, a, b, 5000, 53)), StateTrk|StateEst)
	r.now += 120
	wantState(t, r.send(udpPkt(t, b, a, 53, 5000)), StateTrk|StateNew) // expired: a new connection from b
}

func TestICMPEchoTimeout(t *testing.T) {
	r := newRig(t, Config{Capacity: 16})
	a, b := "10.0.0.1", "10.0.0.2"
	wantState(t, r.send(echoPkt(t, a, b, 9, false)), StateTrk|StateNew)
	wantState(t, r.send(echoPkt(t, b, a, 9, true)), StateTrk|StateEst|StateRpl)
	// An echo request the other way is its own connection, not a reply.
	wantState(t, r.send(echoPkt(t, b, a, 9, false)), StateTrk|StateNew)
	r.now += 31
	res := r.send(echoPkt(t, b, a, 10, true))
	if res.State&StateInv == 0 {
		t.Fatal("an unsolicited echo reply is not invalid")
	}
	wantState(t, r.send(echoPkt(t, a, b, 9, true)), StateTrk|StateInv)
}

func TestRelatedICMPError(t *testing.T) {
	r := newRig(t, Config{Capacity: 16})
	a, b, router := "10.0.0.1", "10.0.0.2", "10.0.0.254"
	out := udpPkt(t, a, b, 5000, 53)
	h := r.send(out).Conn
	// b answers with port unreachable about a's datagram.
	res := r.send(icmpErr(t, b, a, out))
	wantState(t, res, StateTrk|StateRel|StateRpl)
	if res.Conn != h {
		t.Fatal("error not matched to its connection")
	}
	// A router on the way answers a's datagram: same, reply direction.
	wantState(t, r.send(icmpErr(t, router, a, out)), StateTrk|StateRel|StateRpl)
	// An error about b's answer (sent back by a's side) is related, original direction.
	back := udpPkt(t, b, a, 53, 5000)
	wantState(t, r.send(icmpErr(t, a, b, back)), StateTrk|StateRel)
	// An error about a connection nobody has is invalid.
	res = r.send(icmpErr(t, b, a, udpPkt(t, a, b, 5001, 53)))
	if res.Reason != ReasonICMPUnrelated {
		t.Fatalf("unrelated error: %v", res.Reason)
	}
}

func TestTableFullAndZoneLimit(t *testing.T) {
	r := newRig(t, Config{Capacity: 10, ZoneLimit: 4})
	r.tab.SetZoneLimit(7, 6)
	send := func(zone uint16, n int) (ok, full int, last Reason) {
		r.zone = zone
		for i := range n {
			res := r.send(udpPkt(t, "10.0.0.1", "10.0.0.2", uint16(1000+i), 53))
			if res.Reason == 0 {
				ok++
			} else {
				full++
				last = res.Reason
			}
		}
		return
	}
	if ok, full, why := send(1, 5); ok != 4 || full != 1 || why != ReasonZoneFull {
		t.Fatalf("zone 1: %d ok %d full %v", ok, full, why)
	}
	if ok, full, why := send(7, 8); ok != 6 || full != 2 || why != ReasonZoneFull {
		t.Fatalf("zone 7: %d ok %d full %v", ok, full, why)
	}
	if ok, full, why := send(2, 3); ok != 0 || full != 3 || why != ReasonFull {
		t.Fatalf("global: %d ok %d full %v", ok, full, why)
	}
	if r.w.Counters[ReasonFull] != 3 || r.w.Counters[ReasonZoneFull] != 3 || r.tab.Len() != 10 {
		t.Fatalf("counters %v len %d", r.w.Counters, r.tab.Len())
	}
	// Expiry frees the room.
	r.now += 31
	sweepAll(r)
	if r.tab.Len() != 0 || r.tab.ZoneLen(7) != 0 {
		t.Fatalf("len %d after expiry", r.tab.Len())
	}
	if ok, _, _ := send(2, 4); ok != 4 {
		t.Fatal("no room after expiry")
	}
}

// A zone's own limit replaces the default one: a lower one, a higher
// one, and 0 for none; clearing it brings the default back. ZoneLimit and
// ZoneCounts report what is in force and how full each zone is.
func TestZoneLimitOverride(t *testing.T) {
	r := newRig(t, Config{Capacity: 64, ZoneLimit: 4})
	r.tab.SetZoneLimit(3, 2)
	r.tab.SetZoneLimit(5, 8)
	r.tab.SetZoneLimit(9, 0)
	fill := func(zone uint16, n int) (ok int, last Reason) {
		r.zone = zone
		for i := range n {
			res := r.send(udpPkt(t, "10.0.0.1", "10.0.0.2", uint16(2000+i), 53))
			if res.Reason == 0 {
				ok++
			} else {
				last = res.Reason
			}
		}
		return
	}
	for _, c := range []struct {
		zone   uint16
		send   int
		ok     int
		limit  uint32
		own    bool
		reason Reason
	}{
		{1, 6, 4, 4, false, ReasonZoneFull}, // the default
		{3, 6, 2, 2, true, ReasonZoneFull},  // lower
		{5, 10, 8, 8, true, ReasonZoneFull}, // higher than the default
		{9, 20, 20, 0, true, ReasonNone},    // none
	} {
		ok, why := fill(c.zone, c.send)
		lim, own := r.tab.ZoneLimit(c.zone)
		if ok != c.ok || why != c.reason || lim != c.limit || own != c.own || r.tab.ZoneLen(c.zone) != c.ok {
			t.Fatalf("zone %d: %d admitted (%v), limit %d own %v, %d in the zone", c.zone, ok, why, lim, own, r.tab.ZoneLen(c.zone))
		}
	}
	// Overflow of an overridden zone is counted like the default's.
	if n := r.w.Counters[ReasonZoneFull]; n != 2+4+2 {
		t.Fatalf("zone-full drops %d", n)
	}
	got := map[uint16]int{}
	r.tab.ZoneCounts(func(z uint16, n int) { got[z] = n })
	if len(got) != 4 || got[1] != 4 || got[3] != 2 || got[5] != 8 || got[9] != 20 {
		t.Fatalf("zone counts %v", got)
	}
	// Lowering a limit below the count keeps the connections and refuses
	// new ones; clearing brings the default (4) back.
	r.tab.SetZoneLimit(9, 10)
	r.zone = 9
	if res := r.send(udpPkt(t, "10.0.0.1", "10.0.0.2", 3000, 53)); res.Reason != ReasonZoneFull || r.tab.ZoneLen(9) != 20 {
		t.Fatalf("lowered: %v, %d in the zone", res.Reason, r.tab.ZoneLen(9))
	}
	if res := r.send(udpPkt(t, "10.0.0.1", "10.0.0.2", 2000, 53)); res.Reason != 0 {
		t.Fatalf("a connection of a lowered zone: %v", res.Reason)
	}
	r.tab.ClearZoneLimit(3)
	if lim, own := r.tab.ZoneLimit(3); lim != 4 || own {
		t.Fatalf("cleared: limit %d own %v", lim, own)
	}
	r.zone = 3
	if res := r.send(udpPkt(t, "10.0.0.1", "10.0.0.2", 3000, 53)); res.Reason != 0 || r.tab.ZoneLen(3) != 3 {
		t.Fatalf("after clearing: %v, %d in the zone", res.Reason, r.tab.ZoneLen(3))
	}
	if d := r.tab.FlushZone(5); d != 8 || r.tab.ZoneLen(5) != 0 {
		t.Fatalf("flushed %d, %d left", d, r.tab.ZoneLen(5))
	}
}

func TestIPv6Conntrack(t *testing.T) {
	r := newRig(t, Config{Capacity: 16, Window: WindowStrict})
	a, b := "fd00::1", "fd00::2"
	h := r.send(tcpPkt(t, a, b, 1000, 443, fSyn, 1, 0)).Conn
	wantState(t, r.send(tcpPkt(t, b, a, 443, 1000, fSyn|fAck, 9, 2)), StateTrk|StateEst|StateRpl)
	wantState(t, r.send(tcpPkt(t, a, b, 1000, 443, fAck, 2, 10)), StateTrk|StateEst)
	if r.tcpState(h) != TCPEstablished {
		t.Fatal("want ESTABLISHED")
	}
	out := udpPkt(t, a, b, 7, 8)
	r.send(out)
	wantState(t, r.send(icmpErr(t, b, a, out)), StateTrk|StateRel|StateRpl)
	wantState(t, r.send(echoPkt(t, a, b, 3, false)), StateTrk|StateNew)
	wantState(t, r.send(echoPkt(t, b, a, 3, true)), StateTrk|StateEst|StateRpl)
	// The same addresses in IPv4 zone-mates do not match.
	if k := r.res[0].Key(); !k.V6 {
		t.Fatal("key not IPv6")
	}
}

func TestZonesSeparate(t *testing.T) {
	r := newRig(t, Config{Capacity: 16})
	r.zone = 1
	r.send(udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2))
	r.zone = 2
	wantState(t, r.send(udpPkt(t, "10.0.0.2", "10.0.0.1", 2, 1)), StateTrk|StateNew)
}

func TestLookupAllocs(t *testing.T) {
	r := newRig(t, Config{Capacity: 64, Window: WindowStrict})
	frames := [][]byte{
		tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2, fSyn, 1, 0),
		udpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2),
		echoPkt(t, "fd00::1", "fd00::2", 1, false),
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
		r.w.Commit(frames, ps, res, nil, r.now)
		r.w.Translate(frames, ps, res)
	})
	if n != 0 {
		t.Fatalf("%v allocs per batch", n)
	}
}

// An ICMP error whose IP length cuts its embedded packet short, with the
// rest of the frame as padding, must not be read past its end.
func TestICMPErrorShortLength(t *testing.T) {
	r := natRig(t)
	b := udpPkt(t, "10.10.0.5", "8.8.8.8", 3000, 53)
	r.send(b)
	e := icmpErr(t, "7.7.7.7", "10.20.0.1", b)
	e[header.EthernetLen+2], e[header.EthernetLen+3] = 0, 20+8+12 // 12 bytes of the embedded header
	e[header.EthernetLen+10], e[header.EthernetLen+11] = 0, 0
	ip := header.IPv4(e[header.EthernetLen:])
	ip.SetChecksum(ip.ComputeChecksum())
	res := r.send(e)
	if res.Reason != ReasonInvalid {
		t.Fatalf("short embedded header: %s %v", stateString(res.State), res.Reason)
	}
}
