package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

const guestSize = 4 << 20

func newRing(t *testing.T, size uint16, eventIdx bool, callFd int) (*virtiotest.Guest, *virtiotest.SplitRing, *virtio.SplitQueue) {
	t.Helper()
	g := virtiotest.NewGuest(t, guestSize)
	r := g.NewSplitRing(size)
	return g, r, r.NewQueue(eventIdx, callFd)
}

// eventfd returns a non-blocking eventfd closed at the end of the test.
func eventfd(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatalf("eventfd: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// interrupts reads and resets an eventfd's counter.
func interrupts(t *testing.T, fd int) uint64 {
	t.Helper()
	var b [8]byte
	n, err := unix.Read(fd, b[:])
	if errors.Is(err, unix.EAGAIN) {
		return 0
	}
	if err != nil || n != 8 {
		t.Fatalf("read eventfd: %d, %v", n, err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

func avail(t *testing.T, q *virtio.SplitQueue) int {
	t.Helper()
	n, err := q.Avail()
	if err != nil {
		t.Fatalf("Avail: %v", err)
	}
	return n
}

// inGuest says whether b lies wholly inside g's memory.
func inGuest(g *virtiotest.Guest, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	mem := g.Bytes()
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(mem))
}

func fill(g *virtiotest.Guest, n int, seed byte) (uint64, []byte) {
	a := g.Alloc(n, 8)
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	g.Write(a, b)
	return a, b
}

func TestSplitDequeueReadable(t *testing.T) {
	g, r, q := newRing(t, 8, false, -1)
	a1, d1 := fill(g, 100, 1)
	a2, d2 := fill(g, 30, 2)
	a3, d3 := fill(g, 7, 3)
	h1 := r.AddChain(virtiotest.Buf{Addr: a1, Len: 100})
	h2 := r.AddChain(virtiotest.Buf{Addr: a2, Len: 30}, virtiotest.Buf{Addr: a3, Len: 7})

	if n := avail(t, q); n != 2 {
		t.Fatalf("Avail = %d, want 2", n)
	}
	var segs [virtio.MaxSegs][]byte
	head, nseg, total, cerr := q.Next(&segs, false)
	if cerr != virtio.ChainOK || head != h1 || nseg != 1 || total != 100 || !bytes.Equal(segs[0], d1) {
		t.Fatalf("chain 1: head %d nseg %d total %d err %v", head, nseg, total, cerr)
	}
	head, nseg, total, cerr = q.Next(&segs, false)
	if cerr != virtio.ChainOK || head != h2 || nseg != 2 || total != 37 ||
		!bytes.Equal(segs[0], d2) || !bytes.Equal(segs[1], d3) {
		t.Fatalf("chain 2: head %d nseg %d total %d err %v", head, nseg, total, cerr)
	}
	if !inGuest(g, segs[0]) || !inGuest(g, segs[1]) {
		t.Fatal("segments do not alias guest memory")
	}
	// Segments alias guest memory: zero copies on dequeue.
	g.Write(a2, []byte{0xee})
	if segs[0][0] != 0xee {
		t.Fatal("segment is a copy, not guest memory")
	}
	if q.Pending() != 0 || q.LastAvail() != 2 {
		t.Fatalf("Pending %d LastAvail %d after consuming both", q.Pending(), q.LastAvail())
	}
	q.PutUsed(h1, 0)
	q.PutUsed(h2, 0)
	q.Flush()
	used := r.PopUsed()
	if len(used) != 2 || used[0].ID != uint32(h1) || used[1].ID != uint32(h2) {
		t.Fatalf("used = %+v", used)
	}
	if r.FreeDescs() != 8 {
		t.Fatalf("FreeDescs = %d after all chains came back, want 8", r.FreeDescs())
	}
}

func TestSplitZeroLengthDescriptorsSkipped(t *testing.T) {
	g, r, q := newRing(t, 8, false, -1)
	a, d := fill(g, 10, 9)
	r.AddChain(virtiotest.Buf{Addr: a, Len: 0}, virtiotest.Buf{Addr: a, Len: 10}, virtiotest.Buf{Addr: 0, Len: 0})
	avail(t, q)
	var segs [virtio.MaxSegs][]byte
	_, nseg, total, cerr := q.Next(&segs, false)
	if cerr != virtio.ChainOK || nseg != 1 || total != 10 || !bytes.Equal(segs[0], d) {
		t.Fatalf("nseg %d total %d err %v", nseg, total, cerr)
	}
}

func TestSplitEnqueueWritable(t *testing.T) {
	const hdr = 12
	g, r, q := newRing(t, 16, false, -1)
	h1 := r.AddRxBuffer(2048)
	b1 := g.Alloc(40, 8)
	b2 := g.Alloc(60, 8)
	h2 := r.AddChain(virtiotest.Buf{Addr: b1, Len: 40, Write: true}, virtiotest.Buf{Addr: b2, Len: 60, Write: true})

	frame := bytes.Repeat([]byte{0xab, 0xcd}, 35) // 70 bytes
	avail(t, q)
	var segs [virtio.MaxSegs][]byte
	for _, want := range []uint16{h1, h2} {
		head, nseg, total, cerr := q.Next(&segs, true)
		if cerr != virtio.ChainOK || head != want {
			t.Fatalf("Next: head %d (want %d) err %v", head, want, cerr)
		}
		pkt := append(make([]byte, hdr), frame...)
		if total < len(pkt) {
			t.Fatalf("chain of %d bytes too small", total)
		}
		w := 0
		for _, s := range segs[:nseg] {
			w += copy(s, pkt[w:])
		}
		q.PutUsed(head, uint32(w))
	}
	q.Flush()
	used := r.PopUsed()
	if len(used) != 2 {
		t.Fatalf("%d used entries, want 2", len(used))
	}
	for i, e := range used {
		if e.Len != uint32(hdr+len(frame)) {
			t.Fatalf("used[%d].Len = %d", i, e.Len)
		}
		if got := r.RxFrame(e, hdr); !bytes.Equal(got, frame) {
			t.Fatalf("used[%d] frame = %x, want %x", i, got, frame)
		}
	}
}

func TestSplitFlushPublishesOncePerBatch(t *testing.T) {
	_, r, q := newRing(t, 8, false, -1)
	var heads []uint16
	for i := 0; i < 3; i++ {
		heads = append(heads, r.AddRxBuffer(64))
	}
	avail(t, q)
	var segs [virtio.MaxSegs][]byte
	for range heads {
		head, _, _, _ := q.Next(&segs, true)
		q.PutUsed(head, 0)
		if r.UsedIdx() != 0 {
			t.Fatalf("used.idx = %d before Flush, want 0", r.UsedIdx())
		}
	}
	q.Flush()
	if r.UsedIdx() != 3 {
		t.Fatalf("used.idx = %d after Flush, want 3", r.UsedIdx())
	}
	if q.Flush() {
		t.Fatal("Flush with nothing new interrupted")
	}
	if r.UsedIdx() != 3 {
		t.Fatalf("used.idx moved on an empty Flush")
	}
	used := r.PopUsed()
	for i, e := range used {
		if e.ID != uint32(heads[i]) {
			t.Fatalf("used[%d].ID = %d, want %d (order)", i, e.ID, heads[i])
		}
	}
}

func TestSplitInterruptWithoutEventIdx(t *testing.T) {
	call := eventfd(t)
	_, r, q := newRing(t, 8, false, call)
	if r.UsedFlags()&virtio.UsedFNoNotify == 0 {
		t.Fatal("a polling device without EVENT_IDX must set VRING_USED_F_NO_NOTIFY")
	}
	var segs [virtio.MaxSegs][]byte
	round := func() bool {
		r.AddRxBuffer(64)
		avail(t, q)
		head, _, _, _ := q.Next(&segs, true)
		q.PutUsed(head, 0)
		did := q.Flush()
		r.PopUsed()
		return did
	}
	if !round() || interrupts(t, call) != 1 {
		t.Fatal("no interrupt with avail.flags = 0")
	}
	r.SetAvailFlags(virtio.AvailFNoInterrupt)
	if round() || interrupts(t, call) != 0 {
		t.Fatal("interrupted despite VRING_AVAIL_F_NO_INTERRUPT")
	}
	r.SetAvailFlags(0)
	if !round() || interrupts(t, call) != 1 {
		t.Fatal("no interrupt after clearing NO_INTERRUPT")
	}
	if r.UsedFlags()&virtio.UsedFNoNotify == 0 {
		t.Fatal("Flush dropped VRING_USED_F_NO_NOTIFY")
	}
}

func TestSplitInterruptEventIdx(t *testing.T) {
	call := eventfd(t)
	g := virtiotest.NewGuest(t, guestSize)
	r := g.NewSplitRing(8)
	// Start with used.idx near the wrap to cover 16-bit arithmetic.
	const start = 0xfffd
	g.PutU16(r.UsedAddr+2, start)
	cfg := r.Config(true, call)
	cfg.LastAvail = start
	q, err := virtio.NewSplitQueue(g.Memory(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.UsedFlags() != 0 {
		t.Fatalf("used.flags = %#x with EVENT_IDX, want 0", r.UsedFlags())
	}
	r.SetAvailIdx(start)
	if r.UsedIdx() != start {
		t.Fatal("NewSplitQueue did not keep used.idx")
	}
	buf := g.Alloc(64, 16)
	for i := uint16(0); i < 8; i++ {
		r.SetDesc(i, buf, 64, virtio.DescFWrite, 0)
	}

	var segs [virtio.MaxSegs][]byte
	used := uint16(start)
	batch := func(n int) bool {
		for i := 0; i < n; i++ {
			r.PushAvail(uint16(i))
		}
		avail(t, q)
		for i := 0; i < n; i++ {
			head, _, _, cerr := q.Next(&segs, true)
			if cerr != virtio.ChainOK {
				t.Fatalf("Next: %v", cerr)
			}
			q.PutUsed(head, 0)
		}
		used += uint16(n)
		return q.Flush()
	}
	s := uint16(start)
	cases := []struct {
		event uint16
		n     int
		want  bool
	}{
		{event: s, n: 1, want: true},       // entry start is the one the driver waits for
		{event: s + 5, n: 1, want: false},  // waits for a later entry
		{event: s + 5, n: 4, want: true},   // this batch crosses it (and used.idx wraps)
		{event: s + 3, n: 2, want: false},  // event is behind: already signalled
		{event: s + 10, n: 3, want: true},  // exactly the last entry of the batch
		{event: s + 14, n: 1, want: false}, // next one
	}
	for i, c := range cases {
		r.SetUsedEvent(c.event)
		got := batch(c.n)
		if got != c.want || interrupts(t, call) != map[bool]uint64{false: 0, true: 1}[c.want] {
			t.Fatalf("case %d: used_event %#x, used.idx now %#x: interrupted %v, want %v", i, c.event, used, got, c.want)
		}
		if r.UsedIdx() != used {
			t.Fatalf("case %d: used.idx = %#x, want %#x", i, r.UsedIdx(), used)
		}
	}
	// AVAIL_F_NO_INTERRUPT is ignored with EVENT_IDX.
	r.SetAvailFlags(virtio.AvailFNoInterrupt)
	r.SetUsedEvent(used)
	if !batch(1) {
		t.Fatal("EVENT_IDX: used_event matched but no interrupt")
	}
	interrupts(t, call)
}

func TestSplitUnpop(t *testing.T) {
	_, r, q := newRing(t, 8, false, -1)
	h1 := r.AddRxBuffer(64)
	h2 := r.AddRxBuffer(64)
	avail(t, q)
	var segs [virtio.MaxSegs][]byte
	head, _, _, _ := q.Next(&segs, true)
	if head != h1 || q.Pending() != 1 {
		t.Fatalf("head %d pending %d", head, q.Pending())
	}
	q.Unpop()
	if q.Pending() != 2 || q.LastAvail() != 0 {
		t.Fatalf("after Unpop: pending %d last avail %d", q.Pending(), q.LastAvail())
	}
	for _, want := range []uint16{h1, h2} {
		if head, _, _, _ := q.Next(&segs, true); head != want {
			t.Fatalf("Next after Unpop = %d, want %d", head, want)
		}
	}
}

func TestSplitLastAvailBase(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	r := g.NewSplitRing(8)
	for i := 0; i < 7; i++ {
		r.AddRxBuffer(64)
	}
	// A base that agrees with used.idx (where we stopped last time) is
	// where the ring resumes.
	g.PutU16(r.UsedAddr+2, 5)
	cfg := r.Config(false, -1)
	cfg.LastAvail = 5
	q, err := virtio.NewSplitQueue(g.Memory(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := avail(t, q); n != 2 || q.Resynced {
		t.Fatalf("Avail = %d (resynced %v) with base 5 and avail.idx 7, want 2", n, q.Resynced)
	}
	if q.LastAvail() != 5 || q.Size() != 8 {
		t.Fatalf("LastAvail %d Size %d", q.LastAvail(), q.Size())
	}
	// A base that disagrees (DPDK virtio_user sends 0 on reconnect)
	// resumes from used.idx instead of reading stale chains again.
	cfg.LastAvail = 0
	q, err = virtio.NewSplitQueue(g.Memory(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := avail(t, q); n != 2 || !q.Resynced || q.LastAvail() != 5 {
		t.Fatalf("base 0, used.idx 5: Avail %d resynced %v last %d", n, q.Resynced, q.LastAvail())
	}
}

func TestSplitAvailIdxJump(t *testing.T) {
	for _, c := range []struct {
		idx  uint16
		want error
	}{
		{8, nil}, {9, virtio.ErrAvailIdx}, {0xffff, virtio.ErrAvailIdx}, {0x8000, virtio.ErrAvailIdx},
	} {
		_, r, q := newRing(t, 8, false, -1)
		r.SetAvailIdx(c.idx)
		n, err := q.Avail()
		if !errors.Is(err, c.want) {
			t.Fatalf("avail.idx %d: err %v, want %v", c.idx, err, c.want)
		}
		if err == nil && n != int(c.idx) {
			t.Fatalf("avail.idx %d: n %d", c.idx, n)
		}
		if err != nil && q.Pending() != 0 {
			t.Fatalf("avail.idx %d: Pending %d after ErrAvailIdx", c.idx, q.Pending())
		}
	}
}

// TestSplitAvailLayouts runs the engine on an avail ring whose idx is and
// is not 4-aligned (the engine reads it through the aligned 32-bit word).
func TestSplitAvailLayouts(t *testing.T) {
	for _, off := range []uint64{0, 2} {
		g := virtiotest.NewGuest(t, guestSize)
		d := g.Alloc(16*4, 16)
		a := g.Alloc(4+2*4+2+4, 4) + off
		u := g.Alloc(4+8*4+2, 4)
		r := g.NewSplitRingAt(4, d, a, u)
		q := r.NewQueue(off == 0, -1)
		var segs [virtio.MaxSegs][]byte
		for round := 0; round < 10; round++ {
			h := r.AddRxBuffer(32)
			if n := avail(t, q); n != 1 {
				t.Fatalf("avail offset %d round %d: Avail = %d", off, round, n)
			}
			head, _, _, cerr := q.Next(&segs, true)
			if head != h || cerr != virtio.ChainOK {
				t.Fatalf("avail offset %d: head %d err %v", off, head, cerr)
			}
			q.PutUsed(head, 1)
			q.Flush()
			if u := r.PopUsed(); len(u) != 1 || u[0].ID != uint32(h) {
				t.Fatalf("avail offset %d: used %+v", off, u)
			}
		}
	}
}

// putIndirect writes entry i of an indirect table at tbl.
func putIndirect(g *virtiotest.Guest, tbl uint64, i int, addr uint64, length uint32, flags, next uint16) {
	e := tbl + uint64(i)*16
	g.PutU64(e, addr)
	g.PutU32(e+8, length)
	g.PutU16(e+12, flags)
	g.PutU16(e+14, next)
}

// An indirect chain (Linux uses them for transmit) is walked like a direct
// one.
func TestSplitIndirectChain(t *testing.T) {
	g, r, q := newRing(t, 8, false, -1)
	a, b := g.Alloc(64, 16), g.Alloc(64, 16)
	g.Fill(a, 12, 1)
	g.Fill(b, 50, 2)
	head := r.AddIndirectChain(virtiotest.Buf{Addr: a, Len: 12}, virtiotest.Buf{Addr: b, Len: 50})
	if n := avail(t, q); n != 1 {
		t.Fatalf("avail %d", n)
	}
	var segs [virtio.MaxSegs][]byte
	h, nseg, total, cerr := q.Next(&segs, false)
	if cerr != virtio.ChainOK || h != head || nseg != 2 || total != 62 || segs[1][0] != 2 {
		t.Fatalf("indirect chain: head %d nseg %d total %d err %v", h, nseg, total, cerr)
	}
}

func TestSplitHostileChains(t *testing.T) {
	const size = 8
	type setup func(g *virtiotest.Guest, r *virtiotest.SplitRing)
	buf := func(g *virtiotest.Guest) uint64 { return g.Alloc(4096, 16) }
	cases := []struct {
		name     string
		writable bool
		setup    setup
		want     virtio.ChainErr
		maxSegs  int
	}{
		{"addr outside memory", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(0, g.Size()+4096, 100, 0, 0)
			r.PushAvail(0)
		}, virtio.ChainBadAddr, 0},
		{"addr far outside memory", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(0, 0xffff_ffff_ffff_f000, 0x2000, 0, 0)
			r.PushAvail(0)
		}, virtio.ChainBadAddr, 0},
		{"range crosses the end of memory", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(0, g.Size()-10, 20, 0, 0)
			r.PushAvail(0)
		}, virtio.ChainBadAddr, 0},
		{"second descriptor outside memory", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(0, buf(g), 10, virtio.DescFNext, 1)
			r.SetDesc(1, g.Size(), 1, 0, 0)
			r.PushAvail(0)
		}, virtio.ChainBadAddr, 1},
		{"loop a->b->a", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			b := buf(g)
			r.SetDesc(2, b, 1, virtio.DescFNext, 5)
			r.SetDesc(5, b, 1, virtio.DescFNext, 2)
			r.PushAvail(2)
		}, virtio.ChainLoop, size},
		{"self loop of empty descriptors", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(3, 0, 0, virtio.DescFNext, 3)
			r.PushAvail(3)
		}, virtio.ChainLoop, 0},
		{"head out of range", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.PushAvail(size)
		}, virtio.ChainBadHead, 0},
		{"head 0xffff", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.PushAvail(0xffff)
		}, virtio.ChainBadHead, 0},
		{"next out of range", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(0, buf(g), 10, virtio.DescFNext, size)
			r.PushAvail(0)
		}, virtio.ChainBadIndex, 1},
		{"lengths that overflow", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			for i := uint16(0); i < size; i++ {
				r.SetDesc(i, 0x1000, 0xffffffff, virtio.DescFNext, (i+1)%size)
			}
			r.PushAvail(0)
		}, virtio.ChainBadAddr, 0},
		{"chain longer than MaxChainBytes", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			const chunk = 512 << 10
			a := g.Alloc(chunk, 16)
			for i := uint16(0); i < 4; i++ {
				r.SetDesc(i, a, chunk, virtio.DescFNext, i+1)
			}
			r.SetDesc(4, a, chunk, 0, 0)
			r.PushAvail(0)
		}, virtio.ChainTooLong, 2},
		{"writable buffer on a transmit queue", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.AddChain(virtiotest.Buf{Addr: buf(g), Len: 10}, virtiotest.Buf{Addr: buf(g), Len: 10, Write: true})
		}, virtio.ChainBadDirection, 1},
		{"readable buffer on a receive queue", true, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.AddChain(virtiotest.Buf{Addr: buf(g), Len: 10})
		}, virtio.ChainBadDirection, 0},
		{"indirect with NEXT", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			tbl := buf(g)
			putIndirect(g, tbl, 0, buf(g), 10, 0, 0)
			r.SetDesc(0, tbl, 16, virtio.DescFIndirect|virtio.DescFNext, 1)
			r.SetDesc(1, buf(g), 10, 0, 0)
			r.PushAvail(0)
		}, virtio.ChainIndirect, 0},
		{"nested indirect", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			tbl, inner := buf(g), buf(g)
			putIndirect(g, inner, 0, buf(g), 10, 0, 0)
			putIndirect(g, tbl, 0, inner, 16, virtio.DescFIndirect, 0)
			r.SetDesc(0, tbl, 16, virtio.DescFIndirect, 0)
			r.PushAvail(0)
		}, virtio.ChainIndirect, 0},
		{"indirect table length not a multiple of 16", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(0, buf(g), 20, virtio.DescFIndirect, 0)
			r.PushAvail(0)
		}, virtio.ChainIndirect, 0},
		{"indirect table outside memory", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			r.SetDesc(0, g.Size()-16, 32, virtio.DescFIndirect, 0)
			r.PushAvail(0)
		}, virtio.ChainBadAddr, 0},
		{"loop inside an indirect table", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			tbl := buf(g)
			putIndirect(g, tbl, 0, 0, 0, virtio.DescFNext, 1)
			putIndirect(g, tbl, 1, 0, 0, virtio.DescFNext, 0)
			r.SetDesc(0, tbl, 32, virtio.DescFIndirect, 0)
			r.PushAvail(0)
		}, virtio.ChainLoop, 0},
		{"indirect next out of the table", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			tbl := buf(g)
			putIndirect(g, tbl, 0, buf(g), 10, virtio.DescFNext, 2)
			r.SetDesc(0, tbl, 32, virtio.DescFIndirect, 0)
			r.PushAvail(0)
		}, virtio.ChainBadIndex, 1},
		{"indirect entry outside memory", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			tbl := buf(g)
			putIndirect(g, tbl, 0, g.Size(), 10, 0, 0)
			r.SetDesc(0, tbl, 16, virtio.DescFIndirect, 0)
			r.PushAvail(0)
		}, virtio.ChainBadAddr, 0},
		{"indirect after a direct descriptor", false, func(g *virtiotest.Guest, r *virtiotest.SplitRing) {
			b := buf(g)
			r.SetDesc(0, b, 10, virtio.DescFNext, 1)
			r.SetDesc(1, b, 32, virtio.DescFIndirect, 0)
			r.PushAvail(0)
		}, virtio.ChainIndirect, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, r, q := newRing(t, size, false, -1)
			c.setup(g, r)
			avail(t, q)
			var segs [virtio.MaxSegs][]byte
			head, nseg, total, cerr := q.Next(&segs, c.writable)
			if cerr != c.want {
				t.Fatalf("ChainErr = %v, want %v", cerr, c.want)
			}
			if nseg > c.maxSegs || nseg > virtio.MaxSegs {
				t.Fatalf("nseg = %d, want at most %d", nseg, c.maxSegs)
			}
			sum := 0
			for _, s := range segs[:nseg] {
				if !inGuest(g, s) {
					t.Fatal("segment outside guest memory")
				}
				sum += len(s)
			}
			if c.want != virtio.ChainTooLong && sum != total {
				t.Fatalf("total %d != sum of segments %d", total, sum)
			}
			if c.want == virtio.ChainBadHead {
				return
			}
			// The guest gets a refused chain back.
			q.PutUsed(head, 0)
			q.Flush()
			if u := r.PopUsed(); len(u) != 1 || u[0].ID != uint32(head) || u[0].Len != 0 {
				t.Fatalf("refused chain not returned: %+v", u)
			}
		})
	}
}

