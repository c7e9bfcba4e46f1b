package vswitch

import "sync/atomic"

// FDB is a bridge's MAC table, shared lock-free by every worker.
//
// It is open addressing with a short probe window. A slot's key packs the
// MAC and the port into one 64-bit word so a reader never sees a MAC paired
// with another MAC's port; the last-seen time sits beside it and is written
// only when the coarse clock has moved, so steady traffic reads and never
// writes. Aging swaps keys for a tombstone; learning reuses tombstones.
type FDB struct {
	slots []fdbSlot
	mask  uint64
	Full  atomic.Uint64 // learnings refused because the probe window was full
	Moves atomic.Uint64 // MACs that moved to another port
}

type fdbSlot struct {
	key  atomic.Uint64 // mac<<16 | port+1; 0 = empty
	seen atomic.Uint32 // coarse clock at the last packet from this MAC
	_    uint32
}

const (
	fdbProbe     = 8
	fdbTombstone = 0xffff_ffff_ffff_0000 // broadcast MAC, port 0: never a real key
)

// NewFDB returns a table with at least size slots (a power of two).
func NewFDB(size int) *FDB {
	n := 64
	for n < size {
		n <<= 1
	}
	return &FDB{slots: make([]fdbSlot, n), mask: uint64(n - 1)}
}

// MAC48 reads a 6-byte MAC as a number.
func MAC48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

func fdbHash(mac uint64) uint64 { return (mac * 0x9e3779b97f4a7c15) >> 20 }

// Lookup returns the port mac was learned on.
func (f *FDB) Lookup(mac uint64) (port uint16, ok bool) {
	h := fdbHash(mac)
	for i := uint64(0); i < fdbProbe; i++ {
		k := f.slots[(h+i)&f.mask].key.Load()
		if k == 0 {
			return 0, false
		}
		if k>>16 == mac && k != fdbTombstone {
			return uint16(k&0xffff) - 1, true
		}
	}
	return 0, false
}

// Learn records that mac was seen on port at time now.
func (f *FDB) Learn(mac uint64, port uint16, now uint32) {
	key := mac<<16 | uint64(port+1)
	h := fdbHash(mac)
	for try := 0; try < 2; try++ {
		free := -1
		for i := uint64(0); i < fdbProbe; i++ {
			s := &f.slots[(h+i)&f.mask]
			k := s.key.Load()
			if k == 0 || k == fdbTombstone {
				if free < 0 {
					free = int((h + i) & f.mask)
				}
				if k == 0 {
					break
				}
				continue
			}
			if k>>16 != mac {
				continue
			}
			if k != key && s.key.CompareAndSwap(k, key) {
				f.Moves.Add(1)
			}
			if s.seen.Load() != now {
				s.seen.Store(now)
			}
			return
		}
		if free < 0 {
			f.Full.Add(1)
			return
		}
		s := &f.slots[free]
		old := s.key.Load()
		if (old == 0 || old == fdbTombstone) && s.key.CompareAndSwap(old, key) {
			s.seen.Store(now)
			return
		}
		// Another worker took the slot, maybe for this very MAC: look again.
	}
}

// Age removes entries not seen for maxAge ticks and returns how many.
func (f *FDB) Age(now, maxAge uint32) int {
	n := 0
	for i := range f.slots {
		s := &f.slots[i]
		k := s.key.Load()
		if k == 0 || k == fdbTombstone {
			continue
		}
		if now-s.seen.Load() > maxAge && s.key.CompareAndSwap(k, fdbTombstone) {
			n++
		}
	}
	return n
}

// FlushPort removes every entry learned on port.
func (f *FDB) FlushPort(port uint16) {
	for i := range f.slots {
		s := &f.slots[i]
		k := s.key.Load()
		if k != 0 && k != fdbTombstone && uint16(k&0xffff)-1 == port {
			s.key.CompareAndSwap(k, fdbTombstone)
		}
	}
}

// FDBEntry is one learned MAC, for the API.
type FDBEntry struct {
	MAC  uint64
	Port uint16
	Age  uint32
}

// Entries lists the table.
func (f *FDB) Entries(now uint32) []FDBEntry {
	var out []FDBEntry
	for i := range f.slots {
		s := &f.slots[i]
		k := s.key.Load()
		if k == 0 || k == fdbTombstone {
			continue
		}
		out = append(out, FDBEntry{MAC: k >> 16, Port: uint16(k&0xffff) - 1, Age: now - s.seen.Load()})
	}
	return out
}
