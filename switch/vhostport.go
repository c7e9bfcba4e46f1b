package vswitch

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"

	"github.com/vswitch/vswitch/internal/hw"
	"github.com/vswitch/vswitch/switch/offload"
	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/virtio"
)

// VhostPort connects a vhost-user device to the switch. The device's
// control goroutine publishes ring state (vhostuser.Backend); workers move
// packets (Port).
type VhostPort struct {
	sw     *Switch
	pairs  int
	state  atomic.Pointer[vhostuser.State]
	rxLock [vhostuser.MaxQueuePairs]sync.Mutex // guest receive queues may be fed by several workers
	rarp   atomic.Uint64                       // pending RARP announcement: mac | 1<<63
	// Per queue pair: frames taken from the guest's transmit queue and put
	// into its receive queue, counted once per batch. Padded: different
	// workers own different queues.
	qrx, qtx [vhostuser.MaxQueuePairs]queueCounter
	// OnFault is called (from a worker) when touching the guest's memory
	// faulted; the owner drops the connection so the guest starts afresh.
	OnFault func(reason any)
}

// queueCounter is a counter alone on its cache line.
type queueCounter struct {
	atomic.Uint64
	_ [56]byte
}

// QueueCounts returns, per queue pair, the frames received from the
// guest's transmit queue and sent into its receive queue.
func (p *VhostPort) QueueCounts() (rx, tx []uint64) {
	rx, tx = make([]uint64, p.pairs), make([]uint64, p.pairs)
	for i := range rx {
		rx[i], tx[i] = p.qrx[i].Load(), p.qtx[i].Load()
	}
	return rx, tx
}

// NewVhostPort returns a port with up to pairs queue pairs.
func NewVhostPort(sw *Switch, pairs int) *VhostPort {
	if pairs <= 0 {
		pairs = 1
	}
	return &VhostPort{sw: sw, pairs: pairs}
}

// Publish implements vhostuser.Backend.
func (p *VhostPort) Publish(st *vhostuser.State) {
	p.state.Store(st)
	p.sw.Quiesce()
}

// SendRARP implements vhostuser.Backend: the next poll of queue 0 sends a
// RARP from mac into the bridge, as DPDK's vhost library does after a
// migration, so the FDB and physical switches learn where the guest is.
func (p *VhostPort) SendRARP(mac net.HardwareAddr) {
	if len(mac) == 6 {
		p.rarp.Store(MAC48(mac) | 1<<63)
	}
}

// Fault stops the port after a memory fault in its guest memory.
func (p *VhostPort) Fault(reason any) {
	p.state.Store(nil)
	if p.OnFault != nil {
		go p.OnFault(reason)
	}
}

// Running says whether the guest's rings run.
func (p *VhostPort) Running() bool { return p.state.Load().Running() }

// QueuePairs implements Port.
func (p *VhostPort) QueuePairs() int { return p.pairs }

// Receive implements Port: it dequeues the guest's transmit queue q,
// copying each frame's first HeadLen bytes and leaving the rest in place.
func (p *VhostPort) Receive(w *Worker, q int, b *Batch, c *PortCounters) int {
	st := p.state.Load()
	if st == nil || q >= len(st.Tx) {
		return 0
	}
	if q == 0 && p.rarp.Load() != 0 {
		p.injectRARP(b, c)
	}
	first := b.N
	var n int
	if st.Packed {
		n = p.receivePacked(st, st.PTx[q], b, c)
	} else {
		n = p.receiveSplit(st, st.Tx[q], b, c)
	}
	if n > first {
		p.qrx[q].Add(uint64(n - first))
	}
	if n == 0 || copiedWhole(b, first) {
		p.Release(w, b) // nothing to forward, or nothing left in the chains
	}
	return n
}

// copiedWhole reports whether every frame from first on was copied whole
// into its head (any small-frame batch). Their chains can then go back to
// the guest at once, while the ring's lines are still in this core's
// cache, instead of after the forward, when the guest's polling may have
// pulled them away.
func copiedWhole(b *Batch, first int) bool {
	for i := first; i < b.N; i++ {
		if b.Pkts[i].NSegs != 0 {
			return false
		}
	}
	return true
}

