package vswitch_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/sirupsen/logrus"

	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// rig is a manual switch with one bridge and n vhost-user ports, each with
// a fake guest connected through a real unix socket.
type rig struct {
	sw    *vswitch.Switch
	ports []*vswitch.PortInfo
	vps   []*vswitch.VhostPort
	fes   []*vhostusertest.Frontend
}

func newRig(t testing.TB, n int) *rig {
	t.Helper()
	return newRigOpts(t, n, vhostusertest.Options{})
}

func newRigOpts(t testing.TB, n int, feOpts vhostusertest.Options) *rig {
	t.Helper()
	return newRigFull(t, make([]vswitch.PortOptions, n), 1, feOpts, false)
}

// newRigMode is newRigOpts with br0 a cross-connect when xconnect is set.
func newRigMode(t testing.TB, n int, feOpts vhostusertest.Options, xconnect bool) *rig {
	t.Helper()
	return newRigFull(t, make([]vswitch.PortOptions, n), 1, feOpts, xconnect)
}

// newRigPorts is newRigOpts with each port's options.
func newRigPorts(t testing.TB, popts []vswitch.PortOptions, feOpts vhostusertest.Options) *rig {
	t.Helper()
	return newRigFull(t, popts, 1, feOpts, false)
}

// newRigWorkers is newRigOpts with workers manual workers; each port has
// feOpts.QueuePairs queue pairs.
func newRigWorkers(t testing.TB, n, workers int, feOpts vhostusertest.Options) *rig {
	t.Helper()
	return newRigFull(t, make([]vswitch.PortOptions, n), workers, feOpts, false)
}

func newRigFull(t testing.TB, popts []vswitch.PortOptions, workers int, feOpts vhostusertest.Options, xconnect bool) *rig {
	t.Helper()
	n := len(popts)
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	sw := vswitch.New(vswitch.Options{Manual: true, Workers: workers, Log: logrus.NewEntry(log)})
	t.Cleanup(sw.Close)
	if err := sw.AddBridge("br0", 1024, time.Minute, vswitch.BridgeOptions{Xconnect: xconnect}); err != nil {
		t.Fatal(err)
	}
	r := &rig{sw: sw}
	for i := 0; i < n; i++ {
		info, vp, fe := attachPort(t, sw, fmt.Sprintf("p%d", i), popts[i], feOpts)
		r.ports, r.vps, r.fes = append(r.ports, info), append(r.vps, vp), append(r.fes, fe)
	}
	for i, vp := range r.vps {
		waitRunning(t, vp, i)
	}
	return r
}

// attachPort adds a vhost-user port named name to sw's br0 with a fake
// guest connected to it.
func attachPort(t testing.TB, sw *vswitch.Switch, name string, popt vswitch.PortOptions, feOpts vhostusertest.Options) (*vswitch.PortInfo, *vswitch.VhostPort, *vhostusertest.Frontend) {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	vp := vswitch.NewVhostPort(sw, feOpts.QueuePairs)
	dev := vhostuser.NewDevice(vhostuser.Options{Name: name, QueuePairs: feOpts.QueuePairs, Log: logrus.NewEntry(log)}, vp)
	vp.OnFault = dev.Abort
	info, err := sw.AddPort(name, "vhostuser", "br0", vp, popt)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), name+".sock")
	srv, err := vhostuser.Listen(sock, vhostuser.SocketOptions{UID: -1, GID: -1}, dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	g := virtiotest.NewGuest(t, 4<<20)
	return info, vp, vhostusertest.Connect(t, sock, g, feOpts)
}

func waitRunning(t testing.TB, vp *vswitch.VhostPort, i int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !vp.Running() {
		if time.Now().After(deadline) {
			t.Fatalf("port %d never ran", i)
		}
		time.Sleep(time.Millisecond)
	}
}

func mac(i int) net.HardwareAddr { return net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(i + 1)} }

// frame builds an Ethernet/IPv4/UDP frame with gopacket.
func frame(t testing.TB, src, dst net.HardwareAddr, payload int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IP{10, 0, 0, src[5]}, DstIP: net.IP{10, 0, 0, dst[5]}}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	data := bytes.Repeat([]byte{0xab}, payload)
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(data)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (r *rig) poll() {
	for r.sw.PollOnce() {
	}
}

func (r *rig) drops(i int) map[string]uint64 { return r.ports[i].Counters.DropMap() }

