package nat

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/switch/header"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
)

// seg describes a packet for the builders.
type seg struct {
	src, dst         string
	sport, dport     uint16
	flags            uint8
	seq, ack         uint32
	win              uint16
	payload          int
	wscale           int // -1: no option
	noUDPChecksum    bool
	icmpType, icmpID uint16
}

func ipLayer(src, dst string, proto layers.IPProtocol) (gopacket.SerializableLayer, gopacket.NetworkLayer, layers.EthernetType) {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	if s.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: s.AsSlice(), DstIP: d.AsSlice(), Id: 7}
		return ip, ip, layers.EthernetTypeIPv4
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
	return ip, ip, layers.EthernetTypeIPv6
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

// ipPacket builds the IP packet (no Ethernet) of s with transport proto.
func l4Layers(s seg, proto layers.IPProtocol, nl gopacket.NetworkLayer) []gopacket.SerializableLayer {
	pay := gopacket.Payload(bytes.Repeat([]byte{0x5a}, s.payload))
	switch proto {
	case layers.IPProtocolTCP:
		tc := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: s.seq, Ack: s.ack,
			Window: s.win, FIN: s.flags&header.TCPFin != 0, SYN: s.flags&header.TCPSyn != 0,
			RST: s.flags&header.TCPRst != 0, ACK: s.flags&header.TCPAck != 0, PSH: s.flags&header.TCPPsh != 0}
		if s.flags&header.TCPSyn != 0 && s.wscale >= 0 {
			tc.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(s.wscale)}}}
		}
		tc.SetNetworkLayerForChecksum(nl)
		return []gopacket.SerializableLayer{tc, pay}
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		u.SetNetworkLayerForChecksum(nl)
		return []gopacket.SerializableLayer{u, pay}
	case layers.IPProtocolICMPv4:
		return []gopacket.SerializableLayer{&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(uint8(s.icmpType), 0), Id: s.icmpID, Seq: 1}, pay}
	default:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(uint8(s.icmpType), 0)}
		ic.SetNetworkLayerForChecksum(nl)
		return []gopacket.SerializableLayer{ic, &layers.ICMPv6Echo{Identifier: s.icmpID, SeqNumber: 1}, pay}
	}
}

func build(t testing.TB, s seg, proto layers.IPProtocol) []byte {
	ipl, nl, et := ipLayer(s.src, s.dst, proto)
	b := serialize(t, append([]gopacket.SerializableLayer{eth(et), ipl}, l4Layers(s, proto, nl)...)...)
	if s.noUDPChecksum {
		var p header.Parsed
		header.Parse(b, len(b), &p)
		b[p.L4+6], b[p.L4+7] = 0, 0
	}
	return b
}

func tcpPkt(t testing.TB, src, dst string, sp, dp uint16, flags uint8, seq, ack uint32) []byte {
	return build(t, seg{src: src, dst: dst, sport: sp, dport: dp, flags: flags, seq: seq, ack: ack, win: 1000, wscale: -1}, layers.IPProtocolTCP)
}

func udpPkt(t testing.TB, src, dst string, sp, dp uint16) []byte {
	return build(t, seg{src: src, dst: dst, sport: sp, dport: dp, payload: 5}, layers.IPProtocolUDP)
}

