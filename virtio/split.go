package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/hw"
)

// Descriptor and ring flags (virtio 1.2, 2.7).
const (
	DescFNext          = 1
	DescFWrite         = 2
	DescFIndirect      = 4
	UsedFNoNotify      = 1
	AvailFNoInterrupt  = 1
	MaxQueueSize       = 32768
	descSize           = 16
	usedElemSize       = 8
	splitRingHeaderLen = 4 // flags + idx
)

// MaxSegs bounds the buffers of one chain the engine hands out. A Linux
// guest uses at most MAX_SKB_FRAGS+2 (19); DPDK chains are shorter.
const MaxSegs = 32

// ChainErr says why a descriptor chain was refused. Zero means no error.
type ChainErr uint8

// Chain errors, one drop reason each.
const (
	ChainOK ChainErr = iota
	ChainBadHead
	ChainBadIndex
	ChainBadAddr
	ChainLoop
	ChainTooManySegs
	ChainBadDirection
	ChainIndirect // an indirect table that is nested, misplaced or malformed
	ChainTooLong
	NumChainErrs
)

var chainErrNames = [NumChainErrs]string{
	"ok", "desc_head_out_of_range", "desc_next_out_of_range", "desc_addr_outside_memory",
	"desc_chain_loop", "desc_too_many_segments", "desc_wrong_direction", "desc_indirect_invalid",
	"desc_chain_too_long",
}

func (e ChainErr) String() string {
	if e < NumChainErrs {
		return chainErrNames[e]
	}
	return "chain_err_unknown"
}

// MaxChainBytes bounds the bytes of one chain: no packet we handle is larger
// than a 64 KiB GSO frame plus headers, and it keeps totals far from overflow.
const MaxChainBytes = 1 << 20

// ErrAvailIdx means the guest moved avail.idx further than the ring size:
// the ring is corrupt and must be stopped until the device is reset.
var ErrAvailIdx = errors.New("avail index moved by more than the queue size")

// desc is struct virtq_desc as laid out in guest memory.
type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

type usedElem struct {
	id  uint32
	len uint32
}

// SplitConfig describes one split ring as vhost-user sets it up.
type SplitConfig struct {
	Size      uint16
	Desc      uint64 // frontend virtual addresses (VHOST_USER_SET_VRING_ADDR)
	Avail     uint64
	Used      uint64
	LastAvail uint16 // VHOST_USER_SET_VRING_BASE
	EventIdx  bool   // VIRTIO_RING_F_EVENT_IDX negotiated
	CallFd    int    // eventfd to interrupt the guest, -1 for none
}

// SplitQueue is the engine for one split virtqueue. It is driven by one
// goroutine at a time; the vhost-user side hands it over only after the data
// plane has passed a quiescent point.
type SplitQueue struct {
	size uint16
	mask uint16

	desc       []desc
	availWord  *uint32 // the aligned 32-bit word that holds avail.idx
	availShift uint32  // where avail.idx sits in availWord
	availFlags *uint16
	availRing  []uint16
	usedEvent  *uint16 // avail->used_event, valid with EventIdx
	usedHdr    *uint32 // used flags (low 16) + used idx (high 16)
	usedRing   []usedElem

	mem       *Memory
	eventIdx  bool
	callFd    int
	usedFlags uint16

	lastAvail uint16 // next avail ring slot to consume
	availIdx  uint16 // cached guest avail.idx
	usedIdx   uint16 // next used slot we fill
	published uint16 // used.idx the guest can see
	notified  uint16 // used.idx as of the last interrupt check
	// notifyPending: published entries wait for Notify.
	notifyPending bool

	callBuf [8]byte

	// Resynced says the base the front-end gave disagreed with used.idx
	// and the ring resumed from used.idx instead.
	Resynced bool
}

