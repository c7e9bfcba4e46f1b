package acl

import (
	"net"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vswitch/vswitch/switch/header"
)

// aclResult compiles one ACL list (port a) and classifies a frame.
func aclResult(t *testing.T, acls string, p pkt, dir Direction) Result {
	t.Helper()
	s := compileYAML(t, "acls:\n"+strings.ReplaceAll(acls, ", }", "}"))
	ps := parse(t, craft(t, p))
	return s.ACL.Lookup(&ps, Meta{1, dir})
}

func TestACLMatchFields(t *testing.T) {
	const r = "  - {name: r, port: a, direction: ingress, action: deny, "
	for _, tc := range []struct {
		name, rule string
		p          pkt
		dir        Direction
		hit        bool
	}{
		{"any", r + "}", pkt{}, Ingress, true},
		{"direction", r + "}", pkt{}, Egress, false},
		{"ethertype v4 on v6", r + "ethertype: ipv4}", pkt{v6: true}, Ingress, false},
		{"ethertype v6", r + "ethertype: ipv6}", pkt{v6: true}, Ingress, true},
		{"protocol udp", r + "protocol: udp}", pkt{proto: "udp"}, Ingress, true},
		{"protocol udp vs tcp", r + "protocol: udp}", pkt{proto: "tcp"}, Ingress, false},
		{"protocol number", r + "protocol: 47}", pkt{proto: "gre"}, Ingress, true},
		{"src /32", r + "source: 10.0.0.1/32}", pkt{src: "10.0.0.1", dst: "10.0.0.2"}, Ingress, true},
		{"src /32 miss", r + "source: 10.0.0.1}", pkt{src: "10.0.0.3", dst: "10.0.0.2"}, Ingress, false},
		{"src /0", r + "source: 0.0.0.0/0}", pkt{src: "203.0.113.9", dst: "10.0.0.2"}, Ingress, true},
		{"src /0 not v6", r + "source: 0.0.0.0/0}", pkt{v6: true}, Ingress, false},
		{"src /31 edge", r + "source: 10.0.0.4/31}", pkt{src: "10.0.0.5", dst: "10.0.0.2"}, Ingress, true},
		{"src /31 out", r + "source: 10.0.0.4/31}", pkt{src: "10.0.0.6", dst: "10.0.0.2"}, Ingress, false},
		{"dst /24", r + "destination: 10.9.8.0/24}", pkt{src: "10.0.0.1", dst: "10.9.8.77"}, Ingress, true},
		{"dst /24 miss", r + "destination: 10.9.8.0/24}", pkt{src: "10.0.0.1", dst: "10.9.9.77"}, Ingress, false},
		{"v6 /128", r + "source: 2001:db8::1/128}", pkt{v6: true}, Ingress, true},
		{"v6 /128 miss", r + "source: 2001:db8::3}", pkt{v6: true}, Ingress, false},
		{"v6 /65", r + "destination: 2001:db8::8000:0:0:0/65}", pkt{v6: true, src: "::1", dst: "2001:db8::8000:0:0:1"}, Ingress, true},
		{"v6 /65 miss", r + "destination: 2001:db8::8000:0:0:0/65}", pkt{v6: true, src: "::1", dst: "2001:db8::7fff:0:0:1"}, Ingress, false},
		{"v6 /0", r + "source: '::/0'}", pkt{v6: true}, Ingress, true},
		{"port", r + "protocol: tcp, ports: '22'}", pkt{dport: 22}, Ingress, true},
		{"port miss", r + "protocol: tcp, ports: '22'}", pkt{dport: 23}, Ingress, false},
		{"range lo", r + "protocol: udp, ports: '1000-2000'}", pkt{proto: "udp", dport: 1000}, Ingress, true},
		{"range hi", r + "protocol: udp, ports: '1000-2000'}", pkt{proto: "udp", dport: 2000}, Ingress, true},
		{"range out", r + "protocol: udp, ports: '1000-2000'}", pkt{proto: "udp", dport: 2001}, Ingress, false},
		{"range 0", r + "protocol: udp, ports: '0-10'}", pkt{proto: "udp", dport: 0}, Ingress, true},
		{"range 65535", r + "protocol: udp, ports: '65535'}", pkt{proto: "udp", dport: 65535}, Ingress, true},
		{"source ports", r + "protocol: tcp, source_ports: '1024-65535'}", pkt{sport: 1023}, Ingress, false},
		{"source ports hit", r + "protocol: tcp, source_ports: '1024-65535'}", pkt{sport: 1024}, Ingress, true},
		{"icmp type", r + "protocol: icmp, icmp_type: 8}", pkt{proto: "icmp", icmpType: 8}, Ingress, true},
		{"icmp type miss", r + "protocol: icmp, icmp_type: 8}", pkt{proto: "icmp", icmpType: 0}, Ingress, false},
		{"icmp code", r + "protocol: icmp, icmp_type: 3, icmp_code: 4}", pkt{proto: "icmp", icmpType: 3, icmpCd: 4}, Ingress, true},
		{"icmp code miss", r + "protocol: icmp, icmp_type: 3, icmp_code: 4}", pkt{proto: "icmp", icmpType: 3, icmpCd: 1}, Ingress, false},
		{"icmpv6 as icmp", r + "ethertype: ipv6, protocol: icmp, icmp_type: 128}", pkt{v6: true, proto: "icmp", icmpType: 128}, Ingress, true},
		{"fragment: L3 rule", r + "protocol: tcp, source: 10.0.0.1}", pkt{fragLater: true}, Ingress, true},
		{"fragment: port rule", r + "protocol: tcp, ports: '0-65534'}", pkt{fragLater: true}, Ingress, false},
		{"fragment: icmp type", r + "protocol: icmp, icmp_type: 0}", pkt{proto: "icmp", fragLater: true}, Ingress, false},
		{"v6 fragment: port rule", r + "protocol: tcp, ports: '0'}", pkt{v6: true, fragLater: true}, Ingress, false},
		{"v6 fragment: L3 rule", r + "protocol: tcp}", pkt{v6: true, fragLater: true}, Ingress, true},
		{"vlan", r + "protocol: tcp, ports: '22'}", pkt{vlan: 7, dport: 22}, Ingress, true},
	} {
		got := aclResult(t, tc.rule, tc.p, tc.dir)
		if (got.Action == Deny) != tc.hit {
			t.Errorf("%s: got %v, want hit=%v", tc.name, got, tc.hit)
		}
	}
}

