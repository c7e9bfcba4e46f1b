// Package virtio implements the virtio wire formats and ring engines over
// guest memory. It has no sockets and no goroutines: the vhost-user control
// plane builds engines, the data plane drives them.
package virtio

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// Region is one guest memory region as mapped into this process.
type Region struct {
	GuestPhysAddr uint64 // guest-physical address of the first byte
	Size          uint64
	UserAddr      uint64 // the frontend's (QEMU's) virtual address of the first byte
	Data          []byte // the region's bytes, len(Data) == Size
	Mapping       []byte // the whole mmap'd range that backs Data, unmapped by Close; nil if not owned
}

// Memory is an immutable guest memory table. It is replaced, never mutated:
// the data plane may hold a *Memory for as long as it is published.
type Memory struct {
	regions []Region // sorted by GuestPhysAddr
}

// Memory table errors.
var (
	ErrRegionEmpty    = errors.New("memory region of size zero")
	ErrRegionOverflow = errors.New("memory region wraps the address space")
	ErrRegionOverlap  = errors.New("memory regions overlap")
	ErrRegionData     = errors.New("memory region data does not match its size")
)

// NewMemory validates regions and returns the table. Regions must be
// non-empty, must not wrap, and must overlap neither in guest-physical nor
// in frontend-virtual address space.
func NewMemory(regions []Region) (*Memory, error) {
	rs := append([]Region(nil), regions...)
	for i, r := range rs {
		if r.Size == 0 {
			return nil, fmt.Errorf("region %d: %w", i, ErrRegionEmpty)
		}
		if r.GuestPhysAddr+r.Size < r.GuestPhysAddr || r.UserAddr+r.Size < r.UserAddr {
			return nil, fmt.Errorf("region %d: %w", i, ErrRegionOverflow)
		}
		if uint64(len(r.Data)) != r.Size {
			return nil, fmt.Errorf("region %d: %w", i, ErrRegionData)
		}
	}
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			a, b := rs[i], rs[j]
			if overlaps(a.GuestPhysAddr, a.Size, b.GuestPhysAddr, b.Size) ||
				overlaps(a.UserAddr, a.Size, b.UserAddr, b.Size) {
				return nil, fmt.Errorf("regions %d and %d: %w", i, j, ErrRegionOverlap)
			}
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].GuestPhysAddr < rs[j].GuestPhysAddr })
	return &Memory{regions: rs}, nil
}

func overlaps(a, alen, b, blen uint64) bool {
	return a < b+blen && b < a+alen
}

// Regions returns a copy of the region table (for status and tests).
func (m *Memory) Regions() []Region {
	return append([]Region(nil), m.regions...)
}

// Translate returns the n bytes at guest-physical address gpa. A range that
// is not wholly inside one region is refused: the guest cannot make us read
// across a region end or outside its memory.
func (m *Memory) Translate(gpa, n uint64) ([]byte, bool) {
	for i := range m.regions {
		r := &m.regions[i]
		off := gpa - r.GuestPhysAddr
		if gpa >= r.GuestPhysAddr && off < r.Size {
			if n > r.Size-off {
				return nil, false
			}
			return r.Data[off : off+n : off+n], true
		}
	}
	return nil, false
}

// TranslateUser is Translate for the frontend's virtual addresses, which is
// how vhost-user gives vring addresses.
func (m *Memory) TranslateUser(uva, n uint64) ([]byte, bool) {
	for i := range m.regions {
		r := &m.regions[i]
		off := uva - r.UserAddr
		if uva >= r.UserAddr && off < r.Size {
			if n > r.Size-off {
				return nil, false
			}
			return r.Data[off : off+n : off+n], true
		}
	}
	return nil, false
}

// Close unmaps the regions this table owns. Call it only once no engine
// built on the table can run (the data plane has passed a quiescent point).
func (m *Memory) Close() error {
	var first error
	for i := range m.regions {
		if m.regions[i].Mapping != nil {
			if err := unix.Munmap(m.regions[i].Mapping); err != nil && first == nil {
				first = err
			}
			m.regions[i].Mapping = nil
			m.regions[i].Data = nil
		}
	}
	return first
}
