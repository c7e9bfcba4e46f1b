package vswitch_test

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/acl"
	"github.com/vswitch/vswitch/nat"
	vswitch "github.com/vswitch/vswitch/switch"
)

// l4frame builds Ethernet/IPv4 with UDP or TCP (flags from tcp) and
// payload bytes.
func l4frame(t testing.TB, smac, dmac net.HardwareAddr, src, dst string, sport, dport uint16, tcp *layers.TCP, payload int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	var l4 gopacket.SerializableLayer
	if tcp != nil {
		ip.Protocol = layers.IPProtocolTCP
		tcp.SrcPort, tcp.DstPort = layers.TCPPort(sport), layers.TCPPort(dport)
		if tcp.Window == 0 {
			tcp.Window = 65535
		}
		tcp.SetNetworkLayerForChecksum(ip)
		l4 = tcp
	} else {
		ip.Protocol = layers.IPProtocolUDP
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(ip)
		l4 = u
	}
	return ser(t, eth, ip, l4, gopacket.Payload(make([]byte, payload)))
}

// checksumsOK re-serializes p's IPv4 and L4 layers with computed
// checksums and compares: gopacket's verdict on what the switch wrote.
func checksumsOK(t *testing.T, p gopacket.Packet) {
	t.Helper()
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		t.Fatalf("no IPv4 in %v", p)
	}
	want := []gopacket.SerializableLayer{}
	ip2 := *ip
	want = append(want, &ip2)
	switch l := p.TransportLayer().(type) {
	case *layers.UDP:
		u := *l
		u.SetNetworkLayerForChecksum(&ip2)
		want = append(want, &u, gopacket.Payload(l.Payload))
	case *layers.TCP:
		c := *l
		c.SetNetworkLayerForChecksum(&ip2)
		want = append(want, &c, gopacket.Payload(l.Payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, want...); err != nil {
		t.Fatal(err)
	}
	got := p.Layer(layers.LayerTypeIPv4).LayerContents()
	got = append(append([]byte{}, got...), p.Layer(layers.LayerTypeIPv4).LayerPayload()...)
	if !bytes.Equal(buf.Bytes(), got[:len(buf.Bytes())]) {
		t.Fatalf("checksums differ from gopacket's:\n got %x\nwant %x", got, buf.Bytes())
	}
}

func setFilter(t testing.TB, sw *vswitch.Switch, fc *acl.Config) {
	t.Helper()
	if err := sw.SetFilter(fc); err != nil {
		t.Fatal(err)
	}
}

func filterRig(t testing.TB, fc *acl.Config) *rig {
	r := newRig(t, 2)
	setFilter(t, r.sw, fc)
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	return r
}

// A security group with no rules on p0: egress is open and committed,
// the replies come back, unsolicited ingress is dropped and counted on
// p0.
func TestSGAdmitsReturnTrafficBlocksUnsolicited(t *testing.T) {
	r := filterRig(t, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "default"}},
		Ports:          []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"default"}}},
	})
	a, b := mac(0), mac(1)
	// UDP out and back.
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 53, nil, 20))
	r.poll()
	one(t, r, 1)
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 53, 5000, nil, 20))
	r.poll()
	one(t, r, 0)
	// TCP handshake out and back.
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 80, &layers.TCP{SYN: true, Seq: 100}, 0))
	r.poll()
	one(t, r, 1)
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 80, 40000, &layers.TCP{SYN: true, ACK: true, Seq: 900, Ack: 101}, 0))
	r.poll()
	one(t, r, 0)
	// Unsolicited: a UDP flow and a SYN from p1 never arrive.
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 53, 5001, nil, 20))
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 41000, 22, &layers.TCP{SYN: true, Seq: 1}, 0))
	r.poll()
	none(t, r, 0)
	if d := r.drops(0)["sg_ingress_denied"]; d != 2 {
		t.Fatalf("p0 sg_ingress_denied %d, want 2 (p0 %v p1 %v)", d, r.drops(0), r.drops(1))
	}
	// Removing the group opens the port without restarting it.
	setFilter(t, r.sw, &acl.Config{})
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 53, 5001, nil, 20))
	r.poll()
	one(t, r, 0)
}

// An ingress rule admits new connections to p0 on its port only.
func TestSGIngressRule(t *testing.T) {
	r := filterRig(t, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "web", Rules: []acl.SGRule{
			{Direction: "ingress", EtherType: "ipv4", Protocol: "tcp", Ports: "80-81", Remote: "0.0.0.0/0"}}}},
		Ports: []acl.PortFilter{{Name: "p0", SecurityGroups: []string{"web"}}},
	})
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 1, 1, nil, 20)) // learn a
	r.poll()
	r.fes[1].Received(0)
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 41000, 81, &layers.TCP{SYN: true, Seq: 1}, 0))
	r.poll()
	one(t, r, 0)
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 41000, 82, &layers.TCP{SYN: true, Seq: 1}, 0))
	r.poll()
	none(t, r, 0)
}

