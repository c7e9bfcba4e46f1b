package vswitch

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vswitch/vswitch/switch/header"
	"github.com/vswitch/vswitch/switch/offload"
)

// The hold's byte ring: per-next-hop and total byte bounds, wrapping at
// its end once the oldest packets are gone, and frames intact.
func TestHoldQRing(t *testing.T) {
	q := newHoldQ()
	const rest = 60000
	frame := func(seq byte) *Packet {
		pkt := &Packet{Off: HeadRoom, NHead: HeadLen, Len: HeadLen + rest, NSegs: 1}
		for i := range pkt.Head {
			pkt.Head[i] = seq
		}
		pkt.Segs[0] = bytes.Repeat([]byte{seq}, rest)
		return pkt
	}
	hop := func(n byte) neighKey { return neighKey{rif: 1, ip: [16]byte{10, 20, 0, n}} }
	put := func(k neighKey, seq byte) bool {
		held, _ := q.put(k, 0, frame(seq), &header.Parsed{L3: 14}, 0, 0)
		return held
	}
	// 2 frames per next hop fit its byte bound, a third does not.
	if !put(hop(1), 1) || !put(hop(1), 2) || put(hop(1), 3) {
		t.Fatal("per-hop byte bound")
	}
	for n := byte(2); n <= 4; n++ {
		if !put(hop(n), 2*n+1) || !put(hop(n), 2*n+2) {
			t.Fatalf("hop %d refused", n)
		}
	}
	// 8 frames of 60128 bytes: a ninth is over the ring.
	if put(hop(5), 11) || !q.waiting(hop(1)) || q.waiting(hop(9)) {
		t.Fatal("total byte bound")
	}
	// Hop 1's frames leave; the next frame wraps to the ring's start.
	for j := 0; j < q.n; j++ {
		if hp := &q.pkts[(q.first+j)%holdMax]; hp.k == hop(1) {
			hp.gone = true
		}
	}
	q.hops[0] = q.hops[q.nhops-1]
	q.nhops--
	q.reclaim()
	if !put(hop(5), 11) {
		t.Fatal("no room after reclaim")
	}
	last := q.pkts[(q.first+q.n-1)%holdMax]
	if last.pos != 0 {
		t.Fatalf("wrapped frame at %d", last.pos)
	}
	for j := 0; j < q.n; j++ {
		hp := q.pkts[(q.first+j)%holdMax]
		if f := q.arena[hp.pos : hp.pos+hp.len]; hp.len != HeadLen+rest || !bytes.Equal(f, bytes.Repeat(f[:1], len(f))) {
			t.Fatalf("frame %d damaged", j)
		}
	}
	// Next hops are bounded too; one not tracked is still solicited.
	q = newHoldQ()
	small := &Packet{Off: HeadRoom, NHead: 60, Len: 60}
	for n := 0; n < holdHops; n++ {
		if held, ask := q.put(hop(byte(n)), 0, small, &header.Parsed{}, 0, 7); !held || !ask {
			t.Fatalf("hop %d: held %v ask %v", n, held, ask)
		}
	}
	if held, ask := q.put(hop(200), 0, small, &header.Parsed{}, 0, 7); held || !ask {
		t.Fatalf("hop past the bound: held %v ask %v", held, ask)
	}
	// A tracked next hop is asked once a second.
	if _, ask := q.put(hop(0), 0, small, &header.Parsed{}, 0, 7); ask {
		t.Fatal("asked twice in a second")
	}
	if _, ask := q.put(hop(0), 0, small, &header.Parsed{}, 0, 8); !ask {
		t.Fatal("not asked again a second later")
	}
}

// memPort is a port over byte slices: frames to receive, frames sent.
type memPort struct {
	rx, tx [][]byte
	onRx   func() // runs once, inside the next Receive that has frames
}

func (m *memPort) QueuePairs() int { return 1 }

func (m *memPort) Receive(w *Worker, q int, b *Batch, c *PortCounters) int {
	if len(m.rx) > 0 && m.onRx != nil {
		m.onRx()
		m.onRx = nil
	}
	for _, f := range m.rx {
		pkt := &b.Pkts[b.N]
		pkt.Off, pkt.Len, pkt.NSegs, pkt.Offload = HeadRoom, len(f), 0, offload.Meta{}
		pkt.NHead = copy(pkt.Head[HeadRoom:], f[:min(len(f), HeadLen)])
		if len(f) > HeadLen {
			pkt.Segs[0], pkt.NSegs = f[HeadLen:], 1
		}
		b.N++
	}
	m.rx = nil
	return b.N
}

func (m *memPort) Release(w *Worker, b *Batch) {}

func (m *memPort) Transmit(w *Worker, b *Batch, sel []uint16, c *PortCounters) {
	for _, i := range sel {
		pkt := &b.Pkts[i]
		f := append([]byte(nil), pkt.HeadBytes()...)
		for _, s := range pkt.Segs[:pkt.NSegs] {
			f = append(f, s...)
		}
		m.tx = append(m.tx, f)
	}
}

