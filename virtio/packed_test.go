package virtio_test

import (
	"testing"
	"unsafe"

	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// packedDriver is a minimal packed-ring driver over a fake guest: it makes
// chains available as the virtio spec says a driver does and reads used
// elements back.
type packedDriver struct {
	g                  *virtiotest.Guest
	size               uint16
	desc, drv, dev     uint64 // guest-physical
	availIdx, usedIdx  uint16
	availWrap, usedWrp bool
	counts             map[uint16]uint16
	nextID             uint16
}

func newPackedDriver(t testing.TB, g *virtiotest.Guest, size uint16) *packedDriver {
	return &packedDriver{g: g, size: size, desc: g.Alloc(int(size)*16, 16), drv: g.Alloc(4, 4), dev: g.Alloc(4, 4),
		availWrap: true, usedWrp: true, counts: map[uint16]uint16{}}
}

func (d *packedDriver) config(eventIdx bool, callFd int) virtio.PackedConfig {
	return virtio.PackedConfig{Size: d.size, Desc: d.g.UserAddr(d.desc), Driver: d.g.UserAddr(d.drv),
		Device: d.g.UserAddr(d.dev), LastAvail: virtio.PackedWrapBit, EventIdx: eventIdx, CallFd: callFd}
}

func (d *packedDriver) queue(t testing.TB, eventIdx bool, callFd int) *virtio.PackedQueue {
	t.Helper()
	q, err := virtio.NewPackedQueue(d.g.Memory(), d.config(eventIdx, callFd))
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func (d *packedDriver) availFlags(w bool) uint16 {
	if w {
		return virtio.DescFAvail
	}
	return virtio.DescFUsed
}

// add makes a chain of bufs available with buffer id (the next free one if
// id < 0); extra flags go on every descriptor. The head's flags are
// written last, as a driver must.
func (d *packedDriver) add(id int, extra uint16, bufs ...virtiotest.Buf) uint16 {
	if id < 0 {
		id = int(d.nextID)
		d.nextID = (d.nextID + 1) % d.size
	}
	head, headFlags := d.availIdx, uint16(0)
	for k, b := range bufs {
		at := d.desc + uint64(d.availIdx)*16
		f := d.availFlags(d.availWrap) | extra
		if b.Write {
			f |= virtio.DescFWrite
		}
		if k < len(bufs)-1 {
			f |= virtio.DescFNext
		}
		d.g.PutU64(at, b.Addr)
		d.g.PutU32(at+8, b.Len)
		d.g.PutU16(at+12, uint16(id))
		if k == 0 {
			headFlags = f
		} else {
			d.g.PutU16(at+14, f)
		}
		if d.availIdx++; d.availIdx == d.size {
			d.availIdx, d.availWrap = 0, !d.availWrap
		}
	}
	d.g.PutU16(d.desc+uint64(head)*16+14, headFlags)
	d.counts[uint16(id)] = uint16(len(bufs))
	return uint16(id)
}

type packedUsedElem struct {
	id  uint16
	len uint32
}

// used returns the used elements the device published since the last call.
func (d *packedDriver) used() []packedUsedElem {
	var out []packedUsedElem
	for {
		at := d.desc + uint64(d.usedIdx)*16
		f := d.g.U16(at + 14)
		if (f&virtio.DescFAvail != 0) != d.usedWrp || (f&virtio.DescFUsed != 0) != d.usedWrp {
			return out
		}
		id := d.g.U16(at + 12)
		out = append(out, packedUsedElem{id: id, len: d.g.U32(at + 8)})
		d.usedIdx += d.counts[id]
		if d.usedIdx >= d.size {
			d.usedIdx -= d.size
			d.usedWrp = !d.usedWrp
		}
	}
}

func TestPackedDequeueAndWrap(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	d := newPackedDriver(t, g, 4)
	q := d.queue(t, false, -1)
	var segs [virtio.MaxSegs][]byte
	// Several rounds over a 4-slot ring with chains of 1 and 2 descriptors.
	for round := 0; round < 6; round++ {
		a, b := g.Alloc(64, 16), g.Alloc(64, 16)
		g.Fill(a, 10, byte(round))
		id1 := d.add(-1, 0, virtiotest.Buf{Addr: a, Len: 10})
		id2 := d.add(-1, 0, virtiotest.Buf{Addr: a, Len: 10}, virtiotest.Buf{Addr: b, Len: 20})
		if n, err := q.Avail(); err != nil || n != 3 {
			t.Fatalf("round %d: Avail %d %v, want 3 descriptors", round, n, err)
		}
		if c1, c := q.ChainsUpTo(1), q.ChainsUpTo(8); c1 != 1 || c != 2 {
			t.Fatalf("round %d: ChainsUpTo %d and %d, want 1 and 2 chains", round, c1, c)
		}
		got1, n1, t1, e1 := q.Next(&segs, false)
		if e1 != virtio.ChainOK || got1 != id1 || n1 != 1 || t1 != 10 || segs[0][0] != byte(round) {
			t.Fatalf("round %d: chain 1: id %d nseg %d total %d err %v", round, got1, n1, t1, e1)
		}
		got2, n2, t2, e2 := q.Next(&segs, false)
		if e2 != virtio.ChainOK || got2 != id2 || n2 != 2 || t2 != 30 {
			t.Fatalf("round %d: chain 2: id %d nseg %d total %d err %v", round, got2, n2, t2, e2)
		}
		if q.Pending() != 0 {
			t.Fatalf("round %d: still pending", round)
		}
		q.PutUsed(got2, 0) // out of order is allowed
		q.PutUsed(got1, 0)
		if len(d.used()) != 0 {
			t.Fatal("used visible before Flush")
		}
		q.Flush()
		u := d.used()
		if len(u) != 2 || u[0].id != id2 || u[1].id != id1 {
			t.Fatalf("round %d: used %+v", round, u)
		}
	}
	// The base encodes the wrap counter: 18 descriptors over 4 slots is
	// four whole wraps (counter back to 1) and slot 2.
	if q.LastAvail() != 2|virtio.PackedWrapBit {
		t.Fatalf("LastAvail %#x, want slot 2 with the wrap bit set", q.LastAvail())
	}
}

func TestPackedEnqueueUnpop(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	d := newPackedDriver(t, g, 8)
	q := d.queue(t, false, -1)
	buf := g.Alloc(256, 16)
	id := d.add(-1, 0, virtiotest.Buf{Addr: buf, Len: 256, Write: true})
	var segs [virtio.MaxSegs][]byte
	if _, err := q.Avail(); err != nil {
		t.Fatal(err)
	}
	got, _, room, cerr := q.Next(&segs, true)
	if cerr != virtio.ChainOK || got != id || room != 256 {
		t.Fatalf("writable chain: %d %d %v", got, room, cerr)
	}
	q.Unpop()
	got, _, _, _ = q.Next(&segs, true)
	if got != id {
		t.Fatalf("after Unpop got id %d, want %d", got, id)
	}
	copy(segs[0], "hello")
	q.PutUsed(got, 5)
	q.Flush()
	if u := d.used(); len(u) != 1 || u[0].len != 5 || string(g.Read(buf, 5)) != "hello" {
		t.Fatalf("used %+v", u)
	}
	// A readable chain on a receive queue is refused and returned.
	d.add(-1, 0, virtiotest.Buf{Addr: buf, Len: 10})
	if _, _, _, cerr := q.Next(&segs, true); cerr != virtio.ChainBadDirection {
		t.Fatalf("readable chain on rx: %v", cerr)
	}
}

func TestPackedIndirect(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	d := newPackedDriver(t, g, 8)
	q := d.queue(t, false, -1)
	tbl, a, b := g.Alloc(64, 16), g.Alloc(64, 16), g.Alloc(64, 16)
	putIndirect(g, tbl, 0, a, 12, 0, 0)
	putIndirect(g, tbl, 1, b, 40, 0, 0)
	d.add(3, virtio.DescFIndirect, virtiotest.Buf{Addr: tbl, Len: 32})
	var segs [virtio.MaxSegs][]byte
	q.Avail()
	id, nseg, total, cerr := q.Next(&segs, false)
	if cerr != virtio.ChainOK || id != 3 || nseg != 2 || total != 52 {
		t.Fatalf("indirect: id %d nseg %d total %d err %v", id, nseg, total, cerr)
	}
	// Nested tables are refused (packed entries keep flags at offset 14).
	g.PutU16(tbl+14, virtio.DescFIndirect)
	d.add(4, virtio.DescFIndirect, virtiotest.Buf{Addr: tbl, Len: 32})
	if _, _, _, cerr := q.Next(&segs, false); cerr != virtio.ChainIndirect {
		t.Fatalf("nested indirect: %v", cerr)
	}
}

func TestPackedHostile(t *testing.T) {
	const size = 8
	var segs [virtio.MaxSegs][]byte
	for _, c := range []struct {
		name string
		add  func(g *virtiotest.Guest, d *packedDriver)
		want virtio.ChainErr
	}{
		{"addr outside memory", func(g *virtiotest.Guest, d *packedDriver) {
			d.add(-1, 0, virtiotest.Buf{Addr: g.Size(), Len: 10})
		}, virtio.ChainBadAddr},
		{"buffer id beyond the ring", func(g *virtiotest.Guest, d *packedDriver) {
			d.add(100, 0, virtiotest.Buf{Addr: g.Alloc(16, 16), Len: 10})
		}, virtio.ChainBadHead},
		{"NEXT on every descriptor", func(g *virtiotest.Guest, d *packedDriver) {
			b := g.Alloc(16, 16)
			bufs := make([]virtiotest.Buf, size)
			for i := range bufs {
				bufs[i] = virtiotest.Buf{Addr: b, Len: 0}
			}
			d.add(-1, virtio.DescFNext, bufs...)
		}, virtio.ChainLoop},
		{"indirect table not a multiple of 16", func(g *virtiotest.Guest, d *packedDriver) {
			d.add(-1, virtio.DescFIndirect, virtiotest.Buf{Addr: g.Alloc(64, 16), Len: 20})
		}, virtio.ChainIndirect},
		{"too long", func(g *virtiotest.Guest, d *packedDriver) {
			b := g.Alloc(16, 16)
			d.add(-1, 0, virtiotest.Buf{Addr: b, Len: 0x8000_0000}, virtiotest.Buf{Addr: b, Len: 16})
		}, virtio.ChainBadAddr},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := virtiotest.NewGuest(t, guestSize)
			d := newPackedDriver(t, g, size)
			q := d.queue(t, false, -1)
			c.add(g, d)
			q.Avail()
			if _, _, _, cerr := q.Next(&segs, false); cerr != c.want {
				t.Fatalf("got %v, want %v", cerr, c.want)
			}
		})
	}
}