func TestSplitTooManySegments(t *testing.T) {
	for _, n := range []int{virtio.MaxSegs, virtio.MaxSegs + 1} {
		g := virtiotest.NewGuest(t, guestSize)
		r := g.NewSplitRing(64)
		q := r.NewQueue(false, -1)
		a := g.Alloc(n, 1)
		bufs := make([]virtiotest.Buf, n)
		for i := range bufs {
			bufs[i] = virtiotest.Buf{Addr: a + uint64(i), Len: 1}
		}
		r.AddChain(bufs...)
		avail(t, q)
		var segs [virtio.MaxSegs][]byte
		_, nseg, total, cerr := q.Next(&segs, false)
		if n <= virtio.MaxSegs {
			if cerr != virtio.ChainOK || nseg != n || total != n {
				t.Fatalf("%d segments: nseg %d total %d err %v", n, nseg, total, cerr)
			}
		} else if cerr != virtio.ChainTooManySegs || nseg != virtio.MaxSegs {
			t.Fatalf("%d segments: nseg %d err %v, want ChainTooManySegs", n, nseg, cerr)
		}
	}
}

// TestSplitRegionBoundary: a buffer that spans two regions adjacent in
// guest-physical space is refused; each half alone is fine.
func TestSplitRegionBoundary(t *testing.T) {
	g := virtiotest.NewGuest(t, guestSize)
	r := g.NewSplitRing(8)
	half := g.Size() / 2
	mem, err := virtio.NewMemory([]virtio.Region{
		{GuestPhysAddr: half, Size: half, UserAddr: virtiotest.UserBase + half + 0x1000_0000, Data: g.Bytes()[half:]},
		{GuestPhysAddr: 0, Size: half, UserAddr: virtiotest.UserBase, Data: g.Bytes()[:half]},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rs := mem.Regions(); rs[0].GuestPhysAddr != 0 {
		t.Fatal("regions are not sorted by guest-physical address")
	}
	q, err := virtio.NewSplitQueue(mem, r.Config(false, -1))
	if err != nil {
		t.Fatal(err)
	}
	r.AddChain(virtiotest.Buf{Addr: half - 8, Len: 8})
	r.AddChain(virtiotest.Buf{Addr: half, Len: 8})
	r.AddChain(virtiotest.Buf{Addr: half - 8, Len: 16})
	avail(t, q)
	var segs [virtio.MaxSegs][]byte
	for i, want := range []virtio.ChainErr{virtio.ChainOK, virtio.ChainOK, virtio.ChainBadAddr} {
		if _, _, _, cerr := q.Next(&segs, false); cerr != want {
			t.Fatalf("chain %d: %v, want %v", i, cerr, want)
		}
	}
	// The same in frontend-virtual space: the second region's user
	// address is not adjacent, so a ring straddling half is refused.
	if _, ok := mem.TranslateUser(virtiotest.UserBase+half-8, 16); ok {
		t.Fatal("TranslateUser crossed a region end")
	}
	if b, ok := mem.TranslateUser(virtiotest.UserBase+half+0x1000_0000, 16); !ok || &b[0] != &g.Bytes()[half] {
		t.Fatal("TranslateUser of the second region failed")
	}
}

func TestNewSplitQueueRefuses(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	r := g.NewSplitRing(8)
	mem := g.Memory()
	good := r.Config(false, -1)
	end := virtiotest.UserBase + g.Size()
	cases := []struct {
		name string
		edit func(c *virtio.SplitConfig)
	}{
		{"size 0", func(c *virtio.SplitConfig) { c.Size = 0 }},
		{"size 3", func(c *virtio.SplitConfig) { c.Size = 3 }},
		{"size 100", func(c *virtio.SplitConfig) { c.Size = 100 }},
		{"size 65535", func(c *virtio.SplitConfig) { c.Size = 65535 }},
		{"desc misaligned", func(c *virtio.SplitConfig) { c.Desc += 8 }},
		{"avail odd", func(c *virtio.SplitConfig) { c.Avail++ }},
		{"used misaligned", func(c *virtio.SplitConfig) { c.Used += 2 }},
		{"desc outside memory", func(c *virtio.SplitConfig) { c.Desc = end }},
		{"desc below memory", func(c *virtio.SplitConfig) { c.Desc = virtiotest.UserBase - 4096 }},
		{"desc is a guest-physical address", func(c *virtio.SplitConfig) { c.Desc = r.DescAddr }},
		{"desc crosses the end", func(c *virtio.SplitConfig) { c.Desc = end - 64 }},
		{"avail crosses the end", func(c *virtio.SplitConfig) { c.Avail = end - 8 }},
		{"used event past the end", func(c *virtio.SplitConfig) { c.Avail = end - (4 + 2*8) }},
		{"used crosses the end", func(c *virtio.SplitConfig) { c.Used = end - 16 }},
		{"avail event past the end", func(c *virtio.SplitConfig) { c.Used = end - (4 + 8*8) }},
		{"large ring crosses the end", func(c *virtio.SplitConfig) { c.Size = 32768; c.Desc = end - 0x40000 }},
	}
	for _, c := range cases {
		cfg := good
		c.edit(&cfg)
		if q, err := virtio.NewSplitQueue(mem, cfg); err == nil || q != nil {
			t.Errorf("%s: NewSplitQueue accepted %+v", c.name, cfg)
		}
	}
	if _, err := virtio.NewSplitQueue(mem, good); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
}

func TestNewMemoryRefuses(t *testing.T) {
	data := make([]byte, 0x3000)
	reg := func(gpa, size, uva uint64) virtio.Region {
		return virtio.Region{GuestPhysAddr: gpa, Size: size, UserAddr: uva, Data: data[:size]}
	}
	cases := []struct {
		name    string
		regions []virtio.Region
		want    error
	}{
		{"zero size", []virtio.Region{reg(0, 0, 0x10000)}, virtio.ErrRegionEmpty},
		{"zero size second", []virtio.Region{reg(0, 0x1000, 0x10000), reg(0x5000, 0, 0x50000)}, virtio.ErrRegionEmpty},
		{"overlap guest-physical", []virtio.Region{reg(0, 0x2000, 0x10000), reg(0x1000, 0x1000, 0x50000)}, virtio.ErrRegionOverlap},
		{"same guest-physical", []virtio.Region{reg(0x1000, 0x1000, 0x10000), reg(0x1000, 0x1000, 0x50000)}, virtio.ErrRegionOverlap},
		{"contains", []virtio.Region{reg(0x1000, 0x1000, 0x10000), reg(0, 0x3000, 0x50000)}, virtio.ErrRegionOverlap},
		{"overlap user", []virtio.Region{reg(0, 0x1000, 0x10000), reg(0x8000, 0x1000, 0x10800)}, virtio.ErrRegionOverlap},
		{"wraps guest-physical", []virtio.Region{{GuestPhysAddr: ^uint64(0) - 0xfff, Size: 0x2000, UserAddr: 0, Data: data[:0x2000]}}, virtio.ErrRegionOverflow},
		{"wraps user", []virtio.Region{{GuestPhysAddr: 0, Size: 0x2000, UserAddr: ^uint64(0) - 0xfff, Data: data[:0x2000]}}, virtio.ErrRegionOverflow},
		{"data shorter than size", []virtio.Region{{GuestPhysAddr: 0, Size: 0x2000, UserAddr: 0, Data: data[:0x1000]}}, virtio.ErrRegionData},
	}
	for _, c := range cases {
		if m, err := virtio.NewMemory(c.regions); !errors.Is(err, c.want) || m != nil {
			t.Errorf("%s: NewMemory = %v, want %v", c.name, err, c.want)
		}
	}
	// Adjacent regions are fine; translation never crosses between them.
	m, err := virtio.NewMemory([]virtio.Region{reg(0x1000, 0x1000, 0x11000), reg(0, 0x1000, 0x10000)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		gpa, n uint64
		ok     bool
	}{
		{0, 0x1000, true}, {0x1000, 0x1000, true}, {0xff0, 0x20, false}, {0x1ff0, 0x20, false},
		{0x2000, 1, false}, {0x1fff, 1, true}, {0x1000, 0, true}, {^uint64(0), 2, false},
	} {
		if _, ok := m.Translate(c.gpa, c.n); ok != c.ok {
			t.Errorf("Translate(%#x, %#x) ok = %v, want %v", c.gpa, c.n, ok, c.ok)
		}
	}
	if len(m.Regions()) != 2 || m.Close() != nil {
		t.Fatal("Regions/Close")
	}
}

// TestSplitBatchAllocs: the engine's per-batch path does not allocate.
func TestSplitBatchAllocs(t *testing.T) {
	call := eventfd(t)
	g := virtiotest.NewGuest(t, guestSize)
	r := g.NewSplitRing(256)
	q := r.NewQueue(true, call)
	buf := g.Alloc(256*64, 16)
	for i := uint16(0); i < 256; i++ {
		r.SetDesc(i, buf+uint64(i)*64, 64, virtio.DescFWrite, 0)
	}
	var segs [virtio.MaxSegs][]byte
	next := uint16(0)
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 32; i++ {
			r.PushAvail(next)
			next = (next + 1) % 256
		}
		n, _ := q.Avail()
		for i := 0; i < n; i++ {
			head, _, total, _ := q.Next(&segs, true)
			q.PutUsed(head, uint32(total))
		}
		q.Flush()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
	interrupts(t, call)
}
