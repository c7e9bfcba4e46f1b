package vswitch_test

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	vswitch "github.com/vswitch/vswitch/switch"
)

// udpSeq is a routed UDP frame whose source port numbers it, with payload
// bytes of that number (past the head copy when payload is large).
func udpSeq(t testing.TB, v6 bool, smac, dmac net.HardwareAddr, dst string, seq, payload int) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac}
	u := &layers.UDP{SrcPort: layers.UDPPort(30000 + seq), DstPort: 9}
	var ip gopacket.SerializableLayer
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd10::2"), DstIP: net.ParseIP(dst)}
		u.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP("10.10.0.2"), DstIP: net.ParseIP(dst)}
		u.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	}
	return ser(t, eth, ip, u, gopacket.Payload(bytes.Repeat([]byte{byte(seq)}, payload)))
}

// Packets to a next hop being resolved are held and leave in order once
// it answers, routed as any other (TTL, MACs, checksums), whatever their
// size; one solicitation is sent for all of them.
func TestHoldReleasesInOrder(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			r, m10, m20 := routerRig(t)
			a, b := mac(0), mac(1)
			dst := "10.20.0.2"
			if v6 {
				dst = "fd20::2"
			}
			sizes := []int{20, 1400, 64, 900, 8}
			for k, n := range sizes {
				r.fes[0].SendPacket(0, udpSeq(t, v6, a, m10, dst, k, n))
			}
			r.poll()
			ask := one(t, r, 1)
			if v6 {
				if ns, ok := ask.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation); !ok || ns.TargetAddress.String() != dst {
					t.Fatalf("solicitation: %v", ask)
				}
			} else if arp, ok := ask.Layer(layers.LayerTypeARP).(*layers.ARP); !ok || net.IP(arp.DstProtAddress).String() != dst {
				t.Fatalf("ARP request: %v", ask)
			}
			if h := r.sw.NeighborHold(); h.Held != 5 || h.Queued != 5 || h.PendingHops != 1 || h.ARPRequests+h.NDSolicits != 1 || (h.NDSolicits == 1) != v6 || len(r.drops(0)) != 0 {
				t.Fatalf("hold %+v drops %v", h, r.drops(0))
			}
			if v6 {
				r.fes[1].SendPacket(0, ndFrame(t, layers.ICMPv6TypeNeighborAdvertisement, b, m20, "fd20::2", "fd20::1", "fd20::2"))
			} else {
				r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
			}
			r.poll()
			got := r.fes[1].Received(0)
			if len(got) != len(sizes) {
				t.Fatalf("p1 got %d frames, want the %d held", len(got), len(sizes))
			}
			for k, f := range got {
				p := decode(t, f)
				eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if u == nil || int(u.SrcPort) != 30000+k || !bytes.Equal(u.Payload, bytes.Repeat([]byte{byte(k)}, sizes[k])) ||
					eth.SrcMAC.String() != m20.String() || eth.DstMAC.String() != b.String() {
					t.Fatalf("frame %d: %v", k, p)
				}
				if v6 {
					if ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip.HopLimit != 63 {
						t.Fatalf("frame %d hop limit %d", k, ip.HopLimit)
					}
					udp6SumOK(t, p)
				} else {
					if ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip.TTL != 63 {
						t.Fatalf("frame %d TTL %d", k, ip.TTL)
					}
					checksumsOK(t, p)
				}
			}
			if h := r.sw.NeighborHold(); h.Released != 5 || h.Queued != 0 {
				t.Fatalf("hold %+v", h)
			}
		})
	}
}

// udp6SumOK checks an IPv6 UDP checksum with gopacket.
func udp6SumOK(t *testing.T, p gopacket.Packet) {
	t.Helper()
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	u := *p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	got := u.Checksum
	u.SetNetworkLayerForChecksum(ip)
	b := ser(t, &u, gopacket.Payload(u.Payload))
	if want := uint16(b[6])<<8 | uint16(b[7]); got != want {
		t.Fatalf("UDP checksum %#x, want %#x", got, want)
	}
}