func TestACLPriorities(t *testing.T) {
	acls := `
  - {name: low-allow, port: a, direction: ingress, priority: 10, action: allow}
  - {name: web-deny, port: a, direction: ingress, priority: 100, protocol: tcp, ports: "80-90", action: deny}
  - {name: web-allow-host, port: a, direction: ingress, priority: 200, protocol: tcp, ports: "80", source: 10.0.0.7, action: allow}
  - {name: same-prio-first, port: a, direction: ingress, priority: 100, protocol: tcp, ports: "85", action: reject}
  - {name: net-reject, port: a, direction: ingress, priority: 150, source: 10.0.0.0/24, protocol: tcp, ports: "81", action: reject}
`
	for _, tc := range []struct {
		p    pkt
		rule string
	}{
		{pkt{src: "10.0.1.1", dst: "10.0.0.2", dport: 22}, "low-allow"},
		{pkt{src: "10.0.1.1", dst: "10.0.0.2", dport: 80}, "web-deny"},
		{pkt{src: "10.0.0.7", dst: "10.0.0.2", dport: 80}, "web-allow-host"},
		{pkt{src: "10.0.0.8", dst: "10.0.0.2", dport: 80}, "web-deny"},
		{pkt{src: "10.0.1.1", dst: "10.0.0.2", dport: 85}, "web-deny"}, // equal priority: earlier wins
		{pkt{src: "10.0.0.9", dst: "10.0.0.2", dport: 81}, "net-reject"},
	} {
		s := compileYAML(t, "acls:"+acls)
		ps := parse(t, craft(t, tc.p))
		got := s.ACL.Lookup(&ps, Meta{1, Ingress})
		if got.Rule < 0 || s.ACL.Rules()[got.Rule].Name != tc.rule {
			t.Errorf("%+v: got %+v, want %s", tc.p, got, tc.rule)
		}
	}
}