// A packet that finds its next hop resolved while earlier ones for it are
// still held (the neighbour answered between the worker's hold service
// and its batch) queues behind them: none overtakes another.
func TestHoldKeepsOrderAcrossResolution(t *testing.T) {
	s := New(Options{Manual: true})
	defer s.Close()
	if err := s.AddBridge("br0", 0, 0); err != nil {
		t.Fatal(err)
	}
	p0, p1 := &memPort{}, &memPort{}
	for i, p := range []*memPort{p0, p1} {
		if _, err := s.AddPort(fmt.Sprintf("p%d", i), "mem", "br0", p, PortOptions{VLAN: VLANConfig{Tag: uint16(10 * (i + 1))}}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.SetRouter(RouterSpec{Name: "r1", Interfaces: []RouterIfSpec{
		{Name: "v10", Bridge: "br0", VLAN: 10, Addrs: []netip.Prefix{netip.MustParsePrefix("10.10.0.1/24")}},
		{Name: "v20", Bridge: "br0", VLAN: 20, Addrs: []netip.Prefix{netip.MustParsePrefix("10.20.0.1/24")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m10, _ := s.RouterInterfaceMAC("r1", "v10")
	udp := func(seq uint16) []byte {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: m10[:], EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 10, 0, 2}, DstIP: net.IP{10, 20, 0, 2}}
		u := &layers.UDP{SrcPort: layers.UDPPort(seq), DstPort: 9}
		u.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, u, gopacket.Payload(make([]byte, 200))); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	p0.rx = [][]byte{udp(1)}
	s.PollOnce()
	if len(p1.tx) != 1 { // the ARP request
		t.Fatalf("p1 sent %d frames", len(p1.tx))
	}
	k := neighKey{rif: s.cfg.Load().routers["r1"].ifs[1].id, ip: [16]byte{10, 20, 0, 2}}
	p0.rx = [][]byte{udp(2)}
	p0.onRx = func() {
		s.neigh.learn(k, 0x020000000002, s.Now())
		s.neigh.apply(nil)
	}
	s.PollOnce()
	if len(p1.tx) != 1 {
		t.Fatalf("packet 2 overtook packet 1: p1 sent %d frames", len(p1.tx))
	}
	s.PollOnce()
	if len(p1.tx) != 3 {
		t.Fatalf("p1 sent %d frames, want the ARP request and 2 released", len(p1.tx))
	}
	for j, f := range p1.tx[1:] {
		u := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeUDP).(*layers.UDP)
		if int(u.SrcPort) != j+1 {
			t.Fatalf("released frame %d is packet %d", j, u.SrcPort)
		}
	}
}

// Refresh probes are claimed once a second whichever worker asks, and
// neighProbes times in all; a confirmation (a new entry) starts afresh.
func TestNeighProbeClaim(t *testing.T) {
	e := &neighEntry{mac: 1, seen: 0}
	got := 0
	for sec := uint32(neighRefresh); sec < neighExpire; sec++ {
		for w := 0; w < 4; w++ {
			if e.claimProbe(sec) {
				got++
				if w != 0 {
					t.Fatalf("second %d: claimed twice", sec)
				}
			}
		}
	}
	if got != neighProbes || e.probes() != neighProbes {
		t.Fatalf("%d probes claimed, want %d", got, neighProbes)
	}
	if !(&neighEntry{mac: 1, seen: neighExpire}).claimProbe(neighExpire) {
		t.Fatal("a renewed entry is not probed")
	}
}

// faultPort faults in Transmit, as a port whose guest memory went away.
type faultPort struct{ memPort }

func (f *faultPort) Transmit(w *Worker, b *Batch, sel []uint16, c *PortCounters) {
	panic("guest memory gone")
}

// A fault while a live-traced batch is transmitted leaves neither its
// trace nor its output selections on the pipe: the next batch records
// into its own record only and sends its packet once.
func TestLiveTraceSurvivesTransmitFault(t *testing.T) {
	s := New(Options{Manual: true})
	defer s.Close()
	if err := s.AddBridge("br0", 0, 0); err != nil {
		t.Fatal(err)
	}
	in, bad, good := &memPort{}, &faultPort{}, &memPort{}
	for _, p := range []struct {
		name string
		port Port
	}{{"in", in}, {"bad", bad}, {"good", good}} {
		if _, err := s.AddPort(p.name, "mem", "br0", p.port); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ArmTrace("in", 2); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 60)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	poll := func() {
		defer func() {
			if r := recover(); r != nil {
				s.workers[0].recoverFault(r)
			}
		}()
		s.PollOnce()
	}
	in.rx = [][]byte{frame}
	poll() // the flood faults on bad
	if p := &s.workers[0].pipe; p.tracing || p.traces[0] != nil {
		t.Fatal("the faulted batch's trace is still on the pipe")
	}
	if err := s.RemovePort("bad"); err != nil {
		t.Fatal(err)
	}
	good.tx = nil
	in.rx = [][]byte{frame}
	poll()
	res, err := s.LiveTrace("in")
	if err != nil || res.Captured != 1 || res.Records[0].Seq != 1 || len(res.Records[0].Outputs) != 1 || res.Records[0].Outputs[0].Port != "good" {
		t.Fatalf("%+v %v", res, err)
	}
	if len(good.tx) != 1 {
		t.Fatalf("good sent %d", len(good.tx))
	}
}
