package vswitch_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/acl"
	"github.com/vswitch/vswitch/nat"
	vswitch "github.com/vswitch/vswitch/switch"
)

// l6frame is l4frame over IPv6.
func l6frame(t testing.TB, smac, dmac net.HardwareAddr, src, dst string, sport, dport uint16, tcp *layers.TCP, payload int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	var l4 gopacket.SerializableLayer
	if tcp != nil {
		ip.NextHeader = layers.IPProtocolTCP
		tcp.SrcPort, tcp.DstPort = layers.TCPPort(sport), layers.TCPPort(dport)
		if tcp.Window == 0 {
			tcp.Window = 65535
		}
		tcp.SetNetworkLayerForChecksum(ip)
		l4 = tcp
	} else {
		ip.NextHeader = layers.IPProtocolUDP
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(ip)
		l4 = u
	}
	return ser(t, eth, ip, l4, gopacket.Payload(make([]byte, payload)))
}

// nd6 is a neighbour solicitation (NS) or advertisement (NA) whose
// link-layer option carries ll.
func nd6(t testing.TB, typ uint8, smac, dmac, ll net.HardwareAddr, src, dst, target string) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	var body gopacket.SerializableLayer
	switch typ {
	case layers.ICMPv6TypeNeighborSolicitation:
		ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target)}
		if ll != nil {
			ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: ll}}
		}
		body = ns
	case layers.ICMPv6TypeNeighborAdvertisement:
		body = &layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: net.ParseIP(target),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: ll}}}
	default: // a router advertisement
		body = &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800}
	}
	return ser(t, eth, ip, ic, body)
}

var snm1 = net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 1} // solicited-node multicast of ...:1

// A security group with no rules over IPv6: egress open and committed,
// replies admitted by conntrack, unsolicited ingress dropped, neighbour
// discovery both ways whatever the rules.
func TestSGIPv6ReturnTrafficAndND(t *testing.T) {
	r := filterRig(t, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "default"}},
		Ports:          []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"default"}}},
	})
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, l6frame(t, a, b, "fd00::1", "fd00::2", 5000, 53, nil, 20))
	r.poll()
	one(t, r, 1)
	r.fes[1].SendPacket(0, l6frame(t, b, a, "fd00::2", "fd00::1", 53, 5000, nil, 20))
	r.poll()
	one(t, r, 0)
	r.fes[0].SendPacket(0, l6frame(t, a, b, "fd00::1", "fd00::2", 40000, 443, &layers.TCP{SYN: true, Seq: 100}, 0))
	r.poll()
	one(t, r, 1)
	r.fes[1].SendPacket(0, l6frame(t, b, a, "fd00::2", "fd00::1", 443, 40000, &layers.TCP{SYN: true, ACK: true, Seq: 900, Ack: 101}, 0))
	r.poll()
	one(t, r, 0)
	// Unsolicited: a new UDP flow and a SYN.
	r.fes[1].SendPacket(0, l6frame(t, b, a, "fd00::2", "fd00::1", 53, 5001, nil, 20))
	r.fes[1].SendPacket(0, l6frame(t, b, a, "fd00::2", "fd00::1", 41000, 22, &layers.TCP{SYN: true, Seq: 1}, 0))
	r.poll()
	none(t, r, 0)
	if d := r.drops(0)["sg_ingress_denied"]; d != 2 {
		t.Fatalf("p0 sg_ingress_denied %d, want 2 (p0 %v)", d, r.drops(0))
	}
	// NS and NA reach the guest although ingress is default deny.
	r.fes[1].SendPacket(0, nd6(t, layers.ICMPv6TypeNeighborSolicitation, b, snm1, b, "fd00::2", "ff02::1:ff00:1", "fd00::1"))
	r.poll()
	one(t, r, 0)
	r.fes[1].SendPacket(0, nd6(t, layers.ICMPv6TypeNeighborAdvertisement, b, a, b, "fd00::2", "fd00::1", "fd00::2"))
	r.poll()
	one(t, r, 0)
}