// Port security: a source MAC or IP not the port's is dropped and
// counted; the port's own pass.
func TestPortSecurityDropsSpoofed(t *testing.T) {
	r := filterRig(t, &acl.Config{
		Ports: []acl.PortFilter{{Name: "p0", PortSecurity: &acl.PortSecurity{MAC: mac(0).String(), IPs: []string{"10.0.0.1"}}}},
	})
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, l4frame(t, net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x99}, b, "10.0.0.1", "10.0.0.2", 1, 2, nil, 20))
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.77", "10.0.0.2", 1, 2, nil, 20))
	r.fes[0].SendPacket(0, arpFrame(t, layers.ARPRequest, a, "10.0.0.78", net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "10.0.0.2"))
	r.poll()
	none(t, r, 1)
	d := r.drops(0)
	if d["spoofed_source_mac"] != 1 || d["spoofed_source_ip"] != 1 || d["spoofed_arp_sender_ip"] != 1 {
		t.Fatalf("p0 drops %v", d)
	}
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 1, 2, nil, 20))
	r.poll()
	one(t, r, 1)
}

// ACLs: an egress deny drops, an egress reject answers TCP with a RST
// out of the input port, an ingress deny on p1 drops what p0 sends it.
func TestACLDenyAndReject(t *testing.T) {
	r := filterRig(t, &acl.Config{ACLs: []acl.ACL{
		{Name: "no-dns", Port: "p0", Direction: "egress", Priority: 10, Protocol: "udp", Ports: "53", Action: "deny"},
		{Name: "rej-smtp", Port: "p0", Direction: "egress", Priority: 10, Protocol: "tcp", Ports: "25", Action: "reject"},
		{Name: "no-telnet", Port: "p1", Direction: "ingress", Priority: 100, Protocol: "tcp", Ports: "23", Action: "deny"},
	}})
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 53, nil, 20))
	r.poll()
	none(t, r, 1)
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 25, &layers.TCP{SYN: true, Seq: 7}, 0))
	r.poll()
	none(t, r, 1)
	p := one(t, r, 0)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil || !tcp.RST || tcp.Ack != 8 || tcp.SrcPort != 25 || tcp.DstPort != 40000 {
		t.Fatalf("reject reply: %v", p)
	}
	checksumsOK(t, p)
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 23, &layers.TCP{SYN: true, Seq: 7}, 0))
	r.poll()
	none(t, r, 1)
	if d := r.drops(0); d["acl_deny"] != 1 || d["acl_reject"] != 1 {
		t.Fatalf("p0 drops %v", d)
	}
	if d := r.drops(1); d["acl_deny"] != 1 {
		t.Fatalf("p1 drops %v", d)
	}
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 40000, 80, &layers.TCP{SYN: true, Seq: 7}, 0))
	r.poll()
	one(t, r, 1)
}

