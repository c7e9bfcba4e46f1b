package virtiotest

import (
	"github.com/vswitch/vswitch/virtio"
)

// pchain is what the packed driver remembers about a buffer id in flight.
type pchain struct {
	bufs  []Buf
	owned []ownedBuf
}

// PackedRing is the driver side of one packed virtqueue in guest memory
// (virtio 1.2, 2.8): a descriptor ring plus the driver and device event
// suppression areas. Buffer ids come from a free list; chains are made
// available in ring order with the head's flags written last.
type PackedRing struct {
	g    *Guest
	size uint16

	// Guest-physical addresses of the three parts.
	DescAddr   uint64
	DriverAddr uint64
	DeviceAddr uint64

	availIdx, usedIdx   uint16
	availWrap, usedWrap bool
	freeDescs           int
	freeIDs             []uint16
	inflight            []*pchain // by buffer id
	pool                map[int][]uint64

	// InOrder is set when VIRTIO_F_IN_ORDER was negotiated: a used
	// element stands for every chain made available up to its buffer
	// id, as DPDK's in-order driver reads it.
	InOrder bool
	order   []uint16 // with InOrder: ids in flight, in the order made available (a ring)
	first   int      // order's oldest entry
	norder  int
	batch   int    // chains the in-order element read last still completes
	lastLen uint32 // that element's length, for its last chain
}

// NewPackedRing lays out a packed ring of size descriptors.
func (g *Guest) NewPackedRing(size uint16) *PackedRing {
	if size == 0 || size > virtio.MaxQueueSize || size&(size-1) != 0 {
		g.t.Fatalf("virtiotest: ring size %d is not a power of two", size)
	}
	r := &PackedRing{g: g, size: size, DescAddr: g.Alloc(DescSize*int(size), 16),
		DriverAddr: g.Alloc(4, 4), DeviceAddr: g.Alloc(4, 4),
		availWrap: true, usedWrap: true, freeDescs: int(size),
		inflight: make([]*pchain, size), order: make([]uint16, size), pool: map[int][]uint64{}}
	for i := int(size) - 1; i >= 0; i-- {
		r.freeIDs = append(r.freeIDs, uint16(i))
	}
	return r
}

// Size is the number of descriptors.
func (r *PackedRing) Size() uint16 { return r.size }

// Base is the SET_VRING_BASE value of a fresh ring: index 0, wrap counter 1
// (the low half only, as DPDK's virtio_user sends it).
func (r *PackedRing) Base() uint32 { return virtio.PackedWrapBit }

// Config is the engine configuration a front-end would give for the ring.
func (r *PackedRing) Config(eventIdx bool, callFd int) virtio.PackedConfig {
	return virtio.PackedConfig{Size: r.size, Desc: r.g.UserAddr(r.DescAddr), Driver: r.g.UserAddr(r.DriverAddr),
		Device: r.g.UserAddr(r.DeviceAddr), LastAvail: virtio.PackedWrapBit, EventIdx: eventIdx, CallFd: callFd}
}

// FreeDescs is how many descriptors a chain can still take.
func (r *PackedRing) FreeDescs() int {
	if len(r.freeIDs) == 0 {
		return 0
	}
	return r.freeDescs
}

// SetDriverFlags sets the driver event suppression flags field
// (virtio.EventFlagsDisable: a polling driver wants no interrupts).
func (r *PackedRing) SetDriverFlags(f uint16) { r.g.store16(r.DriverAddr+2, f) }

// DeviceFlags is the device event suppression flags field
// (virtio.EventFlagsDisable: the device wants no kicks).
func (r *PackedRing) DeviceFlags() uint16 { return r.g.load16(r.DeviceAddr + 2) }

// AddChain makes bufs available as one chain and returns its buffer id.
func (r *PackedRing) AddChain(bufs ...Buf) uint16 { return r.addChain(bufs, nil) }

func (r *PackedRing) addChain(bufs []Buf, owned []ownedBuf) uint16 {
	if len(bufs) == 0 || len(bufs) > r.FreeDescs() {
		r.g.t.Fatalf("virtiotest: chain of %d descriptors, %d free", len(bufs), r.FreeDescs())
	}
	id := r.freeIDs[len(r.freeIDs)-1]
	r.freeIDs = r.freeIDs[:len(r.freeIDs)-1]
	r.inflight[id] = &pchain{bufs: append([]Buf(nil), bufs...), owned: owned}
	r.post(id)
	return id
}

