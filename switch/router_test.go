package vswitch_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
)

// routerRig: p0 is host A on access VLAN 10, p1 host B on access VLAN 20,
// router r1 between them on br0.
func routerRig(t *testing.T) (*rig, net.HardwareAddr, net.HardwareAddr) { return routerRigTB(t) }

func routerRigTB(t testing.TB) (*rig, net.HardwareAddr, net.HardwareAddr) {
	r := newRigPorts(t, []vswitch.PortOptions{
		{VLAN: vswitch.VLANConfig{Tag: 10}},
		{VLAN: vswitch.VLANConfig{Tag: 20}},
	}, vhostusertest.Options{})
	err := r.sw.SetRouter(vswitch.RouterSpec{Name: "r1",
		Interfaces: []vswitch.RouterIfSpec{
			{Name: "r1-v10", Bridge: "br0", VLAN: 10, Addrs: []netip.Prefix{netip.MustParsePrefix("10.10.0.1/24"), netip.MustParsePrefix("fd10::1/64")}},
			{Name: "r1-v20", Bridge: "br0", VLAN: 20, Addrs: []netip.Prefix{netip.MustParsePrefix("10.20.0.1/24"), netip.MustParsePrefix("fd20::1/64")}},
		},
		Routes: []vswitch.RouteSpec{{Prefix: netip.MustParsePrefix("172.16.0.0/12"), Via: netip.MustParseAddr("10.20.0.254")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	m10, _ := r.sw.RouterInterfaceMAC("r1", "r1-v10")
	m20, _ := r.sw.RouterInterfaceMAC("r1", "r1-v20")
	return r, net.HardwareAddr(m10[:]), net.HardwareAddr(m20[:])
}

func ser(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func arpFrame(t *testing.T, op uint16, smac net.HardwareAddr, sip string, dmac net.HardwareAddr, tip string) []byte {
	return arpFrameTB(t, op, smac, sip, dmac, tip)
}

func arpFrameTB(t testing.TB, op uint16, smac net.HardwareAddr, sip string, dmac net.HardwareAddr, tip string) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeARP}
	tha := dmac
	if op == layers.ARPRequest {
		tha = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: smac, SourceProtAddress: net.ParseIP(sip).To4(), DstHwAddress: tha, DstProtAddress: net.ParseIP(tip).To4()}
	return ser(t, eth, a)
}

func udp4(t testing.TB, smac, dmac net.HardwareAddr, src, dst string, ttl uint8) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	u := &layers.UDP{SrcPort: 40000, DstPort: 40001}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, eth, ip, u, gopacket.Payload(make([]byte, 300)))
}

func udp6(t testing.TB, smac, dmac net.HardwareAddr, src, dst string, hop uint8) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: hop, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	u := &layers.UDP{SrcPort: 40000, DstPort: 40001}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, eth, ip, u, gopacket.Payload(make([]byte, 300)))
}

func ndFrame(t *testing.T, typ uint8, smac, dmac net.HardwareAddr, src, dst, target string) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	var body gopacket.SerializableLayer
	if typ == layers.ICMPv6TypeNeighborSolicitation {
		body = &layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: smac}}}
	} else {
		body = &layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: net.ParseIP(target),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: smac}}}
	}
	return ser(t, eth, ip, ic, body)
}

func decode(t *testing.T, f []byte) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("frame does not decode: %v", el.Error())
	}
	return p
}

func one(t *testing.T, r *rig, port int) gopacket.Packet {
	t.Helper()
	got := r.fes[port].Received(0)
	if len(got) != 1 {
		t.Fatalf("port p%d got %d frames, want 1 (drops p0 %v p1 %v)", port, len(got), r.drops(0), r.drops(1))
	}
	return decode(t, got[0])
}

func none(t *testing.T, r *rig, port int) {
	t.Helper()
	if got := r.fes[port].Received(0); len(got) != 0 {
		t.Fatalf("port p%d got %d frames, want none", port, len(got))
	}
}

