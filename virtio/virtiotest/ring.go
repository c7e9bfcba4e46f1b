package virtiotest

import (
	"github.com/vswitch/vswitch/virtio"
)

// Split ring layout sizes (virtio 1.2, 2.7).
const (
	DescSize     = 16
	UsedElemSize = 8
)

// Buf is one buffer of a chain: Write marks it device-writable.
type Buf struct {
	Addr  uint64 // guest-physical
	Len   uint32
	Write bool
}

// UsedElem is one used ring entry. Bufs are the buffers of the chain the
// fake driver added under head ID (nil for chains it does not know, such
// as heads pushed with PushAvail).
type UsedElem struct {
	ID   uint32
	Len  uint32
	Bufs []Buf
}

type ownedBuf struct {
	addr uint64
	size int
}

// chain is what the driver remembers about a chain it made available.
type chain struct {
	descs []uint16
	bufs  []Buf
	owned []ownedBuf // buffers the ring allocated (returned to the pool when used)
}

// SplitRing is the driver side of one split virtqueue in guest memory.
// It keeps a free descriptor list like a driver does; SetDesc and PushAvail
// bypass it for hostile tests, so do not mix them with AddChain on one
// ring unless you know which descriptors AddChain may take.
type SplitRing struct {
	g    *Guest
	size uint16
	mask uint16

	// Guest-physical addresses of the three parts.
	DescAddr  uint64
	AvailAddr uint64
	UsedAddr  uint64

	availIdx uint16
	lastUsed uint16
	free     []uint16
	inflight []*chain // by head
	pool     map[int][]uint64
}

// NewSplitRing lays out a ring of size descriptors as a driver would: the
// descriptor table 16-aligned, the avail ring after it, the used ring
// 4-aligned after that.
func (g *Guest) NewSplitRing(size uint16) *SplitRing {
	if size == 0 || size > virtio.MaxQueueSize || size&(size-1) != 0 {
		g.t.Fatalf("virtiotest: ring size %d is not a power of two", size)
	}
	n := int(size)
	d := g.Alloc(DescSize*n, 16)
	a := g.Alloc(4+2*n+2, 4)
	u := g.Alloc(4+UsedElemSize*n+2, 4)
	return g.NewSplitRingAt(size, d, a, u)
}

// NewSplitRingAt uses the given guest-physical addresses, for tests of
// unusual layouts. The caller makes sure the memory is reserved.
func (g *Guest) NewSplitRingAt(size uint16, desc, avail, used uint64) *SplitRing {
	r := &SplitRing{
		g: g, size: size, mask: size - 1,
		DescAddr: desc, AvailAddr: avail, UsedAddr: used,
		inflight: make([]*chain, size),
		pool:     map[int][]uint64{},
	}
	for i := int(size) - 1; i >= 0; i-- {
		r.free = append(r.free, uint16(i))
	}
	return r
}

// Guest is the guest the ring lives in.
func (r *SplitRing) Guest() *Guest { return r.g }

// Size is the number of descriptors.
func (r *SplitRing) Size() uint16 { return r.size }

// Config is the engine configuration a vhost-user front-end would give for
// this ring (frontend virtual addresses, base 0).
func (r *SplitRing) Config(eventIdx bool, callFd int) virtio.SplitConfig {
	return virtio.SplitConfig{
		Size:     r.size,
		Desc:     r.g.UserAddr(r.DescAddr),
		Avail:    r.g.UserAddr(r.AvailAddr),
		Used:     r.g.UserAddr(r.UsedAddr),
		EventIdx: eventIdx,
		CallFd:   callFd,
	}
}

// NewQueue builds an engine for this ring over g.Memory(), failing the test
// if the engine refuses it.
func (r *SplitRing) NewQueue(eventIdx bool, callFd int) *virtio.SplitQueue {
	q, err := virtio.NewSplitQueue(r.g.Memory(), r.Config(eventIdx, callFd))
	if err != nil {
		r.g.t.Fatalf("virtiotest: NewSplitQueue: %v", err)
	}
	return q
}

// FreeDescs is how many descriptors AddChain can still take.
func (r *SplitRing) FreeDescs() int { return len(r.free) }

// InFlight is how many chains were added and not yet seen used.
func (r *SplitRing) InFlight() int { return int(r.size) - len(r.free) }

// SetDesc writes descriptor i.
func (r *SplitRing) SetDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	if i >= r.size {
		r.g.t.Fatalf("virtiotest: descriptor %d outside a ring of %d", i, r.size)
	}
	writeDesc(r.g, r.DescAddr+uint64(i)*DescSize, addr, length, flags, next)
}

