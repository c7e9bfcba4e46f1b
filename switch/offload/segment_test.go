package offload

import (
	"encoding/binary"
	"math/rand"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/switch/header"
)

const headLen = 128

// tcpFrame builds an Ethernet/IP/TCP frame with payload pay and flags,
// checksums complete, with gopacket.
func tcpFrame(t testing.TB, v6 bool, pay []byte, fin, psh, cwr bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5001, Seq: 0xfffff000, Ack: 77, ACK: true, FIN: fin, PSH: psh, CWR: cwr,
		Window: 512, Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}}}}
	var net gopacket.NetworkLayer
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, DstIP: []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}}
		tcp.SetNetworkLayerForChecksum(ip)
		net = ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0xfffe, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP,
			SrcIP: []byte{10, 0, 0, 1}, DstIP: []byte{10, 0, 0, 2}}
		tcp.SetNetworkLayerForChecksum(ip)
		net = ip
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, net.(gopacket.SerializableLayer), tcp, gopacket.Payload(pay))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// partial turns a complete frame into what a guest sends with
// NEEDS_CSUM: the TCP checksum field holds the pseudo-header sum.
func partial(f []byte, l3, l4 int, v6 bool) {
	var ps uint32
	tcpLen := len(f) - l4
	if v6 {
		ps = header.PseudoV6(f[l3+8:], f[l3+24:], header.ProtoTCP, tcpLen)
	} else {
		ps = header.PseudoV4(f[l3+12:], f[l3+16:], header.ProtoTCP, tcpLen)
	}
	binary.BigEndian.PutUint16(f[l4+16:], header.Fold(ps))
}

// split cuts a frame into a head copy and segments of odd sizes.
func split(f []byte) ([]byte, [][]byte) {
	head := append([]byte(nil), f[:min(len(f), headLen)]...)
	var segs [][]byte
	rest := f[len(head):]
	for sz := 1001; len(rest) > 0; sz += 2048 + 3 {
		n := min(sz, len(rest))
		segs = append(segs, rest[:n])
		rest = rest[n:]
	}
	return head, segs
}

func payload(n int) []byte {
	p := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(p)
	return p
}

func TestCompleteMatchesGopacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{0, 1, 7, 100, 1447, 9001, 60000} {
			want := tcpFrame(t, v6, payload(n), false, true, false)
			f := append([]byte(nil), want...)
			l3, l4 := 14, 34
			if v6 {
				l4 = 54
			}
			partial(f, l3, l4, v6)
			head, segs := split(f)
			h := Hdr{Flags: FlagNeedsCsum, CsumStart: uint16(l4), CsumOffset: 16}
			m, ok := Check(h, Sender{}, head, len(f))
			if !ok {
				t.Fatalf("v6=%v n=%d: header refused", v6, n)
			}
			if m.For(CapCsum) != PassThrough || m.For(0) != CompleteCsum {
				t.Fatal("wrong need")
			}
			Complete(&m, head, segs, len(f))
			if got, w := binary.BigEndian.Uint16(head[l4+16:]), binary.BigEndian.Uint16(want[l4+16:]); got != w {
				t.Errorf("v6=%v n=%d: checksum %#04x, gopacket %#04x", v6, n, got, w)
			}
			if m.Flags != 0 {
				t.Error("request not cleared")
			}
		}
	}
}

// gsoFrame is a 64 KiB TCP segment as a guest hands it over with TSO.
func gsoFrame(t testing.TB, v6 bool, fin bool) (f []byte, h Hdr) {
	hl := 14 + 20 + 32
	typ := uint8(GSOTCPv4)
	if v6 {
		hl, typ = 14+40+32, GSOTCPv6
	}
	f = tcpFrame(t, v6, payload(65535-(hl-14)), fin, true, true)
	partial(f, 14, hl-32, v6)
	return f, Hdr{Flags: FlagNeedsCsum, GSOType: typ | GSOECN, GSOSize: 1448, HdrLen: uint16(hl), CsumStart: uint16(hl - 32), CsumOffset: 16}
}

func TestSegmentMatchesGopacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		f, h := gsoFrame(t, v6, true)
		head, segs := split(f)
		m, ok := Check(h, Sender{TSO4: true, TSO6: true, ECN: true}, head, len(f))
		if !ok {
			t.Fatalf("v6=%v: refused", v6)
		}
		if m.For(CapCsum|CapTSO4|CapTSO6|CapECN) != PassThrough || m.For(CapCsum|CapTSO4|CapTSO6) != Segment {
			t.Fatal("wrong need")
		}
		n := m.Segments(len(f))
		if want := (len(f) - int(m.HdrLen) + 1447) / 1448; n != want || n < 40 {
			t.Fatalf("%d segments, want %d", n, want)
		}
		var got []byte
		hdr := make([]byte, m.HdrLen)
		for i := 0; i < n; i++ {
			m.SegHeader(hdr, head, segs, len(f), i)
			off, pl := m.SegPayload(len(f), i)
			seg := append(append([]byte(nil), hdr...), make([]byte, pl)...)
			CopyRange(seg[len(hdr):], head, segs, off)
			got = append(got, seg[len(hdr):]...)
			p := gopacket.NewPacket(seg, layers.LayerTypeEthernet, gopacket.Default)
			if p.ErrorLayer() != nil {
				t.Fatalf("segment %d: %v", i, p.ErrorLayer().Error())
			}
			tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp.Seq != 0xfffff000+uint32(i*1448) {
				t.Errorf("segment %d: seq %#x", i, tcp.Seq)
			}
			last := i == n-1
			if tcp.FIN != last || tcp.PSH != last || tcp.CWR != (i == 0) || !tcp.ACK {
				t.Errorf("segment %d: FIN %v PSH %v CWR %v", i, tcp.FIN, tcp.PSH, tcp.CWR)
			}
			if !last && pl != 1448 {
				t.Errorf("segment %d: %d payload bytes", i, pl)
			}
			// Recompute with gopacket and compare.
			var want uint16
			if v6 {
				ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				if int(ip.Length) != 32+pl {
					t.Errorf("segment %d: IPv6 payload length %d", i, ip.Length)
				}
				want = reserialize(t, ip, tcp)
			} else {
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if int(ip.Length) != 20+32+pl || ip.Id != uint16(0xfffe+i) {
					t.Errorf("segment %d: IPv4 length %d id %#x", i, ip.Length, ip.Id)
				}
				if c := header.Checksum(seg[14:34], 0); c != 0 {
					t.Errorf("segment %d: IPv4 header checksum does not verify", i)
				}
				want = reserialize(t, ip, tcp)
			}
			if tcp.Checksum != want {
				t.Errorf("segment %d: TCP checksum %#04x, gopacket %#04x", i, tcp.Checksum, want)
			}
		}
		if string(got) != string(f[m.HdrLen:]) {
			t.Error("payload differs after segmentation")
		}
	}
}

func reserialize(t *testing.T, ip gopacket.NetworkLayer, tcp *layers.TCP) uint16 {
	c := *tcp
	c.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(tcp.Payload)); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint16(buf.Bytes()[16:18])
}