// NewSplitQueue maps the rings of cfg in mem. The rings must lie wholly in
// guest memory with the alignment the spec requires.
func NewSplitQueue(mem *Memory, cfg SplitConfig) (*SplitQueue, error) {
	n := uint64(cfg.Size)
	if n == 0 || n > MaxQueueSize || n&(n-1) != 0 {
		return nil, fmt.Errorf("queue size %d is not a power of two in 1..%d", n, MaxQueueSize)
	}
	if cfg.Desc%16 != 0 || cfg.Avail%2 != 0 || cfg.Used%4 != 0 {
		return nil, fmt.Errorf("ring addresses desc=%#x avail=%#x used=%#x are misaligned", cfg.Desc, cfg.Avail, cfg.Used)
	}
	db, ok := mem.TranslateUser(cfg.Desc, n*descSize)
	if !ok {
		return nil, fmt.Errorf("descriptor table %#x+%d is outside guest memory", cfg.Desc, n*descSize)
	}
	ab, ok := mem.TranslateUser(cfg.Avail, splitRingHeaderLen+2*n+2)
	if !ok {
		return nil, fmt.Errorf("avail ring %#x is outside guest memory", cfg.Avail)
	}
	ub, ok := mem.TranslateUser(cfg.Used, splitRingHeaderLen+usedElemSize*n+2)
	if !ok {
		return nil, fmt.Errorf("used ring %#x is outside guest memory", cfg.Used)
	}
	// The index words are accessed atomically: they must be aligned in our
	// mapping too, not only in guest-physical space.
	if uintptr(unsafe.Pointer(&ub[0]))%4 != 0 || uintptr(unsafe.Pointer(&db[0]))%16 != 0 {
		return nil, fmt.Errorf("rings are misaligned in the mapped memory (region offset)")
	}
	q := &SplitQueue{
		size:       cfg.Size,
		mask:       cfg.Size - 1,
		desc:       unsafe.Slice((*desc)(unsafe.Pointer(&db[0])), n),
		availFlags: (*uint16)(unsafe.Pointer(&ab[0])),
		availRing:  unsafe.Slice((*uint16)(unsafe.Pointer(&ab[4])), n),
		usedEvent:  (*uint16)(unsafe.Pointer(&ab[4+2*n])),
		usedHdr:    (*uint32)(unsafe.Pointer(&ub[0])),
		usedRing:   unsafe.Slice((*usedElem)(unsafe.Pointer(&ub[4])), n),
		mem:        mem,
		eventIdx:   cfg.EventIdx,
		callFd:     cfg.CallFd,
		lastAvail:  cfg.LastAvail,
	}
	// sync/atomic has no 16-bit loads: read avail.idx through the aligned
	// 32-bit word that contains it (it stays inside the avail ring).
	idxAddr := uintptr(unsafe.Pointer(&ab[2]))
	if idxAddr%4 == 0 {
		q.availWord = (*uint32)(unsafe.Pointer(&ab[2]))
	} else {
		q.availWord = (*uint32)(unsafe.Pointer(&ab[0]))
		q.availShift = 16
	}
	binaryPutUint32(q.callBuf[:4], 1)
	// We poll, so ask the guest not to kick. With EVENT_IDX the guest reads
	// avail_event instead, which we leave alone: it then kicks once per
	// 64K buffers at most.
	if !cfg.EventIdx {
		q.usedFlags = UsedFNoNotify
	}
	cur := atomic.LoadUint32(q.usedHdr)
	q.usedIdx = uint16(cur >> 16)
	q.published, q.notified = q.usedIdx, q.usedIdx
	// We return every chain we take within its batch, so where we stopped
	// the ring last_avail equals used.idx. A front-end that lost track (a
	// DPDK virtio_user reconnect sends base 0; a backend crash) gets the
	// ring resumed from used.idx, as the DPDK vhost library does.
	if q.lastAvail != q.usedIdx {
		q.Resynced = true
		q.lastAvail = q.usedIdx
	}
	q.availIdx = q.lastAvail
	atomic.StoreUint32(q.usedHdr, uint32(q.usedFlags)|uint32(q.usedIdx)<<16)
	return q, nil
}

func binaryPutUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// Size is the number of descriptors.
func (q *SplitQueue) Size() uint16 { return q.size }

// LastAvail is the next avail slot the engine would consume; vhost-user
// GET_VRING_BASE reports it.
func (q *SplitQueue) LastAvail() uint16 { return q.lastAvail }

