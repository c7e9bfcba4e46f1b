package virtio_test

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// Fixed layout of the fuzzed ring in a small guest: rings of up to 16
// descriptors at the start, buffers after them.
const (
	fzGuestSize = 64 << 10
	fzDesc      = 0x1000
	fzAvail     = 0x1100 // 4 + 2*16 + 2 bytes
	fzUsed      = 0x1200 // 4 + 8*16 + 2 bytes
	fzRingEnd   = 0x1300
	fzBufs      = 0x2000
)

// fuzzBytes hands out the fuzzer's bytes; it returns zeros when they run out.
type fuzzBytes struct{ b []byte }

func (f *fuzzBytes) u8() uint8 {
	if len(f.b) == 0 {
		return 0
	}
	v := f.b[0]
	f.b = f.b[1:]
	return v
}

func (f *fuzzBytes) u16() uint16 { return uint16(f.u8()) | uint16(f.u8())<<8 }
func (f *fuzzBytes) u32() uint32 { return uint32(f.u16()) | uint32(f.u16())<<16 }
func (f *fuzzBytes) u64() uint64 { return uint64(f.u32()) | uint64(f.u32())<<32 }

// addr picks a descriptor address: mostly in the buffer area, sometimes at
// the end of memory, in the rings themselves, or anywhere.
func (f *fuzzBytes) addr() uint64 {
	switch f.u8() % 5 {
	case 0, 1:
		return fzBufs + uint64(f.u16())%(fzGuestSize-fzBufs)
	case 2:
		return fzGuestSize - uint64(f.u8())
	case 3:
		return fzDesc + uint64(f.u16()%(fzRingEnd-fzDesc))
	default:
		return f.u64()
	}
}

func (f *fuzzBytes) length() uint32 {
	switch f.u8() % 4 {
	case 0, 1:
		return uint32(f.u8())
	case 2:
		return uint32(f.u16())
	default:
		return f.u32()
	}
}

// FuzzSplitRing drives the split ring engine with a random descriptor table,
// avail ring and operation sequence: it must never panic, every segment it
// hands out must lie in guest memory, and its counts must add up.
func FuzzSplitRing(f *testing.F) {
	g := virtiotest.NewGuest(f, fzGuestSize)
	call, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { unix.Close(call) })

	// A well-formed ring: 4 descriptors, two chains, then a mix of ops.
	seed := []byte{0x02, 0, 0}
	for i := 0; i < 16; i++ {
		seed = append(seed, 0, byte(i*16), 0x20, 0, 32, byte(i&1), byte(i+1))
	}
	seed = append(seed, 0, 2, 0, 0, 2, 0, 0, 0, 0, 0, 0)
	seed = append(seed, 0, 1, 2, 3, 0, 1, 4, 1, 2, 3, 6, 0, 1)
	f.Add(seed)
	f.Add([]byte{0x64, 0xff, 0xff, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		mem := g.Bytes()
		clear(mem)
		in := &fuzzBytes{data}

		b0 := in.u8()
		size := uint16(1) << (b0 % 5)
		eventIdx := b0&0x20 != 0
		callFd := -1
		if b0&0x40 != 0 {
			callFd = call
		}
		base := in.u16()
		r := g.NewSplitRingAt(size, fzDesc, fzAvail, fzUsed)
		for i := uint16(0); i < size; i++ {
			a, l := in.addr(), in.length()
			r.SetDesc(i, a, l, uint16(in.u8()&7), uint16(in.u8()))
		}
		for i := uint16(0); i < size; i++ {
			v := in.u16()
			if v&0x8000 == 0 {
				v %= size + 2
			}
			binary.LittleEndian.PutUint16(mem[fzAvail+4+2*uint64(i):], v)
		}
		r.SetAvailIdx(base + uint16(in.u8()))
		r.SetAvailFlags(uint16(in.u8() & 1))
		r.SetUsedEvent(in.u16())
		usedIdx := in.u16()
		binary.LittleEndian.PutUint16(mem[fzUsed+2:], usedIdx)

		cfg := r.Config(eventIdx, callFd)
		cfg.LastAvail = base
		q, err := virtio.NewSplitQueue(g.Memory(), cfg)
		if err != nil {
			t.Fatalf("NewSplitQueue: %v", err)
		}

		var segs [virtio.MaxSegs][]byte
		lastWasNext := false
		var lastHead uint16
		for ops := 0; ops < 256 && len(in.b) > 0; ops++ {
			op := in.u8()
			wasNext := lastWasNext
			lastWasNext = false
			switch op % 8 {
			case 0, 1:
				n, err := q.Avail()
				if err != nil && !errors.Is(err, virtio.ErrAvailIdx) {
					t.Fatalf("Avail: %v", err)
				}
				if n < 0 || n > int(size) || q.Pending() > int(size) {
					t.Fatalf("Avail = %d, Pending = %d with size %d", n, q.Pending(), size)
				}
			case 2, 3:
				if q.Pending() == 0 {
					continue
				}
				head, nseg, total, cerr := q.Next(&segs, op&0x10 != 0)
				checkChain(t, mem, segs[:], head, size, nseg, total, cerr)
				lastHead, lastWasNext = head, true
			case 4:
				h := lastHead
				if op&0x10 != 0 {
					h = in.u16()
				}
				q.PutUsed(h, in.u32())
				usedIdx++
			case 5:
				q.Flush()
				if got := r.UsedIdx(); got != usedIdx {
					t.Fatalf("used.idx = %d after Flush, want %d", got, usedIdx)
				}
				if !eventIdx && r.UsedFlags()&virtio.UsedFNoNotify == 0 {
					t.Fatal("used.flags lost NO_NOTIFY")
				}
			case 6:
				if wasNext {
					q.Unpop()
				}
			case 7:
				// The guest rewrites its descriptors or avail ring under us.
				off := uint64(in.u16()) % (fzUsed - fzDesc)
				mem[fzDesc+off] = in.u8()
			}
		}
		var drain [8]byte
		unix.Read(call, drain[:])
	})
}

func checkChain(t *testing.T, mem []byte, segs [][]byte, head, size uint16, nseg, total int, cerr virtio.ChainErr) {
	t.Helper()
	if cerr >= virtio.NumChainErrs {
		t.Fatalf("unknown ChainErr %d", cerr)
	}
	if cerr != virtio.ChainBadHead && head >= size {
		t.Fatalf("head %d >= size %d without ChainBadHead", head, size)
	}
	if nseg < 0 || nseg > virtio.MaxSegs {
		t.Fatalf("nseg = %d", nseg)
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	hi := lo + uintptr(len(mem))
	sum := 0
	for i, s := range segs[:nseg] {
		if len(s) == 0 {
			t.Fatalf("segment %d is empty", i)
		}
		p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
		if p < lo || p+uintptr(len(s)) > hi || cap(s) != len(s) {
			t.Fatalf("segment %d (%#x+%d) is outside guest memory [%#x, %#x)", i, p, len(s), lo, hi)
		}
		sum += len(s)
	}
	switch {
	case cerr == virtio.ChainTooLong:
		if total <= virtio.MaxChainBytes || total <= sum {
			t.Fatalf("ChainTooLong with total %d, segments %d", total, sum)
		}
	case total != sum:
		t.Fatalf("total %d != sum of segment lengths %d (%v)", total, sum, cerr)
	case total > virtio.MaxChainBytes:
		t.Fatalf("total %d over MaxChainBytes without ChainTooLong", total)
	}
}