func TestRouterIPv4(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b := mac(0), mac(1)
	// ARP for the gateway is answered with the interface's MAC.
	r.fes[0].SendPacket(0, arpFrame(t, layers.ARPRequest, a, "10.10.0.2", bcast, "10.10.0.1"))
	r.poll()
	rep := one(t, r, 0).Layer(layers.LayerTypeARP).(*layers.ARP)
	if rep.Operation != layers.ARPReply ||
		net.HardwareAddr(rep.SourceHwAddress).String() != m10.String() || net.IP(rep.SourceProtAddress).String() != "10.10.0.1" {
		t.Fatalf("ARP reply %+v", rep)
	}
	none(t, r, 1)
	// B is not resolved yet: the packet is held, and B's VLAN gets an ARP
	// request from the router.
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64))
	r.poll()
	req := one(t, r, 1).Layer(layers.LayerTypeARP).(*layers.ARP)
	if req.Operation != layers.ARPRequest || net.IP(req.DstProtAddress).String() != "10.20.0.2" ||
		net.IP(req.SourceProtAddress).String() != "10.20.0.1" || net.HardwareAddr(req.SourceHwAddress).String() != m20.String() {
		t.Fatalf("ARP request %+v", req)
	}
	if len(r.drops(0)) != 0 || r.sw.NeighborHold().Queued != 1 {
		t.Fatalf("drops %v hold %+v", r.drops(0), r.sw.NeighborHold())
	}
	// B answers: the held packet goes out, routed as every later one:
	// TTL 63, MACs rewritten, header checksum right.
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.poll()
	none(t, r, 0)
	held := one(t, r, 1)
	if ip := held.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip.TTL != 63 || !headerSumOK(ip.Contents) {
		t.Fatalf("released %v", held)
	}
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64))
	r.poll()
	pkt := one(t, r, 1)
	eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if eth.SrcMAC.String() != m20.String() || eth.DstMAC.String() != b.String() || ip.TTL != 63 {
		t.Fatalf("routed frame %v -> %v TTL %d", eth.SrcMAC, eth.DstMAC, ip.TTL)
	}
	if pkt.Layer(layers.LayerTypeDot1Q) != nil {
		t.Fatal("access port got a tagged frame")
	}
	if !headerSumOK(ip.Contents) {
		t.Fatalf("IPv4 header checksum %#x is wrong", ip.Checksum)
	}
	// TTL 1: time exceeded from the gateway, and nothing goes on.
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 1))
	r.poll()
	none(t, r, 1)
	icmp := one(t, r, 0)
	ic := icmp.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ic.TypeCode.Type() != layers.ICMPv4TypeTimeExceeded || icmp.NetworkLayer().NetworkFlow().Src().String() != "10.10.0.1" {
		t.Fatalf("got %v from %v", ic.TypeCode, icmp.NetworkLayer().NetworkFlow().Src())
	}
	if !headerSumOK(append(append([]byte(nil), ic.Contents...), ic.Payload...)) || len(ic.Payload) != 28 {
		t.Fatalf("time exceeded: bad checksum or quote of %d bytes", len(ic.Payload))
	}
	// No route: destination unreachable.
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "192.168.1.1", 64))
	r.poll()
	ic = one(t, r, 0).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ic.TypeCode.Type() != layers.ICMPv4TypeDestinationUnreachable {
		t.Fatalf("got %v", ic.TypeCode)
	}
	// A static route through an unresolved gateway asks for the gateway.
	r.fes[0].SendPacket(0, udp4(t, a, m10, "10.10.0.2", "172.16.5.5", 64))
	r.poll()
	if req := one(t, r, 1).Layer(layers.LayerTypeARP).(*layers.ARP); net.IP(req.DstProtAddress).String() != "10.20.0.254" {
		t.Fatalf("asked for %v", net.IP(req.DstProtAddress))
	}
	d := r.drops(0)
	if d["ttl_exceeded"] != 1 || d["no_route"] != 1 || r.sw.NeighborHold().Queued != 1 {
		t.Fatalf("drops %v hold %+v", d, r.sw.NeighborHold())
	}
	// A malformed header to the router is dropped and counted.
	f := udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64)
	f[14] = 0x43 // IHL 3
	r.fes[0].SendPacket(0, f)
	r.poll()
	none(t, r, 1)
	if r.drops(0)["malformed_ipv4"] != 1 {
		t.Fatalf("drops %v", r.drops(0))
	}
}

// headerSumOK says whether a header with its checksum in place sums to 0xffff.
func headerSumOK(h []byte) bool {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return s == 0xffff
}