func TestForwardLearnsAndFloods(t *testing.T) {
	for _, packed := range []bool{false, true} {
		t.Run(ringName(packed), func(t *testing.T) {
			r := newRigOpts(t, 3, vhostusertest.Options{Packed: packed})
			if r.fes[0].Packed() != packed {
				t.Fatalf("packed rings negotiated: %v, want %v", r.fes[0].Packed(), packed)
			}
			forwardLearnsAndFloods(t, r)
		})
	}
}

func ringName(packed bool) string {
	if packed {
		return "packed"
	}
	return "split"
}

func forwardLearnsAndFloods(t *testing.T, r *rig) {
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	// Unknown destination: flooded to both other ports, never back.
	f := frame(t, mac(0), mac(1), 100)
	r.fes[0].SendPacket(0, f)
	r.poll()
	if got := r.fes[1].Received(0); len(got) != 1 || !bytes.Equal(got[0], f) {
		t.Fatalf("port 1 got %d frames, want the flooded frame", len(got))
	}
	if got := r.fes[2].Received(0); len(got) != 1 {
		t.Fatalf("port 2 got %d frames, want the flooded frame", len(got))
	}
	if got := r.fes[0].Received(0); len(got) != 0 {
		t.Fatalf("the frame came back to its input port")
	}
	// The reply is unicast to the learned port only.
	reply := frame(t, mac(1), mac(0), 1400)
	r.fes[1].SendPacket(0, reply)
	r.poll()
	if got := r.fes[0].Received(0); len(got) != 1 || !bytes.Equal(got[0], reply) {
		t.Fatalf("port 0 got %d frames, want the reply", len(got))
	}
	if got := r.fes[2].Received(0); len(got) != 0 {
		t.Fatalf("port 2 got the learned unicast reply")
	}
	// A frame to a MAC learned on the input port is a counted hairpin drop.
	r.fes[0].SendPacket(0, frame(t, mac(0), mac(0), 64))
	r.poll()
	if r.drops(0)["destination_is_input_port"] != 1 {
		t.Fatalf("drops %v, want one destination_is_input_port", r.drops(0))
	}
	// Broadcast floods; a multicast source is dropped.
	bc := frame(t, mac(2), net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 64)
	r.fes[2].SendPacket(0, bc)
	r.fes[2].SendPacket(0, frame(t, net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, mac(0), 64))
	r.poll()
	if n0, n1 := len(r.fes[0].Received(0)), len(r.fes[1].Received(0)); n0 != 1 || n1 != 1 {
		t.Fatalf("broadcast reached %d and %d ports, want 1 and 1", n0, n1)
	}
	if r.drops(2)["invalid_source_mac"] != 1 {
		t.Fatalf("drops %v, want invalid_source_mac", r.drops(2))
	}
	c := r.ports[0].Counters
	if c.RxPackets.Load() != 2 || c.TxPackets.Load() != 2 || c.TxBytes.Load() != uint64(len(reply)+len(bc)) {
		t.Fatalf("port 0 counters rx=%d tx=%d txbytes=%d", c.RxPackets.Load(), c.TxPackets.Load(), c.TxBytes.Load())
	}
}

func TestForwardMultiDescriptorChains(t *testing.T) {
	r := newRig(t, 2)
	r.fes[1].PostRxBuffers(0, 8, 2048)
	f := frame(t, mac(0), mac(1), 1000)
	// Header and frame scattered over 40-byte descriptors: the first
	// HeadLen bytes span several of them.
	r.fes[0].SendPacketSplit(0, f, 40)
	r.poll()
	got := r.fes[1].Received(0)
	if len(got) != 1 || !bytes.Equal(got[0], f) {
		t.Fatalf("got %d frames (equal=%v)", len(got), len(got) == 1 && bytes.Equal(got[0], f))
	}
}

