package vswitch_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/sirupsen/logrus"

	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/switch/header"
	"github.com/vswitch/vswitch/switch/offload"
	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// guestOffloads are the receive-side offload features a guest may take.
const guestOffloads = 1<<virtio.NetFGuestCsum | 1<<virtio.NetFGuestTSO4 | 1<<virtio.NetFGuestTSO6 | 1<<virtio.NetFGuestECN

// newRigEach is newRigOpts with options per port.
func newRigEach(t testing.TB, opts []vhostusertest.Options) *rig {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	sw := vswitch.New(vswitch.Options{Manual: true, Log: logrus.NewEntry(log)})
	t.Cleanup(sw.Close)
	if err := sw.AddBridge("br0", 1024, time.Minute); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &rig{sw: sw}
	for i, o := range opts {
		name := fmt.Sprintf("p%d", i)
		vp := vswitch.NewVhostPort(sw, 1)
		dev := vhostuser.NewDevice(vhostuser.Options{Name: name, Log: logrus.NewEntry(log)}, vp)
		vp.OnFault = dev.Abort
		info, err := sw.AddPort(name, "vhostuser", "br0", vp)
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, name+".sock")
		srv, err := vhostuser.Listen(sock, vhostuser.SocketOptions{UID: -1, GID: -1}, dev)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		fe := vhostusertest.Connect(t, sock, virtiotest.NewGuest(t, 16<<20), o)
		r.ports, r.vps, r.fes = append(r.ports, info), append(r.vps, vp), append(r.fes, fe)
	}
	for i, vp := range r.vps {
		deadline := time.Now().Add(5 * time.Second)
		for !vp.Running() {
			if time.Now().After(deadline) {
				t.Fatalf("port %d never ran", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return r
}

// tcpData builds a complete Ethernet/IP/TCP frame (with timestamps) from
// src to dst carrying n random bytes, FIN and PSH set.
func tcpData(t testing.TB, v6 bool, src, dst net.HardwareAddr, n int) []byte {
	t.Helper()
	pay := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(pay)
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5001, Seq: 1000, Ack: 1, ACK: true, PSH: true, FIN: true, Window: 512,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}}
	var ip gopacket.SerializableLayer
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
		tcp.SetNetworkLayerForChecksum(l)
		ip = l
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		l := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 7, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
		tcp.SetNetworkLayerForChecksum(l)
		ip = l
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(pay)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// asSent is what a guest hands over with offloads for the complete frame
// f: the TCP checksum field holds the pseudo-header sum, and the header
// asks for NEEDS_CSUM (and TSO with mss when mss > 0).
func asSent(f []byte, mss int) (partial []byte, hdr [12]byte) {
	partial = append([]byte(nil), f...)
	l3, l4 := 14, 34
	v6 := binary.BigEndian.Uint16(f[12:]) == header.EtherTypeIPv6
	var ps uint32
	if v6 {
		l4 = 54
		ps = header.PseudoV6(f[l3+8:], f[l3+24:], header.ProtoTCP, len(f)-l4)
	} else {
		ps = header.PseudoV4(f[l3+12:], f[l3+16:], header.ProtoTCP, len(f)-l4)
	}
	binary.BigEndian.PutUint16(partial[l4+16:], header.Fold(ps))
	m := offload.Meta{Flags: offload.FlagNeedsCsum, CsumStart: uint16(l4), CsumOffset: 16}
	if mss > 0 {
		m.GSO, m.GSOSize, m.HdrLen = offload.GSOTCPv4, uint16(mss), uint16(l4+32)
		if v6 {
			m.GSO = offload.GSOTCPv6
		}
	}
	offload.PutHdr(hdr[:], &m, true)
	return partial, hdr
}

// sendRaw queues header+frame on fe's transmit ring, the header and the
// frame in two descriptors as Linux does.
func sendRaw(fe *vhostusertest.Frontend, hdr []byte, f []byte) uint16 {
	g := fe.Guest()
	hl := fe.HdrLen()
	a := g.Alloc(hl, 8)
	g.Write(a, hdr[:hl])
	b := g.Alloc(len(f), 8)
	g.Write(b, f)
	return fe.Tx(0).AddChain(virtiotest.Buf{Addr: a, Len: uint32(hl)}, virtiotest.Buf{Addr: b, Len: uint32(len(f))})
}

// received returns the frames and virtio-net headers delivered to fe.
func received(fe *vhostusertest.Frontend) (frames [][]byte, hdrs []offload.Hdr) {
	rx := fe.Rx(0)
	for _, e := range rx.PopUsed() {
		frames = append(frames, rx.RxFrame(e, fe.HdrLen()))
		hdrs = append(hdrs, offload.DecodeHdr(rx.RxHeader(e, fe.HdrLen())))
	}
	return frames, hdrs
}

// checkSegments parses frames with gopacket, checks every IP and TCP
// checksum, lengths, seq and flags, and returns the payloads joined.
func checkSegments(t *testing.T, frames [][]byte, mss int, want []byte) {
	t.Helper()
	var pay []byte
	for i, f := range frames {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		tl, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tl == nil {
			t.Fatalf("segment %d: no TCP layer", i)
		}
		var nl gopacket.NetworkLayer
		if ip4, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			if header.Checksum(f[14:34], 0) != 0 || int(ip4.Length) != len(f)-14 || ip4.Id != uint16(7+i) {
				t.Fatalf("segment %d: IPv4 header wrong (len %d id %d)", i, ip4.Length, ip4.Id)
			}
			nl = ip4
		} else {
			ip6 := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			if int(ip6.Length) != len(f)-54 {
				t.Fatalf("segment %d: IPv6 length %d", i, ip6.Length)
			}
			nl = ip6
		}
		c := *tl
		c.SetNetworkLayerForChecksum(nl)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &c, gopacket.Payload(tl.Payload)); err != nil {
			t.Fatal(err)
		}
		if w := binary.BigEndian.Uint16(buf.Bytes()[16:]); w != tl.Checksum {
			t.Fatalf("segment %d: TCP checksum %#04x, gopacket %#04x", i, tl.Checksum, w)
		}
		last := i == len(frames)-1
		if tl.Seq != uint32(1000+i*mss) || tl.FIN != last || tl.PSH != last || (!last && len(tl.Payload) != mss) {
			t.Fatalf("segment %d: seq %d FIN %v PSH %v payload %d", i, tl.Seq, tl.FIN, tl.PSH, len(tl.Payload))
		}
		pay = append(pay, tl.Payload...)
	}
	if !bytes.Equal(pay, want) {
		t.Fatalf("payload differs after segmentation: %d bytes, want %d", len(pay), len(want))
	}
}

