package virtiotest_test

import (
	"bytes"
	"testing"

	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

func TestGuestLayout(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	if g.Fd() < 0 || len(g.Bytes()) != 1<<20 || g.Size() != 1<<20 {
		t.Fatal("guest size")
	}
	if r := g.Region(); r.GuestPhysAddr != 0 || r.Size != 1<<20 || r.UserAddr != virtiotest.UserBase || r.MmapOffset != 0 {
		t.Fatalf("region %+v", r)
	}
	a := g.Alloc(3, 1)
	b := g.Alloc(16, 64)
	if a == 0 || b%64 != 0 || b < a+3 {
		t.Fatalf("Alloc: %#x %#x", a, b)
	}
	g.Write(b, []byte("hello"))
	if !bytes.Equal(g.Read(b, 5), []byte("hello")) || g.UserAddr(b) != virtiotest.UserBase+b {
		t.Fatal("Read/Write/UserAddr")
	}
	if got, ok := g.Memory().Translate(b, 5); !ok || string(got) != "hello" {
		t.Fatal("Memory does not alias guest RAM")
	}
	r := g.NewSplitRing(64)
	if r.DescAddr%16 != 0 || r.AvailAddr%2 != 0 || r.UsedAddr%4 != 0 ||
		r.AvailAddr < r.DescAddr+16*64 || r.UsedAddr < r.AvailAddr+4+2*64+2 {
		t.Fatalf("ring layout desc %#x avail %#x used %#x", r.DescAddr, r.AvailAddr, r.UsedAddr)
	}
}

// TestTxPacketSplits: whatever the split, the engine reads back the zeroed
// header and the frame.
func TestTxPacketSplits(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	r := g.NewSplitRing(256)
	q := r.NewQueue(false, -1)
	frame := make([]byte, 100)
	for i := range frame {
		frame[i] = byte(i + 1)
	}
	want := append(make([]byte, 12), frame...)
	var segs [virtio.MaxSegs][]byte
	for _, split := range []int{0, 4, 5, 11, 12, 13, 40, 111, 112, 1000} {
		r.AddTxPacket(12, frame, split)
		if n, err := q.Avail(); n != 1 || err != nil {
			t.Fatalf("split %d: Avail %d %v", split, n, err)
		}
		head, nseg, total, cerr := q.Next(&segs, false)
		if cerr != virtio.ChainOK || total != 112 {
			t.Fatalf("split %d: %v total %d", split, cerr, total)
		}
		if split > 0 && split < 112 && nseg != (112+split-1)/split {
			t.Fatalf("split %d: %d segments", split, nseg)
		}
		if got := bytes.Join(segs[:nseg], nil); !bytes.Equal(got, want) {
			t.Fatalf("split %d: read %x", split, got)
		}
		q.PutUsed(head, 0)
		q.Flush()
		r.PopUsed()
	}
	if r.FreeDescs() != 256 {
		t.Fatalf("%d descriptors free, want 256", r.FreeDescs())
	}
}

func TestRxFrameAcrossBuffers(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	r := g.NewSplitRing(8)
	q := r.NewQueue(true, -1)
	a, b := g.Alloc(20, 8), g.Alloc(200, 8)
	r.AddChain(virtiotest.Buf{Addr: a, Len: 20, Write: true}, virtiotest.Buf{Addr: b, Len: 200, Write: true})
	q.Avail()
	var segs [virtio.MaxSegs][]byte
	head, nseg, _, _ := q.Next(&segs, true)
	pkt := append(make([]byte, 12), bytes.Repeat([]byte{7}, 50)...)
	pkt[0] = 0xaa
	w := 0
	for _, s := range segs[:nseg] {
		w += copy(s, pkt[w:])
	}
	q.PutUsed(head, uint32(w))
	q.Flush()
	u := r.PopUsed()
	if len(u) != 1 || len(u[0].Bufs) != 2 {
		t.Fatalf("used %+v", u)
	}
	if got := r.RxFrame(u[0], 12); !bytes.Equal(got, pkt[12:]) {
		t.Fatalf("frame %x", got)
	}
	if h := r.RxHeader(u[0], 12); len(h) != 12 || h[0] != 0xaa {
		t.Fatalf("header %x", h)
	}
}

func TestIndirectChainLayout(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	r := g.NewSplitRing(8)
	a, b := g.Alloc(10, 8), g.Alloc(30, 8)
	head := r.AddIndirectChain(virtiotest.Buf{Addr: a, Len: 10}, virtiotest.Buf{Addr: b, Len: 30, Write: true})
	d := r.DescAddr + 16*uint64(head)
	table, length, flags := g.U64(d), g.U32(d+8), g.U16(d+12)
	if flags != virtio.DescFIndirect || length != 32 || table%16 != 0 {
		t.Fatalf("ring descriptor %#x+%d flags %#x", table, length, flags)
	}
	if g.U64(table) != a || g.U32(table+8) != 10 || g.U16(table+12) != virtio.DescFNext || g.U16(table+14) != 1 ||
		g.U64(table+16) != b || g.U32(table+24) != 30 || g.U16(table+28) != virtio.DescFWrite {
		t.Fatal("indirect table contents")
	}
	if r.AvailIdx() != 1 || r.FreeDescs() != 7 {
		t.Fatalf("avail idx %d, free %d", r.AvailIdx(), r.FreeDescs())
	}
}
