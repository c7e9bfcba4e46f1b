package vswitch

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/afxdp"
	"github.com/vswitch/vswitch/switch/offload"
)

// AFXDPOptions configure an AF_XDP port.
type AFXDPOptions struct {
	Device string // interface name
	Queues []int  // NIC queues to use; empty: all
	// Mode forces afxdp.ModeNative or afxdp.ModeGeneric; empty tries
	// native first.
	Mode   string
	Socket afxdp.Options
	Log    *logrus.Entry
}

// AFXDPPort connects a network interface to the switch through one XDP
// socket per NIC queue. Queue i of the port is the device's queue
// Queues[i]; the switch spreads them over its workers like any port's
// queues. Frames the NIC receives enter the same pipeline as guest
// packets; frames sent out are copied into the socket's UMEM.
type AFXDPPort struct {
	sw  *Switch
	dev *afxdp.Device
	qs  []*xskQueue
	log *logrus.Entry

	mtu      atomic.Int64 // the device's MTU, from link events
	zeroCopy bool         // every socket bound in zero-copy mode
	up       atomic.Bool  // link up: receive and transmit
	stopped  atomic.Bool  // the device is gone: the port does nothing
	err      atomic.Pointer[string]
	done     chan struct{}
	once     sync.Once

	// LinkDowns counts link-down events; LinkUps the recoveries.
	LinkDowns atomic.Uint64
	LinkUps   atomic.Uint64
}

// xskQueue is one socket. The receive side (Fill, RX, held) belongs to
// the worker polling the queue; the transmit side (TX, Comp, free) to the
// worker holding txMu, as several workers may send on one queue.
type xskQueue struct {
	s *afxdp.Socket
	// Frames of the batch in flight, given back to the fill ring on
	// Release.
	held  [BatchSize]uint64
	nheld int

	rxPackets atomic.Uint64
	lost      atomic.Uint64 // receive frames the fill ring had no room for
	_         [64]byte      // keep the transmit side off the receive side's lines

	txMu      sync.Mutex
	free      []uint64 // transmit frames not in the TX ring nor in flight
	maxFrame  int      // longest frame the device takes: MTU + Ethernet + VLAN, at most a frame
	txPackets atomic.Uint64
	txErrs    atomic.Uint64
	txPending atomic.Bool // descriptors left in the TX ring after a kick
}