// receiveSplit dequeues a split transmit queue (DPDK virtio_dev_tx_split).
func (p *VhostPort) receiveSplit(st *vhostuser.State, txq *virtio.SplitQueue, b *Batch, c *PortCounters) int {
	if txq == nil {
		return b.N
	}
	b.srcQ, b.nret = txq, 0
	avail, err := txq.Avail()
	if err != nil {
		p.stopCorrupt(st, c)
		return 0
	}
	if avail > BatchSize-b.N {
		avail = BatchSize - b.N
	}
	hdrLen := st.HdrLen
	snd := senderOf(st)
	skip := hdrLen // bytes prefetchHead leaves out: the header unless read
	if snd.on {
		skip = 0
	}
	var drops dropTally
	// Pass 1 walks the chains, prefetching each frame's head; finishReceive
	// then copies the heads out.
	first := b.N
	sinkDesc += txq.Prefetch(avail)
	txq.PrefetchUsed(avail) // Release returns these chains
	for k := 0; k < avail; k++ {
		pkt := &b.Pkts[b.N]
		head, nseg, total, cerr := txq.Next(&pkt.Segs, false)
		if cerr != virtio.ChainBadHead {
			b.ret[b.nret] = head
			b.nret++
		}
		if cerr != virtio.ChainOK {
			drops.add(DropReason(cerr), 1)
			continue
		}
		frame := total - hdrLen
		if frame < EthHdrLen {
			drops.add(DropRunt, 1)
			continue
		}
		pkt.Len, pkt.NSegs = frame, nseg
		prefetchHead(pkt, skip, hdrLen)
		b.N++
	}
	finishReceive(b, first, hdrLen, snd, &drops, c)
	return b.N
}

// receivePacked is receiveSplit for a packed ring (DPDK
// virtio_dev_tx_packed): the same steps over the other engine, kept as a
// copy so no call per packet goes through an interface.
func (p *VhostPort) receivePacked(st *vhostuser.State, txq *virtio.PackedQueue, b *Batch, c *PortCounters) int {
	if txq == nil {
		return b.N
	}
	b.srcPQ, b.nret = txq, 0
	avail := txq.ChainsUpTo(BatchSize - b.N)
	txq.PrefetchW(avail)
	hdrLen := st.HdrLen
	snd := senderOf(st)
	skip := hdrLen // bytes prefetchHead leaves out: the header unless read
	if snd.on {
		skip = 0
	}
	var drops dropTally
	// Pass 1 walks the chains, prefetching each frame's head; finishReceive
	// then copies the heads out.
	first := b.N
	for k := 0; k < avail; k++ {
		pkt := &b.Pkts[b.N]
		head, nseg, total, cerr := txq.Next(&pkt.Segs, false)
		if cerr != virtio.ChainBadHead {
			b.ret[b.nret] = head
			b.nret++
		}
		if cerr != virtio.ChainOK {
			drops.add(DropReason(cerr), 1)
			continue
		}
		frame := total - hdrLen
		if frame < EthHdrLen {
			drops.add(DropRunt, 1)
			continue
		}
		pkt.Len, pkt.NSegs = frame, nseg
		prefetchHead(pkt, skip, hdrLen)
		b.N++
	}
	finishReceive(b, first, hdrLen, snd, &drops, c)
	return b.N
}

