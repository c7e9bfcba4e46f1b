// Package virtiotest is a fake guest driver for tests and benchmarks: guest
// RAM in a memfd (so a vhost-user backend can map it like QEMU's), split
// rings laid out as a driver lays them out, and helpers that add chains,
// read used entries and move virtio-net frames (after rust-vmm
// virtio-queue's mock.rs).
//
// It imports virtio only, so virtio, vhostuser and the data plane can all
// use it in their tests.
//
// The helpers report misuse with t.Fatalf: call them from the goroutine
// running the test or benchmark.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/virtio"
)

// UserBase is the fake front-end virtual address of guest-physical 0: the
// address QEMU would have mapped guest RAM at. vhost-user gives vring
// addresses in this space.
const UserBase uint64 = 0x7f00_0000_0000

// allocStart keeps guest-physical 0 unused, so a zero address in a
// descriptor is never a buffer the fake driver handed out.
const allocStart = 0x1000

// Guest is a fake guest's RAM: one region at guest-physical 0.
type Guest struct {
	t    testing.TB
	fd   int
	mem  []byte
	next uint64 // bump allocator
}

// RegionInfo is a memory region as a front-end describes it in
// SET_MEM_TABLE (struct vhost_user_memory_region), without importing
// vhostuser.
type RegionInfo struct {
	GuestPhysAddr uint64
	Size          uint64
	UserAddr      uint64
	MmapOffset    uint64
}

// NewGuest creates size bytes of guest RAM in a memfd mapped shared. It is
// unmapped and closed when the test ends.
func NewGuest(t testing.TB, size int) *Guest {
	t.Helper()
	if size <= allocStart {
		t.Fatalf("virtiotest: guest of %d bytes is too small", size)
	}
	fd, err := unix.MemfdCreate("virtiotest-guest", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("virtiotest: memfd_create: %v", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		t.Fatalf("virtiotest: ftruncate: %v", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("virtiotest: mmap: %v", err)
	}
	g := &Guest{t: t, fd: fd, mem: mem, next: allocStart}
	t.Cleanup(func() {
		unix.Munmap(g.mem)
		unix.Close(g.fd)
	})
	return g
}

// Fd is the memfd that backs guest RAM (for SET_MEM_TABLE).
func (g *Guest) Fd() int { return g.fd }

// Bytes is guest RAM; index it with guest-physical addresses.
func (g *Guest) Bytes() []byte { return g.mem }

// Size is the size of guest RAM in bytes.
func (g *Guest) Size() uint64 { return uint64(len(g.mem)) }

// UserAddr translates a guest-physical address to the front-end's virtual
// address.
func (g *Guest) UserAddr(gpa uint64) uint64 { return UserBase + gpa }

// Region describes guest RAM as one SET_MEM_TABLE region.
func (g *Guest) Region() RegionInfo {
	return RegionInfo{GuestPhysAddr: 0, Size: g.Size(), UserAddr: UserBase, MmapOffset: 0}
}

// Memory is a virtio memory table over this process's mapping of guest
// RAM. It does not own the mapping: closing it unmaps nothing.
func (g *Guest) Memory() *virtio.Memory {
	m, err := virtio.NewMemory([]virtio.Region{{
		GuestPhysAddr: 0, Size: g.Size(), UserAddr: UserBase, Data: g.mem,
	}})
	if err != nil {
		g.t.Fatalf("virtiotest: %v", err)
	}
	return m
}

// Alloc reserves n bytes aligned to align (a power of two, 0 or 1 for
// none) and returns their guest-physical address. Memory is never freed.
func (g *Guest) Alloc(n, align int) uint64 {
	if align <= 1 {
		align = 1
	}
	if align&(align-1) != 0 || n < 0 {
		g.t.Fatalf("virtiotest: Alloc(%d, %d): bad size or alignment", n, align)
	}
	a := (g.next + uint64(align) - 1) &^ (uint64(align) - 1)
	if a+uint64(n) > g.Size() {
		g.t.Fatalf("virtiotest: guest memory exhausted: %d bytes at %#x, size %#x", n, a, g.Size())
	}
	g.next = a + uint64(n)
	return a
}

// Allocated is how many bytes Alloc has handed out (including alignment
// padding and the unused first page).
func (g *Guest) Allocated() uint64 { return g.next }

func (g *Guest) span(gpa uint64, n int) []byte {
	if n < 0 || gpa > g.Size() || uint64(n) > g.Size()-gpa {
		g.t.Fatalf("virtiotest: range %#x+%d is outside guest memory (%#x bytes)", gpa, n, g.Size())
	}
	return g.mem[gpa : gpa+uint64(n)]
}

// Write copies b to guest-physical address gpa.
func (g *Guest) Write(gpa uint64, b []byte) { copy(g.span(gpa, len(b)), b) }

// Read returns a copy of the n bytes at gpa.
func (g *Guest) Read(gpa uint64, n int) []byte { return append([]byte(nil), g.span(gpa, n)...) }

// Fill sets the n bytes at gpa to v.
func (g *Guest) Fill(gpa uint64, n int, v byte) {
	b := g.span(gpa, n)
	for i := range b {
		b[i] = v
	}
}

// PutU16 and friends store little-endian values (virtio 1.x is LE).
func (g *Guest) PutU16(gpa uint64, v uint16) { binary.LittleEndian.PutUint16(g.span(gpa, 2), v) }

// PutU32 stores a little-endian uint32.
func (g *Guest) PutU32(gpa uint64, v uint32) { binary.LittleEndian.PutUint32(g.span(gpa, 4), v) }

// PutU64 stores a little-endian uint64.
func (g *Guest) PutU64(gpa uint64, v uint64) { binary.LittleEndian.PutUint64(g.span(gpa, 8), v) }

// U16 loads a little-endian uint16.
func (g *Guest) U16(gpa uint64) uint16 { return binary.LittleEndian.Uint16(g.span(gpa, 2)) }

// U32 loads a little-endian uint32.
func (g *Guest) U32(gpa uint64) uint32 { return binary.LittleEndian.Uint32(g.span(gpa, 4)) }

// U64 loads a little-endian uint64.
func (g *Guest) U64(gpa uint64) uint64 { return binary.LittleEndian.Uint64(g.span(gpa, 8)) }

// word returns the aligned 32-bit word holding the 16-bit field at gpa and
// the field's shift in it. sync/atomic has no 16-bit operations; the engine
// reads avail.idx the same way.
func (g *Guest) word(gpa uint64) (*uint32, uint32) {
	if gpa%2 != 0 {
		g.t.Fatalf("virtiotest: 16-bit field at odd address %#x", gpa)
	}
	w := gpa &^ 3
	b := g.span(w, 4)
	return (*uint32)(unsafe.Pointer(&b[0])), uint32(gpa-w) * 8
}

// store16 atomically stores a 16-bit ring field (release: every earlier
// write to guest memory is visible before it).
func (g *Guest) store16(gpa uint64, v uint16) {
	p, sh := g.word(gpa)
	for {
		old := atomic.LoadUint32(p)
		nw := old&^(0xffff<<sh) | uint32(v)<<sh
		if atomic.CompareAndSwapUint32(p, old, nw) {
			return
		}
	}
}

// load16 atomically loads a 16-bit ring field (acquire).
func (g *Guest) load16(gpa uint64) uint16 {
	p, sh := g.word(gpa)
	return uint16(atomic.LoadUint32(p) >> sh)
}

func (g *Guest) String() string {
	return fmt.Sprintf("guest{fd %d, %d bytes, %d allocated}", g.fd, len(g.mem), g.next)
}