func TestSecurityGroupRemoteGroup(t *testing.T) {
	s := compileYAML(t, `
security_groups:
  - name: db
    rules:
      - {direction: ingress, protocol: tcp, ports: "5432", remote_group: app}
      - {direction: ingress, ethertype: ipv6, protocol: icmp, icmp_type: 128}
  - name: app
    rules: []
ports:
  - {name: a, security_groups: [db], port_security: {mac: "02:00:00:00:00:0a", ips: [10.10.0.2]}}
  - {name: b, security_groups: [app], port_security: {mac: "02:00:00:00:00:0b", ips: [10.10.0.3, "2001:db8::3"], allowed_address_pairs: [{ip: 10.99.0.0/16}]}}
`)
	in := Meta{1, Ingress}
	for _, tc := range []struct {
		p    pkt
		want DropReason
	}{
		{pkt{src: "10.10.0.3", dst: "10.10.0.2", dport: 5432}, Pass},
		{pkt{src: "10.99.4.4", dst: "10.10.0.2", dport: 5432}, Pass},
		{pkt{src: "10.10.0.4", dst: "10.10.0.2", dport: 5432}, DropSGIngress},
		{pkt{src: "10.10.0.3", dst: "10.10.0.2", dport: 5433}, DropSGIngress},
		{pkt{v6: true, proto: "icmp", icmpType: 128}, Pass},
		{pkt{v6: true, proto: "icmp", icmpType: 129}, DropSGIngress},
	} {
		if v := filter(t, s, craft(t, tc.p), in, CTNew); v.Drop != tc.want {
			t.Errorf("%+v: got %v, want %v", tc.p, v.Drop, tc.want)
		}
	}
	// b's group has no egress rule: egress is allowed and committed.
	out := Meta{2, Egress}
	b := net.HardwareAddr{2, 0, 0, 0, 0, 0x0b}
	if v := filter(t, s, craft(t, pkt{srcMAC: b, src: "10.10.0.3", dst: "10.10.0.2", dport: 5432}), out, CTNew); v.Drop != Pass || !v.Commit {
		t.Errorf("egress without rules: %v commit %v", v.Drop, v.Commit)
	}
	if v := filter(t, s, craft(t, pkt{srcMAC: b, proto: "udp", src: "0.0.0.0", dst: "255.255.255.255", sport: 68, dport: 67}), out, CTNew); v.Drop != Pass {
		t.Errorf("dhcp discover: %v", v.Drop)
	}
	if v := filter(t, s, craft(t, pkt{srcMAC: b, src: "10.10.0.3", dst: "10.10.0.2", sport: 5432, dport: 4000}), out, CTEstablished); v.Drop != Pass {
		t.Errorf("established egress: %v", v.Drop)
	}
}

// arpFrame and ndFrame craft what a guest sends.
func arpFrame(t *testing.T, eth, sha net.HardwareAddr, spa string) []byte {
	return serialize(t, []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: eth, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: 1, SourceHwAddress: sha, SourceProtAddress: net.ParseIP(spa).To4(),
			DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP("10.10.0.1").To4()},
	})
}

func ndFrame(t *testing.T, typ uint8, src, target string, ll net.HardwareAddr) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP("ff02::1")}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	ic.SetNetworkLayerForChecksum(ip)
	var body gopacket.SerializableLayer
	switch typ {
	case header.ICMPv6NeighborAdvert:
		na := &layers.ICMPv6NeighborAdvertisement{TargetAddress: net.ParseIP(target), Flags: 0x20}
		if ll != nil {
			na.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: ll}}
		}
		body = na
	case header.ICMPv6RouterSolicit:
		rs := &layers.ICMPv6RouterSolicitation{}
		if ll != nil {
			rs.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: ll}}
		}
		body = rs
	case header.ICMPv6RouterAdvert:
		body = &layers.ICMPv6RouterAdvertisement{}
	default:
		ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target)}
		if ll != nil {
			ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: ll}}
		}
		body = ns
	}
	return serialize(t, []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: macA, DstMAC: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, EthernetType: layers.EthernetTypeIPv6},
		ip, ic, body})
}

