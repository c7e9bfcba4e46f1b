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

// fuzzSwitch has VLAN ports of every mode and a router; Trace runs the
// workers' stage functions, so hostile frames reach every stage.
func fuzzSwitch(t testing.TB) *vswitch.Switch {
	sw := vswitch.New(vswitch.Options{Manual: true})
	t.Cleanup(sw.Close)
	if err := sw.AddBridge("br0", 0, 0); err != nil {
		t.Fatal(err)
	}
	for i, v := range []vswitch.VLANConfig{{Tag: 10}, {Tag: 20}, {Trunks: []uint16{10, 20}}, {}, {Mode: vswitch.VLANNativeTagged, Tag: 10}} {
		if _, err := sw.AddPort(string(rune('a'+i)), "fake", "br0", nil, vswitch.PortOptions{VLAN: v}); err != nil {
			t.Fatal(err)
		}
	}
	err := sw.SetRouter(vswitch.RouterSpec{Name: "r1", Interfaces: []vswitch.RouterIfSpec{
		{Name: "v10", Bridge: "br0", VLAN: 10, MAC: [6]byte{2, 0, 0, 0, 0, 10}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.10.0.1/24"), netip.MustParsePrefix("fd10::1/64")}},
		{Name: "v20", Bridge: "br0", VLAN: 20, MAC: [6]byte{2, 0, 0, 0, 0, 20}, Addrs: []netip.Prefix{netip.MustParsePrefix("10.20.0.1/24"), netip.MustParsePrefix("fd20::1/64")}},
	}, NAT: []nat.RuleConfig{
		{Type: "snat", Source: "10.10.0.0/24", To: "10.20.0.1"},
		{Type: "dnat", Destination: "10.20.0.100", To: "10.10.0.2"},
		{Type: "dnat", Destination: "10.20.0.1", Protocol: "tcp", Port: 8080, To: "10.10.0.2:80"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Filters: conntrack, security groups and port security on a, an
	// ingress reject on b.
	err = sw.SetFilter(&acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "g", Rules: []acl.SGRule{{Direction: "ingress", EtherType: "ipv4", Protocol: "tcp", Ports: "80"}}}},
		Ports: []acl.PortFilter{{Name: "a", SecurityGroups: []string{"g"},
			PortSecurity: &acl.PortSecurity{MAC: "52:54:00:00:00:01", IPs: []string{"10.10.0.2", "fd10::2"}}}},
		ACLs: []acl.ACL{{Name: "rej", Port: "b", Direction: "ingress", Priority: 1, Protocol: "tcp", Ports: "22", Action: "reject"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

func FuzzPipeline(f *testing.F) {
	rmac := net.HardwareAddr{2, 0, 0, 0, 0, 10}
	f.Add(uint8(0), udp4(f, mac(0), rmac, "10.10.0.2", "10.20.0.2", 64))
	f.Add(uint8(1), l4frame(f, mac(1), net.HardwareAddr{2, 0, 0, 0, 0, 20}, "10.20.0.2", "10.20.0.1", 4000, 8080, &layers.TCP{SYN: true}, 0))
	f.Add(uint8(3), l4frame(f, mac(3), mac(1), "10.20.0.9", "10.20.0.2", 4000, 22, &layers.TCP{SYN: true}, 0))
	f.Add(uint8(0), udp6(f, mac(0), rmac, "fd10::2", "fd20::2", 1))
	f.Add(uint8(2), vframe(f, mac(0), bcast, 20, 10))
	f.Add(uint8(0), arpFrameTB(f, layers.ARPRequest, mac(0), "10.10.0.2", bcast, "10.10.0.1"))
	f.Add(uint8(0), ndFrameTB(f, layers.ICMPv6TypeNeighborSolicitation, mac(0), bcast, "fd10::2", "ff02::1:ff00:1", "fd10::1"))
	sw := fuzzSwitch(f)
	f.Fuzz(func(t *testing.T, port uint8, frame []byte) {
		_, _ = sw.Trace(string(rune('a'+port%5)), frame)
	})
}

func ndFrameTB(t testing.TB, typ uint8, smac, dmac net.HardwareAddr, src, dst, target string) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	body := &layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: smac}}}
	return ser(t, eth, ip, ic, body)
}

// Fragments and IPv6 extension headers are routed like any packet; a
// truncated header to the router is a counted drop.
func TestRouteFragmentsAndExtHeaders(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b := mac(0), mac(1)
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.fes[1].SendPacket(0, ndFrame(t, layers.ICMPv6TypeNeighborAdvertisement, b, m20, "fd20::2", "fd20::1", "fd20::2"))
	r.poll()
	// A later IPv4 fragment (no L4 header).
	eth := &layers.Ethernet{SrcMAC: a, DstMAC: m10, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 9, Protocol: layers.IPProtocolUDP, FragOffset: 100, SrcIP: net.ParseIP("10.10.0.2"), DstIP: net.ParseIP("10.20.0.2")}
	r.fes[0].SendPacket(0, ser(t, eth, ip, gopacket.Payload(make([]byte, 200))))
	// IPv6 with hop-by-hop options and a fragment header.
	eth6 := &layers.Ethernet{SrcMAC: a, DstMAC: m10, EthernetType: layers.EthernetTypeIPv6}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 9, NextHeader: layers.IPProtocolIPv6HopByHop, SrcIP: net.ParseIP("fd10::2"), DstIP: net.ParseIP("fd20::2")}
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolIPv6Fragment
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	frag := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: 0, MoreFragments: true, Identification: 7}
	r.fes[0].SendPacket(0, ser(t, eth6, ip6, hbh, frag, gopacket.Payload(make([]byte, 64))))
	r.poll()
	got := r.fes[1].Received(0)
	if len(got) != 2 {
		t.Fatalf("B got %d frames, want the fragment and the IPv6 packet (drops %v)", len(got), r.drops(0))
	}
	if v4 := decode(t, got[0]).Layer(layers.LayerTypeIPv4).(*layers.IPv4); v4.TTL != 8 || !headerSumOK(v4.Contents) {
		t.Fatalf("fragment TTL %d", v4.TTL)
	}
	if v6 := decode(t, got[1]).Layer(layers.LayerTypeIPv6).(*layers.IPv6); v6.HopLimit != 8 {
		t.Fatalf("IPv6 hop limit %d", v6.HopLimit)
	}
	// Truncated: an IPv4 header cut short of its IHL.
	f := udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64)[:14+12]
	r.fes[0].SendPacket(0, f)
	r.poll()
	if len(r.fes[1].Received(0)) != 0 || r.drops(0)["malformed_ipv4"]+r.drops(0)["truncated_header"] != 1 {
		t.Fatalf("drops %v", r.drops(0))
	}
}