func TestCheckRefusesHostileHeaders(t *testing.T) {
	f, good := gsoFrame(t, false, false)
	head, _ := split(f)
	s := Sender{TSO4: true, TSO6: true, ECN: true}
	if _, ok := Check(good, s, head, len(f)); !ok {
		t.Fatal("good header refused")
	}
	udp := tcpFrame(t, false, payload(10), false, false, false)
	udp[23] = header.ProtoUDP
	bad := map[string]func(h *Hdr) ([]byte, int){
		"csum_start past the end":  func(h *Hdr) ([]byte, int) { h.CsumStart = 0xfff0; return head, len(f) },
		"csum_offset past head":    func(h *Hdr) ([]byte, int) { h.CsumOffset = 200; return head, len(f) },
		"gso_size 0":               func(h *Hdr) ([]byte, int) { h.GSOSize = 0; return head, len(f) },
		"gso_size 1":               func(h *Hdr) ([]byte, int) { h.GSOSize = 1; return head, len(f) },
		"gso without NEEDS_CSUM":   func(h *Hdr) ([]byte, int) { h.Flags = 0; return head, len(f) },
		"UFO":                      func(h *Hdr) ([]byte, int) { h.GSOType = GSOUDP; return head, len(f) },
		"TCPv6 on an IPv4 frame":   func(h *Hdr) ([]byte, int) { h.GSOType = GSOTCPv6; return head, len(f) },
		"csum_start not at TCP":    func(h *Hdr) ([]byte, int) { h.CsumStart = 14; return head, len(f) },
		"IP length short of frame": func(h *Hdr) ([]byte, int) { return head, len(f) + 10 },
		"gso on a non-TCP frame":   func(h *Hdr) ([]byte, int) { return udp, len(udp) },
		"ECN alone":                func(h *Hdr) ([]byte, int) { h.GSOType, h.Flags = GSOECN, 0; return head, len(f) },
		"truncated head":           func(h *Hdr) ([]byte, int) { return head[:40], len(f) },
	}
	for name, mod := range bad {
		h := good
		hd, n := mod(&h)
		if _, ok := Check(h, s, hd, n); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, ok := Check(good, Sender{TSO6: true, ECN: true}, head, len(f)); ok {
		t.Error("TSO4 without HOST_TSO4 accepted")
	}
}

func FuzzCheck(f *testing.F) {
	fr, h := gsoFrame(f, false, false)
	var b [10]byte
	PutHdr(b[:], &Meta{Flags: h.Flags, GSO: h.GSOType, GSOSize: h.GSOSize, CsumStart: h.CsumStart, CsumOffset: h.CsumOffset}, true)
	f.Add(b[:], fr[:headLen], len(fr))
	f.Fuzz(func(t *testing.T, hb, head []byte, frameLen int) {
		if len(hb) < 10 || len(head) > headLen || frameLen < len(head) || frameLen > 1<<17 {
			return
		}
		m, ok := Check(DecodeHdr(hb), Sender{TSO4: true, TSO6: true, ECN: true}, head, frameLen)
		if !ok {
			return
		}
		segs := [][]byte{make([]byte, frameLen-len(head))}
		h := append([]byte(nil), head...)
		if m.GSO != GSONone {
			hdr := make([]byte, m.HdrLen)
			for i := 0; i < m.Segments(frameLen); i++ {
				m.SegHeader(hdr, h, segs, frameLen, i)
			}
		}
		Complete(&m, h, segs, frameLen)
	})
}

func TestZeroAllocs(t *testing.T) {
	f, h := gsoFrame(t, true, false)
	head, segs := split(f)
	m, _ := Check(h, Sender{TSO4: true, TSO6: true, ECN: true}, head, len(f))
	hdr := make([]byte, 128)
	if a := testing.AllocsPerRun(20, func() {
		m2, _ := Check(h, Sender{TSO4: true, TSO6: true, ECN: true}, head, len(f))
		for i := 0; i < m2.Segments(len(f)); i++ {
			m2.SegHeader(hdr, head, segs, len(f), i)
		}
		mc := m
		Complete(&mc, head, segs, len(f))
	}); a != 0 {
		t.Errorf("%v allocs", a)
	}
}

// BenchmarkSegment64K: software segmentation of a 64 KiB TCPv4 segment
// into 1448-byte frames: headers, checksums and the payload copy.
func BenchmarkSegment64K(b *testing.B) {
	f, h := gsoFrame(b, false, false)
	head, segs := split(f)
	m, ok := Check(h, Sender{TSO4: true, ECN: true}, head, len(f))
	if !ok {
		b.Fatal("refused")
	}
	hdr := make([]byte, 128)
	out := make([]byte, 2048)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < m.Segments(len(f)); i++ {
			m.SegHeader(hdr, head, segs, len(f), i)
			off, n := m.SegPayload(len(f), i)
			copy(out, hdr[:m.HdrLen])
			CopyRange(out[m.HdrLen:int(m.HdrLen)+n], head, segs, off)
		}
	}
}

// BenchmarkComplete1500: checksum completion of a 1500-byte frame.
func BenchmarkComplete1500(b *testing.B) {
	f := tcpFrame(b, false, payload(1448), false, false, false)
	partial(f, 14, 34, false)
	head, segs := split(f)
	m, _ := Check(Hdr{Flags: FlagNeedsCsum, CsumStart: 34, CsumOffset: 16}, Sender{}, head, len(f))
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		mc := m
		Complete(&mc, head, segs, len(f))
	}
}