func TestPortSecurity(t *testing.T) {
	s := compileYAML(t, `
ports:
  - name: a
    port_security:
      mac: "02:00:00:00:00:0a"
      ips: [10.10.0.2, "2001:db8::a"]
      allowed_address_pairs: [{ip: 10.20.0.0/24}, {mac: "02:00:00:00:00:99", ip: 10.30.0.5}]
`)
	other := net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	evil := net.HardwareAddr{2, 0, 0, 0, 0, 0x66}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  DropReason
	}{
		{"ok v4", craft(t, pkt{src: "10.10.0.2", dst: "10.0.0.9", dport: 80}), Pass},
		{"pair prefix", craft(t, pkt{src: "10.20.0.77", dst: "10.0.0.9", dport: 80}), Pass},
		{"pair with own mac", craft(t, pkt{srcMAC: other, src: "10.30.0.5", dst: "10.0.0.9"}), Pass},
		{"pair ip with port mac", craft(t, pkt{src: "10.30.0.5", dst: "10.0.0.9"}), DropSpoofedSourceIP},
		{"spoofed mac", craft(t, pkt{srcMAC: evil, src: "10.10.0.2", dst: "10.0.0.9"}), DropSpoofedSourceMAC},
		{"spoofed ip", craft(t, pkt{src: "10.10.0.3", dst: "10.0.0.9"}), DropSpoofedSourceIP},
		{"dhcp discover", craft(t, pkt{proto: "udp", src: "0.0.0.0", dst: "255.255.255.255", sport: 68, dport: 67}), Pass},
		{"zero src not dhcp", craft(t, pkt{proto: "udp", src: "0.0.0.0", dst: "255.255.255.255", sport: 68, dport: 53}), DropSpoofedSourceIP},
		{"dhcp server", craft(t, pkt{proto: "udp", src: "10.10.0.2", dst: "10.10.0.9", sport: 67, dport: 68}), DropGuestDHCPServer},
		{"v6 ok", craft(t, pkt{v6: true, src: "2001:db8::a", dst: "2001:db8::1"}), Pass},
		{"v6 link-local from mac", craft(t, pkt{v6: true, src: "fe80::ff:fe00:a", dst: "fe80::1"}), Pass},
		{"v6 other link-local", craft(t, pkt{v6: true, src: "fe80::1234", dst: "fe80::1"}), DropSpoofedSourceIP},
		{"v6 spoofed", craft(t, pkt{v6: true, src: "2001:db8::b", dst: "2001:db8::1"}), DropSpoofedSourceIP},
		{"arp ok", arpFrame(t, macA, macA, "10.10.0.2"), Pass},
		{"arp probe", arpFrame(t, macA, macA, "0.0.0.0"), Pass},
		{"arp sender mac", arpFrame(t, macA, evil, "10.10.0.2"), DropSpoofedARPSenderMAC},
		{"arp sender ip", arpFrame(t, macA, macA, "10.10.0.1"), DropSpoofedARPSenderIP},
		{"arp eth mac", arpFrame(t, evil, evil, "10.10.0.2"), DropSpoofedSourceMAC},
		{"NA ok", ndFrame(t, 136, "2001:db8::a", "2001:db8::a", macA), Pass},
		{"NA lla target", ndFrame(t, 136, "fe80::ff:fe00:a", "fe80::ff:fe00:a", nil), Pass},
		{"NA spoofed target", ndFrame(t, 136, "2001:db8::a", "2001:db8::1", macA), DropSpoofedNDTarget},
		{"NA spoofed tll", ndFrame(t, 136, "2001:db8::a", "2001:db8::a", evil), DropSpoofedNDLinkLayer},
		{"NS ok", ndFrame(t, 135, "2001:db8::a", "2001:db8::1", macA), Pass},
		{"NS DAD", ndFrame(t, 135, "::", "2001:db8::a", nil), Pass},
		{"NS spoofed sll", ndFrame(t, 135, "2001:db8::a", "2001:db8::1", evil), DropSpoofedNDLinkLayer},
		{"RS spoofed sll", ndFrame(t, 133, "fe80::ff:fe00:a", "", evil), DropSpoofedNDLinkLayer},
		{"RS ok", ndFrame(t, 133, "fe80::ff:fe00:a", "", macA), Pass},
		{"RA from guest", ndFrame(t, 134, "fe80::ff:fe00:a", "", nil), DropGuestRouterAdvert},
	} {
		p := parse(t, tc.frame)
		var cnt Counters
		out := []DropReason{99}
		s.PortSecurity([][]byte{tc.frame}, []header.Parsed{p}, []Meta{{1, Egress}}, out, &cnt)
		if out[0] != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, out[0], tc.want)
		}
		if tc.want != Pass && cnt.Drops[tc.want] != 1 {
			t.Errorf("%s: not counted", tc.name)
		}
	}
	// Ingress and unconfigured ports are not checked.
	f := craft(t, pkt{srcMAC: evil})
	out := []DropReason{99, 99}
	var cnt Counters
	s.PortSecurity([][]byte{f, f}, []header.Parsed{parse(t, f), parse(t, f)}, []Meta{{1, Ingress}, {2, Egress}}, out, &cnt)
	if out[0] != Pass || out[1] != Pass {
		t.Errorf("unchecked packets: %v", out)
	}
}

// Once a port's groups have an egress rule, egress is limited to the rules.
func TestSecurityGroupEgressRulesLimit(t *testing.T) {
	s := compileYAML(t, `
security_groups:
  - name: web
    rules:
      - {direction: egress, protocol: tcp, ports: "443", remote: 10.0.0.0/8}
ports:
  - {name: a, security_groups: [web]}
`)
	out := Meta{1, Egress}
	for _, tc := range []struct {
		p    pkt
		want DropReason
	}{
		{pkt{src: "10.10.0.2", dst: "10.1.1.1", dport: 443}, Pass},
		{pkt{src: "10.10.0.2", dst: "10.1.1.1", dport: 80}, DropSGEgress},
		{pkt{src: "10.10.0.2", dst: "192.168.1.1", dport: 443}, DropSGEgress},
	} {
		if v := filter(t, s, craft(t, tc.p), out, CTNew); v.Drop != tc.want {
			t.Errorf("%+v: got %v, want %v", tc.p, v.Drop, tc.want)
		}
	}
}