// finishReceive is what receiveSplit and receivePacked share after their
// chain walks: touch every frame's first bytes in a loop that does nothing
// else, so as many misses as the core can hold are in flight at once, then
// copy the virtio-net headers and the heads out, check the offloads the
// headers ask for, and count. Frames with a header that does not fit
// their frame leave the batch (their chains are in b.ret already).
func finishReceive(b *Batch, first, hdrLen int, snd sender, drops *dropTally, c *PortCounters) {
	var bytes uint64
	var refused [BatchSize]bool
	nbad := 0
	for i := first; i < b.N; i++ {
		pkt := &b.Pkts[i]
		// The virtio-net header is read only from a sender that may ask
		// for offloads: it often has a cache line of its own, which the
		// guest's CPU last wrote.
		var vh [12]byte
		pkt.Off = HeadRoom
		want := min(pkt.Len, HeadLen)
		if s0 := pkt.Segs[0]; len(s0) >= hdrLen+want {
			// The usual chain: header and head in the first buffer.
			if snd.on {
				if hdrLen == len(vh) {
					vh = [12]byte(s0)
				} else {
					copy(vh[:hdrLen], s0)
				}
			}
			pkt.NHead = copy(pkt.Head[HeadRoom:HeadRoom+want], s0[hdrLen:])
			pkt.trim(hdrLen + want)
		} else {
			if snd.on {
				pkt.gather(vh[:hdrLen])
			} else {
				pkt.trim(hdrLen)
			}
			pkt.NHead = pkt.gather(pkt.Head[HeadRoom : HeadRoom+want])
		}
		pkt.Offload = offload.Meta{}
		if snd.on && vh[0]|vh[1] != 0 { // flags or gso_type: a request
			m, ok := offload.Check(offload.DecodeHdr(vh[:]), snd.s, pkt.HeadBytes(), pkt.Len)
			if !ok {
				refused[i] = true
				nbad++
				continue
			}
			pkt.Offload = m
		}
		bytes += uint64(pkt.Len)
	}
	if nbad > 0 {
		drops.add(DropBadOffload, uint64(nbad))
		b.N = compact(b, first, &refused)
	}
	drops.flush(c)
	if b.N > first {
		c.RxPackets.Add(uint64(b.N - first))
		c.RxBytes.Add(bytes)
	}
}

// sinkDesc keeps the descriptor touch loads from being optimized away.
var sinkDesc uint16

// prefetchHead asks for the cache lines of the first hdrLen+HeadLen bytes
// of pkt's chain that finishReceive reads, from byte skip on, so the
// misses of a whole batch overlap instead of stalling gather one by one.
func prefetchHead(pkt *Packet, skip, hdrLen int) {
	s0 := pkt.Segs[0]
	if end := min(len(s0), hdrLen+HeadLen); skip < end {
		hw.Prefetch(&s0[skip], end-skip)
	}
}

// trim drops the first n bytes of the segments.
func (pkt *Packet) trim(n int) {
	i := 0
	for n > 0 && i < pkt.NSegs {
		if len(pkt.Segs[i]) > n {
			pkt.Segs[i] = pkt.Segs[i][n:]
			break
		}
		n -= len(pkt.Segs[i])
		i++
	}
	if i == pkt.NSegs {
		pkt.NSegs = 0 // all used up: nothing to move
	} else if i > 0 {
		copy(pkt.Segs[:], pkt.Segs[i:pkt.NSegs])
		pkt.NSegs -= i
	}
}

// gather copies the first len(dst) bytes of the segments into dst and
// drops them from the segments.
func (pkt *Packet) gather(dst []byte) int {
	n := 0
	for n < len(dst) && pkt.NSegs > 0 {
		c := copy(dst[n:], pkt.Segs[0])
		n += c
		if c < len(pkt.Segs[0]) {
			pkt.Segs[0] = pkt.Segs[0][c:]
			break
		}
		pkt.trim(c)
	}
	return n
}

func (p *VhostPort) injectRARP(b *Batch, c *PortCounters) {
	v := p.rarp.Swap(0)
	if v == 0 {
		return
	}
	pkt := &b.Pkts[b.N]
	mac := v &^ (1 << 63)
	n := buildRARP(pkt.Head[HeadRoom:], mac)
	pkt.Off = HeadRoom
	pkt.Len, pkt.NHead, pkt.NSegs = n, n, 0
	pkt.Offload = offload.Meta{}
	b.N++
	c.RxPackets.Add(1)
	c.RxBytes.Add(uint64(n))
}

// buildRARP writes a RARP "request reverse" frame from mac, padded to 60 bytes.
func buildRARP(b []byte, mac uint64) int {
	clear(b[:60])
	for i := 0; i < 6; i++ {
		b[i] = 0xff
		m := byte(mac >> (40 - 8*i))
		b[6+i] = m  // source
		b[22+i] = m // sender hardware address
		b[32+i] = m // target hardware address
	}
	b[12], b[13] = 0x80, 0x35 // ETH_P_RARP
	b[14], b[15] = 0, 1       // hardware type Ethernet
	b[16], b[17] = 0x08, 0x00 // protocol IPv4
	b[18], b[19] = 6, 4
	b[20], b[21] = 0, 3 // request reverse
	return 60
}