func TestRouterIPv6(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, ndFrame(t, layers.ICMPv6TypeNeighborSolicitation, a, net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 1},
		"fd10::2", "ff02::1:ff00:1", "fd10::1"))
	r.poll()
	p := one(t, r, 0)
	na, ok := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if !ok || na.TargetAddress.String() != "fd10::1" || p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).SrcMAC.String() != m10.String() {
		t.Fatalf("advertisement: %v", p)
	}
	verifyICMPv6(t, p)
	r.fes[0].SendPacket(0, udp6(t, a, m10, "fd10::2", "fd20::2", 64))
	r.poll()
	p = one(t, r, 1)
	ns, ok := p.Layer(layers.LayerTypeICMPv6NeighborSolicitation).(*layers.ICMPv6NeighborSolicitation)
	if !ok || ns.TargetAddress.String() != "fd20::2" {
		t.Fatalf("solicitation: %v", p)
	}
	verifyICMPv6(t, p)
	r.fes[1].SendPacket(0, ndFrame(t, layers.ICMPv6TypeNeighborAdvertisement, b, m20, "fd20::2", "fd20::1", "fd20::2"))
	r.poll()
	if ip := one(t, r, 1).Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip.HopLimit != 63 {
		t.Fatalf("released hop limit %d", ip.HopLimit)
	}
	r.fes[0].SendPacket(0, udp6(t, a, m10, "fd10::2", "fd20::2", 64))
	r.poll()
	p = one(t, r, 1)
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if ip.HopLimit != 63 || p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC.String() != b.String() {
		t.Fatalf("routed %v", p)
	}
	r.fes[0].SendPacket(0, udp6(t, a, m10, "fd10::2", "fd20::2", 1))
	r.poll()
	p = one(t, r, 0)
	ic := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ic.TypeCode.Type() != layers.ICMPv6TypeTimeExceeded {
		t.Fatalf("got %v", p)
	}
	verifyICMPv6(t, p)
	r.fes[0].SendPacket(0, udp6(t, a, m10, "fd10::2", "2001:db8::1", 64))
	r.poll()
	if ic := one(t, r, 0).Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ic.TypeCode.Type() != layers.ICMPv6TypeDestinationUnreachable {
		t.Fatalf("got %v", ic.TypeCode)
	}
}

// verifyICMPv6 recomputes the ICMPv6 checksum with gopacket.
func verifyICMPv6(t *testing.T, p gopacket.Packet) {
	t.Helper()
	ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	ic := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	got := ic.Checksum
	ic2 := &layers.ICMPv6{TypeCode: ic.TypeCode}
	ic2.SetNetworkLayerForChecksum(ip)
	b := ser(t, ic2, gopacket.Payload(ic.Payload))
	if want := uint16(b[2])<<8 | uint16(b[3]); got != want {
		t.Fatalf("ICMPv6 checksum %#x, want %#x", got, want)
	}
}