// With MRG_RXBUF a frame larger than one receive buffer spans several,
// num_buffers says how many, and each chain's used length is its share.
func TestMergeableRxBuffers(t *testing.T) {
	r := newRig(t, 2)
	if r.fes[1].Features&(1<<virtioMrgRxbuf) == 0 {
		t.Fatal("MRG_RXBUF not negotiated")
	}
	rx := r.fes[1].Rx(0)
	for i := 0; i < 8; i++ {
		rx.AddRxBuffer(1024)
	}
	f := frame(t, mac(0), mac(1), 3000)
	r.fes[0].SendPacket(0, f)
	r.poll()
	used := rx.PopUsed()
	if len(used) != 3 {
		t.Fatalf("%d used entries for a %d-byte frame in 1 KiB buffers, want 3", len(used), len(f))
	}
	hdr := rx.RxHeader(used[0], 12)
	if nb := binary.LittleEndian.Uint16(hdr[10:]); nb != 3 {
		t.Fatalf("num_buffers %d, want 3", nb)
	}
	var got []byte
	for i, e := range used {
		b := rx.ReadChain(e, int(e.Len))
		if i == 0 {
			b = b[12:]
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, f) {
		t.Fatalf("merged frame differs (%d bytes, want %d)", len(got), len(f))
	}
	if used[0].Len != 1024 || used[1].Len != 1024 || int(used[2].Len) != 12+len(f)-2048 {
		t.Fatalf("used lengths %d %d %d", used[0].Len, used[1].Len, used[2].Len)
	}
	// Not enough buffers for the whole frame: none is used, the drop counted.
	r.fes[0].SendPacket(0, f) // 5 buffers left: fits
	r.fes[0].SendPacket(0, f) // 2 left: does not
	r.poll()
	if n := len(rx.PopUsed()); n != 3 {
		t.Fatalf("%d used entries, want 3 (the second frame must give its buffers back)", n)
	}
	if d := r.drops(1)["no_guest_rx_buffer"]; d != 1 {
		t.Fatalf("drops %v, want one no_guest_rx_buffer", r.drops(1))
	}
}

const virtioMrgRxbuf = 15

// A frame larger than the receiver's MTU (NET_SET_MTU) is dropped and
// counted; one that fits gets through.
func TestFrameOverReceiverMTU(t *testing.T) {
	r := newRigOpts(t, 2, vhostusertest.Options{MTU: 1500})
	r.fes[1].PostRxBuffers(0, 8, 4096)
	r.fes[0].SendPacket(0, frame(t, mac(0), mac(1), 1500-28)) // IP packet of exactly 1500
	r.fes[0].SendPacket(0, frame(t, mac(0), mac(1), 2000))
	r.poll()
	if n := len(r.fes[1].Received(0)); n != 1 {
		t.Fatalf("%d frames delivered, want 1", n)
	}
	if d := r.drops(1)["frame_exceeds_mtu"]; d != 1 {
		t.Fatalf("drops %v, want frame_exceeds_mtu", r.drops(1))
	}
}

func TestNoReceiveBuffersIsCounted(t *testing.T) {
	// Every offered feature but MRG_RXBUF.
	r := newRigOpts(t, 2, vhostusertest.Options{Features: ^uint64(1 << virtioMrgRxbuf)})
	for i := 0; i < 5; i++ {
		r.fes[0].SendPacket(0, frame(t, mac(0), mac(1), 64))
	}
	r.poll()
	if d := r.drops(1)["no_guest_rx_buffer"]; d != 5 {
		t.Fatalf("drops %v, want 5 no_guest_rx_buffer", r.drops(1))
	}
	// Without MRG_RXBUF, a receive buffer smaller than the frame: counted,
	// the buffer is kept.
	r.fes[1].PostRxBuffers(0, 1, 64)
	r.fes[0].SendPacket(0, frame(t, mac(0), mac(1), 500))
	r.poll()
	if d := r.drops(1)["guest_rx_buffer_too_small"]; d != 1 {
		t.Fatalf("drops %v, want guest_rx_buffer_too_small", r.drops(1))
	}
	if got := r.fes[1].Received(0); len(got) != 0 {
		t.Fatalf("a too-small buffer was used")
	}
	// The transmit side got every buffer back.
	if n := r.fes[0].Tx(0).UsedIdx(); n != 6 {
		t.Fatalf("%d transmit chains returned, want 6", n)
	}
}

// A guest that points a descriptor outside its memory gets a counted drop;
// the others keep forwarding.
func TestHostileDescriptorIsCountedAndIsolated(t *testing.T) {
	r := newRig(t, 3)
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 16, 2048)
	}
	tx := r.fes[0].Tx(0)
	tx.SetDesc(0, 1<<40, 100, 0, 0) // far outside 4 MiB of guest memory
	tx.PushAvail(0)
	r.fes[2].SendPacket(0, frame(t, mac(2), mac(1), 64))
	r.poll()
	if d := r.drops(0)["desc_addr_outside_memory"]; d != 1 {
		t.Fatalf("drops %v, want desc_addr_outside_memory", r.drops(0))
	}
	if got := r.fes[1].Received(0); len(got) != 1 {
		t.Fatalf("port 1 got %d frames from the well-behaved guest", len(got))
	}
	// A looping chain (of empty descriptors, so no segment limit stops
	// it first) is bounded by the queue size and counted.
	tx.SetDesc(1, 0, 0, virtiotestNext, 2)
	tx.SetDesc(2, 0, 0, virtiotestNext, 1)
	tx.PushAvail(1)
	r.poll()
	if d := r.drops(0)["desc_chain_loop"]; d != 1 {
		t.Fatalf("drops %v, want desc_chain_loop", r.drops(0))
	}
	// avail.idx jumping past the ring size stops that port only.
	tx.SetAvailIdx(tx.AvailIdx() + 1000)
	r.poll()
	if r.vps[0].Running() {
		t.Fatalf("port with a corrupt ring still runs")
	}
	if r.drops(0)["avail_index_corrupt"] == 0 {
		t.Fatalf("drops %v, want avail_index_corrupt", r.drops(0))
	}
	r.fes[2].SendPacket(0, frame(t, mac(2), mac(1), 64))
	r.poll()
	if got := r.fes[1].Received(0); len(got) != 1 {
		t.Fatalf("port 1 stopped receiving after port 0 broke its ring")
	}
	if !r.fes[0].Closed(2 * time.Second) {
		t.Fatalf("the broken guest's connection was not dropped")
	}
}