// Release implements Port: the frames were copied, the guest gets its
// transmit buffers back, in the order it made them available, with one
// used-index update.
func (p *VhostPort) Release(w *Worker, b *Batch) {
	// A transmit queue has one worker: its interrupt check can wait.
	if q := b.srcQ; q != nil {
		for _, d := range b.ret[:b.nret] {
			q.PutUsed(d, 0)
		}
		w.publishSplit(q, true)
		b.srcQ = nil
	}
	if q := b.srcPQ; q != nil {
		for _, d := range b.ret[:b.nret] {
			q.PutUsed(d, 0)
		}
		w.publishPacked(q, true)
		b.srcPQ = nil
	}
	b.nret = 0
}

// Transmit implements Port: each frame is written straight from the
// sender's buffers into the guest's receive buffers.
func (p *VhostPort) Transmit(w *Worker, b *Batch, sel []uint16, c *PortCounters) {
	st := p.state.Load()
	if st != nil && st.Packed {
		p.transmitPacked(w, st, b, sel, c)
		return
	}
	p.transmitSplit(w, st, b, sel, c)
}

// transmitSplit enqueues into a split receive queue (DPDK
// virtio_dev_rx_split).
func (p *VhostPort) transmitSplit(w *Worker, st *vhostuser.State, b *Batch, sel []uint16, c *PortCounters) {
	qi, rxq := pickRx(st, w.id)
	if rxq == nil {
		c.Drops[DropPortDown].Add(uint64(len(sel)))
		return
	}
	lk := &p.rxLock[qi]
	w.lockRx(lk)
	if _, err := rxq.Avail(); err != nil {
		w.unlockRx(lk)
		c.Drops[DropAvailCorrupt].Add(uint64(len(sel)))
		p.stopCorrupt(st, c)
		return
	}
	hdrLen := st.HdrLen
	mrg := st.Features&virtio.Bit(virtio.NetFMrgRxbuf) != 0
	t := newTxTally(st)
	sinkDesc += rxq.Prefetch(min(len(sel), rxq.Pending()))
	rxq.PrefetchUsed(min(len(sel), rxq.Pending()))
	for k := 0; k < len(sel); {
		var more bool
		k, more = w.takeChains(b, sel, k, rxq, hdrLen, mrg, &t)
		w.copyOut(b, hdrLen, &t)
		for i := range w.dst[:w.nd] {
			rxq.PutUsed(w.dst[i].head, w.dst[i].written)
		}
		w.nd = 0
		if !more {
			break
		}
	}
	w.publishSplit(rxq, w.solo)
	w.unlockRx(lk)
	t.count(c)
	if t.sent != 0 {
		p.qtx[qi].Add(t.sent)
	}
}

// transmitPacked is transmitSplit for a packed ring (DPDK
// virtio_dev_rx_packed), a copy over the other engine.
func (p *VhostPort) transmitPacked(w *Worker, st *vhostuser.State, b *Batch, sel []uint16, c *PortCounters) {
	qi, rxq := pickPRx(st, w.id)
	if rxq == nil {
		c.Drops[DropPortDown].Add(uint64(len(sel)))
		return
	}
	lk := &p.rxLock[qi]
	w.lockRx(lk)
	rxq.PrefetchW(rxq.AvailUpTo(len(sel)))
	hdrLen := st.HdrLen
	mrg := st.Features&virtio.Bit(virtio.NetFMrgRxbuf) != 0
	t := newTxTally(st)
	for k := 0; k < len(sel); {
		var more bool
		k, more = w.takeChainsPacked(b, sel, k, rxq, hdrLen, mrg, &t)
		w.copyOut(b, hdrLen, &t)
		for i := range w.dst[:w.nd] {
			rxq.PutUsed(w.dst[i].head, w.dst[i].written)
		}
		w.nd = 0
		if !more {
			break
		}
	}
	w.publishPacked(rxq, w.solo)
	w.unlockRx(lk)
	t.count(c)
	if t.sent != 0 {
		p.qtx[qi].Add(t.sent)
	}
}