// natRig is routerRig with r1 masquerading VLAN 10 (host A 10.10.0.2)
// behind 10.20.0.1 and a floating IP 10.20.0.100 for A; both hosts'
// MACs are known to the router.
func natRig(t testing.TB) (*rig, net.HardwareAddr, net.HardwareAddr) {
	r, m10, m20 := routerRigTB(t)
	err := r.sw.SetRouter(vswitch.RouterSpec{Name: "r1",
		Interfaces: []vswitch.RouterIfSpec{
			{Name: "r1-v10", Bridge: "br0", VLAN: 10, Addrs: []netip.Prefix{netip.MustParsePrefix("10.10.0.1/24")}},
			{Name: "r1-v20", Bridge: "br0", VLAN: 20, Addrs: []netip.Prefix{netip.MustParsePrefix("10.20.0.1/24")}},
		},
		NAT: []nat.RuleConfig{
			{Type: "snat", Source: "10.10.0.0/24", To: "10.20.0.1"},
			{Type: "dnat", Destination: "10.20.0.100", To: "10.10.0.2"},
			{Type: "dnat", Destination: "10.20.0.1", Protocol: "tcp", Port: 8080, To: "10.10.0.2:80"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, arpFrameTB(t, layers.ARPReply, a, "10.10.0.2", m10, "10.10.0.1"))
	r.fes[1].SendPacket(0, arpFrameTB(t, layers.ARPReply, b, "10.20.0.2", m20, "10.20.0.1"))
	r.poll()
	r.fes[0].Received(0)
	r.fes[1].Received(0)
	r.fes[0].TxDone(0)
	r.fes[1].TxDone(0)
	return r, m10, m20
}

func ipOf(t *testing.T, p gopacket.Packet) (*layers.IPv4, *layers.UDP) {
	t.Helper()
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip == nil || u == nil {
		t.Fatalf("not IPv4/UDP: %v", p)
	}
	return ip, u
}

func TestSNATRoundTrip(t *testing.T) {
	r, m10, m20 := natRig(t)
	a, b := mac(0), mac(1)
	// 10.10.0.2 has a floating IP and leaves as that; .3 is masqueraded.
	r.fes[0].SendPacket(0, arpFrame(t, layers.ARPReply, a, "10.10.0.3", m10, "10.10.0.1"))
	r.poll()
	r.fes[0].SendPacket(0, l4frame(t, a, m10, "10.10.0.3", "10.20.0.2", 40000, 53, nil, 30))
	r.poll()
	p := one(t, r, 1)
	ip, u := ipOf(t, p)
	if ip.SrcIP.String() != "10.20.0.1" || ip.DstIP.String() != "10.20.0.2" || ip.TTL != 63 {
		t.Fatalf("masqueraded packet: %v", p)
	}
	checksumsOK(t, p)
	sport := uint16(u.SrcPort)
	r.fes[1].SendPacket(0, l4frame(t, b, m20, "10.20.0.2", "10.20.0.1", 53, sport, nil, 30))
	r.poll()
	p = one(t, r, 0)
	ip, u = ipOf(t, p)
	if ip.SrcIP.String() != "10.20.0.2" || ip.DstIP.String() != "10.10.0.3" || u.DstPort != 40000 || u.SrcPort != 53 {
		t.Fatalf("reply: %v", p)
	}
	checksumsOK(t, p)
	if r.sw.Conntrack().Len() == 0 {
		t.Fatal("no connection tracked")
	}
}

func TestFloatingIPReachable(t *testing.T) {
	r, _, m20 := natRig(t)
	b := mac(1)
	// The router answers ARP for the floating IP on the VLAN 20 side.
	r.fes[1].SendPacket(0, arpFrame(t, layers.ARPRequest, b, "10.20.0.2", net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "10.20.0.100"))
	r.poll()
	p := one(t, r, 1)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if arp == nil || arp.Operation != layers.ARPReply || !bytes.Equal(arp.SourceHwAddress, m20) || net.IP(arp.SourceProtAddress).String() != "10.20.0.100" {
		t.Fatalf("ARP for the floating IP: %v", p)
	}
	r.fes[1].SendPacket(0, l4frame(t, b, m20, "10.20.0.2", "10.20.0.100", 7000, 8000, nil, 30))
	r.poll()
	p = one(t, r, 0)
	ip, _ := ipOf(t, p)
	if ip.SrcIP.String() != "10.20.0.2" || ip.DstIP.String() != "10.10.0.2" {
		t.Fatalf("to the floating IP: %v", p)
	}
	checksumsOK(t, p)
	// The answer leaves as the floating IP.
	r.fes[0].SendPacket(0, l4frame(t, mac(0), p.LinkLayer().(*layers.Ethernet).SrcMAC, "10.10.0.2", "10.20.0.2", 8000, 7000, nil, 30))
	r.poll()
	p = one(t, r, 1)
	if ip, _ := ipOf(t, p); ip.SrcIP.String() != "10.20.0.100" {
		t.Fatalf("answer: %v", p)
	}
	checksumsOK(t, p)
}

func TestPortForward(t *testing.T) {
	r, _, m20 := natRig(t)
	b := mac(1)
	r.fes[1].SendPacket(0, l4frame(t, b, m20, "10.20.0.2", "10.20.0.1", 41000, 8080, &layers.TCP{SYN: true, Seq: 5}, 0))
	r.poll()
	p := one(t, r, 0)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil || ip.DstIP.String() != "10.10.0.2" || tcp.DstPort != 80 {
		t.Fatalf("port forward: %v", p)
	}
	checksumsOK(t, p)
}

// sgLoop is the bridged loop with a stateful security group on both
// ports: p0 may send anything, p1 takes UDP from 10.0.0.0/8.
func sgLoop(t testing.TB, batch int) *loop {
	r := newRig(t, 2)
	setFilter(t, r.sw, &acl.Config{
		SecurityGroups: []acl.SecurityGroup{{Name: "g", Rules: []acl.SGRule{
			{Direction: "ingress", EtherType: "ipv4", Protocol: "udp", Remote: "10.0.0.0/8"},
			{Direction: "egress", EtherType: "ipv4"},
		}}},
		Ports: []acl.PortFilter{
			{Name: "p0", SecurityGroups: []string{"g"}, PortSecurity: &acl.PortSecurity{MAC: mac(0).String(), IPs: []string{"10.0.0.1"}}},
			{Name: "p1", SecurityGroups: []string{"g"}, PortSecurity: &acl.PortSecurity{MAC: mac(1).String(), IPs: []string{"10.0.0.2"}}},
		},
	})
	return newLoop(t, r, batch)
}

func TestStatefulSGAllocatesNothing(t *testing.T) {
	l := sgLoop(t, 64)
	if allocs := testing.AllocsPerRun(200, l.step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
	if l.forwarded == 0 {
		t.Fatalf("nothing forwarded: drops %v %v", l.r.drops(0), l.r.drops(1))
	}
}

// BenchmarkStatefulSG is BenchmarkGuestToGuest with a stateful security
// group and port security on both ports: per packet, port security,
// conntrack and the group on p0's egress, conntrack and the group on
// p1's ingress.
func BenchmarkStatefulSG(b *testing.B) {
	benchLoop(b, sgLoop(b, vswitch.BatchSize))
}

// snatLoop routes one masqueraded UDP flow from VLAN 10 to VLAN 20.
func snatLoop(t testing.TB, batch int) *loop {
	r, m10, _ := natRig(t)
	return newLoopFrame(r, batch, l4frame(t, mac(0), m10, "10.10.0.3", "10.20.0.2", 40000, 53, nil, 64-14-28))
}

func TestSNATAllocatesNothing(t *testing.T) {
	l := snatLoop(t, 64)
	if allocs := testing.AllocsPerRun(200, l.step); allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
	if l.forwarded == 0 {
		t.Fatalf("nothing routed: drops %v", l.r.drops(0))
	}
}

// BenchmarkRoutedSNAT is BenchmarkRouted through the router's
// masquerade: conntrack lookup in the router's zone and the rewrite.
func BenchmarkRoutedSNAT(b *testing.B) {
	benchLoop(b, snatLoop(b, vswitch.BatchSize))
}

// A live trace shows the filter stage's decision: the port, conntrack's
// state in the port's zone and the commit of a new connection.
func TestLiveTraceShowsFilter(t *testing.T) {
	g := acl.SecurityGroup{Name: "g", Rules: []acl.SGRule{
		{Direction: "ingress", EtherType: "ipv4", Protocol: "udp", Remote: "10.0.0.0/8"},
		{Direction: "egress", EtherType: "ipv4"},
	}}
	r := filterRig(t, &acl.Config{SecurityGroups: []acl.SecurityGroup{g}, Ports: []acl.PortFilter{
		{Name: "p0", SecurityGroups: []string{"g"}}, {Name: "p1", SecurityGroups: []string{"g"}}}})
	for port, n := range map[string]int{"p0": 2, "p1": 1} {
		if err := r.sw.ArmTrace(port, n); err != nil {
			t.Fatal(err)
		}
	}
	a, b := mac(0), mac(1)
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 53, nil, 20))
	r.poll()
	one(t, r, 1)
	r.fes[1].SendPacket(0, l4frame(t, b, a, "10.0.0.2", "10.0.0.1", 53, 5000, nil, 20))
	r.poll()
	one(t, r, 0)
	r.fes[0].SendPacket(0, l4frame(t, a, b, "10.0.0.1", "10.0.0.2", 5000, 53, nil, 20))
	r.poll()
	one(t, r, 1)
	filterStage := func(port string, k int) string {
		t.Helper()
		res, err := r.sw.LiveTrace(port)
		if err != nil || len(res.Records) <= k {
			t.Fatalf("%s: %v %+v", port, err, res)
		}
		for _, st := range res.Records[k].Stages {
			if st.Stage == "filter" {
				return st.Decision
			}
		}
		t.Fatalf("%s record %d has no filter stage: %+v", port, k, res.Records[k])
		return ""
	}
	for _, c := range []struct {
		port string
		k    int
		want string
	}{
		{"p0", 0, "egress: security group rule g/rules[1] admits a new connection"},
		{"p1", 0, "egress: pass (part of a connection)"},
		{"p0", 1, "egress: pass (part of a connection)"},
	} {
		if got := filterStage(c.port, c.k); got != c.want {
			t.Errorf("%s record %d: filter %q, want %q", c.port, c.k, got, c.want)
		}
	}
}
