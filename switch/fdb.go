package vswitch

import "sync/atomic"

// FDB is a bridge's MAC table keyed by (VLAN, MAC), shared lock-free by
// every worker.
//
// It is open addressing with a short probe window. A slot's key is
// vlan<<48 | mac; the port sits beside it. A new entry is published in
// three steps (claim the slot as busy, store port and time, store the key)
// so a reader that finds the key finds its port. A reader loads key, port,
// key again: the port it returns belongs to that key unless, between its
// two loads, the slot was freed and refilled twice, which takes two aging
// passes a second apart. The last-seen time is written only when the
// coarse clock has moved, so steady traffic reads and never writes.
type FDB struct {
	slots   []fdbSlot
	mask    uint64
	max     int64         // entries allowed, 0 = as many as fit
	n       atomic.Int64  // live entries and slots being claimed
	Full    atomic.Uint64 // learnings refused because the probe window was full
	Refused atomic.Uint64 // learnings refused because the table holds max entries
	Moves   atomic.Uint64 // MACs that moved to another port
}

type fdbSlot struct {
	key  atomic.Uint64 // vlan<<48 | mac; 0 = empty
	port atomic.Uint32 // port+1
	seen atomic.Uint32 // coarse clock at the last packet from this MAC
}

// VLAN 4095 is reserved, so keys with it never name a real entry.
const (
	fdbTombstone = 0xfff << 48
	fdbBusy      = 0xfff<<48 | 1
	fdbProbe     = 8
)

// NewFDB returns a table with at least size slots (a power of two) that
// holds at most max entries (0: no limit but the slots).
func NewFDB(size, max int) *FDB {
	n := 64
	for n < size {
		n <<= 1
	}
	return &FDB{slots: make([]fdbSlot, n), mask: uint64(n - 1), max: int64(max)}
}

// MAC48 reads a 6-byte MAC as a number.
func MAC48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

func fdbKey(vlan uint16, mac uint64) uint64 { return uint64(vlan&0xfff)<<48 | mac }

func fdbHash(k uint64) uint64 { return (k * 0x9e3779b97f4a7c15) >> 20 }

// Len is how many entries the table holds (counting, for an instant,
// those being added).
func (f *FDB) Len() int { return int(f.n.Load()) }

// Lookup returns the port mac was learned on in vlan.
func (f *FDB) Lookup(vlan uint16, mac uint64) (port uint16, ok bool) {
	k := fdbKey(vlan, mac)
	h := fdbHash(k)
	for i := uint64(0); i < fdbProbe; i++ {
		s := &f.slots[(h+i)&f.mask]
		kk := s.key.Load()
		if kk == 0 {
			return 0, false
		}
		if kk == k {
			p := s.port.Load()
			if s.key.Load() != k || p == 0 {
				return 0, false
			}
			return uint16(p - 1), true
		}
	}
	return 0, false
}

// Learn records that mac was seen in vlan on port at time now. A new entry
// past the table's limit is refused and counted.
func (f *FDB) Learn(vlan uint16, mac uint64, port uint16, now uint32) {
	k := fdbKey(vlan, mac)
	h := fdbHash(k)
	for try := 0; try < 2; try++ {
		free := -1
		for i := uint64(0); i < fdbProbe; i++ {
			s := &f.slots[(h+i)&f.mask]
			kk := s.key.Load()
			if kk == 0 || kk == fdbTombstone {
				if free < 0 {
					free = int((h + i) & f.mask)
				}
				if kk == 0 {
					break
				}
				continue
			}
			if kk == fdbBusy {
				return // maybe another worker adding this very key; the next packet learns
			}
			if kk != k {
				continue
			}
			if s.port.Load() != uint32(port)+1 {
				s.port.Store(uint32(port) + 1)
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
		if !f.reserve() {
			f.Refused.Add(1)
			return
		}
		s := &f.slots[free]
		old := s.key.Load()
		if (old == 0 || old == fdbTombstone) && s.key.CompareAndSwap(old, fdbBusy) {
			s.port.Store(uint32(port) + 1)
			s.seen.Store(now)
			s.key.Store(k)
			return
		}
		// Another worker took the slot, maybe for this very key: give the
		// reservation back and look again.
		f.n.Add(-1)
	}
}

// reserve counts a new entry before its slot is claimed. With a limit it
// is a compare-and-swap below max, so workers learning at once never take
// the table past it; only new MACs get here, never steady traffic.
func (f *FDB) reserve() bool {
	if f.max <= 0 {
		f.n.Add(1)
		return true
	}
	for {
		n := f.n.Load()
		if n >= f.max {
			return false
		}
		if f.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// remove frees slot s if it still holds key k.
func (f *FDB) remove(s *fdbSlot, k uint64) bool {
	if s.key.CompareAndSwap(k, fdbTombstone) {
		f.n.Add(-1)
		return true
	}
	return false
}

func live(k uint64) bool { return k != 0 && k != fdbTombstone && k != fdbBusy }

// Age removes entries not seen for maxAge ticks and returns how many.
func (f *FDB) Age(now, maxAge uint32) int {
	n := 0
	for i := range f.slots {
		s := &f.slots[i]
		k := s.key.Load()
		if live(k) && now-s.seen.Load() > maxAge && f.remove(s, k) {
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
		if live(k) && s.port.Load() == uint32(port)+1 {
			f.remove(s, k)
		}
	}
}

// FDBEntry is one learned MAC, for the API.
type FDBEntry struct {
	VLAN uint16
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
		if !live(k) {
			continue
		}
		out = append(out, FDBEntry{VLAN: uint16(k >> 48), MAC: k & (1<<48 - 1), Port: uint16(s.port.Load() - 1), Age: now - s.seen.Load()})
	}
	return out
}