// Memory is the guest memory the rings and buffers live in.
func (q *SplitQueue) Memory() *Memory { return q.mem }

// Avail returns how many chains the guest has made available. It reads
// avail.idx once; call it once per batch.
func (q *SplitQueue) Avail() (int, error) {
	idx := uint16(atomic.LoadUint32(q.availWord) >> q.availShift)
	n := idx - q.lastAvail
	if n > q.size {
		return 0, ErrAvailIdx
	}
	q.availIdx = idx
	return int(n), nil
}

// Pending is how many chains Avail reported that are not consumed yet.
func (q *SplitQueue) Pending() int { return int(q.availIdx - q.lastAvail) }

// Prefetch touches the head descriptors of the next n available chains in
// a tight loop, so their cache misses overlap instead of each stalling
// Next in turn (Go has no prefetch instruction). Call it after Avail.
func (q *SplitQueue) Prefetch(n int) uint16 {
	var sum uint16
	idx := q.lastAvail
	for i := 0; i < n; i++ {
		head := q.availRing[idx&q.mask]
		sum += q.desc[head&q.mask].flags
		idx++
	}
	return sum
}

// Next consumes the next available chain and appends its buffers to segs.
// writable selects device-writable chains (receive queues) or
// device-readable ones (transmit queues). It returns the head index, the
// number of buffers and their total length. On a ChainErr other than
// ChainBadHead the caller must still return head with PutUsed(head, 0) so
// the guest gets its descriptors back. Call it only while Pending() > 0.
func (q *SplitQueue) Next(segs *[MaxSegs][]byte, writable bool) (head uint16, nseg int, total int, cerr ChainErr) {
	head = q.availRing[q.lastAvail&q.mask]
	q.lastAvail++
	if head >= q.size {
		return head, 0, 0, ChainBadHead
	}
	want := uint16(0)
	if writable {
		want = DescFWrite
	}
	idx := head
	for budget := q.size; ; budget-- {
		if budget == 0 {
			return head, nseg, total, ChainLoop
		}
		d := q.desc[idx&q.mask] // one copy: the guest may rewrite it under us
		if d.flags&DescFIndirect != 0 {
			// An indirect table is the whole chain: only the head may
			// point at one, and never together with NEXT.
			if idx != head || d.flags&DescFNext != 0 {
				return head, nseg, total, ChainIndirect
			}
			nseg, total, cerr = q.walkIndirect(d, segs, want)
			return head, nseg, total, cerr
		}
		if d.flags&DescFWrite != want {
			return head, nseg, total, ChainBadDirection
		}
		if d.len != 0 {
			if nseg == MaxSegs {
				return head, nseg, total, ChainTooManySegs
			}
			b, ok := q.mem.Translate(d.addr, uint64(d.len))
			if !ok {
				return head, nseg, total, ChainBadAddr
			}
			total += int(d.len)
			if total > MaxChainBytes {
				return head, nseg, total, ChainTooLong
			}
			segs[nseg] = b
			nseg++
		}
		if d.flags&DescFNext == 0 {
			return head, nseg, total, ChainOK
		}
		idx = d.next
		if idx >= q.size {
			return head, nseg, total, ChainBadIndex
		}
	}
}

// MaxIndirect bounds the entries of an indirect table; Linux never uses
// more than MAX_SKB_FRAGS+2.
const MaxIndirect = 1024