const virtiotestNext = 1 // VRING_DESC_F_NEXT

// The per-batch forwarding path allocates nothing.
func TestForwardAllocatesNothing(t *testing.T) {
	r := newRig(t, 2)
	loop := newLoop(t, r, vswitch.BatchSize)
	allocs := testing.AllocsPerRun(200, loop.step)
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
	if loop.forwarded == 0 {
		t.Fatal("nothing forwarded")
	}
	pl := newPackedLoop(t, newRigOpts(t, 2, vhostusertest.Options{Packed: true}), vswitch.BatchSize)
	if allocs := testing.AllocsPerRun(200, pl.step); allocs != 0 {
		t.Fatalf("packed: %.1f allocations per batch, want 0", allocs)
	}
	if pl.forwarded < 200*vswitch.BatchSize {
		t.Fatalf("packed: forwarded %d in 201 batches of %d", pl.forwarded, vswitch.BatchSize)
	}
}

// packedLoop is loop over packed rings: used chains are made available
// again with the same buffers.
type packedLoop struct {
	r         *rig
	tx, rx    *virtiotest.PackedRing
	forwarded int
	polled    time.Duration // in the switch's poll
}

func newPackedLoop(t testing.TB, r *rig, batch int) *packedLoop {
	l := &packedLoop{r: r, tx: r.fes[0].PTx(0), rx: r.fes[1].PRx(0)}
	r.fes[0].PostRxBuffers(0, 4, 2048)
	r.fes[1].SendPacket(0, frame(t, mac(1), mac(0), 50))
	r.poll()
	r.fes[0].Received(0)
	r.fes[1].TxDone(0)
	f := frame(t, mac(0), mac(1), 64-14-28)
	for i := 0; i < batch; i++ {
		l.tx.AddTxPacket(r.fes[0].HdrLen(), f, 0)
		l.rx.AddRxBuffer(2048)
	}
	return l
}

func (l *packedLoop) step() {
	t := time.Now()
	l.r.sw.PollOnce()
	l.polled += time.Since(t)
	l.tx.Recycle()
	l.forwarded += l.rx.Recycle()
}

// loop recycles the same transmit chains and receive buffers through the
// rings without allocating, so a batch can be measured alone.
type loop struct {
	r                  *rig
	tx, rx             *virtiotest.SplitRing
	txUsed, rxUsed     uint16
	batch, forwarded   int
	txHeads, rxHeadsOK []uint16
	polled             time.Duration // in the switch's poll
}

func newLoop(t testing.TB, r *rig, batch int) *loop {
	// Learn both MACs so frames go unicast.
	r.fes[0].PostRxBuffers(0, 4, 2048)
	r.fes[1].SendPacket(0, frame(t, mac(1), mac(0), 50))
	r.poll()
	r.fes[0].Received(0)
	r.fes[1].TxDone(0)
	return newLoopFrame(r, batch, frame(t, mac(0), mac(1), 64-14-28))
}