func writeDesc(g *Guest, at, addr uint64, length uint32, flags, next uint16) {
	g.PutU64(at, addr)
	g.PutU32(at+8, length)
	g.PutU16(at+12, flags)
	g.PutU16(at+14, next)
}

// PushAvail puts head in the next avail slot and publishes avail.idx.
func (r *SplitRing) PushAvail(head uint16) {
	r.g.PutU16(r.AvailAddr+4+2*uint64(r.availIdx&r.mask), head)
	r.SetAvailIdx(r.availIdx + 1)
}

// SetAvailIdx publishes avail.idx = idx (a release store).
func (r *SplitRing) SetAvailIdx(idx uint16) {
	r.availIdx = idx
	r.g.store16(r.AvailAddr+2, idx)
}

// AvailIdx is the avail.idx the driver last published.
func (r *SplitRing) AvailIdx() uint16 { return r.availIdx }

// SetAvailFlags sets avail.flags (AvailFNoInterrupt).
func (r *SplitRing) SetAvailFlags(f uint16) { r.g.store16(r.AvailAddr, f) }

// SetUsedEvent sets used_event (the EVENT_IDX interrupt threshold).
func (r *SplitRing) SetUsedEvent(v uint16) {
	r.g.store16(r.AvailAddr+4+2*uint64(r.size), v)
}

// UsedIdx is used.idx as the device published it.
func (r *SplitRing) UsedIdx() uint16 { return r.g.load16(r.UsedAddr + 2) }

// UsedFlags is used.flags (UsedFNoNotify).
func (r *SplitRing) UsedFlags() uint16 { return r.g.load16(r.UsedAddr) }

// AvailEvent is avail_event at the end of the used ring.
func (r *SplitRing) AvailEvent() uint16 {
	return r.g.load16(r.UsedAddr + 4 + UsedElemSize*uint64(r.size))
}

// UsedEntry reads used ring slot i without consuming it.
func (r *SplitRing) UsedEntry(i uint16) (id, length uint32) {
	at := r.UsedAddr + 4 + UsedElemSize*uint64(i&r.mask)
	return r.g.U32(at), r.g.U32(at + 4)
}