// routedLoop resolves B and returns a loop of 64-byte frames from A routed
// to B.
func routedLoop(t testing.TB, batch int) *loop {
	r, m10, m20 := routerRigTB(t)
	a, b := mac(0), mac(1)
	r.fes[1].SendPacket(0, arpFrameTB(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.poll()
	r.fes[1].TxDone(0)
	for _, fe := range r.fes {
		fe.Received(0)
	}
	eth := &layers.Ethernet{SrcMAC: a, DstMAC: m10, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP("10.10.0.2"), DstIP: net.ParseIP("10.20.0.2")}
	u := &layers.UDP{SrcPort: 40000, DstPort: 40001}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, u, gopacket.Payload(make([]byte, 64-14-28))); err != nil {
		t.Fatal(err)
	}
	return newLoopFrame(r, batch, buf.Bytes())
}

// Routing allocates nothing per batch.
func TestRoutedAllocatesNothing(t *testing.T) {
	l := routedLoop(t, 64)
	if allocs := testing.AllocsPerRun(200, l.step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
	if l.forwarded == 0 {
		t.Fatalf("nothing routed: drops %v", l.r.drops(0))
	}
}

// BenchmarkRouted routes 64-byte frames between two access VLANs, a batch
// per iteration; BenchmarkBridgedVLAN bridges them within one VLAN.
func BenchmarkRouted(b *testing.B) {
	benchLoop(b, routedLoop(b, vswitch.BatchSize))
}

func BenchmarkBridgedVLAN(b *testing.B) {
	r := newRigPorts(b, []vswitch.PortOptions{{VLAN: vswitch.VLANConfig{Tag: 10}}, {VLAN: vswitch.VLANConfig{Trunks: []uint16{10}}}}, vhostusertest.Options{})
	r.fes[0].PostRxBuffers(0, 4, 2048)
	r.fes[1].SendPacket(0, vframe(b, mac(1), mac(0), 10, 50))
	r.poll()
	r.fes[0].Received(0)
	r.fes[1].TxDone(0)
	benchLoop(b, newLoopFrame(r, vswitch.BatchSize, vframe(b, mac(0), mac(1), -1, 64-14-28)))
}

// A trace runs the real stages without learning or sending anything.
func TestTrace(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b := mac(0), mac(1)
	res, err := r.sw.Trace("p0", udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Port != "p1" || len(res.Dropped) != 0 ||
		res.Stages[1] != (vswitch.TraceStage{Stage: "route", Decision: "held until the next hop on r1-v20 resolves"}) {
		t.Fatalf("unresolved: %+v", res)
	}
	if h := r.sw.NeighborHold(); h.Held != 0 {
		t.Fatalf("a trace held a packet: %+v", h)
	}
	none(t, r, 1)
	if n := r.sw.Bridges()[0].FDB.Len(); n != 0 {
		t.Fatalf("a trace learned %d MACs", n)
	}
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.poll()
	res, _ = r.sw.Trace("p0", udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64))
	var stages []string
	for _, s := range res.Stages {
		stages = append(stages, s.Stage+": "+s.Decision)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Port != "p1" || res.Outputs[0].VLAN != 20 || res.Outputs[0].Tagged || len(res.Dropped) != 0 {
		t.Fatalf("routed: %+v %v", res, stages)
	}
	if len(stages) != 3 || stages[0] != "classify: untagged: vlan 10" || stages[1] != "route: via r1-v20 vlan 20" {
		t.Fatalf("stages %q", stages)
	}
	// A tagged frame on an access port: the classify stage says why.
	res, _ = r.sw.Trace("p0", vframe(t, a, bcast, 10, 10))
	if len(res.Outputs) != 0 || res.Dropped[0] != "vlan_not_allowed" {
		t.Fatalf("tagged on access: %+v", res)
	}
	none(t, r, 0)
	none(t, r, 1)
}

func echo4(t testing.TB, smac, dmac net.HardwareAddr, src, dst string, payload int) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 7, Protocol: layers.IPProtocolICMPv4, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x1234, Seq: 9}
	return ser(t, eth, ip, ic, gopacket.Payload(bytes.Repeat([]byte{0x5a}, payload)))
}

func echo6(t testing.TB, smac, dmac net.HardwareAddr, src, dst string, payload int) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	return ser(t, eth, ip, ic, &layers.ICMPv6Echo{Identifier: 0x1234, SeqNumber: 9}, gopacket.Payload(bytes.Repeat([]byte{0x5a}, payload)))
}

