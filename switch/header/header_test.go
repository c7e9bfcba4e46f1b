package header

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tcp4(t testing.TB, vlan uint16) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	tc := &layers.TCP{SrcPort: 1234, DstPort: 80, SYN: true, Seq: 7, Window: 1000}
	tc.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	if vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		return serialize(t, eth, &layers.Dot1Q{VLANIdentifier: vlan, Priority: 5, Type: layers.EthernetTypeIPv4}, ip, tc, gopacket.Payload("hello"))
	}
	return serialize(t, eth, ip, tc, gopacket.Payload("hello"))
}

func udp6(t testing.TB, ext bool) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 9, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	u := &layers.UDP{SrcPort: 53, DstPort: 5353}
	u.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}
	if ext {
		ip.NextHeader = layers.IPProtocolIPv6HopByHop
		hbh := &layers.IPv6HopByHop{}
		hbh.NextHeader = layers.IPProtocolUDP
		hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
		return serialize(t, eth, ip, hbh, u, gopacket.Payload("x"))
	}
	return serialize(t, eth, ip, u, gopacket.Payload("x"))
}

func TestParseTCPv4TaggedAndUntagged(t *testing.T) {
	for _, vlan := range []uint16{0, 10} {
		b := tcp4(t, vlan)
		var p Parsed
		if e := Parse(b, len(b), &p); e != ParseOK {
			t.Fatalf("vlan %d: %v", vlan, e)
		}
		if p.Tagged != (vlan != 0) || p.VLAN != vlan || p.EthType != EtherTypeIPv4 {
			t.Fatalf("l2 %+v", p)
		}
		if vlan != 0 && p.PCP != 5 {
			t.Fatalf("pcp %d", p.PCP)
		}
		if p.Proto != ProtoTCP || p.SrcPort != 1234 || p.DstPort != 80 || p.TCPFlags != TCPSyn || p.TTL != 64 {
			t.Fatalf("l4 %+v", p)
		}
		if [4]byte(p.Src[:4]) != [4]byte{10, 0, 0, 1} || [4]byte(p.Dst[:4]) != [4]byte{10, 0, 0, 2} {
			t.Fatalf("addrs %+v", p)
		}
		if want := 14 + 4*btoi(vlan != 0); int(p.L3) != want {
			t.Fatalf("l3 at %d", p.L3)
		}
	}
}

func TestParseIPv6ExtensionHeaders(t *testing.T) {
	for _, ext := range []bool{false, true} {
		b := udp6(t, ext)
		var p Parsed
		if e := Parse(b, len(b), &p); e != ParseOK {
			t.Fatalf("ext %v: %v", ext, e)
		}
		if p.Proto != ProtoUDP || p.SrcPort != 53 || p.DstPort != 5353 || p.TTL != 9 {
			t.Fatalf("ext %v: %+v", ext, p)
		}
		want := 14 + 40
		if ext {
			want += 8
		}
		if int(p.L4) != want {
			t.Fatalf("l4 at %d want %d", p.L4, want)
		}
	}
}

func TestParseFragments(t *testing.T) {
	b := tcp4(t, 0)
	ip := IPv4(b[14:])
	ip[6] = 0x20 // MF, offset 0: first fragment, ports present
	var p Parsed
	if e := Parse(b, len(b), &p); e != ParseOK || p.Frag != FragFirst || p.DstPort != 80 {
		t.Fatalf("first: %v %+v", e, p)
	}
	ip[6], ip[7] = 0, 10 // offset 80: no L4 header
	if e := Parse(b, len(b), &p); e != ParseOK || p.Frag != FragLater || p.L4 != 0 || p.DstPort != 0 {
		t.Fatalf("later: %v %+v", e, p)
	}
	// IPv6 fragment header with non-zero offset.
	ip6 := &layers.IPv6{Version: 6, HopLimit: 9, NextHeader: layers.IPProtocolIPv6Fragment,
		SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	fr := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: 100}
	b6 := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}, ip6, fr, gopacket.Payload(make([]byte, 16)))
	if e := Parse(b6, len(b6), &p); e != ParseOK || p.Frag != FragLater || p.Proto != ProtoUDP {
		t.Fatalf("v6 later: %v %+v", e, p)
	}
}

