package vswitch

import (
	"sync"
	"sync/atomic"
)

// neighTable maps (router interface, IP) to a MAC for every worker without
// a lock: the map is an immutable snapshot behind an atomic pointer.
// Workers post what they learn from ARP and neighbour discovery to a
// bounded channel (a full channel drops the update: the next ARP brings
// it again); one goroutine applies the updates in bulk and swaps the map.
type neighTable struct {
	m       atomic.Pointer[map[neighKey]neighEntry]
	updates chan neighUpdate
	mu      sync.Mutex // serializes apply and expire
	Lost    atomic.Uint64
}

type neighKey struct {
	rif uint32
	ip  [16]byte // IPv4 in the first 4 bytes
	v6  bool
}

type neighEntry struct {
	mac  uint64
	seen uint32 // coarse clock when last confirmed
}

type neighUpdate struct {
	k neighKey
	e neighEntry
}

// neighExpire is how long (seconds) an entry lives without being confirmed;
// neighRefresh is when the data path starts asking again while still using it.
const (
	neighExpire  = 300
	neighRefresh = 240
)

func (t *neighTable) init() {
	m := map[neighKey]neighEntry{}
	t.m.Store(&m)
	t.updates = make(chan neighUpdate, 1024)
}

func (t *neighTable) lookup(k neighKey) (neighEntry, bool) {
	e, ok := (*t.m.Load())[k]
	return e, ok
}

// learn posts an update unless the table already says the same recently.
func (t *neighTable) learn(k neighKey, mac uint64, now uint32) {
	if e, ok := (*t.m.Load())[k]; ok && e.mac == mac && now-e.seen < 10 {
		return
	}
	select {
	case t.updates <- neighUpdate{k, neighEntry{mac, now}}:
	default:
		t.Lost.Add(1)
	}
}

// apply takes the pending updates (and first, if not nil, one already
// received) into a new snapshot.
func (t *neighTable) apply(first *neighUpdate) {
	if len(t.updates) == 0 && first == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	m := make(map[neighKey]neighEntry, len(old)+len(t.updates))
	for k, v := range old {
		m[k] = v
	}
	if first != nil {
		m[first.k] = first.e
	}
	for len(t.updates) > 0 {
		u := <-t.updates
		m[u.k] = u.e
	}
	t.m.Store(&m)
}

// expire drops entries older than neighExpire.
func (t *neighTable) expire(now uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	n := 0
	for _, v := range old {
		if now-v.seen > neighExpire {
			n++
		}
	}
	if n == 0 {
		return
	}
	m := make(map[neighKey]neighEntry, len(old)-n)
	for k, v := range old {
		if now-v.seen <= neighExpire {
			m[k] = v
		}
	}
	t.m.Store(&m)
}

func (s *Switch) neighLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case u := <-s.neigh.updates:
			s.neigh.apply(&u)
		}
	}
}