// Ingress rules over IPv6 admit their port from their remote prefix only;
// with an egress rule the guest sends only what it allows, but neighbour
// discovery still goes out.
func TestSGIPv6RulesAndRemotePrefix(t *testing.T) {
	r := filterRig(t, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "web6", Rules: []acl.SGRule{
			{Direction: "ingress", EtherType: "ipv6", Protocol: "tcp", Ports: "80", Remote: "fd00:1::/64"},
			{Direction: "egress", EtherType: "ipv6", Protocol: "tcp"},
		}}},
		Ports: []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"web6"}}},
	})
	a, b := mac(0), mac(1)
	syn := func(src string, dport uint16) []byte {
		return l6frame(t, b, a, src, "fd00::1", 41000, dport, &layers.TCP{SYN: true, Seq: 1}, 0)
	}
	r.fes[1].SendPacket(0, syn("fd00:1::2", 80))
	r.poll()
	if tcp, _ := one(t, r, 0).Layer(layers.LayerTypeTCP).(*layers.TCP); tcp == nil || tcp.DstPort != 80 {
		t.Fatal("allowed SYN did not arrive")
	}
	r.fes[1].SendPacket(0, syn("fd00:2::2", 80)) // outside the remote prefix
	r.fes[1].SendPacket(0, syn("fd00:1::2", 81)) // another port
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 41000, 80, &layers.TCP{SYN: true, Seq: 1}, 0))
	r.poll()
	none(t, r, 0)
	if d := r.drops(0)["sg_ingress_denied"]; d != 3 {
		t.Fatalf("p0 sg_ingress_denied %d, want 3 (%v)", d, r.drops(0))
	}
	// The guest answers the admitted SYN; it may open TCP but not UDP.
	r.fes[0].SendPacket(0, l6frame(t, a, b, "fd00::1", "fd00:1::2", 80, 41000, &layers.TCP{SYN: true, ACK: true, Seq: 50, Ack: 2}, 0))
	r.fes[0].SendPacket(0, l6frame(t, a, b, "fd00::1", "fd00:1::2", 42000, 22, &layers.TCP{SYN: true, Seq: 7}, 0))
	r.fes[0].SendPacket(0, l6frame(t, a, b, "fd00::1", "fd00:1::2", 5000, 53, nil, 10))
	r.fes[0].SendPacket(0, nd6(t, layers.ICMPv6TypeNeighborSolicitation, a, snm1, a, "fd00::1", "ff02::1:ff00:2", "fd00:1::2"))
	r.fes[0].SendPacket(0, nd6(t, layers.ICMPv6TypeNeighborAdvertisement, a, b, a, "fd00::1", "fd00:1::2", "fd00::1"))
	r.poll()
	if got := r.fes[1].Received(0); len(got) != 4 {
		t.Fatalf("p1 got %d frames, want SYN-ACK, SYN, NS, NA (p0 drops %v)", len(got), r.drops(0))
	}
	if d := r.drops(0)["sg_egress_denied"]; d != 1 {
		t.Fatalf("p0 sg_egress_denied %d, want 1 (%v)", d, r.drops(0))
	}
}

// Port security over IPv6: the port's address and its MAC's link-local
// address pass; a spoofed source, an advertisement for an address not the
// port's or naming another MAC, and a router advertisement are dropped
// and counted; duplicate address detection from :: passes.
func TestPortSecurityIPv6(t *testing.T) {
	r := filterRig(t, &acl.Config{
		Ports: []acl.PortFilter{{Name: "p0", PortSecurity: &acl.PortSecurity{MAC: mac(0).String(), IPs: []string{"fd00::1"}}}},
	})
	a, b := mac(0), mac(1)
	other := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x99}
	lla := "fe80::5054:ff:fe00:1" // EUI-64 of 52:54:00:00:00:01
	for _, f := range [][]byte{
		l6frame(t, a, b, "fd00::99", "fd00::2", 1, 2, nil, 20),
		nd6(t, layers.ICMPv6TypeNeighborAdvertisement, a, b, a, "fd00::1", "fd00::2", "fd00::99"),
		nd6(t, layers.ICMPv6TypeNeighborAdvertisement, a, b, other, "fd00::1", "fd00::2", "fd00::1"),
		nd6(t, layers.ICMPv6TypeNeighborSolicitation, a, snm1, other, "fd00::1", "ff02::1:ff00:1", "fd00::2"),
		nd6(t, 134, a, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, nil, lla, "ff02::1", ""),
		l6frame(t, other, b, "fd00::1", "fd00::2", 1, 2, nil, 20),
	} {
		r.fes[0].SendPacket(0, f)
	}
	r.poll()
	none(t, r, 1)
	d := r.drops(0)
	if d["spoofed_source_ip"] != 1 || d["spoofed_nd_target"] != 1 || d["spoofed_nd_link_layer"] != 2 ||
		d["guest_router_advert"] != 1 || d["spoofed_source_mac"] != 1 {
		t.Fatalf("p0 drops %v", d)
	}
	for _, f := range [][]byte{
		l6frame(t, a, b, "fd00::1", "fd00::2", 1, 2, nil, 20),
		l6frame(t, a, b, lla, "fe80::2", 1, 2, nil, 20),
		nd6(t, layers.ICMPv6TypeNeighborSolicitation, a, snm1, nil, "::", "ff02::1:ff00:1", "fd00::1"),
		nd6(t, layers.ICMPv6TypeNeighborAdvertisement, a, b, a, "fd00::1", "fd00::2", "fd00::1"),
	} {
		r.fes[0].SendPacket(0, f)
	}
	r.poll()
	if got := r.fes[1].Received(0); len(got) != 4 {
		t.Fatalf("p1 got %d of the 4 legitimate frames (p0 drops %v)", len(got), r.drops(0))
	}
}