// post writes chain id's descriptors at the avail position, the head's
// flags last with a release store.
func (r *PackedRing) post(id uint16) {
	c := r.inflight[id]
	head, headFlags := r.availIdx, uint16(0)
	for k, b := range c.bufs {
		at := r.DescAddr + uint64(r.availIdx)*DescSize
		f := uint16(virtio.DescFUsed)
		if r.availWrap {
			f = virtio.DescFAvail
		}
		if b.Write {
			f |= virtio.DescFWrite
		}
		if k < len(c.bufs)-1 {
			f |= virtio.DescFNext
		}
		r.g.PutU64(at, b.Addr)
		r.g.PutU32(at+8, b.Len)
		r.g.PutU16(at+12, id)
		if k == 0 {
			headFlags = f
		} else {
			r.g.PutU16(at+14, f)
		}
		if r.availIdx++; r.availIdx == r.size {
			r.availIdx, r.availWrap = 0, !r.availWrap
		}
	}
	r.freeDescs -= len(c.bufs)
	if r.InOrder {
		r.order[(r.first+r.norder)%len(r.order)] = id
		r.norder++
	}
	r.g.store16(r.DescAddr+uint64(head)*DescSize+14, headFlags)
}

// nextUsed reads the used element at the used position, if the device
// published one, and steps past its chain. With InOrder an element whose
// id is not the oldest chain's completes the chains before it too (with
// no length); they are returned one by one first.
func (r *PackedRing) nextUsed() (id uint16, length uint32, c *pchain, ok bool) {
	if r.batch == 0 {
		at := r.DescAddr + uint64(r.usedIdx)*DescSize
		f := r.g.load16(at + 14)
		if (f&virtio.DescFAvail != 0) != r.usedWrap || (f&virtio.DescFUsed != 0) != r.usedWrap {
			return 0, 0, nil, false
		}
		id, length = r.g.U16(at+12), r.g.U32(at+8)
		if !r.InOrder {
			return r.stepUsed(id, length)
		}
		k := 0
		for k < r.norder && r.order[(r.first+k)%len(r.order)] != id {
			k++
		}
		if k == r.norder { // not in flight: a device bug, reported as is
			return r.stepUsed(id, length)
		}
		r.batch, r.lastLen = k+1, length
	}
	id = r.order[r.first]
	r.first = (r.first + 1) % len(r.order)
	r.norder--
	if r.batch--; r.batch == 0 {
		length = r.lastLen
	}
	return r.stepUsed(id, length)
}

// stepUsed steps the used position past chain id.
func (r *PackedRing) stepUsed(id uint16, length uint32) (uint16, uint32, *pchain, bool) {
	var c *pchain
	n := uint16(1)
	if id < r.size && r.inflight[id] != nil {
		c = r.inflight[id]
		n = uint16(len(c.bufs))
	}
	r.freeDescs += int(n)
	if r.usedIdx += n; r.usedIdx >= r.size {
		r.usedIdx -= r.size
		r.usedWrap = !r.usedWrap
	}
	return id, length, c, true
}

// PopUsed returns the used elements published since the last call and
// frees their ids; buffers the ring allocated go back to its pool.
func (r *PackedRing) PopUsed() []UsedElem {
	var out []UsedElem
	for {
		id, n, c, ok := r.nextUsed()
		if !ok {
			return out
		}
		e := UsedElem{ID: uint32(id), Len: n}
		if c != nil {
			r.inflight[id] = nil
			r.freeIDs = append(r.freeIDs, id)
			e.Bufs = c.bufs
			for _, o := range c.owned {
				r.pool[o.size] = append(r.pool[o.size], o.addr)
			}
		}
		out = append(out, e)
	}
}

// Recycle makes every used chain available again with the same buffers,
// without allocating, and returns how many it recycled (benchmarks).
func (r *PackedRing) Recycle() int {
	n := 0
	for {
		id, _, c, ok := r.nextUsed()
		if !ok || c == nil {
			return n
		}
		r.post(id)
		n++
	}
}

func (r *PackedRing) alloc(size, align int) uint64 {
	if p := r.pool[size]; len(p) > 0 {
		a := p[len(p)-1]
		r.pool[size] = p[:len(p)-1]
		return a
	}
	return r.g.Alloc(size, align)
}

// AddTxPacket is SplitRing.AddTxPacket for a packed ring.
func (r *PackedRing) AddTxPacket(hdrLen int, frame []byte, split int) uint16 {
	bufs, owned := txBufs(r.g, r.alloc, hdrLen, frame, split)
	return r.addChain(bufs, owned)
}

// AddRxBuffer is SplitRing.AddRxBuffer for a packed ring.
func (r *PackedRing) AddRxBuffer(size int) uint16 {
	a := r.alloc(size, 8)
	return r.addChain([]Buf{{Addr: a, Len: uint32(size), Write: true}}, []ownedBuf{{a, size}})
}

// RxFrame is SplitRing.RxFrame for a packed ring.
func (r *PackedRing) RxFrame(e UsedElem, hdrLen int) []byte { return rxFrame(r.g, e, hdrLen) }