// newLoopFrame is a loop sending f from port 0, received on port 1.
func newLoopFrame(r *rig, batch int, f []byte) *loop {
	l := &loop{r: r, tx: r.fes[0].Tx(0), rx: r.fes[1].Rx(0), batch: batch}
	l.rxUsed = l.rx.UsedIdx()
	l.txUsed = l.tx.UsedIdx()
	for i := 0; i < batch; i++ {
		l.txHeads = append(l.txHeads, l.tx.AddTxPacket(r.fes[0].HdrLen(), f, 0))
		l.rxHeadsOK = append(l.rxHeadsOK, l.rx.AddRxBuffer(2048))
	}
	return l
}

func (l *loop) step() {
	t := time.Now()
	l.r.sw.PollOnce()
	l.polled += time.Since(t)
	// Give back what the switch completed: the same heads, posted again.
	for ; l.txUsed != l.tx.UsedIdx(); l.txUsed++ {
		id, _ := l.tx.UsedEntry(l.txUsed)
		l.tx.PushAvail(uint16(id))
	}
	for ; l.rxUsed != l.rx.UsedIdx(); l.rxUsed++ {
		id, _ := l.rx.UsedEntry(l.rxUsed)
		l.rx.PushAvail(uint16(id))
		l.forwarded++
	}
}

// BenchmarkGuestToGuest forwards 64-byte frames from one fake guest to
// another through the bridge, a batch per iteration. The guests poll, as
// DPDK's virtio-user does: they ask for no interrupts.
func BenchmarkGuestToGuest(b *testing.B) {
	benchLoop(b, newLoop(b, newRig(b, 2), vswitch.BatchSize))
}

// BenchmarkGuestToGuestPacked is BenchmarkGuestToGuest over packed rings.
func BenchmarkGuestToGuestPacked(b *testing.B) {
	l := newPackedLoop(b, newRigOpts(b, 2, vhostusertest.Options{Packed: true}), vswitch.BatchSize)
	l.tx.SetDriverFlags(virtio.EventFlagsDisable)
	l.rx.SetDriverFlags(virtio.EventFlagsDisable)
	benchSteps(b, l.step, &l.forwarded, &l.polled)
}

// BenchmarkGuestToGuestXconnect is BenchmarkGuestToGuest through a
// cross-connect bridge: no FDB learning or lookup.
func BenchmarkGuestToGuestXconnect(b *testing.B) {
	benchLoop(b, newLoop(b, newRigMode(b, 2, vhostusertest.Options{}, true), vswitch.BatchSize))
}

// benchLoop runs l a batch per iteration and reports ns per forwarded packet.
func benchLoop(b *testing.B, l *loop) {
	l.tx.SetAvailFlags(virtio.AvailFNoInterrupt)
	l.rx.SetAvailFlags(virtio.AvailFNoInterrupt)
	benchSteps(b, l.step, &l.forwarded, &l.polled)
}

// benchSteps reports ns/pkt for the whole step (the fake guests' side
// included) and switch-ns/pkt for the switch's poll alone: the figure
// to compare changes to the data plane with, on one core and without
// the noise of the peer benchmark.
func benchSteps(b *testing.B, step func(), forwarded *int, polled *time.Duration) {
	b.ReportAllocs()
	b.ResetTimer()
	*polled = 0
	for i := 0; i < b.N; i++ {
		step()
	}
	b.StopTimer()
	if *forwarded < b.N {
		b.Fatalf("forwarded %d in %d batches", *forwarded, b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(*forwarded), "ns/pkt")
	b.ReportMetric(float64(polled.Nanoseconds())/float64(*forwarded), "switch-ns/pkt")
}

func BenchmarkFDBLookup(b *testing.B) {
	f := vswitch.NewFDB(8192, 0)
	for i := 0; i < 1000; i++ {
		f.Learn(10, uint64(0x525400000000+i), uint16(i%16), 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := f.Lookup(10, uint64(0x525400000000+i%1000)); !ok {
			b.Fatal("miss")
		}
	}
}

// SEND_RARP (after a live migration) makes the switch announce the guest:
// a broadcast RARP from its MAC reaches the other ports, and the bridge
// learns where the MAC now is.
func TestSendRARPAnnouncesGuest(t *testing.T) {
	r := newRig(t, 3)
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 8, 2048)
	}
	moved := mac(0)
	if _, err := r.fes[0].Request(vhostuser.SendRARP, append(append([]byte(nil), moved...), 0, 0)); err != nil {
		t.Fatal(err)
	}
	r.poll()
	for i := 1; i < 3; i++ {
		got := r.fes[i].Received(0)
		if len(got) != 1 {
			t.Fatalf("port %d got %d frames, want the RARP", i, len(got))
		}
		pkt := gopacket.NewPacket(got[0], layers.LayerTypeEthernet, gopacket.Default)
		eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if eth.EthernetType != 0x8035 || !bytes.Equal(eth.SrcMAC, moved) || eth.DstMAC.String() != "ff:ff:ff:ff:ff:ff" {
			t.Fatalf("port %d: %v -> %v type %#x, want a broadcast RARP from %v", i, eth.SrcMAC, eth.DstMAC, uint16(eth.EthernetType), moved)
		}
		if op := binary.BigEndian.Uint16(eth.Payload[6:8]); op != 3 || !bytes.Equal(eth.Payload[8:14], moved) {
			t.Fatalf("port %d: RARP op %d sender %x", i, op, eth.Payload[8:14])
		}
	}
	// A frame to the announced MAC now goes to port 0 only.
	r.fes[2].SendPacket(0, frame(t, mac(2), moved, 64))
	r.poll()
	if n0, n1 := len(r.fes[0].Received(0)), len(r.fes[1].Received(0)); n0 != 1 || n1 != 0 {
		t.Fatalf("unicast to the announced MAC reached %d/%d, want port 0 only", n0, n1)
	}
}