// txTally counts one Transmit call.
type txTally struct {
	sent, bytes, noBuf, small, bad, tooBig uint64
	maxLen                                 int // largest frame the guest's MTU allows
	caps                                   offload.Caps
}

func newTxTally(st *vhostuser.State) txTally {
	t := txTally{maxLen: 1 << 30, caps: receiverCaps(st.Features)}
	if st.MTU > 0 {
		t.maxLen = st.MTU + EthHdrLen + 4 // room for one VLAN tag
	}
	return t
}

// count adds the call's totals to the port's counters.
func (t *txTally) count(c *PortCounters) {
	if t.sent != 0 {
		c.TxPackets.Add(t.sent)
		c.TxBytes.Add(t.bytes)
	}
	if t.noBuf != 0 {
		c.Drops[DropNoRxBuffer].Add(t.noBuf)
	}
	if t.small != 0 {
		c.Drops[DropRxBufferTooSmall].Add(t.small)
	}
	if t.bad != 0 {
		c.Drops[virtio.ChainBadAddr].Add(t.bad)
	}
	if t.tooBig != 0 {
		c.Drops[DropFrameTooLarge].Add(t.tooBig)
	}
}

// takeChains is pass 1 of a transmit into a guest: from sel[k] on, it
// takes receive chains for each frame (several with MRG_RXBUF, until the
// frame fits) and claims them (claimFrame). It stops when the worker's chain array is full
// (more = true: copy out, then call again from the returned k) or when the
// guest has no buffers left.
func (w *Worker) takeChains(b *Batch, sel []uint16, k int, rxq *virtio.SplitQueue, hdrLen int, mrg bool, t *txTally) (next int, more bool) {
	w.nout, w.nd = 0, 0
	for ; k < len(sel); k++ {
		pkt := &b.Pkts[sel[k]]
		nf, pass := t.plan(pkt)
	frames: // one frame, or the segments of a frame segmented in software
		for s := w.resume; s < nf; s++ {
			flen := pkt.Len
			if !pass {
				flen = segFrameLen(pkt, s)
			}
			need := hdrLen + flen
			first, got := w.nd, 0
			if w.nout == len(w.out) {
				w.resume = s
				return k, true
			}
			for got < need {
				if rxq.Pending() == 0 {
					w.giveBack(rxq, first)
					t.noBuf += uint64(len(sel) - k)
					w.resume = 0
					return len(sel), false
				}
				if w.nd == len(w.dst) {
					w.giveBack(rxq, first)
					w.resume = s
					if first == 0 { // one frame needs more chains than we hold
						t.small++
						k++
						w.resume = 0
					}
					return k, k < len(sel)
				}
				d := &w.dst[w.nd]
				head, nseg, room, cerr := rxq.Next(&d.segs, true)
				if cerr != virtio.ChainOK {
					t.bad++
					if cerr != virtio.ChainBadHead {
						rxq.PutUsed(head, 0)
					}
					continue
				}
				if !mrg && room < need {
					rxq.Unpop()
					t.small++
					break frames // refused: the rest of its segments too
				}
				d.head, d.nseg, d.room = head, nseg, room
				if nseg == 0 { // all zero-length: no stale buffer of an earlier chain
					d.segs[0] = nil
				}
				if nseg > 0 && len(d.segs[0]) > 0 { // ask for the lines the copy will write
					hw.PrefetchW(&d.segs[0][0], min(len(d.segs[0]), need-got))
				}
				w.nd++
				got += room
			}
			w.claimFrame(sel[k], s, pass, first)
		}
		w.resume = 0
	}
	return k, false
}

// giveBack returns the chains taken since index first to the guest's ring
// unused (a frame that could not be placed whole).
func (w *Worker) giveBack(rxq *virtio.SplitQueue, first int) {
	for ; w.nd > first; w.nd-- {
		rxq.Unpop()
	}
}

