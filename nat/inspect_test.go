package nat

import (
	"net/netip"
	"sort"
	"testing"

	"github.com/vswitch/vswitch/switch/header"
)

func parse(t *testing.T, b []byte) *header.Parsed {
	t.Helper()
	var p header.Parsed
	if e := header.Parse(b, len(b), &p); e != header.ParseOK {
		t.Fatal(e)
	}
	return &p
}

// peek runs Table.Peek on a copy of b and returns it with the copy.
func (r *rig) peek(b []byte) (Peek, []byte) {
	r.t.Helper()
	c := append([]byte(nil), b...)
	var p header.Parsed
	if e := header.Parse(c, len(c), &p); e != header.ParseOK {
		r.t.Fatal(e)
	}
	return r.tab.Peek(c, &p, r.zone, r.rules, r.now), c
}

// Peek tells the state a packet would get and the connection's next TCP
// state, and changes nothing: no connection, no state move, no window
// advance, no port taken, no expiry refreshed.
func TestPeekChangesNothing(t *testing.T) {
	r := newRig(t, Config{Capacity: 16, Window: WindowStrict})
	a, b := "10.0.0.1", "10.0.0.2"
	syn := tcpPkt(t, a, b, 1000, 80, fSyn, 100, 0)
	pk, _ := r.peek(syn)
	if pk.State != StateTrk|StateNew || pk.Found || pk.TCPState != "SYN_SENT" || r.tab.Len() != 0 {
		t.Fatalf("peek SYN: %+v, %d connections", pk, r.tab.Len())
	}
	if pk.Orig.SrcAddr() != netip.MustParseAddr(a) || pk.Reply.SrcAddr() != netip.MustParseAddr(b) || pk.Reply.SrcPort != 80 {
		t.Fatalf("keys %+v", pk)
	}
	h := r.send(syn).Conn
	r.send(tcpPkt(t, b, a, 80, 1000, fSyn|fAck, 500, 101))
	r.send(tcpPkt(t, a, b, 1000, 80, fAck, 101, 501))
	_, exp, _ := r.tab.State(h)
	var before conn
	r.tab.snapshot(h.idx(), h.gen(), &before)

	r.now += 50
	fin := tcpPkt(t, a, b, 1000, 80, fFin, 101, 501)
	pk, _ = r.peek(fin)
	if pk.State != StateTrk|StateEst || !pk.Found || pk.TCPState != "FIN_WAIT" {
		t.Fatalf("peek FIN: %+v", pk)
	}
	// The FIN was only peeked: acknowledging it is out of window.
	pk, _ = r.peek(tcpPkt(t, b, a, 80, 1000, fAck, 501, 102))
	if pk.Reason != ReasonTCPWindow {
		t.Fatalf("peek ack of an unsent FIN: %+v", pk)
	}
	pk, _ = r.peek(tcpPkt(t, a, b, 1000, 80, fAck, 90_000_000, 501))
	if pk.State != StateTrk|StateInv || pk.Reason != ReasonTCPWindow {
		t.Fatalf("peek out of window: %+v", pk)
	}
	pk, _ = r.peek(tcpPkt(t, b, a, 80, 1000, fAck, 501, 101))
	if pk.State != StateTrk|StateEst|StateRpl || pk.TCPState != "ESTABLISHED" {
		t.Fatalf("peek reply: %+v", pk)
	}
	var after conn
	r.tab.snapshot(h.idx(), h.gen(), &after)
	if st, exp2, _ := r.tab.State(h); st != TCPEstablished || exp2 != exp {
		t.Fatalf("state %d expiry %d after peeks, want ESTABLISHED and %d", st, exp2, exp)
	}
	for d := range 2 {
		b, a := &before.win[d], &after.win[d]
		if b.end.Load() != a.end.Load() || b.maxEnd.Load() != a.maxEnd.Load() || b.maxWin.Load() != a.maxWin.Load() {
			t.Fatalf("direction %d window moved", d)
		}
	}
	if r.w.Counters != ([NumReasons]uint64{}) || r.tab.Len() != 1 {
		t.Fatalf("counters %v, %d connections", r.w.Counters, r.tab.Len())
	}
	// Invalid and untracked packets.
	if pk, _ := r.peek(tcpPkt(t, a, "10.0.0.9", 1, 2, fAck, 1, 1)); pk.Reason != ReasonTCPFlags {
		t.Fatalf("mid-stream pickup: %+v", pk)
	}
	if pk, _ := r.peek(icmpErr(t, "10.0.0.9", a, udpPkt(t, a, "10.0.0.8", 1, 2))); pk.Reason != ReasonICMPUnrelated {
		t.Fatalf("unrelated error: %+v", pk)
	}
	if pk, _ := r.peek(icmpErr(t, b, a, tcpPkt(t, a, b, 1000, 80, fAck, 101, 501))); pk.State != StateTrk|StateRel|StateRpl || !pk.Found {
		t.Fatalf("related error: %+v", pk)
	}
	// After expiry the connection is gone for Peek as for Lookup.
	r.now += 432001
	if pk, _ := r.peek(fin); pk.Found || pk.Reason != ReasonTCPFlags {
		t.Fatalf("expired: %+v", pk)
	}
}

