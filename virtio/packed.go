package virtio

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/hw"
)

// Packed ring flags (virtio 1.2, 2.8).
const (
	DescFAvail = 1 << 7
	DescFUsed  = 1 << 15

	// Event suppression flags (struct pvirtq_event_suppress).
	EventFlagsEnable  = 0
	EventFlagsDisable = 1
	EventFlagsDesc    = 2

	// PackedWrapBit carries the wrap counter in a vring base (bit 15), as
	// QEMU and DPDK encode SET/GET_VRING_BASE for packed rings.
	PackedWrapBit = 1 << 15
)

// pdesc is struct pvirtq_desc. id and flags share one aligned 32-bit word
// (idFlags) so both are read and published with one atomic access.
type pdesc struct {
	addr    uint64
	len     uint32
	idFlags uint32 // id (low 16) | flags (high 16)
}

// PackedConfig describes one packed ring as vhost-user sets it up.
type PackedConfig struct {
	Size      uint16
	Desc      uint64 // frontend virtual addresses: descriptor ring,
	Driver    uint64 // driver event suppression area ("avail"),
	Device    uint64 // device event suppression area ("used")
	LastAvail uint16 // SET_VRING_BASE: index | wrap counter << 15
	LastUsed  uint16 // the same for the used side (QEMU sends it); 0: as LastAvail
	EventIdx  bool
	InOrder   bool // VIRTIO_F_IN_ORDER: the driver takes one used element for a batch
	CallFd    int
}

type packedUsed struct {
	id  uint16
	len uint32
}

// PackedQueue is the engine for one packed virtqueue, with the same method
// set as SplitQueue so the data plane picks one per burst. Driven by one
// goroutine at a time.
type PackedQueue struct {
	size      uint16
	desc      []pdesc
	driverEvt *uint32 // off_wrap (low 16) | flags (high 16), written by the driver
	deviceEvt *uint32 // ours: we ask the driver not to kick

	mem      *Memory
	eventIdx bool
	inOrder  bool
	callFd   int

	lastAvail uint16 // next descriptor slot to read
	availWrap bool
	usedIdx   uint16 // next descriptor slot to write a used element at
	usedWrap  bool

	prevAvail uint16 // where the chain Next returned last started (Unpop)
	prevWrap  bool
	counts    []uint16     // descriptors per chain, by buffer id
	shadow    []packedUsed // used elements of this batch
	nshadow   int
	callBuf   [8]byte

	notified      uint16 // usedIdx as of the last interrupt check
	unnotified    uint32 // descriptors used since then
	notifyPending bool   // published elements wait for Notify
}