// claimFrame records that frame pkt (index i of the batch; segment seg of
// it unless whole) goes into the chains taken since first. It stores
// nothing into them: takeChains asked for their lines (PrefetchW), and a
// store to a line still on its way from the guest's CPU would hold up every
// later store of the walk; pass 2 writes into lines that have arrived.
func (w *Worker) claimFrame(i uint16, seg int, whole bool, first int) {
	o := &w.out[w.nout]
	w.nout++
	o.pkt, o.first, o.n = i, uint16(first), uint16(w.nd-first)
	o.seg, o.whole = int32(seg), whole
}

// copyOut is pass 2: each frame is copied into its chains and every chain
// records the bytes written into it; the caller returns w.dst[:w.nd] to the
// guest with those lengths.
func (w *Worker) copyOut(b *Batch, hdrLen int, t *txTally) {
	for k := 0; k < w.nout; k++ {
		o := &w.out[k]
		pkt := &b.Pkts[o.pkt]
		chains := w.dst[o.first : o.first+o.n]
		var flen int
		// A whole frame's header passes its offload request on; a
		// segment's header is plain.
		s0 := chains[0].segs[0]
		hdrDone := len(s0) >= hdrLen
		if hdrDone {
			putNetHdr(s0, hdrLen, int(o.n), &pkt.Offload, o.whole)
		}
		if o.whole && hdrDone && pkt.NSegs == 0 && len(s0) >= hdrLen+pkt.NHead {
			copy(s0[hdrLen:], pkt.HeadBytes()) // the usual small frame: one copy
			flen = pkt.Len
		} else if o.whole {
			scatter(chains, hdrLen, hdrDone, pkt, true, pkt.HeadBytes(), pkt.NHead, pkt.Len-pkt.NHead)
			flen = pkt.Len
		} else {
			hl := int(pkt.Offload.HdrLen)
			pkt.Offload.SegHeader(w.segHdr[:hl], pkt.HeadBytes(), pkt.Segs[:pkt.NSegs], pkt.Len, int(o.seg))
			off, n := pkt.Offload.SegPayload(pkt.Len, int(o.seg))
			scatter(chains, hdrLen, hdrDone, pkt, false, w.segHdr[:hl], off, n)
			flen = hl + n
		}
		left := hdrLen + flen
		for c := range chains {
			chains[c].written = uint32(min(chains[c].room, left))
			left -= int(chains[c].written)
		}
		t.sent++
		t.bytes += uint64(flen)
	}
	w.nout = 0
}

// takeChainsPacked is takeChains for a packed ring, a copy over the other
// engine so its per-chain calls stay direct.
func (w *Worker) takeChainsPacked(b *Batch, sel []uint16, k int, rxq *virtio.PackedQueue, hdrLen int, mrg bool, t *txTally) (next int, more bool) {
	w.nout, w.nd = 0, 0
	for ; k < len(sel); k++ {
		pkt := &b.Pkts[sel[k]]
		nf, pass := t.plan(pkt)
	frames: // one frame, or the segments of a frame segmented in software
		for s := w.resume; s < nf; s++ {
			flen := pkt.Len
			if !pass {
				flen = segFrameLen(pkt, s)
			}
			need := hdrLen + flen
			first, got := w.nd, 0
			if w.nout == len(w.out) {
				w.resume = s
				return k, true
			}
			for got < need {
				if rxq.Pending() == 0 {
					w.giveBackPacked(rxq, first)
					t.noBuf += uint64(len(sel) - k)
					w.resume = 0
					return len(sel), false
				}
				if w.nd == len(w.dst) {
					w.giveBackPacked(rxq, first)
					w.resume = s
					if first == 0 { // one frame needs more chains than we hold
						t.small++
						k++
						w.resume = 0
					}
					return k, k < len(sel)
				}
				d := &w.dst[w.nd]
				head, nseg, room, cerr := rxq.Next(&d.segs, true)
				if cerr != virtio.ChainOK {
					t.bad++
					if cerr != virtio.ChainBadHead {
						rxq.PutUsed(head, 0)
					}
					continue
				}
				if !mrg && room < need {
					rxq.Unpop()
					t.small++
					break frames // refused: the rest of its segments too
				}
				d.head, d.nseg, d.room = head, nseg, room
				if nseg == 0 { // all zero-length: no stale buffer of an earlier chain
					d.segs[0] = nil
				}
				if nseg > 0 && len(d.segs[0]) > 0 { // ask for the lines the copy will write
					hw.PrefetchW(&d.segs[0][0], min(len(d.segs[0]), need-got))
				}
				w.nd++
				got += room
			}
			w.claimFrame(sel[k], s, pass, first)
		}
		w.resume = 0
	}
	return k, false
}