// Peek with NAT rules shows the translation and rewrites its copy as
// Translate does, without taking a port; CommitReason tells a full zone.
func TestPeekNAT(t *testing.T) {
	r := natRig(t)
	in, ext, out := "10.10.0.5", "10.20.0.1", "8.8.8.8"
	b := tcpPkt(t, in, out, 40000, 443, fSyn, 1, 0)
	pk, c := r.peek(b)
	if pk.State != StateTrk|StateNew|StateSNAT || !pk.Translated || pk.PortFromPool {
		t.Fatalf("peek snat: %+v", pk)
	}
	want(t, c, ext, out, 40000, 443)
	if n := r.tab.PortsInUse(netip.MustParseAddr(ext), 6); n != 0 || r.tab.Len() != 0 {
		t.Fatalf("peek took %d ports, made %d connections", n, r.tab.Len())
	}
	r.send(b)
	// The port is taken now: a second host with it would get another.
	pk, _ = r.peek(tcpPkt(t, "10.10.0.6", out, 40000, 443, fSyn, 1, 0))
	if !pk.PortFromPool || pk.Reply.DstPort != 40000 {
		t.Fatalf("taken port: %+v", pk)
	}
	// The reply of the committed connection is translated back.
	pk, c = r.peek(tcpPkt(t, out, ext, 443, 40000, fSyn|fAck, 50, 2))
	if pk.State != StateTrk|StateEst|StateRpl|StateSNAT || pk.TCPState != "SYN_RECV" {
		t.Fatalf("peek reply: %+v", pk)
	}
	want(t, c, out, in, 443, 40000)
	// A port forward.
	pk, c = r.peek(tcpPkt(t, out, ext, 5555, 8080, fSyn, 1, 0))
	if pk.State != StateTrk|StateNew|StateDNAT {
		t.Fatalf("peek dnat: %+v", pk)
	}
	want(t, c, out, "10.10.0.2", 5555, 80)
	// A full zone is what Commit would say.
	r.tab.SetZoneLimit(r.zone, 1)
	pk, c = r.peek(udpPkt(t, in, out, 1, 2))
	if pk.CommitReason != ReasonZoneFull || pk.Translated {
		t.Fatalf("zone full: %+v", pk)
	}
	want(t, c, in, out, 1, 2)
}

