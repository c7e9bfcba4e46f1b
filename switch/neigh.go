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
	m       atomic.Pointer[map[neighKey]*neighEntry]
	updates chan neighUpdate
	mu      sync.Mutex // serializes apply and expire
	Lost    atomic.Uint64
}

type neighKey struct {
	rif uint32
	ip  [16]byte // IPv4 in the first 4 bytes
	v6  bool
}

// neighEntry is immutable once in a snapshot but for its probe state,
// which the workers share: an entry carried over to the next snapshot
// keeps it, a confirmation makes a new entry and so starts it afresh.
type neighEntry struct {
	mac  uint64
	seen uint32 // coarse clock when last confirmed
	// probe is the refresh of an entry in use: tries<<32 | (the coarse
	// second of the last try + 1).
	probe atomic.Uint64
}

type neighUpdate struct {
	k    neighKey
	mac  uint64
	seen uint32
}

// neighExpire is how long (seconds) an entry lives without being confirmed.
// From neighRefresh on, the data path asks a neighbour it still sends to
// again, unicast to the MAC it has (Linux's STALE, DELAY and PROBE
// states; VPP's probe of an aged neighbour), at most once a second and
// neighProbes times, forwarding to that MAC meanwhile: an answer renews
// the entry, silence lets it expire. An entry nothing uses is not asked.
const (
	neighExpire  = 300
	neighRefresh = 240
	neighProbes  = 3
)

func (t *neighTable) init() {
	m := map[neighKey]*neighEntry{}
	t.m.Store(&m)
	t.updates = make(chan neighUpdate, 1024)
}

func (t *neighTable) lookup(k neighKey) (*neighEntry, bool) {
	e, ok := (*t.m.Load())[k]
	return e, ok
}

// claimProbe reports whether the caller sends e's next refresh probe:
// one a second and neighProbes in all, whichever worker asks first.
func (e *neighEntry) claimProbe(now uint32) bool {
	v := e.probe.Load()
	if uint32(v) == now+1 || v>>32 >= neighProbes {
		return false
	}
	return e.probe.CompareAndSwap(v, (v>>32+1)<<32|uint64(now+1))
}

// probes is how many refresh probes e has had.
func (e *neighEntry) probes() int { return int(e.probe.Load() >> 32) }

// learn posts an update unless the table already says the same recently.
func (t *neighTable) learn(k neighKey, mac uint64, now uint32) {
	if e, ok := (*t.m.Load())[k]; ok && e.mac == mac && now-e.seen < 10 {
		return
	}
	select {
	case t.updates <- neighUpdate{k, mac, now}:
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
	m := make(map[neighKey]*neighEntry, len(old)+len(t.updates))
	for k, v := range old {
		m[k] = v
	}
	if first != nil {
		m[first.k] = &neighEntry{mac: first.mac, seen: first.seen}
	}
	for len(t.updates) > 0 {
		u := <-t.updates
		m[u.k] = &neighEntry{mac: u.mac, seen: u.seen}
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
	m := make(map[neighKey]*neighEntry, len(old)-n)
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