// giveBackPacked is giveBack for a packed ring.
func (w *Worker) giveBackPacked(rxq *virtio.PackedQueue, first int) {
	for ; w.nd > first; w.nd-- {
		rxq.Unpop()
	}
}

// pickPRx is pickRx for packed rings.
func pickPRx(st *vhostuser.State, wid int) (int, *virtio.PackedQueue) {
	if st == nil {
		return 0, nil
	}
	n := len(st.PRx)
	for k := 0; k < n; k++ {
		i := (wid + k) % n
		if st.PRx[i] != nil {
			return i, st.PRx[i]
		}
	}
	return 0, nil
}

// pickRx picks the guest receive queue a worker feeds.
func pickRx(st *vhostuser.State, wid int) (int, *virtio.SplitQueue) {
	if st == nil {
		return 0, nil
	}
	n := len(st.Rx)
	for k := 0; k < n; k++ {
		i := (wid + k) % n
		if st.Rx[i] != nil {
			return i, st.Rx[i]
		}
	}
	return 0, nil
}

// putNetHdr writes a virtio-net header into b: m's offload request when
// pass is set, else none, and numBuffers (the field exists in the 12-byte
// header).
func putNetHdr(b []byte, hdrLen, numBuffers int, m *offload.Meta, pass bool) {
	offload.PutHdr(b, m, pass)
	if hdrLen == 12 {
		binary.LittleEndian.PutUint16(b[10:12], uint16(numBuffers))
	}
}

// scatter writes the virtio-net header (unless hdrDone), then head, then
// bytes [off, off+n) of pkt's frame into the receive chains, which hold
// all of it together. A whole frame is its Head and the rest; a segment
// made in software is its own headers and a slice of the payload.
func scatter(chains []rxChain, hdrLen int, hdrDone bool, pkt *Packet, pass bool, head []byte, off, n int) {
	ci, di, co := 0, 0, 0
	put := func(src []byte) {
		for len(src) > 0 {
			seg := chains[ci].segs[di]
			c := copy(seg[co:], src)
			src = src[c:]
			co += c
			if co == len(seg) {
				co = 0
				if di++; di == chains[ci].nseg {
					ci, di = ci+1, 0
				}
			}
		}
	}
	if hdrDone { // copyOut wrote it into the first segment: step over it
		co = hdrLen
		if co == len(chains[0].segs[0]) {
			co = 0
			if di++; di == chains[0].nseg {
				ci, di = 1, 0
			}
		}
	} else {
		var hdr [12]byte
		putNetHdr(hdr[:], hdrLen, len(chains), &pkt.Offload, pass)
		put(hdr[:hdrLen])
	}
	put(head)
	if off < pkt.NHead {
		c := min(n, pkt.NHead-off)
		put(pkt.HeadBytes()[off : off+c])
		off, n = pkt.NHead, n-c
	}
	off -= pkt.NHead
	for s := 0; s < pkt.NSegs && n > 0; s++ {
		seg := pkt.Segs[s]
		if off >= len(seg) {
			off -= len(seg)
			continue
		}
		seg = seg[off:]
		off = 0
		c := min(n, len(seg))
		put(seg[:c])
		n -= c
	}
}

// stopCorrupt stops the port after the guest broke a ring; the front-end
// must reset the device to use it again.
func (p *VhostPort) stopCorrupt(st *vhostuser.State, c *PortCounters) {
	if p.state.CompareAndSwap(st, nil) {
		c.Drops[DropAvailCorrupt].Add(1)
		if p.OnFault != nil {
			go p.OnFault("guest ring corrupt: avail index moved by more than the queue size")
		}
	}
}