func echoPkt(t testing.TB, src, dst string, id uint16, reply bool) []byte {
	if netip.MustParseAddr(src).Is4() {
		typ := uint16(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		return build(t, seg{src: src, dst: dst, icmpType: typ, icmpID: id, payload: 4}, layers.IPProtocolICMPv4)
	}
	typ := uint16(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	return build(t, seg{src: src, dst: dst, icmpType: typ, icmpID: id, payload: 4}, layers.IPProtocolICMPv6)
}

// icmpErr wraps the IP packet of frame inner (Ethernet stripped) in an
// ICMP destination unreachable from src to dst.
func icmpErr(t testing.TB, src, dst string, inner []byte) []byte {
	ipPkt := inner[header.EthernetLen:]
	if ipPkt[0]>>4 == 4 {
		ipPkt = ipPkt[:header.IPv4(ipPkt).TotalLen()]
	} else {
		ipPkt = ipPkt[:header.IPv6Len+int(header.IPv6(ipPkt).PayloadLen())]
	}
	if netip.MustParseAddr(src).Is4() {
		ipl, _, et := ipLayer(src, dst, layers.IPProtocolICMPv4)
		return serialize(t, eth(et), ipl, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(ipPkt))
	}
	ipl, nl, et := ipLayer(src, dst, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}
	ic.SetNetworkLayerForChecksum(nl)
	return serialize(t, eth(et), ipl, ic, gopacket.Payload(append([]byte{0, 0, 0, 0}, ipPkt...)))
}

// checkSums decodes b with gopacket, serializes the same layers again with
// checksums computed and wants the same bytes; an ICMP error's embedded
// packet is checked the same way.
func checkSums(t testing.TB, b []byte) {
	t.Helper()
	reserialize(t, b, layers.LayerTypeEthernet)
	pk := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if ic, ok := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && ic.TypeCode.Type() == 3 {
		reserialize(t, ic.Payload, layers.LayerTypeIPv4)
	}
	if ic, ok := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok && ic.TypeCode.Type() < 128 {
		reserialize(t, ic.Payload[4:], layers.LayerTypeIPv6)
	}
}

func reserialize(t testing.TB, b []byte, first gopacket.LayerType) {
	t.Helper()
	pk := gopacket.NewPacket(b, first, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil && pk.TransportLayer() == nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	stop := false
	for _, l := range pk.Layers() {
		if stop {
			break
		}
		switch x := l.(type) {
		case *layers.IPv4:
			nl = x
		case *layers.IPv6:
			nl = x
		case *layers.TCP:
			x.SetNetworkLayerForChecksum(nl)
			ls = append(ls, x, gopacket.Payload(x.Payload))
			stop = true
			continue
		case *layers.UDP:
			if x.Checksum == 0 && nl.LayerType() == layers.LayerTypeIPv4 {
				ls = append(ls, gopacket.Payload(b[len(b)-len(x.Contents)-len(x.Payload):]))
				stop = true
				continue
			}
			x.SetNetworkLayerForChecksum(nl)
			ls = append(ls, x, gopacket.Payload(x.Payload))
			stop = true
			continue
		case *layers.ICMPv6:
			x.SetNetworkLayerForChecksum(nl)
		case *layers.ICMPv4:
			if x.TypeCode.Type() == 3 {
				ls = append(ls, x, gopacket.Payload(x.Payload))
				stop = true
				continue
			}
		}
		sl, ok := l.(gopacket.SerializableLayer)
		if !ok {
			t.Fatalf("layer %v not serializable", l.LayerType())
		}
		ls = append(ls, sl)
	}
	got := serialize(t, ls...)
	if !bytes.Equal(got, b) {
		t.Fatalf("checksums wrong:\n got  %x\n want %x", b, got)
	}
}

// rig runs single packets through Lookup, Commit and Translate.
type rig struct {
	t     testing.TB
	tab   *Table
	w     *Worker
	rules *Rules
	zone  uint16
	now   uint32
	res   [1]Result
	ps    [1]header.Parsed
}

func newRig(t testing.TB, cfg Config) *rig {
	t.Helper()
	tab, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, tab: tab, w: tab.NewWorker(), now: 1000}
}

// send runs b through the stages (admitting new connections) and returns
// the result; b is rewritten in place.
func (r *rig) send(b []byte) Result {
	r.t.Helper()
	if e := header.Parse(b, len(b), &r.ps[0]); e != header.ParseOK {
		r.t.Fatalf("parse: %v", e)
	}
	fr := [][]byte{b}
	r.w.Lookup(fr, r.ps[:], r.zone, r.now, r.res[:])
	r.res[0].Admit = true
	r.w.Commit(fr, r.ps[:], r.res[:], r.rules, r.now)
	r.w.Translate(fr, r.ps[:], r.res[:])
	return r.res[0]
}

func (r *rig) tcpState(h Handle) uint32 {
	st, _, ok := r.tab.State(h)
	if !ok {
		r.t.Fatalf("connection %x gone", h)
	}
	return st
}

func wantState(t testing.TB, got Result, want CTState) {
	t.Helper()
	if got.State != want {
		t.Fatalf("ct_state %s (reason %v), want %s", stateString(got.State), got.Reason, stateString(want))
	}
}

func stateString(s CTState) string {
	names := []string{"new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"}
	out := ""
	for i, n := range names {
		if s&(1<<i) != 0 {
			out += "+" + n
		}
	}
	if out == "" {
		return "-"
	}
	return out
}

// addrs reads a frame's IP addresses and transport ports.
func addrs(t testing.TB, b []byte) (src, dst netip.Addr, sp, dp uint16) {
	t.Helper()
	var p header.Parsed
	if e := header.Parse(b, len(b), &p); e != header.ParseOK {
		t.Fatal(e)
	}
	if p.EthType == header.EtherTypeIPv4 {
		return netip.AddrFrom4([4]byte(p.Src[:4])), netip.AddrFrom4([4]byte(p.Dst[:4])), p.SrcPort, p.DstPort
	}
	return netip.AddrFrom16(p.Src), netip.AddrFrom16(p.Dst), p.SrcPort, p.DstPort
}

// sweepAll runs Sweep over the whole entry array.
func sweepAll(r *rig) {
	for range len(r.tab.conns)/r.tab.cfg.SweepBatch + 1 {
		r.tab.Sweep(r.now)
	}
}