// NewPackedQueue maps the ring areas of cfg in mem.
func NewPackedQueue(mem *Memory, cfg PackedConfig) (*PackedQueue, error) {
	n := uint64(cfg.Size)
	if n == 0 || n > MaxQueueSize {
		return nil, fmt.Errorf("packed queue size %d not in 1..%d", n, MaxQueueSize)
	}
	if cfg.LastUsed == 0 {
		cfg.LastUsed = cfg.LastAvail
	}
	if cfg.LastAvail&^PackedWrapBit >= cfg.Size || cfg.LastUsed&^PackedWrapBit >= cfg.Size {
		return nil, fmt.Errorf("packed ring base %#x/%#x is beyond the ring size %d", cfg.LastAvail, cfg.LastUsed, n)
	}
	if cfg.Desc%16 != 0 || cfg.Driver%4 != 0 || cfg.Device%4 != 0 {
		return nil, fmt.Errorf("packed ring addresses desc=%#x driver=%#x device=%#x are misaligned", cfg.Desc, cfg.Driver, cfg.Device)
	}
	db, ok := mem.TranslateUser(cfg.Desc, n*descSize)
	if !ok {
		return nil, fmt.Errorf("descriptor ring %#x+%d is outside guest memory", cfg.Desc, n*descSize)
	}
	drv, ok := mem.TranslateUser(cfg.Driver, 4)
	if !ok {
		return nil, fmt.Errorf("driver event area %#x is outside guest memory", cfg.Driver)
	}
	dev, ok := mem.TranslateUser(cfg.Device, 4)
	if !ok {
		return nil, fmt.Errorf("device event area %#x is outside guest memory", cfg.Device)
	}
	if uintptr(unsafe.Pointer(&db[0]))%16 != 0 || uintptr(unsafe.Pointer(&drv[0]))%4 != 0 || uintptr(unsafe.Pointer(&dev[0]))%4 != 0 {
		return nil, fmt.Errorf("packed rings are misaligned in the mapped memory (region offset)")
	}
	q := &PackedQueue{
		size:      cfg.Size,
		desc:      unsafe.Slice((*pdesc)(unsafe.Pointer(&db[0])), n),
		driverEvt: (*uint32)(unsafe.Pointer(&drv[0])),
		deviceEvt: (*uint32)(unsafe.Pointer(&dev[0])),
		mem:       mem,
		eventIdx:  cfg.EventIdx,
		inOrder:   cfg.InOrder,
		callFd:    cfg.CallFd,
		lastAvail: cfg.LastAvail &^ PackedWrapBit,
		availWrap: cfg.LastAvail&PackedWrapBit != 0,
		counts:    make([]uint16, n),
		shadow:    make([]packedUsed, n),
	}
	q.usedIdx, q.usedWrap = cfg.LastUsed&^PackedWrapBit, cfg.LastUsed&PackedWrapBit != 0
	q.notified = q.usedIdx
	binaryPutUint32(q.callBuf[:4], 1)
	// We poll: ask the driver not to kick.
	atomic.StoreUint32(q.deviceEvt, EventFlagsDisable<<16)
	return q, nil
}

// Size is the number of descriptors.
func (q *PackedQueue) Size() uint16 { return q.size }

// LastAvail is the vring base to report: the next slot and its wrap counter.
func (q *PackedQueue) LastAvail() uint16 {
	if q.availWrap {
		return q.lastAvail | PackedWrapBit
	}
	return q.lastAvail
}

// LastUsed is the used side of the base: the next used slot and its wrap
// counter (QEMU restores it from GET_VRING_BASE's high half).
func (q *PackedQueue) LastUsed() uint16 {
	if q.usedWrap {
		return q.usedIdx | PackedWrapBit
	}
	return q.usedIdx
}

// Memory is the guest memory the ring and buffers live in.
func (q *PackedQueue) Memory() *Memory { return q.mem }

// isAvail says whether descriptor flags f are available in wrap round w.
func isAvail(f uint16, w bool) bool {
	return (f&DescFAvail != 0) == w && (f&DescFUsed != 0) != w
}

func (q *PackedQueue) flagsAt(i uint16) uint16 {
	return uint16(atomic.LoadUint32(&q.desc[i].idFlags) >> 16)
}

// Avail reports how many chains may be taken: a packed ring has no index
// to read, so it is the number of consecutive available descriptors from
// the next slot (each chain has at least one), bounded by the ring size.
func (q *PackedQueue) Avail() (int, error) {
	return q.AvailUpTo(int(q.size)), nil
}

// AvailUpTo is Avail counting no further than max: each count reads a
// descriptor the guest's CPU wrote, so a batch reads only its own.
func (q *PackedQueue) AvailUpTo(max int) int {
	n, i, w := 0, q.lastAvail, q.availWrap
	max = min(max, int(q.size))
	for n < max && isAvail(q.flagsAt(i), w) {
		n++
		if i++; i == q.size {
			i, w = 0, !w
		}
	}
	return n
}

// ChainsUpTo counts the whole chains available from the next slot, at
// most max: descriptors up to one without NEXT. Next takes one each, so a
// caller can loop that many times without asking Pending.
func (q *PackedQueue) ChainsUpTo(max int) int {
	n, chains, i, w := 0, 0, q.lastAvail, q.availWrap
	for chains < max && n < int(q.size) {
		f := q.flagsAt(i)
		if !isAvail(f, w) {
			break
		}
		if f&DescFNext == 0 {
			chains++
		}
		n++
		if i++; i == q.size {
			i, w = 0, !w
		}
	}
	return chains
}