// walkIndirect walks the table an indirect descriptor points at. Entries
// are read through a copy of the table's bytes with explicit little-endian
// loads: the table's address needs no alignment. Nested tables are refused
// and the walk is bounded by the table's length.
func (q *SplitQueue) walkIndirect(ind desc, segs *[MaxSegs][]byte, want uint16) (nseg, total int, cerr ChainErr) {
	n := ind.len / descSize
	if ind.len%descSize != 0 || n == 0 || n > MaxIndirect {
		return 0, 0, ChainIndirect
	}
	tbl, ok := q.mem.Translate(ind.addr, uint64(ind.len))
	if !ok {
		return 0, 0, ChainBadAddr
	}
	i := uint32(0)
	for budget := n; ; budget-- {
		if budget == 0 {
			return nseg, total, ChainLoop
		}
		e := tbl[i*descSize : i*descSize+descSize : i*descSize+descSize]
		addr := binary.LittleEndian.Uint64(e[0:8])
		length := binary.LittleEndian.Uint32(e[8:12])
		flags := binary.LittleEndian.Uint16(e[12:14])
		next := binary.LittleEndian.Uint16(e[14:16])
		if flags&DescFIndirect != 0 {
			return nseg, total, ChainIndirect
		}
		if flags&DescFWrite != want {
			return nseg, total, ChainBadDirection
		}
		if length != 0 {
			if nseg == MaxSegs {
				return nseg, total, ChainTooManySegs
			}
			b, ok := q.mem.Translate(addr, uint64(length))
			if !ok {
				return nseg, total, ChainBadAddr
			}
			total += int(length)
			if total > MaxChainBytes {
				return nseg, total, ChainTooLong
			}
			segs[nseg] = b
			nseg++
		}
		if flags&DescFNext == 0 {
			return nseg, total, ChainOK
		}
		if uint32(next) >= n {
			return nseg, total, ChainBadIndex
		}
		i = uint32(next)
	}
}

// Unpop gives back the chain Next consumed last, for a receive that found
// the chain too small; the guest keeps it for the next packet.
func (q *SplitQueue) Unpop() { q.lastAvail-- }

// PrefetchUsed asks for the used-ring lines the next n PutUsed calls
// store to, without storing: the guest's CPU read them last, and a store to
// a line this core does not own yet holds up every later store (x86 commits
// stores in order), so the ownership transfer is started early and the
// stores find the lines here.
func (q *SplitQueue) PrefetchUsed(n int) {
	i := int(q.usedIdx & q.mask)
	first := min(n, int(q.size)-i)
	if first > 0 {
		hw.PrefetchW((*byte)(unsafe.Pointer(&q.usedRing[i])), first*usedElemSize)
	}
	if n > first {
		hw.PrefetchW((*byte)(unsafe.Pointer(&q.usedRing[0])), (n-first)*usedElemSize)
	}
}

// PutUsed returns a chain to the guest with the number of bytes written.
// The guest sees it after the next Flush.
func (q *SplitQueue) PutUsed(head uint16, written uint32) {
	q.usedRing[q.usedIdx&q.mask] = usedElem{id: uint32(head), len: written}
	q.usedIdx++
}

// Flush publishes the used entries of this batch with one store and
// interrupts the guest if it asked for it. It returns whether it did.
func (q *SplitQueue) Flush() bool {
	if !q.Publish() {
		return false
	}
	hw.Fence()
	return q.Notify()
}

// Publish makes the used entries put since the last Publish visible to the
// guest with one release store of the used index, without a fence. It
// returns true when the guest may want an interrupt for them and none is
// pending yet: the caller must then, after a full fence (hw.Fence), call
// Notify. A worker publishing several queues pays for one fence that way.
func (q *SplitQueue) Publish() bool {
	if q.usedIdx == q.published {
		return false
	}
	q.published = q.usedIdx
	hw.StoreRelease32(q.usedHdr, uint32(q.usedFlags)|uint32(q.published)<<16)
	if q.callFd < 0 || q.notifyPending {
		return false
	}
	q.notifyPending = true
	return true
}

// Notify interrupts the guest if its used_event (or its NO_INTERRUPT flag)
// asks for the entries published since the last Notify. Call it after a
// full fence that follows Publish: used_event must not be read before the
// guest can see the new index, or an interrupt it waits for is lost.
func (q *SplitQueue) Notify() bool {
	old, nw := q.notified, q.published
	q.notified, q.notifyPending = nw, false
	if old == nw {
		return false
	}
	if q.eventIdx {
		event := *q.usedEvent
		if uint16(nw-event-1) >= uint16(nw-old) {
			return false
		}
	} else if *q.availFlags&AvailFNoInterrupt != 0 {
		return false
	}
	unix.Write(q.callFd, q.callBuf[:])
	return true
}