// A 64 KiB TSO segment from a guest goes whole to a guest that negotiated
// TSO (its MTU does not refuse it: segments are what is compared) and is
// cut into MSS frames, checksummed, for a guest that did not.
func TestTSOPassThroughAndSoftwareSegmentation(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("ipv6=%v", v6), func(t *testing.T) {
			r := newRigEach(t, []vhostusertest.Options{{MTU: 1500}, {MTU: 1500}, {MTU: 1500, Features: ^uint64(guestOffloads)}})
			r.fes[1].PostRxBuffers(0, 4, 70000)
			r.fes[2].PostRxBuffers(0, 100, 1600)
			hl := 66
			if v6 {
				hl = 86
			}
			mss := 1500 - (hl - 14) // what Linux picks for MTU 1500 with timestamps
			full := tcpData(t, v6, mac(0), mac(9), 65535-(hl-14))
			f, hdr := asSent(full, mss)
			sendRaw(r.fes[0], hdr[:], f) // unknown destination: flooded to both
			r.poll()
			got, hdrs := received(r.fes[1])
			if len(got) != 1 || !bytes.Equal(got[0], f) {
				t.Fatalf("TSO guest got %d frames, want the segment whole; drops %v", len(got), r.drops(1))
			}
			if h := hdrs[0]; h.Flags != offload.FlagNeedsCsum || h.GSOType&^offload.GSOECN != hdr[1] || int(h.GSOSize) != mss ||
				int(h.HdrLen) != hl || int(h.CsumStart) != hl-32 || h.CsumOffset != 16 {
				t.Fatalf("TSO guest got header %+v", h)
			}
			segs, hdrs := received(r.fes[2])
			if want := (len(f) - hl + mss - 1) / mss; len(segs) != want {
				t.Fatalf("plain guest got %d frames, want %d; drops %v", len(segs), want, r.drops(2))
			}
			for i, h := range hdrs {
				if h != (offload.Hdr{}) {
					t.Fatalf("segment %d has header %+v", i, h)
				}
			}
			checkSegments(t, segs, mss, full[hl:])
			if n := r.ports[2].Counters.TxPackets.Load(); n != uint64(len(segs)) {
				t.Errorf("tx_packets %d, want %d", n, len(segs))
			}
			if r.fes[0].TxDone(0) != 1 {
				t.Error("sender's chain not returned")
			}
		})
	}
}

// A partial checksum goes as it is to a guest with GUEST_CSUM and is
// completed for one without, in the switch's copy.
func TestPartialChecksum(t *testing.T) {
	r := newRigEach(t, []vhostusertest.Options{{}, {}, {Features: ^uint64(guestOffloads)}})
	r.fes[1].PostRxBuffers(0, 4, 2048)
	r.fes[2].PostRxBuffers(0, 4, 2048)
	full := tcpData(t, false, mac(0), mac(9), 1000)
	f, hdr := asSent(full, 0)
	sendRaw(r.fes[0], hdr[:], f)
	r.poll()
	got, hdrs := received(r.fes[1])
	if len(got) != 1 || !bytes.Equal(got[0], f) || hdrs[0].Flags != offload.FlagNeedsCsum || hdrs[0].CsumStart != 34 {
		t.Fatalf("GUEST_CSUM guest: %d frames, header %+v", len(got), hdrs)
	}
	got, hdrs = received(r.fes[2])
	if len(got) != 1 || !bytes.Equal(got[0], full) || hdrs[0] != (offload.Hdr{}) {
		t.Fatalf("plain guest: %d frames (want the complete frame), header %+v", len(got), hdrs)
	}
}