// nat6Rig is natRig over IPv6: r1 masquerades fd10::/64 behind fd20::1
// and gives fd10::2 the floating IP fd20::100; A (fd10::2, fd10::3) and B
// (fd20::2) have told the router their MACs.
func nat6Rig(t *testing.T) (*rig, net.HardwareAddr, net.HardwareAddr) {
	r, m10, m20 := routerRigTB(t)
	err := r.sw.SetRouter(vswitch.RouterSpec{Name: "r1",
		Interfaces: []vswitch.RouterIfSpec{
			{Name: "r1-v10", Bridge: "br0", VLAN: 10, Addrs: []netip.Prefix{netip.MustParsePrefix("fd10::1/64")}},
			{Name: "r1-v20", Bridge: "br0", VLAN: 20, Addrs: []netip.Prefix{netip.MustParsePrefix("fd20::1/64")}},
		},
		NAT: []nat.RuleConfig{
			{Type: "snat", Source: "fd10::/64", To: "fd20::1"},
			{Type: "dnat", Destination: "fd20::100", To: "fd10::2"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b := mac(0), mac(1)
	for _, ip := range []string{"fd10::2", "fd10::3"} {
		r.fes[0].SendPacket(0, nd6(t, layers.ICMPv6TypeNeighborAdvertisement, a, m10, a, ip, "fd10::1", ip))
	}
	r.fes[1].SendPacket(0, nd6(t, layers.ICMPv6TypeNeighborAdvertisement, b, m20, b, "fd20::2", "fd20::1", "fd20::2"))
	r.poll()
	r.fes[0].TxDone(0)
	r.fes[1].TxDone(0)
	return r, m10, m20
}

func ip6Of(t *testing.T, p gopacket.Packet) (*layers.IPv6, *layers.UDP) {
	t.Helper()
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || u == nil {
		t.Fatalf("not IPv6/UDP: %v", p)
	}
	udp6SumOK(t, p)
	return ip, u
}

// NAT66: masquerade out and the reply back in, and a floating IP the
// router answers neighbour solicitations for, reachable from outside;
// checksums verified by gopacket.
func TestNAT66(t *testing.T) {
	r, m10, m20 := nat6Rig(t)
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, l6frame(t, a, m10, "fd10::3", "fd20::2", 40000, 53, nil, 30))
	r.poll()
	ip, u := ip6Of(t, one(t, r, 1))
	if ip.SrcIP.String() != "fd20::1" || ip.DstIP.String() != "fd20::2" || ip.HopLimit != 63 {
		t.Fatalf("masqueraded: %v -> %v hop %d", ip.SrcIP, ip.DstIP, ip.HopLimit)
	}
	r.fes[1].SendPacket(0, l6frame(t, b, m20, "fd20::2", "fd20::1", 53, uint16(u.SrcPort), nil, 30))
	r.poll()
	ip, u = ip6Of(t, one(t, r, 0))
	if ip.SrcIP.String() != "fd20::2" || ip.DstIP.String() != "fd10::3" || u.DstPort != 40000 {
		t.Fatalf("reply: %v -> %v port %d", ip.SrcIP, ip.DstIP, u.DstPort)
	}
	// The floating IP: the router advertises it on VLAN 20 ...
	r.fes[1].SendPacket(0, nd6(t, layers.ICMPv6TypeNeighborSolicitation, b, net.HardwareAddr{0x33, 0x33, 0xff, 0, 1, 0}, b,
		"fd20::2", "ff02::1:ff00:100", "fd20::100"))
	r.poll()
	p := one(t, r, 1)
	na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok || na.TargetAddress.String() != "fd20::100" || p.LinkLayer().(*layers.Ethernet).SrcMAC.String() != m20.String() {
		t.Fatalf("advertisement for the floating IP: %v", p)
	}
	verifyICMPv6(t, p)
	// ... forwards to it, and the answer leaves as it.
	r.fes[1].SendPacket(0, l6frame(t, b, m20, "fd20::2", "fd20::100", 7000, 8000, nil, 30))
	r.poll()
	if ip, _ := ip6Of(t, one(t, r, 0)); ip.DstIP.String() != "fd10::2" || ip.SrcIP.String() != "fd20::2" {
		t.Fatalf("to the floating IP: %v -> %v", ip.SrcIP, ip.DstIP)
	}
	r.fes[0].SendPacket(0, l6frame(t, a, m10, "fd10::2", "fd20::2", 8000, 7000, nil, 30))
	r.poll()
	if ip, _ := ip6Of(t, one(t, r, 1)); ip.SrcIP.String() != "fd20::100" {
		t.Fatalf("answer from %v", ip.SrcIP)
	}
}