// Pending says whether another chain can be taken now.
func (q *PackedQueue) Pending() int {
	if isAvail(q.flagsAt(q.lastAvail), q.availWrap) {
		return 1
	}
	return 0
}

// PrefetchW asks for the lines of the next n descriptors ready to be
// written: they are read now and overwritten with used elements when the
// batch is returned, and one transfer from the guest's CPU serves both.
func (q *PackedQueue) PrefetchW(n int) {
	i := int(q.lastAvail)
	first := min(n, int(q.size)-i)
	if first > 0 {
		hw.PrefetchW((*byte)(unsafe.Pointer(&q.desc[i])), first*descSize)
	}
	if n > first {
		hw.PrefetchW((*byte)(unsafe.Pointer(&q.desc[0])), min(n-first, i)*descSize)
	}
}

// Next consumes the next available chain and appends its buffers to segs,
// like SplitQueue.Next. It returns the buffer id (from the chain's last
// descriptor). On an error other than ChainBadHead the caller returns the
// id with PutUsed(id, 0). Call it only while Pending() > 0.
func (q *PackedQueue) Next(segs *[MaxSegs][]byte, writable bool) (id uint16, nseg int, total int, cerr ChainErr) {
	q.prevAvail, q.prevWrap = q.lastAvail, q.availWrap
	want := uint16(0)
	if writable {
		want = DescFWrite
	}
	i, w := q.lastAvail, q.availWrap
	// The usual chain, one direct descriptor, without the walk's checks.
	word := atomic.LoadUint32(&q.desc[i].idFlags) // acquire: then addr and len
	if flags := uint16(word >> 16); flags&(DescFNext|DescFIndirect|DescFWrite) == want && isAvail(flags, w) {
		d := &q.desc[i]
		id = uint16(word)
		if n := d.len; id < q.size && n != 0 && n <= MaxChainBytes {
			if b, ok := q.mem.Translate(d.addr, uint64(n)); ok {
				segs[0] = b
				if i++; i == q.size {
					i, w = 0, !w
				}
				q.lastAvail, q.availWrap = i, w
				q.counts[id] = 1
				return id, 1, int(n), ChainOK
			}
		}
	}
	count := uint16(0)
	for {
		if count == q.size {
			cerr = ChainLoop // NEXT on every descriptor of the ring
			break
		}
		word := atomic.LoadUint32(&q.desc[i].idFlags) // acquire: then addr and len
		flags := uint16(word >> 16)
		if !isAvail(flags, w) {
			cerr = ChainBadIndex // a chain whose tail is not available yet
			break
		}
		d := q.desc[i]
		id = uint16(word)
		count++
		if i++; i == q.size {
			i, w = 0, !w
		}
		if cerr == ChainOK {
			if flags&DescFIndirect != 0 {
				if count != 1 || flags&DescFNext != 0 {
					cerr = ChainIndirect
				} else {
					nseg, total, cerr = q.walkIndirect(d.addr, d.len, segs, want)
				}
			} else if flags&DescFWrite != want {
				cerr = ChainBadDirection
			} else if d.len != 0 {
				if nseg == MaxSegs {
					cerr = ChainTooManySegs
				} else if b, ok := q.mem.Translate(d.addr, uint64(d.len)); !ok {
					cerr = ChainBadAddr
				} else if total += int(d.len); total > MaxChainBytes {
					cerr = ChainTooLong
				} else {
					segs[nseg] = b
					nseg++
				}
			}
		}
		// Keep walking after an error so the whole chain is skipped.
		if flags&DescFNext == 0 {
			break
		}
	}
	if count == 0 {
		// The head is not available (a guest flipped it back after
		// Pending or ChainsUpTo): nothing was taken.
		return 0, 0, 0, ChainBadHead
	}
	q.lastAvail, q.availWrap = i, w
	if id >= q.size {
		// An id we cannot index cannot be returned either; the chain's
		// slots are consumed and counted.
		return id, nseg, total, ChainBadHead
	}
	q.counts[id] = count
	return id, nseg, total, cerr
}

