package vswitch_test

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	vswitch "github.com/vswitch/vswitch/switch"
)

// refreshRig is the router rig with host B (p1, VLAN 20) resolved over
// IPv4 or IPv6, and what it sends A's packets to.
type refreshRig struct {
	*rig
	v6             bool
	a, b, m10, m20 net.HardwareAddr
	dst            string
}

func newRefreshRig(t *testing.T, v6 bool) *refreshRig {
	r, m10, m20 := routerRig(t)
	rr := &refreshRig{rig: r, v6: v6, a: mac(0), b: mac(1), m10: m10, m20: m20, dst: "10.20.0.2"}
	if v6 {
		rr.dst = "fd20::2"
		r.fes[1].SendPacket(0, ndFrame(t, layers.ICMPv6TypeNeighborAdvertisement, rr.b, m20, "fd20::2", "fd20::1", "fd20::2"))
	} else {
		r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, rr.b, "10.20.0.2", m20, "10.20.0.1"))
	}
	r.poll()
	r.fes[1].TxDone(0)
	if ns, _ := r.sw.Neighbors("r1"); len(ns) != 1 || ns[0].State != "reachable" {
		t.Fatalf("neighbours %+v", ns)
	}
	return rr
}

// tick sends one packet from A to B (if send), polls, and returns what
// p1 got: the routed packets and the probes apart. A probe is checked.
func (rr *refreshRig) tick(t *testing.T, send bool) (routed int, probes []gopacket.Packet) {
	t.Helper()
	if send {
		if !rr.fes[0].SendPacket(0, udpSeq(t, rr.v6, rr.a, rr.m10, rr.dst, 1, 20)) {
			t.Fatal("guest transmit ring full")
		}
	}
	rr.poll()
	rr.fes[0].TxDone(0)
	got := rr.fes[1].Received(0)
	rr.fes[1].PostRxBuffers(0, len(got), 2048)
	for _, f := range got {
		p := decode(t, f)
		if p.Layer(layers.LayerTypeUDP) != nil {
			if eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); eth.DstMAC.String() != rr.b.String() || eth.SrcMAC.String() != rr.m20.String() {
				t.Fatalf("routed packet %v", p)
			}
			routed++
			continue
		}
		rr.checkProbe(t, p)
		probes = append(probes, p)
	}
	return routed, probes
}

// checkProbe checks a refresh probe: a request for B's address from the
// router's, unicast to the MAC B has.
func (rr *refreshRig) checkProbe(t *testing.T, p gopacket.Packet) {
	t.Helper()
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth.DstMAC.String() != rr.b.String() || eth.SrcMAC.String() != rr.m20.String() {
		t.Fatalf("probe not unicast to B: %v", p)
	}
	if rr.v6 {
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		ns, ok := p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
		if !ok || ip.DstIP.String() != rr.dst || ip.SrcIP.String() != "fd20::1" || ip.HopLimit != 255 || ns.TargetAddress.String() != rr.dst ||
			len(ns.Options) != 1 || ns.Options[0].Type != layers.ICMPv6OptSourceAddress || net.HardwareAddr(ns.Options[0].Data).String() != rr.m20.String() {
			t.Fatalf("probe %v", p)
		}
		verifyICMPv6(t, p)
		return
	}
	a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if !ok || a.Operation != layers.ARPRequest || net.IP(a.DstProtAddress).String() != rr.dst || net.IP(a.SourceProtAddress).String() != "10.20.0.1" ||
		net.HardwareAddr(a.SourceHwAddress).String() != rr.m20.String() || net.HardwareAddr(a.DstHwAddress).String() != "00:00:00:00:00:00" {
		t.Fatalf("probe %v", p)
	}
}

// answer is B's reply to a probe, as Linux sends it: an ARP reply, or a
// solicited advertisement without the target link-layer option (RFC 4861
// 4.4 lets an answer to a unicast solicitation leave it out).
func (rr *refreshRig) answer(t *testing.T) {
	if rr.v6 {
		eth := &layers.Ethernet{SrcMAC: rr.b, DstMAC: rr.m20, EthernetType: layers.EthernetTypeIPv6}
		ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(rr.dst), DstIP: net.ParseIP("fd20::1")}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
		ic.SetNetworkLayerForChecksum(ip)
		rr.fes[1].SendPacket(0, ser(t, eth, ip, ic, &layers.ICMPv6NeighborAdvertisement{Flags: 0x40, TargetAddress: net.ParseIP(rr.dst)}))
	} else {
		rr.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, rr.b, rr.dst, rr.m20, "10.20.0.1"))
	}
}

func state(t *testing.T, r *rig) string {
	t.Helper()
	ns, err := r.sw.Neighbors("r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) == 0 {
		return "none"
	}
	return ns[0].State
}

func bothFamilies(t *testing.T, f func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { f(t, v6) })
	}
}