// The worker defers its interrupt checks to the end of a poll (one fence
// for all queues): the receiver still gets its receive interrupt and the
// sender its transmit-completion interrupt, on both ring layouts, and on a
// split ring again once the driver moves used_event (EVENT_IDX).
func TestForwardInterruptsBothGuests(t *testing.T) {
	for _, packed := range []bool{false, true} {
		r := newRigOpts(t, 2, vhostusertest.Options{Packed: packed})
		r.fes[0].PostRxBuffers(0, 4, 2048)
		r.fes[1].PostRxBuffers(0, 4, 2048)
		round := func() {
			r.fes[1].SendPacket(0, frame(t, mac(1), mac(0), 50))
			r.fes[0].SendPacket(0, frame(t, mac(0), mac(1), 50))
			r.poll()
		}
		round()
		round()
		if rx, tx := r.fes[1].Interrupts(0), r.fes[0].Interrupts(1); rx == 0 || tx == 0 {
			t.Fatalf("packed=%v: receiver interrupted %d times, sender %d", packed, rx, tx)
		}
		if got := len(r.fes[1].Received(0)); got != 2 {
			t.Fatalf("packed=%v: received %d", packed, got)
		}
		if packed {
			continue
		}
		rx, tx := r.fes[1].Rx(0), r.fes[0].Tx(0)
		rx.SetUsedEvent(rx.UsedIdx())
		tx.SetUsedEvent(tx.UsedIdx())
		round()
		if rxi, txi := r.fes[1].Interrupts(0), r.fes[0].Interrupts(1); rxi != 1 || txi != 1 {
			t.Fatalf("after used_event moved: receiver interrupted %d times, sender %d", rxi, txi)
		}
	}
}

// A driver that negotiated IN_ORDER gets its transmit chains back in the
// order it made them available, refused ones included: a runt after a
// good frame must not be returned first (the in-order driver would take
// the good frame's id as the whole batch and never see the runt's chain
// come back).
func TestTransmitChainsReturnInOrder(t *testing.T) {
	r := newRigOpts(t, 2, vhostusertest.Options{Packed: true})
	if r.fes[0].Features&virtio.Bit(virtio.FInOrder) == 0 {
		t.Fatal("IN_ORDER not negotiated")
	}
	r.fes[1].PostRxBuffers(0, 8, 2048)
	tx := r.fes[0].PTx(0)
	free := tx.FreeDescs()
	hdr := r.fes[0].HdrLen()
	tx.AddTxPacket(hdr, frame(t, mac(1), mac(0), 64), 0)
	tx.AddTxPacket(hdr, make([]byte, 10), 0) // a runt
	r.poll()
	if got := r.fes[0].TxDone(0); got != 2 || tx.FreeDescs() != free {
		t.Fatalf("%d chains back, %d of %d descriptors free", got, tx.FreeDescs(), free)
	}
	if r.drops(0)["frame_too_short"] != 1 || len(r.fes[1].Received(0)) != 1 {
		t.Fatalf("drops %v, want the runt dropped and the frame forwarded", r.drops(0))
	}
}