// walkIndirect walks a packed indirect table: its entries are used in
// order, all of them (virtio 1.2, 2.8.7).
func (q *PackedQueue) walkIndirect(addr uint64, length uint32, segs *[MaxSegs][]byte, want uint16) (nseg, total int, cerr ChainErr) {
	n := length / descSize
	if length%descSize != 0 || n == 0 || n > MaxIndirect {
		return 0, 0, ChainIndirect
	}
	tbl, ok := q.mem.Translate(addr, uint64(length))
	if !ok {
		return 0, 0, ChainBadAddr
	}
	for k := uint32(0); k < n; k++ {
		e := tbl[k*descSize : k*descSize+descSize : k*descSize+descSize]
		a := uint64(e[0]) | uint64(e[1])<<8 | uint64(e[2])<<16 | uint64(e[3])<<24 |
			uint64(e[4])<<32 | uint64(e[5])<<40 | uint64(e[6])<<48 | uint64(e[7])<<56
		l := uint32(e[8]) | uint32(e[9])<<8 | uint32(e[10])<<16 | uint32(e[11])<<24
		flags := uint16(e[14]) | uint16(e[15])<<8
		if flags&DescFIndirect != 0 {
			return nseg, total, ChainIndirect
		}
		if flags&DescFWrite != want {
			return nseg, total, ChainBadDirection
		}
		if l == 0 {
			continue
		}
		if nseg == MaxSegs {
			return nseg, total, ChainTooManySegs
		}
		b, ok := q.mem.Translate(a, uint64(l))
		if !ok {
			return nseg, total, ChainBadAddr
		}
		if total += int(l); total > MaxChainBytes {
			return nseg, total, ChainTooLong
		}
		segs[nseg] = b
		nseg++
	}
	return nseg, total, ChainOK
}

// Unpop gives back the chain Next returned last.
func (q *PackedQueue) Unpop() { q.lastAvail, q.availWrap = q.prevAvail, q.prevWrap }

// PutUsed returns the chain with buffer id and the bytes written. The
// guest sees it after the next Flush.
func (q *PackedQueue) PutUsed(id uint16, written uint32) {
	k := q.nshadow
	if k >= len(q.shadow) {
		q.Flush() // cannot happen with chains from Next; keeps it safe
		k = 0
	}
	q.shadow[k] = packedUsed{id: id, len: written}
	q.nshadow = k + 1
}

// chainLen is how many descriptors chain id took (Next recorded it); an
// id past the ring, which Next never returns, counts one.
func (q *PackedQueue) chainLen(id uint16) uint16 {
	if int(id) < len(q.counts) {
		return q.counts[id]
	}
	return 1
}

// Flush writes this batch's used elements into the ring and interrupts the
// guest if it asked for it.
func (q *PackedQueue) Flush() bool {
	if !q.Publish() {
		return false
	}
	hw.Fence()
	return q.Notify()
}

// Publish writes the used elements put since the last Publish into the
// ring. The first element's flags are stored last, with release ordering
// and no fence, so the driver sees the batch whole. Like
// SplitQueue.Publish, true asks the caller for Notify after a full fence.
func (q *PackedQueue) Publish() bool {
	if q.nshadow == 0 {
		return false
	}
	headIdx, headWord := q.usedIdx, uint32(0)
	if q.inOrder && q.nshadow > 1 && q.nothingWritten() {
		headWord = q.writeInOrder()
	} else {
		headWord = q.writeEach()
	}
	q.nshadow = 0
	hw.StoreRelease32(&q.desc[headIdx].idFlags, headWord)
	if q.callFd < 0 || q.notifyPending {
		return false
	}
	q.notifyPending = true
	return true
}