func TestPackedEventSuppression(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	d := newPackedDriver(t, g, 8)
	efd := eventfd(t)
	q := d.queue(t, true, efd)
	if f := g.U16(d.dev + 2); f != virtio.EventFlagsDisable {
		t.Fatalf("device event flags %d, want DISABLE (we poll)", f)
	}
	var segs [virtio.MaxSegs][]byte
	round := func() bool {
		d.add(-1, 0, virtiotest.Buf{Addr: g.Alloc(16, 16), Len: 10})
		q.Avail()
		id, _, _, _ := q.Next(&segs, false)
		q.PutUsed(id, 0)
		return q.Flush()
	}
	g.PutU16(d.drv+2, virtio.EventFlagsDisable)
	if round() {
		t.Fatal("interrupted with events disabled")
	}
	g.PutU16(d.drv+2, virtio.EventFlagsEnable)
	if !round() {
		t.Fatal("not interrupted with events enabled")
	}
	// DESC mode: interrupt only once the used index moves past off_wrap.
	// The ring is at slot 2 of wrap round 1; ask for slot 3.
	g.PutU16(d.drv, 3|virtio.PackedWrapBit)
	g.PutU16(d.drv+2, virtio.EventFlagsDesc)
	if round() { // used now at 3
		t.Fatal("interrupted before the event offset")
	}
	if !round() { // used now at 4: slot 3, the event, was written
		t.Fatal("not interrupted past the event offset")
	}
	if round() { // events are edge-triggered: not again until re-armed
		t.Fatal("interrupted again without a new event offset")
	}
}