// Reconfigure changes the window check, the limits and the timeouts of
// a running table; a limit above the allocation is refused.
func TestReconfigure(t *testing.T) {
	r := newRig(t, Config{Capacity: 8})
	a, b := "10.0.0.1", "10.0.0.2"
	r.send(tcpPkt(t, a, b, 1000, 80, fSyn, 100, 0))
	r.send(tcpPkt(t, b, a, 80, 1000, fSyn|fAck, 500, 101))
	r.send(tcpPkt(t, a, b, 1000, 80, fAck, 101, 501))
	wild := tcpPkt(t, a, b, 1000, 80, fAck, 90_000_000, 501)
	if res := r.send(wild); res.Reason != 0 {
		t.Fatalf("window off: %v", res.Reason)
	}
	if err := r.tab.Reconfigure(Config{Window: WindowStrict}); err != nil {
		t.Fatal(err)
	}
	if res := r.send(tcpPkt(t, a, b, 1000, 80, fAck, 90_000_000, 501)); res.Reason != ReasonTCPWindow {
		t.Fatalf("window strict: %v", res.Reason)
	}
	if err := r.tab.Reconfigure(Config{Capacity: 9}); err == nil {
		t.Fatal("a limit above the allocation was accepted")
	}
	to := Timeouts{UDP: 5}
	if err := r.tab.Reconfigure(Config{Capacity: 2, Timeouts: to}); err != nil {
		t.Fatal(err)
	}
	s := r.tab.Settings()
	if s.Capacity != 2 || s.Window != WindowOff || s.Timeouts.UDP != 5 || s.Timeouts.UDPReplied != 120 || s.Timeouts.TCP[TCPEstablished] != 432000 {
		t.Fatalf("settings %+v", s)
	}
	res := r.send(udpPkt(t, a, b, 1, 2))
	if _, exp, _ := r.tab.State(res.Conn); exp != r.now+5 {
		t.Fatalf("udp timeout %d", exp-r.now)
	}
	if res := r.send(udpPkt(t, a, b, 3, 4)); res.Reason != ReasonFull {
		t.Fatalf("over the lowered limit: %v", res.Reason)
	}
	if err := r.tab.Reconfigure(Config{ZoneLimit: 1}); err != nil {
		t.Fatal(err)
	}
	if res := r.send(udpPkt(t, a, b, 3, 4)); res.Reason != ReasonZoneFull {
		t.Fatalf("over the zone limit: %v", res.Reason)
	}
	r.zone = 9
	if res := r.send(udpPkt(t, a, b, 3, 4)); res.Reason != 0 {
		t.Fatalf("another zone: %v", res.Reason)
	}
}

// Walk lists live connections with their keys, TCP state and NAT;
// FlushZone deletes one zone's and returns the ports they held.
func TestWalkAndFlush(t *testing.T) {
	r := natRig(t)
	r.send(tcpPkt(t, "10.10.0.5", "8.8.8.8", 40000, 443, fSyn, 1, 0))
	r.send(udpPkt(t, "10.10.0.5", "8.8.8.8", 5, 53))
	r.zone = 3
	r.rules = nil
	r.send(udpPkt(t, "10.0.0.1", "10.0.0.2", 5, 53))
	r.send(udpPkt(t, "10.0.0.2", "10.0.0.1", 53, 5))
	var got []Conn
	r.tab.Walk(r.now, func(c *Conn) bool { got = append(got, *c); return true })
	if len(got) != 3 {
		t.Fatalf("walk: %+v", got)
	}
	// Table order is not insertion order: sort by zone, then protocol.
	sort.Slice(got, func(i, j int) bool {
		return got[i].Zone() < got[j].Zone() || got[i].Zone() == got[j].Zone() && got[i].Orig.Proto < got[j].Orig.Proto
	})
	tcp := got[0]
	if tcp.Zone() != 0 || tcp.TCPState != "SYN_SENT" || !tcp.SNAT || tcp.DNAT || tcp.Replied ||
		tcp.Reply.DstAddr() != netip.MustParseAddr("10.20.0.1") || tcp.Expire != r.now+120 {
		t.Fatalf("tcp: %+v", tcp)
	}
	if u := got[2]; u.Zone() != 3 || !u.Replied || u.TCPState != "" || u.SNAT {
		t.Fatalf("udp: %+v", u)
	}
	n := 0
	r.tab.Walk(r.now, func(*Conn) bool { n++; return false })
	if n != 1 {
		t.Fatalf("walk went on after false: %d", n)
	}
	// Expired connections are not listed.
	n = 0
	r.tab.Walk(r.now+1000, func(*Conn) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d expired connections listed", n)
	}
	if d := r.tab.FlushZone(0); d != 2 || r.tab.Len() != 1 || r.tab.ZoneLen(3) != 1 {
		t.Fatalf("flush zone 0: %d, %d left", d, r.tab.Len())
	}
	if n := r.tab.PortsInUse(netip.MustParseAddr("10.20.0.1"), 6); n != 0 {
		t.Fatalf("%d ports still held", n)
	}
	if d := r.tab.Flush(); d != 1 || r.tab.Len() != 0 {
		t.Fatalf("flush: %d, %d left", d, r.tab.Len())
	}
}

func TestCTStateString(t *testing.T) {
	if s := (StateTrk | StateEst | StateRpl | StateSNAT).String(); s != "+trk+est+rpl+snat" {
		t.Fatal(s)
	}
	if s := CTState(0).String(); s != "-" {
		t.Fatal(s)
	}
}