// sendN sends n frames from p0 in chunks the guest's ring holds, polling
// after each, and returns what p1 got.
func sendN(t *testing.T, r *rig, n int, f func(k int) []byte) [][]byte {
	t.Helper()
	var got [][]byte
	for k := 0; k < n; {
		for j := 0; j < 32 && k < n; j, k = j+1, k+1 {
			if !r.fes[0].SendPacket(0, f(k)) {
				t.Fatal("guest transmit ring full")
			}
		}
		r.poll()
		r.fes[0].TxDone(0)
		got = append(got, r.fes[1].Received(0)...)
		r.fes[1].PostRxBuffers(0, 64, 2048)
	}
	return got
}

func arps(t *testing.T, frames [][]byte) int {
	n := 0
	for _, f := range frames {
		if decode(t, f).Layer(layers.LayerTypeARP) != nil {
			n++
		}
	}
	return n
}

// The hold is bounded per next hop and per worker; what finds it full is
// dropped and counted, and a next hop that stays silent has its packets
// dropped after the timeout. Solicitations go out once a second per next
// hop.
func TestHoldBoundsAndTimeout(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b := mac(0), mac(1)
	to := func(dst string) func(int) []byte {
		return func(k int) []byte { return udpSeq(t, false, a, m10, dst, k, 20) }
	}
	// One next hop: 64 held, the rest dropped; one ARP request.
	got := sendN(t, r, 70, to("10.20.0.2"))
	if d := r.drops(0); d["neighbor_hold_full"] != 6 || len(got) != 1 || arps(t, got) != 1 {
		t.Fatalf("drops %v, p1 got %d frames", d, len(got))
	}
	if h := r.sw.NeighborHold(); h.Full != 6 || h.QueuedBytes != 64*62 || h.PendingHops != 1 || h.ARPRequests != 1 || h.NDSolicits != 0 || h.Probes != 0 {
		t.Fatalf("hold %+v", h)
	}
	// A second later the next packet asks again.
	r.sw.AdvanceClock(1)
	if got := sendN(t, r, 1, to("10.20.0.2")); arps(t, got) != 1 {
		t.Fatalf("p1 got %d frames, want an ARP request", len(got))
	}
	// Past the timeout the held packets are dropped.
	r.sw.AdvanceClock(3)
	r.poll()
	if d, h := r.drops(0), r.sw.NeighborHold(); d["neighbor_unresolved"] != 64 || h.Queued != 0 || h.Unresolved != 64 || h.QueuedBytes != 0 || h.PendingHops != 0 || h.ARPRequests != 2 {
		t.Fatalf("drops %v hold %+v", d, h)
	}
	// Five next hops: the worker holds 256 packets in all.
	for h := 3; h < 8; h++ {
		sendN(t, r, 64, to("10.20.0."+string(rune('0'+h))))
	}
	if h := r.sw.NeighborHold(); h.Queued != 256 || r.drops(0)["neighbor_hold_full"] != 7+64 {
		t.Fatalf("hold %+v drops %v", h, r.drops(0))
	}
	// Those resolved meanwhile go out; the silent ones time out.
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.3", m20, "10.20.0.1"))
	r.poll()
	if got := r.fes[1].Received(0); len(got) != 64 {
		t.Fatalf("released %d", len(got))
	}
	r.sw.AdvanceClock(4)
	r.poll()
	if h := r.sw.NeighborHold(); h.Queued != 0 || h.Released != 64 || h.Dropped != 64+192 {
		t.Fatalf("hold %+v", h)
	}
	// The ring is empty again and takes a full next hop.
	sendN(t, r, 64, to("10.20.0.9"))
	if h := r.sw.NeighborHold(); h.Queued != 64 {
		t.Fatalf("hold %+v", h)
	}
}

// Holding, soliciting and timing out allocate nothing per batch.
func TestHoldAllocatesNothing(t *testing.T) {
	r, m10, _ := routerRigTB(t)
	l := newLoopFrame(r, vswitch.BatchSize, udpSeq(t, false, mac(0), m10, "10.20.0.2", 1, 20))
	step := func() {
		r.sw.AdvanceClock(4)
		l.step()
	}
	step()
	if allocs := testing.AllocsPerRun(100, step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
	if h := r.sw.NeighborHold(); h.Held < 100*vswitch.BatchSize || l.forwarded == 0 {
		t.Fatalf("hold %+v, %d ARP requests", h, l.forwarded)
	}
}