// Headers that do not describe their frame are dropped and counted; the
// sender gets its buffers back and other frames go on.
func TestHostileOffloadHeaders(t *testing.T) {
	r := newRigEach(t, []vhostusertest.Options{{}, {}})
	r.fes[1].PostRxBuffers(0, 16, 2048)
	full := tcpData(t, false, mac(0), mac(1), 1000)
	f, good := asSent(full, 0)
	_, gso := asSent(full, 1448)
	bad := func(mod func(h []byte)) []byte {
		h := gso
		mod(h[:])
		return h[:]
	}
	udp := frame(t, mac(0), mac(1), 1000)
	hdrs := [][]byte{
		bad(func(h []byte) { binary.LittleEndian.PutUint16(h[6:], 5000) }),   // csum_start past the frame
		bad(func(h []byte) { binary.LittleEndian.PutUint16(h[8:], 1000) }),   // csum_offset past the head
		bad(func(h []byte) { binary.LittleEndian.PutUint16(h[4:], 0) }),      // gso_size 0
		bad(func(h []byte) { h[1] = offload.GSOUDP }),                        // UFO, not offered
		bad(func(h []byte) { h[1] = offload.GSOTCPv6 }),                      // v6 on a v4 frame
		bad(func(h []byte) { h[0] = 0 }),                                     // GSO without NEEDS_CSUM
		bad(func(h []byte) { binary.LittleEndian.PutUint16(h[6:], 14) }),     // csum_start not at TCP
		bad(func(h []byte) { binary.LittleEndian.PutUint16(h[6:], 0xffff) }), // far out
	}
	for _, h := range hdrs {
		sendRaw(r.fes[0], h, f)
	}
	sendRaw(r.fes[0], gso[:], udp) // TSO on a UDP frame
	sendRaw(r.fes[0], good[:], f)
	r.poll()
	if n := r.drops(0)["bad_offload_header"]; n != uint64(len(hdrs)+1) {
		t.Fatalf("drops %v, want %d bad_offload_header", r.drops(0), len(hdrs)+1)
	}
	if got, _ := received(r.fes[1]); len(got) != 1 || !bytes.Equal(got[0], f) {
		t.Fatalf("the good frame did not get through alone (%d frames)", len(got))
	}
	if n := r.fes[0].TxDone(0); n != len(hdrs)+2 {
		t.Fatalf("%d transmit chains returned, want %d", n, len(hdrs)+2)
	}
	if n := r.ports[0].Counters.RxPackets.Load(); n != 1 {
		t.Fatalf("rx_packets %d, want 1", n)
	}
}

// newSegLoop recycles GSO frames through the switch to a guest without
// TSO, so segmentation can be measured alone; forwarded counts frames.
func newSegLoop(t testing.TB, perStep int) *loop {
	r := newRigEach(t, []vhostusertest.Options{{}, {Features: ^uint64(guestOffloads | 1<<virtioMrgRxbuf)}})
	l := &loop{r: r, tx: r.fes[0].Tx(0), rx: r.fes[1].Rx(0)}
	r.fes[0].PostRxBuffers(0, 4, 2048)
	r.fes[1].SendPacket(0, frame(t, mac(1), mac(0), 50))
	r.poll()
	r.fes[0].Received(0)
	r.fes[1].TxDone(0)
	l.txUsed, l.rxUsed = l.tx.UsedIdx(), l.rx.UsedIdx()
	f, hdr := asSent(tcpData(t, false, mac(0), mac(1), 65535-52), 1448)
	for i := 0; i < perStep; i++ {
		sendRaw(r.fes[0], hdr[:], f)
	}
	for i := 0; i < perStep*46; i++ {
		l.rx.AddRxBuffer(1600)
	}
	return l
}

// Software segmentation into a guest allocates nothing.
func TestSegmentationAllocatesNothing(t *testing.T) {
	l := newSegLoop(t, 2)
	if a := testing.AllocsPerRun(50, l.step); a != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", a)
	}
	if l.forwarded < 50*2*46 {
		t.Fatalf("%d frames delivered, want %d; drops %v", l.forwarded, 50*2*46, l.r.drops(1))
	}
}

// BenchmarkGuestTSOToPlainGuest: a 64 KiB TSO segment from one fake guest
// cut into 46 frames for a guest without offloads; ns per 64 KiB segment.
func BenchmarkGuestTSOToPlainGuest(b *testing.B) {
	l := newSegLoop(b, 2)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.step()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/64KiB-segment")
}
