// Package afxdp is an AF_XDP (XDP socket) library on golang.org/x/sys/unix:
// a UMEM in mmap'd memory the GC does not own, one type per ring (fill,
// completion, rx, tx), one socket per NIC queue, and the XDP program that
// redirects each queue's frames into its socket (see Device).
//
// The rings follow gVisor's pkg/xdp: each ring has a single owner and keeps
// cached copies of the producer and consumer indices, so the indices shared
// with the kernel are read and written once per batch, not once per frame.
// None of the types is safe for concurrent use; the owner serializes.
package afxdp

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is the part every ring shares: the kernel's producer, consumer and
// flags words and our cached view of them.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32
	// cachedProd and cachedCons are our copies. For a ring we produce
	// into, cachedCons is the consumer index plus the ring size (libbpf's
	// trick: cachedCons - cachedProd is the free space).
	cachedProd uint32
	cachedCons uint32
	mem        []byte // the ring's mmap'd region, unmapped on close
}

func (r *ring) init(mem []byte, off unix.XDPRingOffset, size uint32) {
	base := unsafe.Pointer(&mem[0])
	r.mem = mem
	r.producer = (*uint32)(unsafe.Add(base, off.Producer))
	r.consumer = (*uint32)(unsafe.Add(base, off.Consumer))
	r.flags = (*uint32)(unsafe.Add(base, off.Flags))
	r.size = size
	r.mask = size - 1
}

// needWakeup reports whether the kernel asks for a syscall to make
// progress on this ring (XDP_USE_NEED_WAKEUP).
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// prodFree returns how many entries a producer may write, up to n,
// reading the kernel's consumer index only when the cache runs short.
func (r *ring) prodFree(n uint32) uint32 {
	free := r.cachedCons - r.cachedProd
	if free >= n {
		return n
	}
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size // acquire
	free = r.cachedCons - r.cachedProd
	return min(free, n)
}

// consAvail returns how many entries a consumer may read, up to n,
// reading the kernel's producer index only when the cache is empty.
func (r *ring) consAvail(n uint32) uint32 {
	avail := r.cachedProd - r.cachedCons
	if avail == 0 {
		r.cachedProd = atomic.LoadUint32(r.producer) // acquire
		avail = r.cachedProd - r.cachedCons
	}
	return min(avail, n)
}

// FillQueue hands empty UMEM frames to the kernel for receiving.
type FillQueue struct {
	ring
	addrs []uint64
}

// Reserve returns how many of n frames may be put; Set them at Index+i,
// then Submit.
func (q *FillQueue) Reserve(n uint32) uint32 { return q.prodFree(n) }

// Set writes frame address addr at slot i after the last submitted one.
func (q *FillQueue) Set(i uint32, addr uint64) { q.addrs[(q.cachedProd+i)&q.mask] = addr }

// Submit publishes n frames written with Set (one release store).
func (q *FillQueue) Submit(n uint32) {
	q.cachedProd += n
	atomic.StoreUint32(q.producer, q.cachedProd)
}

// NeedWakeup reports whether the kernel waits for a syscall before it
// takes more frames from the fill ring.
func (q *FillQueue) NeedWakeup() bool { return q.needWakeup() }

// Len is the number of slots.
func (q *FillQueue) Len() uint32 { return q.size }

// CompletionQueue returns transmitted frames to us.
type CompletionQueue struct {
	ring
	addrs []uint64
}

// Peek returns how many completed frames (up to n) can be read with Get.
func (q *CompletionQueue) Peek(n uint32) uint32 { return q.consAvail(n) }

// Get returns the i-th completed frame after the last released one.
func (q *CompletionQueue) Get(i uint32) uint64 { return q.addrs[(q.cachedCons+i)&q.mask] }

// Release gives n read entries back to the kernel (one release store).
func (q *CompletionQueue) Release(n uint32) {
	q.cachedCons += n
	atomic.StoreUint32(q.consumer, q.cachedCons)
}

// RXQueue holds received frames.
type RXQueue struct {
	ring
	descs []unix.XDPDesc
}

// Peek returns how many received frames (up to n) can be read with Get.
func (q *RXQueue) Peek(n uint32) uint32 { return q.consAvail(n) }

// Get returns the i-th received frame after the last released one.
func (q *RXQueue) Get(i uint32) unix.XDPDesc { return q.descs[(q.cachedCons+i)&q.mask] }

// Release gives n read entries back to the kernel.
func (q *RXQueue) Release(n uint32) {
	q.cachedCons += n
	atomic.StoreUint32(q.consumer, q.cachedCons)
}

// TXQueue takes frames to send.
type TXQueue struct {
	ring
	descs []unix.XDPDesc
}

// Reserve returns how many of n frames may be queued.
func (q *TXQueue) Reserve(n uint32) uint32 { return q.prodFree(n) }

// Set writes the i-th descriptor after the last submitted one.
func (q *TXQueue) Set(i uint32, addr uint64, length uint32) {
	d := &q.descs[(q.cachedProd+i)&q.mask]
	d.Addr, d.Len, d.Options = addr, length, 0
}

// Submit publishes n descriptors written with Set.
func (q *TXQueue) Submit(n uint32) {
	q.cachedProd += n
	atomic.StoreUint32(q.producer, q.cachedProd)
}

// NeedWakeup reports whether the kernel needs a sendto to transmit.
func (q *TXQueue) NeedWakeup() bool { return q.needWakeup() }

// Outstanding is how many submitted descriptors the kernel has not consumed.
func (q *TXQueue) Outstanding() uint32 { return q.cachedProd - atomic.LoadUint32(q.consumer) }

// Len is the number of slots.
func (q *CompletionQueue) Len() uint32 { return q.size }