// writeEach writes one used element per chain of the shadow, all but the
// first's flags, and returns that word for Publish to store last.
func (q *PackedQueue) writeEach() (headWord uint32) {
	for k, e := range q.shadow[:q.nshadow] {
		flags := uint16(0)
		if q.usedWrap {
			flags = DescFAvail | DescFUsed
		}
		if e.len != 0 {
			flags |= DescFWrite
		}
		d := &q.desc[q.usedIdx]
		d.len = e.len
		word := uint32(e.id) | uint32(flags)<<16
		if k == 0 {
			headWord = word
		} else {
			d.idFlags = word
		}
		q.advanceUsed(uint32(q.chainLen(e.id)))
	}
	return headWord
}

// advanceUsed moves the used position past n descriptors, flipping the
// wrap counter at each pass over the ring end (n > size only when a
// guest reused buffer ids still in flight).
func (q *PackedQueue) advanceUsed(n uint32) {
	q.unnotified += n
	idx := uint32(q.usedIdx) + n
	for idx >= uint32(q.size) {
		idx -= uint32(q.size)
		q.usedWrap = !q.usedWrap
	}
	q.usedIdx = uint16(idx)
}

// nothingWritten says no used element of the batch has a length.
func (q *PackedQueue) nothingWritten() bool {
	for _, e := range q.shadow[:q.nshadow] {
		if e.len != 0 {
			return false
		}
	}
	return true
}

// writeInOrder is writeEach for a batch of chains returned in the order
// they were made available, with nothing written into them (a transmit
// queue): with IN_ORDER one used element, carrying the last buffer's id,
// stands for the whole batch (virtio 1.2, packed "In-order use of
// descriptors"), as DPDK's dequeue writes it. The driver then reads one
// descriptor line instead of one per four chains.
func (q *PackedQueue) writeInOrder() (headWord uint32) {
	flags := uint16(0)
	if q.usedWrap {
		flags = DescFAvail | DescFUsed
	}
	q.desc[q.usedIdx].len = 0
	headWord = uint32(q.shadow[q.nshadow-1].id) | uint32(flags)<<16
	total := uint32(0)
	for _, e := range q.shadow[:q.nshadow] {
		total += uint32(q.chainLen(e.id))
	}
	q.advanceUsed(total)
	return headWord
}

// Notify interrupts the guest if its event suppression asks for what was
// published since the last Notify. Call it after a full fence that follows
// Publish.
func (q *PackedQueue) Notify() bool {
	old, n := q.notified, q.unnotified
	q.notified, q.unnotified, q.notifyPending = q.usedIdx, 0, false
	if n == 0 {
		return false
	}
	// A whole ring or more since the last check: the index arithmetic
	// cannot tell, so interrupt unless interrupts are off.
	if n >= uint32(q.size) {
		if uint16(atomic.LoadUint32(q.driverEvt)>>16) == EventFlagsDisable {
			return false
		}
	} else if !q.needNotify(old) {
		return false
	}
	unix.Write(q.callFd, q.callBuf[:])
	return true
}

// needNotify reads the driver's event suppression (after the full fence of
// the publishing store) as DPDK's vhost_vring_call_packed does.
func (q *PackedQueue) needNotify(oldIdx uint16) bool {
	evt := atomic.LoadUint32(q.driverEvt)
	switch flags := uint16(evt >> 16); {
	case flags == EventFlagsDisable:
		return false
	case flags != EventFlagsDesc || !q.eventIdx:
		return true
	}
	offWrap := uint16(evt)
	old, nw := oldIdx, q.usedIdx
	if nw <= old {
		old -= q.size
	}
	off := offWrap &^ PackedWrapBit
	if (offWrap&PackedWrapBit != 0) != q.usedWrap {
		off -= q.size
	}
	return uint16(nw-off-1) < uint16(nw-old)
}