// The router answers pings to any of its addresses, from the interface
// the request came in on, with the payload intact and checksums right.
func TestRouterEcho(t *testing.T) {
	r, m10, _ := routerRig(t)
	a := mac(0)
	for _, tc := range []struct {
		dst     string
		payload int
	}{{"10.10.0.1", 56}, {"10.20.0.1", 56}, {"10.10.0.1", 1400}} {
		r.fes[0].SendPacket(0, echo4(t, a, m10, "10.10.0.2", tc.dst, tc.payload))
		r.poll()
		p := one(t, r, 0)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		ic := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		if eth.SrcMAC.String() != m10.String() || eth.DstMAC.String() != a.String() ||
			ip.SrcIP.String() != tc.dst || ip.DstIP.String() != "10.10.0.2" ||
			ic.TypeCode.Type() != layers.ICMPv4TypeEchoReply || ic.Id != 0x1234 || ic.Seq != 9 ||
			!bytes.Equal(ic.Payload, bytes.Repeat([]byte{0x5a}, tc.payload)) {
			t.Fatalf("echo reply to %s: %v", tc.dst, p)
		}
		if !headerSumOK(ip.Contents) || !headerSumOK(append(append([]byte(nil), ic.Contents...), ic.Payload...)) {
			t.Fatalf("echo reply to %s: bad checksum", tc.dst)
		}
		none(t, r, 1)
	}
	for _, tc := range []struct {
		dst     string
		payload int
	}{{"fd10::1", 56}, {"fd20::1", 1400}} {
		r.fes[0].SendPacket(0, echo6(t, a, m10, "fd10::2", tc.dst, tc.payload))
		r.poll()
		p := one(t, r, 0)
		ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		ic := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		ec, ok := p.Layer(layers.LayerTypeICMPv6Echo).(*layers.ICMPv6Echo)
		if ip.SrcIP.String() != tc.dst || ip.DstIP.String() != "fd10::2" || ic.TypeCode.Type() != layers.ICMPv6TypeEchoReply ||
			!ok || ec.Identifier != 0x1234 || ec.SeqNumber != 9 || !bytes.Equal(ec.Payload, bytes.Repeat([]byte{0x5a}, tc.payload)) {
			t.Fatalf("echo reply to %s: %v", tc.dst, p)
		}
		verifyICMPv6(t, p)
	}
	if d := r.drops(0); len(d) != 0 {
		t.Fatalf("drops %v", d)
	}
	// Replies share the ICMP rate: the clock of a manual switch stands
	// still, so of 150 requests 100 are answered.
	got := 0
	for k := 0; k < 5; k++ {
		for j := 0; j < 30; j++ {
			if !r.fes[0].SendPacket(0, echo4(t, a, m10, "10.10.0.2", "10.10.0.1", 8)) {
				t.Fatal("guest transmit ring full")
			}
		}
		r.poll()
		got += len(r.fes[0].Received(0))
		r.fes[0].TxDone(0)
		r.fes[0].PostRxBuffers(0, 30, 2048)
	}
	if d := r.drops(0)["for_router"]; got+int(d) != 150 || got > 100 {
		t.Fatalf("%d replies, %d dropped", got, d)
	}
}

// One batch mixing a flow the router remembers with packets that must not
// ride on that memory: TTL 1 to the same destination, the router's own
// address, a destination without a route, a second resolved neighbour.
func TestRouterBatchMemo(t *testing.T) {
	r, m10, m20 := routerRig(t)
	a, b, c := mac(0), mac(1), mac(2)
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPReply, c, "10.20.0.3", m20, "10.20.0.1"))
	r.poll()
	r.fes[1].TxDone(0)
	r.fes[0].PostRxBuffers(0, 8, 2048)
	r.fes[1].PostRxBuffers(0, 8, 2048)
	for _, f := range [][]byte{
		udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64),
		udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 1),
		udp4(t, a, m10, "10.10.0.2", "10.20.0.1", 64),
		udp4(t, a, m10, "10.10.0.2", "10.20.0.3", 64),
		udp4(t, a, m10, "10.10.0.2", "192.168.1.1", 64),
		udp4(t, a, m10, "10.10.0.2", "10.20.0.2", 64),
	} {
		r.fes[0].SendPacket(0, f)
	}
	r.poll()
	var to []string
	for _, f := range r.fes[1].Received(0) {
		p := decode(t, f)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if ip.TTL != 63 || !headerSumOK(ip.Contents) {
			t.Fatalf("routed %v", p)
		}
		to = append(to, ip.DstIP.String()+"@"+eth.DstMAC.String())
	}
	want := []string{"10.20.0.2@" + b.String(), "10.20.0.3@" + c.String(), "10.20.0.2@" + b.String()}
	if fmt.Sprint(to) != fmt.Sprint(want) {
		t.Fatalf("routed %v, want %v", to, want)
	}
	var types []layers.ICMPv4TypeCode
	for _, f := range r.fes[0].Received(0) {
		types = append(types, decode(t, f).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4).TypeCode)
	}
	if len(types) != 2 || types[0].Type() != layers.ICMPv4TypeTimeExceeded || types[1].Type() != layers.ICMPv4TypeDestinationUnreachable {
		t.Fatalf("ICMP back %v", types)
	}
	if d := r.drops(0); d["ttl_exceeded"] != 1 || d["no_route"] != 1 || d["for_router"] != 1 {
		t.Fatalf("drops %v", d)
	}
}