// Under steady traffic a neighbour that answers its probes is never
// unresolved: over several lifetimes of its entry every packet goes
// straight to it, nothing is held, and it is asked once per lifetime,
// unicast.
func TestNeighborRefreshedUnderTraffic(t *testing.T) {
	bothFamilies(t, func(t *testing.T, v6 bool) {
		rr := newRefreshRig(t, v6)
		const secs = 3*300 + 10
		probes := 0
		for s := 0; s < secs; s++ {
			routed, ps := rr.tick(t, true)
			if routed != 1 {
				t.Fatalf("second %d: %d packets routed (hold %+v, drops %v)", s, routed, rr.sw.NeighborHold(), rr.drops(0))
			}
			if len(ps) > 0 {
				probes += len(ps)
				if st := state(t, rr.rig); st != "probe" {
					t.Fatalf("second %d: state %s after a probe", s, st)
				}
				rr.answer(t)
				rr.poll()
				if st := state(t, rr.rig); st != "reachable" {
					t.Fatalf("second %d: state %s after the answer", s, st)
				}
			}
			rr.sw.AdvanceClock(1)
			rr.sw.ExpireNeighbors()
		}
		h := rr.sw.NeighborHold()
		if probes != secs/240 || h.Held != 0 || h.Probes != uint64(probes) || h.ARPRequests+h.NDSolicits != uint64(probes) {
			t.Fatalf("%d probes, hold %+v", probes, h)
		}
		if v6 && h.NDSolicits != h.Probes || !v6 && h.ARPRequests != h.Probes {
			t.Fatalf("solicitations of the wrong family: %+v", h)
		}
	})
}

// A neighbour that does not answer is asked once a second, three times,
// while packets keep going to the MAC it had; then its entry expires and
// the next packet is held while it is asked again by broadcast (or
// multicast).
func TestNeighborProbeUnanswered(t *testing.T) {
	bothFamilies(t, func(t *testing.T, v6 bool) {
		rr := newRefreshRig(t, v6)
		rr.sw.AdvanceClock(239)
		if routed, ps := rr.tick(t, true); routed != 1 || len(ps) != 0 {
			t.Fatalf("before the refresh time: %d routed, %d probes", routed, len(ps))
		}
		probes := 0
		for s := 240; s <= 300; s++ {
			rr.sw.AdvanceClock(1)
			for k := 0; k < 3; k++ { // three packets a second: one probe
				routed, ps := rr.tick(t, true)
				if routed != 1 {
					t.Fatalf("second %d: %d routed (hold %+v)", s, routed, rr.sw.NeighborHold())
				}
				if len(ps) > 0 && (s > 242 || k > 0) {
					t.Fatalf("second %d packet %d: a probe", s, k)
				}
				probes += len(ps)
			}
		}
		if probes != 3 || state(t, rr.rig) != "probe" || rr.sw.NeighborHold().Held != 0 {
			t.Fatalf("%d probes, state %s, hold %+v", probes, state(t, rr.rig), rr.sw.NeighborHold())
		}
		rr.sw.AdvanceClock(1)
		if st := state(t, rr.rig); st != "expired" {
			t.Fatalf("state %s", st)
		}
		rr.sw.ExpireNeighbors()
		if st := state(t, rr.rig); st != "none" {
			t.Fatalf("state %s after expiry", st)
		}
		rr.fes[0].SendPacket(0, udpSeq(t, v6, rr.a, rr.m10, rr.dst, 1, 20))
		rr.poll()
		ask := one(t, rr.rig, 1)
		eth := ask.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if eth.DstMAC[0]&1 == 0 || rr.sw.NeighborHold().Queued != 1 || rr.sw.NeighborHold().PendingHops != 1 {
			t.Fatalf("after expiry: %v, hold %+v", ask, rr.sw.NeighborHold())
		}
	})
}

// An entry no packet uses is not asked: it goes stale, then expires.
func TestNeighborIdleNotProbed(t *testing.T) {
	bothFamilies(t, func(t *testing.T, v6 bool) {
		rr := newRefreshRig(t, v6)
		for s := 0; s <= 300; s++ {
			if _, ps := rr.tick(t, false); len(ps) != 0 {
				t.Fatalf("second %d: an idle entry was probed", s)
			}
			if s == 250 && state(t, rr.rig) != "stale" {
				t.Fatalf("state %s", state(t, rr.rig))
			}
			rr.sw.AdvanceClock(1)
			rr.sw.ExpireNeighbors()
		}
		if st := state(t, rr.rig); st != "none" || rr.sw.NeighborHold().Probes != 0 {
			t.Fatalf("state %s, hold %+v", st, rr.sw.NeighborHold())
		}
	})
}

// Refreshing allocates nothing per batch: batches routed to a neighbour
// past its refresh time, probed and not answering, until it expires and
// they are held.
func TestNeighborRefreshAllocatesNothing(t *testing.T) {
	l := routedLoop(t, vswitch.BatchSize)
	l.r.sw.AdvanceClock(238)
	step := func() {
		l.r.sw.AdvanceClock(1)
		l.step()
	}
	step()
	if allocs := testing.AllocsPerRun(100, step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
	if h := l.r.sw.NeighborHold(); h.Probes != 3 || h.Held == 0 {
		t.Fatalf("hold %+v", h)
	}
}