func TestParseMalformed(t *testing.T) {
	b := tcp4(t, 0)
	var p Parsed
	cases := map[string]struct {
		mut  func([]byte) []byte
		want ParseErr
	}{
		"runt":            {func(b []byte) []byte { return b[:10] }, ErrTruncated},
		"ip truncated":    {func(b []byte) []byte { return b[:20] }, ErrTruncated},
		"total too long":  {func(b []byte) []byte { b[16] = 0xff; return b }, ErrBadIPv4},
		"ihl too short":   {func(b []byte) []byte { b[14] = 0x44; return b }, ErrBadIPv4},
		"tcp doff short":  {func(b []byte) []byte { b[14+20+12] = 0x10; return b }, ErrBadL4},
		"tcp doff beyond": {func(b []byte) []byte { b[14+20+12] = 0xf0; return b }, ErrBadL4},
		"version":         {func(b []byte) []byte { b[14] = 0x65; return b }, ErrBadIPv4},
	}
	for name, c := range cases {
		f := c.mut(append([]byte(nil), b...))
		if e := Parse(f, len(f), &p); e != c.want {
			t.Errorf("%s: %v want %v", name, e, c.want)
		}
	}
}

func TestChecksumUpdatesMatchGopacket(t *testing.T) {
	b := tcp4(t, 0)
	ip := IPv4(b[14:])
	tc := TCP(b[34:])
	if ip.ComputeChecksum() != ip.Checksum() {
		t.Fatalf("ip checksum %x vs %x", ip.ComputeChecksum(), ip.Checksum())
	}
	ip.DecTTL()
	old := ip.Src()
	na := [4]byte{192, 168, 1, 9}
	ip.SetSrcWithChecksum(na)
	tc.SetChecksum(Update32(tc.Checksum(), old[:], na[:]))
	tc.SetSrcPort(40000)
	tc.SetDstPort(8080)
	pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	gip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	gtcp := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if gip.TTL != 63 || !gip.SrcIP.Equal(net.IP(na[:])) || gtcp.SrcPort != 40000 || gtcp.DstPort != 8080 {
		t.Fatalf("rewrite: %v %v %v", gip.TTL, gip.SrcIP, gtcp.SrcPort)
	}
	ls := append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}},
		withTCPChecksum(gip, gtcp)...)
	want := serialize(t, ls...)
	if ip.Checksum() != IPv4(want[14:]).Checksum() || tc.Checksum() != TCP(want[34:]).Checksum() {
		t.Fatalf("checksums ip %x/%x tcp %x/%x", ip.Checksum(), IPv4(want[14:]).Checksum(), tc.Checksum(), TCP(want[34:]).Checksum())
	}
}

func withTCPChecksum(ip *layers.IPv4, tc *layers.TCP) []gopacket.SerializableLayer {
	tc.SetNetworkLayerForChecksum(ip)
	return []gopacket.SerializableLayer{ip, tc, gopacket.Payload(tc.Payload)}
}

func TestPseudoChecksumV6(t *testing.T) {
	b := udp6(t, false)
	ip := IPv6(b[14:])
	u := b[54:]
	s := PseudoV6(ip[8:24], ip[24:40], ProtoUDP, len(u))
	if c := Checksum(u, s); c != 0 {
		t.Fatalf("udp over pseudo-header sums to %x, want 0", c)
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	b := udp6(t, true)
	var p Parsed
	if n := testing.AllocsPerRun(100, func() { Parse(b, len(b), &p) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(tcp4(f, 0))
	f.Add(tcp4(f, 20))
	f.Add(udp6(f, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parsed
		head := b
		if len(head) > 128 {
			head = head[:128]
		}
		if Parse(head, len(b), &p) != ParseOK {
			return
		}
		if int(p.L3) > len(head) || int(p.L4) > len(head) {
			t.Fatalf("offsets beyond the head: %+v", p)
		}
	})
}

func BenchmarkParseTCPv4(b *testing.B) {
	pkt := tcp4(b, 10)
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		Parse(pkt, len(pkt), &p)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