// PopUsed returns the used entries published since the last call and gives
// the descriptors of chains this ring added back to its free list. The
// bytes of buffers the ring allocated (AddTxPacket, AddRxBuffer) stay
// valid until the next Add call on this ring.
func (r *SplitRing) PopUsed() []UsedElem {
	idx := r.UsedIdx()
	var out []UsedElem
	for ; r.lastUsed != idx; r.lastUsed++ {
		id, n := r.UsedEntry(r.lastUsed)
		e := UsedElem{ID: id, Len: n}
		if id < uint32(r.size) {
			if c := r.inflight[id]; c != nil {
				r.inflight[id] = nil
				e.Bufs = c.bufs
				r.free = append(r.free, c.descs...)
				for _, o := range c.owned {
					r.pool[o.size] = append(r.pool[o.size], o.addr)
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// alloc takes a buffer of size bytes from the ring's pool or the guest.
func (r *SplitRing) alloc(size, align int) uint64 {
	if p := r.pool[size]; len(p) > 0 {
		a := p[len(p)-1]
		r.pool[size] = p[:len(p)-1]
		return a
	}
	return r.g.Alloc(size, align)
}

func (r *SplitRing) takeDescs(n int) []uint16 {
	if n == 0 || n > len(r.free) {
		r.g.t.Fatalf("virtiotest: chain of %d descriptors, %d free", n, len(r.free))
	}
	d := make([]uint16, n)
	for i := range d {
		d[i] = r.free[len(r.free)-1]
		r.free = r.free[:len(r.free)-1]
	}
	return d
}

func descFlags(b Buf) uint16 {
	if b.Write {
		return virtio.DescFWrite
	}
	return 0
}

// AddChain writes bufs as one chain linked with NEXT, puts its head in the
// avail ring and publishes avail.idx. It returns the head.
func (r *SplitRing) AddChain(bufs ...Buf) uint16 {
	return r.addChain(bufs, nil)
}

func (r *SplitRing) addChain(bufs []Buf, owned []ownedBuf) uint16 {
	ds := r.takeDescs(len(bufs))
	for i, b := range bufs {
		f, next := descFlags(b), uint16(0)
		if i+1 < len(bufs) {
			f |= virtio.DescFNext
			next = ds[i+1]
		}
		r.SetDesc(ds[i], b.Addr, b.Len, f, next)
	}
	r.inflight[ds[0]] = &chain{descs: ds, bufs: append([]Buf(nil), bufs...), owned: owned}
	r.PushAvail(ds[0])
	return ds[0]
}

// AddIndirectChain writes bufs to an indirect descriptor table in guest
// memory and makes one ring descriptor with INDIRECT point at it.
func (r *SplitRing) AddIndirectChain(bufs ...Buf) uint16 {
	if len(bufs) == 0 {
		r.g.t.Fatalf("virtiotest: empty indirect chain")
	}
	size := DescSize * len(bufs)
	table := r.alloc(size, 16)
	for i, b := range bufs {
		f, next := descFlags(b), uint16(0)
		if i+1 < len(bufs) {
			f |= virtio.DescFNext
			next = uint16(i + 1)
		}
		writeDesc(r.g, table+uint64(i*DescSize), b.Addr, b.Len, f, next)
	}
	ds := r.takeDescs(1)
	r.SetDesc(ds[0], table, uint32(size), virtio.DescFIndirect, 0)
	r.inflight[ds[0]] = &chain{descs: ds, bufs: append([]Buf(nil), bufs...), owned: []ownedBuf{{table, size}}}
	r.PushAvail(ds[0])
	return ds[0]
}

// ReadChain returns a copy of the first n bytes of a used chain's writable
// buffers, in chain order (what the device wrote).
func (r *SplitRing) ReadChain(e UsedElem, n int) []byte { return readChain(r.g, e, n) }

func readChain(g *Guest, e UsedElem, n int) []byte {
	out := make([]byte, 0, n)
	for _, b := range e.Bufs {
		if !b.Write {
			continue
		}
		take := min(n-len(out), int(b.Len))
		if take <= 0 {
			break
		}
		out = append(out, g.span(b.Addr, take)...)
	}
	return out
}

// AddTxPacket adds a transmit chain: a zeroed virtio-net header of hdrLen
// bytes followed by frame. With split > 0 the header and frame are cut into
// descriptors of at most split bytes each, each in its own buffer, so the
// chain has 2 or more descriptors; with split <= 0 they share one.
func (r *SplitRing) AddTxPacket(hdrLen int, frame []byte, split int) uint16 {
	bufs, owned := txBufs(r.g, r.alloc, hdrLen, frame, split)
	return r.addChain(bufs, owned)
}

// txBufs lays out a transmit chain's buffers (see AddTxPacket).
func txBufs(g *Guest, alloc func(size, align int) uint64, hdrLen int, frame []byte, split int) ([]Buf, []ownedBuf) {
	total := hdrLen + len(frame)
	if split <= 0 || split > total {
		split = total
	}
	var bufs []Buf
	var owned []ownedBuf
	for off := 0; off < total; off += split {
		n := min(split, total-off)
		a := alloc(n, 8)
		dst := g.span(a, n)
		z := 0
		if off < hdrLen {
			z = min(hdrLen-off, n)
			clear(dst[:z])
		}
		copy(dst[z:], frame[max(off+z-hdrLen, 0):])
		bufs = append(bufs, Buf{Addr: a, Len: uint32(n)})
		owned = append(owned, ownedBuf{a, n})
	}
	return bufs, owned
}

// AddRxBuffer adds a receive chain of one device-writable buffer of size
// bytes (header plus frame room).
func (r *SplitRing) AddRxBuffer(size int) uint16 {
	a := r.alloc(size, 8)
	return r.addChain([]Buf{{Addr: a, Len: uint32(size), Write: true}}, []ownedBuf{{a, size}})
}

// RxFrame returns a copy of the frame the device wrote into the receive
// chain of e, without the hdrLen-byte virtio-net header. It returns nil
// if e is not a chain this ring added or the device wrote no more than a
// header.
func (r *SplitRing) RxFrame(e UsedElem, hdrLen int) []byte { return rxFrame(r.g, e, hdrLen) }

func rxFrame(g *Guest, e UsedElem, hdrLen int) []byte {
	if e.Bufs == nil || int(e.Len) <= hdrLen {
		return nil
	}
	b := readChain(g, e, int(e.Len))
	if len(b) <= hdrLen {
		return nil
	}
	return b[hdrLen:]
}

// RxHeader returns a copy of the virtio-net header of a used receive chain.
func (r *SplitRing) RxHeader(e UsedElem, hdrLen int) []byte {
	return r.ReadChain(e, min(hdrLen, int(e.Len)))
}