func TestNewPackedQueueRefuses(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	d := newPackedDriver(t, g, 8)
	for name, mod := range map[string]func(c *virtio.PackedConfig){
		"size 0":            func(c *virtio.PackedConfig) { c.Size = 0 },
		"base beyond size":  func(c *virtio.PackedConfig) { c.LastAvail = 9 },
		"misaligned ring":   func(c *virtio.PackedConfig) { c.Desc += 8 },
		"ring outside":      func(c *virtio.PackedConfig) { c.Desc = g.UserAddr(g.Size() - 16) },
		"event area beyond": func(c *virtio.PackedConfig) { c.Driver = g.UserAddr(g.Size()) },
	} {
		c := d.config(false, -1)
		mod(&c)
		if _, err := virtio.NewPackedQueue(g.Memory(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPackedBatchAllocs(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	d := newPackedDriver(t, g, 64)
	q := d.queue(t, false, -1)
	buf := g.Alloc(64, 16)
	var segs [virtio.MaxSegs][]byte
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 32; i++ {
			// Re-post by hand (no map writes): slot i gets id i.
			at := d.desc + uint64(d.availIdx)*16
			g.PutU64(at, buf)
			g.PutU32(at+8, 60)
			g.PutU16(at+12, uint16(d.availIdx))
			g.PutU16(at+14, d.availFlags(d.availWrap))
			if d.availIdx++; d.availIdx == d.size {
				d.availIdx, d.availWrap = 0, !d.availWrap
			}
		}
		n, _ := q.Avail()
		for i := 0; i < n; i++ {
			id, _, _, _ := q.Next(&segs, false)
			q.PutUsed(id, 0)
		}
		q.Flush()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch", allocs)
	}
}

// FuzzPackedRing runs the engine over arbitrary descriptor ring contents:
// it must not panic, and every buffer it hands out lies in guest memory.
func FuzzPackedRing(f *testing.F) {
	f.Add([]byte{0x80, 0, 1, 0, 0x80, 0x81, 2, 3}, uint16(0x8000))
	f.Add(make([]byte, 256), uint16(3))
	f.Fuzz(func(t *testing.T, ring []byte, base uint16) {
		g := virtiotest.NewGuest(t, 1<<16)
		const size = 16
		desc := g.Alloc(size*16, 16)
		drv, dev := g.Alloc(4, 4), g.Alloc(4, 4)
		copy(g.Bytes()[desc:desc+size*16], ring)
		// Keep addresses mostly inside the small guest.
		for i := uint64(0); i < size; i++ {
			a := g.U64(desc + i*16)
			g.PutU64(desc+i*16, a%(1<<17))
		}
		q, err := virtio.NewPackedQueue(g.Memory(), virtio.PackedConfig{Size: size, Desc: g.UserAddr(desc),
			Driver: g.UserAddr(drv), Device: g.UserAddr(dev), LastAvail: base%size | base&virtio.PackedWrapBit, CallFd: -1})
		if err != nil {
			t.Fatal(err)
		}
		var segs [virtio.MaxSegs][]byte
		mem := g.Bytes()
		for round := 0; round < 3; round++ {
			n, _ := q.Avail()
			for i := 0; i < n && q.Pending() > 0; i++ {
				id, nseg, total, cerr := q.Next(&segs, i%2 == 0)
				sum := 0
				for _, s := range segs[:nseg] {
					if len(s) > 0 && !inside(mem, s) {
						t.Fatalf("segment outside guest memory")
					}
					sum += len(s)
				}
				if cerr == virtio.ChainOK && sum != total {
					t.Fatalf("total %d, segments sum %d", total, sum)
				}
				if cerr != virtio.ChainBadHead {
					q.PutUsed(id, uint32(total))
				}
			}
			q.Flush()
		}
	})
}

// inside says whether s lies within mem.
func inside(mem, s []byte) bool {
	lo := uintptr(unsafe.Pointer(&mem[0]))
	p := uintptr(unsafe.Pointer(&s[0]))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(mem))
}

// With IN_ORDER a batch returned with nothing written is published as one
// used element carrying the last chain's id, placed where the batch
// started, and the used position skips the batch's descriptors (chains of
// 1 and 2 descriptors, across the wrap). A batch with a written length
// still gets one element per chain.
func TestPackedInOrderOneUsedElement(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	d := newPackedDriver(t, g, 8)
	cfg := d.config(false, -1)
	cfg.InOrder = true
	q, err := virtio.NewPackedQueue(g.Memory(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var segs [virtio.MaxSegs][]byte
	a := g.Alloc(64, 16)
	for round := 0; round < 5; round++ {
		ids := []uint16{
			d.add(-1, 0, virtiotest.Buf{Addr: a, Len: 20}),
			d.add(-1, 0, virtiotest.Buf{Addr: a, Len: 20}, virtiotest.Buf{Addr: a, Len: 20}),
			d.add(-1, 0, virtiotest.Buf{Addr: a, Len: 20}),
		}
		startIdx, startWrap := d.usedIdx, d.usedWrp
		for range ids {
			id, _, _, cerr := q.Next(&segs, false)
			if cerr != virtio.ChainOK {
				t.Fatalf("round %d: %v", round, cerr)
			}
			q.PutUsed(id, 0)
		}
		q.Flush()
		// The driver reads the element at the batch start, then steps by
		// the descriptors of every chain up to its id.
		at := d.desc + uint64(startIdx)*16
		f := g.U16(at + 14)
		if (f&virtio.DescFAvail != 0) != startWrap || (f&virtio.DescFUsed != 0) != startWrap {
			t.Fatalf("round %d: no used element at slot %d", round, startIdx)
		}
		if id := g.U16(at + 12); id != ids[2] {
			t.Fatalf("round %d: used id %d, want the last chain's %d", round, id, ids[2])
		}
		d.usedIdx += 4
		if d.usedIdx >= d.size {
			d.usedIdx -= d.size
			d.usedWrp = !d.usedWrp
		}
		if u := d.used(); len(u) != 0 {
			t.Fatalf("round %d: more used elements than one: %+v", round, u)
		}
	}
	// A receive batch: every chain keeps its element and length.
	b := g.Alloc(64, 16)
	id1 := d.add(-1, 0, virtiotest.Buf{Addr: b, Len: 64, Write: true})
	id2 := d.add(-1, 0, virtiotest.Buf{Addr: b, Len: 64, Write: true})
	for _, n := range []uint32{60, 0} {
		id, _, _, _ := q.Next(&segs, true)
		q.PutUsed(id, n)
	}
	q.Flush()
	if u := d.used(); len(u) != 2 || u[0].id != id1 || u[0].len != 60 || u[1].id != id2 {
		t.Fatalf("receive batch: used %+v", u)
	}
}