// OpenAFXDPPort gives the device to AF_XDP (afxdp.Open) and watches its
// link. Add the port to sw with AddPort. Close may come before or after
// RemovePort: it stops the port and waits for sw's workers before it
// frees anything.
func OpenAFXDPPort(sw *Switch, o AFXDPOptions) (*AFXDPPort, error) {
	if o.Log == nil {
		o.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	dev, err := afxdp.Open(o.Device, afxdp.DeviceOptions{Queues: o.Queues, Mode: o.Mode, Socket: o.Socket})
	if err != nil {
		return nil, err
	}
	p := &AFXDPPort{sw: sw, dev: dev, log: o.Log.WithField("device", o.Device), done: make(chan struct{})}
	for _, s := range dev.Sockets {
		q := &xskQueue{s: s, maxFrame: min(dev.MTU+EthHdrLen+4, int(s.FrameSize)), free: make([]uint64, 0, s.TxFrames)}
		for i := uint32(0); i < s.TxFrames; i++ {
			q.free = append(q.free, uint64(s.RxFrames+i)*uint64(s.FrameSize))
		}
		p.qs = append(p.qs, q)
	}
	if dev.Replaced != "" {
		p.log.WithField("replaced", dev.Replaced).Warn("replaced an XDP program left on the device (a crashed run's?)")
	}
	if dev.Fallback != "" {
		p.log.WithField("reason", dev.Fallback).Warn("XDP attached in generic mode")
	}
	st := dev.State()
	p.up.Store(st.Up)
	p.mtu.Store(int64(dev.MTU))
	p.zeroCopy = dev.ZeroCopy()
	if err := dev.Watch(p.done, p.linkEvent); err != nil {
		dev.Close()
		return nil, err
	}
	p.log.WithFields(logrus.Fields{"xdp_mode": dev.Mode, "zero_copy": dev.ZeroCopy(), "queues": dev.Queues,
		"mtu": dev.MTU, "link_up": st.Up}).Info("AF_XDP port open")
	return p, nil
}

func (p *AFXDPPort) linkEvent(st afxdp.LinkState) {
	if p.stopped.Load() {
		return
	}
	switch {
	case st.Gone:
		msg := fmt.Sprintf("device %s disappeared; the port is stopped (remove it, or re-add it once the device is back)", p.dev.Name)
		p.err.Store(&msg)
		p.up.Store(false)
		p.stopped.Store(true)
		p.log.Error(msg)
	case !st.Up && p.up.Load():
		p.up.Store(false)
		p.LinkDowns.Add(1)
		p.log.Warn("link down: port down, frames to it are dropped (output_port_down)")
	case st.Up && !p.up.Load():
		p.up.Store(true)
		p.LinkUps.Add(1)
		p.log.Info("link up: port forwarding again")
	}
	if old := int(p.mtu.Load()); st.MTU != 0 && st.MTU != old && !st.Gone {
		p.log.WithFields(logrus.Fields{"old": old, "new": st.MTU}).Info("device MTU changed")
		if max := int(p.qs[0].s.FrameSize) - unix.XDP_PACKET_HEADROOM - EthHdrLen - 4; st.MTU > max {
			p.log.WithField("max", max).Warn("device MTU is more than a UMEM frame holds: longer frames are dropped by the kernel")
		}
		p.mtu.Store(int64(st.MTU))
		for _, xq := range p.qs {
			xq.txMu.Lock()
			xq.maxFrame = min(st.MTU+EthHdrLen+4, int(xq.s.FrameSize))
			xq.txMu.Unlock()
		}
	}
}

// Close stops the port, waits until no worker is inside a batch that may
// have seen it running, then stops watching the link, detaches the XDP
// program and frees the sockets.
func (p *AFXDPPort) Close() error {
	var err error
	p.once.Do(func() {
		p.stopped.Store(true)
		p.sw.Quiesce()
		close(p.done)
		err = p.dev.Close()
	})
	return err
}

// Fault stops the port after a fault in a worker (none is expected: the
// UMEM is ours).
func (p *AFXDPPort) Fault(reason any) {
	msg := fmt.Sprintf("data plane fault: %v", reason)
	p.err.Store(&msg)
	p.stopped.Store(true)
}

// AFXDPStatus is what the API shows of an AF_XDP port.
type AFXDPStatus struct {
	Device    string
	Mode      string // XDP attach mode: native or generic
	Fallback  string // why not native
	ZeroCopy  bool
	Queues    []int
	MTU       int
	Up        bool
	Stopped   bool
	Err       string
	LinkDowns uint64
	LinkUps   uint64
	// Kernel counters summed over the sockets, and transmit errors.
	RxDropped, RxRingFull, RxFillEmpty, TxInvalid, TxErrors uint64
	QueueRx, QueueTx                                        []uint64
}

// Status reports the port's state.
func (p *AFXDPPort) Status() AFXDPStatus {
	st := AFXDPStatus{Device: p.dev.Name, Mode: p.dev.Mode, Fallback: p.dev.Fallback, ZeroCopy: p.zeroCopy,
		Queues: p.dev.Queues, MTU: int(p.mtu.Load()), Up: p.up.Load(), Stopped: p.stopped.Load(),
		LinkDowns: p.LinkDowns.Load(), LinkUps: p.LinkUps.Load()}
	if e := p.err.Load(); e != nil {
		st.Err = *e
	}
	for _, q := range p.qs {
		st.QueueRx = append(st.QueueRx, q.rxPackets.Load())
		st.QueueTx = append(st.QueueTx, q.txPackets.Load())
		st.TxErrors += q.txErrs.Load()
		if st.Stopped {
			continue
		}
		if ks, err := q.s.Stats(); err == nil {
			st.RxDropped += ks.Rx_dropped
			st.RxRingFull += ks.Rx_ring_full
			st.RxFillEmpty += ks.Rx_fill_ring_empty_descs
			st.TxInvalid += ks.Tx_invalid_descs
		}
	}
	return st
}

// QueuePairs implements Port.
func (p *AFXDPPort) QueuePairs() int { return len(p.qs) }

// Receive implements Port: it takes up to a batch of frames from queue
// q's RX ring. Each frame's first HeadLen bytes are copied into the batch;
// the rest stays in the UMEM until Release gives the frames back to the
// fill ring.
func (p *AFXDPPort) Receive(w *Worker, q int, b *Batch, c *PortCounters) int {
	if q >= len(p.qs) || p.stopped.Load() {
		return 0
	}
	xq := p.qs[q]
	if xq.txPending.Load() && xq.txMu.TryLock() {
		xq.kick()
		xq.txMu.Unlock()
	}
	if xq.nheld > 0 { // a batch that never got to Release (a fault)
		xq.refill()
	}
	s := xq.s
	n := s.RX.Peek(uint32(BatchSize - b.N))
	if n == 0 {
		if s.Fill.NeedWakeup() {
			s.WakeRX()
		}
		return b.N
	}
	umem := s.UMEM
	var runts, bytes uint64
	first := b.N
	for i := uint32(0); i < n; i++ {
		d := s.RX.Get(i)
		xq.held[xq.nheld&(BatchSize-1)] = d.Addr
		xq.nheld++
		end := d.Addr + uint64(d.Len)
		if d.Len < EthHdrLen || end > uint64(len(umem)) {
			runts++
			continue
		}
		frame := umem[d.Addr:end]
		pkt := &b.Pkts[b.N]
		pkt.Len = int(d.Len)
		pkt.Off = HeadRoom
		pkt.NHead = copy(pkt.Head[HeadRoom:], frame)
		pkt.NSegs = 0
		pkt.Offload = offload.Meta{} // nothing tells an XDP socket of partial checksums
		if pkt.Len > HeadLen {
			pkt.Segs[0] = frame[HeadLen:]
			pkt.NSegs = 1
		}
		bytes += uint64(d.Len)
		b.N++
	}
	s.RX.Release(n)
	if runts != 0 {
		c.Drops[DropRunt].Add(runts)
	}
	got := b.N - first
	if got == 0 {
		xq.refill()
		return b.N
	}
	xq.rxPackets.Add(uint64(got))
	c.RxPackets.Add(uint64(got))
	c.RxBytes.Add(bytes)
	return b.N
}

// refill gives the held frames back to the fill ring, which always has
// room for every receive frame (afxdp sizes it so).
func (xq *xskQueue) refill() {
	s := xq.s
	k := s.Fill.Reserve(uint32(xq.nheld))
	if int(k) < xq.nheld {
		xq.lost.Add(uint64(xq.nheld) - uint64(k)) // cannot happen; counted if it does
	}
	for i := uint32(0); i < k; i++ {
		s.Fill.Set(i, s.FrameBase(xq.held[i&(BatchSize-1)]))
	}
	s.Fill.Submit(k)
	if s.Fill.NeedWakeup() {
		s.WakeRX()
	}
	xq.nheld = 0
}

// kick makes the kernel send what the TX ring holds. Copy mode sends a
// budget per call and says when more remain; whatever is still there
// after a few calls is left for the queue's next poll (txPending).
func (xq *xskQueue) kick() {
	s := xq.s
	if !s.TX.NeedWakeup() {
		xq.txPending.Store(false)
		return
	}
	for try := 0; try < 4; try++ {
		more, e := s.KickTX()
		if e != 0 {
			xq.txErrs.Add(1)
			break
		}
		if !more {
			xq.txPending.Store(false)
			return
		}
	}
	xq.txPending.Store(true)
}

// Release implements Port: the batch's frames go back to the fill ring.
func (p *AFXDPPort) Release(w *Worker, b *Batch) {
	if b.InQueue < len(p.qs) {
		if xq := p.qs[b.InQueue]; xq.nheld > 0 {
			xq.refill()
		}
	}
}

// Transmit implements Port: each frame is copied from the sender's
// buffers into a free UMEM frame and queued on the TX ring of the
// worker's queue; one sendto per batch when the kernel asks for it.
func (p *AFXDPPort) Transmit(w *Worker, b *Batch, sel []uint16, c *PortCounters) {
	if !p.up.Load() || p.stopped.Load() || len(p.qs) == 0 {
		c.Drops[DropPortDown].Add(uint64(len(sel)))
		return
	}
	xq := p.qs[w.id%len(p.qs)]
	xq.txMu.Lock()
	s := xq.s
	if n := s.Comp.Peek(s.Comp.Len()); n > 0 {
		for i := uint32(0); i < n; i++ {
			xq.free = append(xq.free, s.Comp.Get(i))
		}
		s.Comp.Release(n)
	}
	// A NIC gets complete frames: TCP segments a guest left to TSO are
	// cut here, each to its own frame.
	frames := 0
	for _, i := range sel {
		frames += b.Pkts[i].Offload.Segments(b.Pkts[i].Len)
	}
	room := int(s.TX.Reserve(uint32(min(frames, len(xq.free)))))
	umem := s.UMEM
	fsz := uint64(s.FrameSize)
	var j, tooLong int
	var bytes uint64
	for k, i := range sel {
		pkt := &b.Pkts[i]
		if pkt.Offload.SegLen(pkt.Len) > xq.maxFrame {
			tooLong++
			continue
		}
		if pkt.Offload.GSO != offload.GSONone {
			j, bytes = xq.putSegments(pkt, j, room, bytes, c)
			continue
		}
		if j == room {
			c.Drops[DropNoTxFrame].Add(uint64(len(sel) - k))
			break
		}
		offload.Complete(&pkt.Offload, pkt.HeadBytes(), pkt.Segs[:pkt.NSegs], pkt.Len)
		addr := xq.free[len(xq.free)-1]
		xq.free = xq.free[:len(xq.free)-1]
		dst := umem[addr : addr+fsz]
		off := copy(dst, pkt.HeadBytes())
		for sg := 0; sg < pkt.NSegs; sg++ {
			off += copy(dst[off:], pkt.Segs[sg])
		}
		s.TX.Set(uint32(j), addr, uint32(off))
		bytes += uint64(off)
		j++
	}
	if j > 0 {
		s.TX.Submit(uint32(j))
	}
	if j > 0 || xq.txPending.Load() {
		xq.kick()
	}
	xq.txMu.Unlock()
	if tooLong != 0 {
		c.Drops[DropFrameTooLarge].Add(uint64(tooLong))
	}
	if j != 0 {
		xq.txPackets.Add(uint64(j))
		c.TxPackets.Add(uint64(j))
		c.TxBytes.Add(bytes)
	}
}

// putSegments cuts a GSO frame into TX frames j, j+1, ... (up to room),
// each written straight into its UMEM frame, and returns the next j and
// the bytes so far. Segments that find no frame are counted.
func (xq *xskQueue) putSegments(pkt *Packet, j, room int, bytes uint64, c *PortCounters) (int, uint64) {
	s := xq.s
	m := &pkt.Offload
	head, segs := pkt.HeadBytes(), pkt.Segs[:pkt.NSegs]
	hl := int(m.HdrLen)
	n := m.Segments(pkt.Len)
	for i := 0; i < n; i++ {
		if j == room {
			c.Drops[DropNoTxFrame].Add(uint64(n - i))
			break
		}
		addr := xq.free[len(xq.free)-1]
		xq.free = xq.free[:len(xq.free)-1]
		dst := s.UMEM[addr : addr+uint64(s.FrameSize)]
		m.SegHeader(dst[:hl], head, segs, pkt.Len, i)
		off, pl := m.SegPayload(pkt.Len, i)
		offload.CopyRange(dst[hl:hl+pl], head, segs, off)
		s.TX.Set(uint32(j), addr, uint32(hl+pl))
		bytes += uint64(hl + pl)
		j++
	}
	return j, bytes
}
