package vswitch

import (
	"sync/atomic"

	"github.com/vswitch/vswitch/switch/header"
	"github.com/vswitch/vswitch/switch/offload"
)

// Bounds of the packets a worker holds while their next hop is resolved.
// Linux queues up to unres_qlen_bytes (about 200 KiB) per unresolved
// neighbour and gives up after 3 solicitations a second apart; here each
// worker holds its own packets, so a flow (one input queue, one worker)
// leaves in order, and the memory is taken once, when the worker is made.
const (
	holdMax      = 256       // packets a worker holds
	holdArena    = 512 << 10 // frame bytes a worker holds
	holdPerHop   = 64        // packets held for one next hop
	holdHopBytes = 128 << 10 // frame bytes held for one next hop
	holdHops     = 32        // next hops a worker waits for at once
	holdTimeout  = 3         // seconds a next hop has to answer
)

// holdQ is a worker's held packets. Frames are copied into a byte ring
// (the sender gets its buffers back with the batch) in arrival order;
// released and dropped packets leave holes that are reclaimed once every
// packet before them is gone, which a timeout bounds.
type holdQ struct {
	arena        []byte
	ahead, atail int // absolute byte positions: the ring holds [atail, ahead)
	pkts         [holdMax]heldPkt
	first, n     int // ring of pkts in arrival order, holes included
	hops         [holdHops]holdHop
	nhops        int
	// What the last service saw: nothing to do until the neighbour
	// table or the clock moves.
	seen    *map[neighKey]*neighEntry
	seenNow uint32
	// Refresh probes the batches of this poll asked for (refresh), sent
	// once they are through (Worker.sendProbes).
	probes [BatchSize]neighProbe
	nprobe int
	// Counts for the control plane: packets held so far, released,
	// dropped (unresolved: timed out; full: not held at all), bytes
	// and next hops held now, solicitations made (probes: the unicast
	// ones refreshing an entry in use).
	Held, Released, Dropped, Unresolved, Full atomic.Uint64
	Bytes                                     atomic.Int64
	Pending                                   atomic.Int32
	ARP, ND, Probes                           atomic.Uint64
}

// neighProbe is a refresh probe to send: k's neighbour at mac, asked
// from out, as if the packet that found it stale had made it on in.
type neighProbe struct {
	k   neighKey
	mac uint64
	in  *portEntry
	out *rif
}

type heldPkt struct {
	k    neighKey
	pos  int // offset in arena
	end  int // absolute end in the ring
	len  int
	l3   uint16
	in   uint16 // input port, whose counters its drops go to
	tci  uint16
	gone bool
	meta offload.Meta
}

// holdHop is a next hop being resolved and what is held for it.
type holdHop struct {
	k     neighKey
	since uint32 // coarse time of the first solicitation
	asked uint32 // coarse time of the last one
	n     int
	bytes int
}

func newHoldQ() *holdQ { return &holdQ{arena: make([]byte, holdArena)} }

// HoldStats count the packets held while their next hop was resolved:
// held so far, released once it resolved, dropped (timed out, or their
// port or router interface went away meanwhile), and held now, with
// their bytes and next hops. Unresolved are the drops that timed out,
// Full the packets not held because the hold was at a bound. The drops
// are also in the input ports' counters when those still exist.
// ARPRequests and NDSolicits are the solicitations the workers made,
// Probes those of them that refreshed an entry in use (unicast);
// UpdatesLost what the workers learned that the neighbour table missed
// (its update queue was full).
type HoldStats struct {
	Held, Released, Dropped, Queued uint64
	QueuedBytes                     uint64
	PendingHops                     int
	Unresolved, Full                uint64
	ARPRequests, NDSolicits, Probes uint64
	UpdatesLost                     uint64
}

// NeighborHold sums the workers' hold counters.
func (s *Switch) NeighborHold() HoldStats {
	var st HoldStats
	for _, w := range s.workers {
		q := w.pipe.hold
		// Read in the reverse order of the updates, so Queued never
		// goes below 0.
		st.Unresolved += q.Unresolved.Load()
		st.Dropped += q.Dropped.Load()
		st.Released += q.Released.Load()
		st.Held += q.Held.Load()
		st.QueuedBytes += uint64(max(q.Bytes.Load(), 0))
		st.PendingHops += int(q.Pending.Load())
		st.Full += q.Full.Load()
		st.ARPRequests += q.ARP.Load()
		st.NDSolicits += q.ND.Load()
		st.Probes += q.Probes.Load()
	}
	st.Queued = st.Held - st.Released - st.Dropped
	st.UpdatesLost = s.neigh.Lost.Load()
	return st
}

func (q *holdQ) hop(k neighKey) *holdHop {
	for i := range q.hops[:q.nhops] {
		if q.hops[i].k == k {
			return &q.hops[i]
		}
	}
	return nil
}

// waiting says whether packets for k are held: later ones queue behind
// them even once k resolves, so none overtakes another.
func (q *holdQ) waiting(k neighKey) bool { return q.nhops > 0 && q.hop(k) != nil }

// put copies pkt into the hold for next hop k. It reports whether it did,
// and whether the caller should solicit k now (once a second per next
// hop, or whenever k cannot be tracked).
func (q *holdQ) put(k neighKey, in uint16, pkt *Packet, ph *header.Parsed, tci uint16, now uint32) (held, ask bool) {
	h := q.hop(k)
	switch {
	case h != nil:
		if ask = h.asked != now; ask {
			h.asked = now
		}
	case q.nhops < holdHops:
		h = &q.hops[q.nhops]
		q.nhops++
		*h = holdHop{k: k, since: now, asked: now}
		ask = true
		q.Pending.Store(int32(q.nhops))
	default:
		return false, true
	}
	if h.n >= holdPerHop || h.bytes+pkt.Len > holdHopBytes || q.n == holdMax {
		return false, ask
	}
	pos, ok := q.alloc(pkt.Len)
	if !ok {
		return false, ask
	}
	dst := q.arena[pos : pos+pkt.Len]
	o := copy(dst, pkt.HeadBytes())
	for _, sg := range pkt.Segs[:pkt.NSegs] {
		o += copy(dst[o:], sg)
	}
	q.pkts[(q.first+q.n)%holdMax] = heldPkt{k: k, pos: pos, end: q.ahead, len: o, l3: ph.L3, in: in, tci: tci, meta: pkt.Offload}
	q.n++
	h.n++
	h.bytes += pkt.Len
	q.Bytes.Add(int64(o))
	q.Held.Add(1)
	return true, ask
}

// alloc takes n contiguous bytes of the ring, skipping its end if they
// do not fit there.
func (q *holdQ) alloc(n int) (int, bool) {
	pos := q.ahead
	if r := pos % holdArena; r+n > holdArena {
		pos += holdArena - r
	}
	if pos+n-q.atail > holdArena {
		return 0, false
	}
	q.ahead = pos + n
	return pos % holdArena, true
}

// reclaim frees the ring up to the oldest packet still held.
func (q *holdQ) reclaim() {
	for q.n > 0 && q.pkts[q.first].gone {
		q.atail = q.pkts[q.first].end
		q.first = (q.first + 1) % holdMax
		q.n--
	}
	if q.n == 0 {
		q.ahead, q.atail, q.first = 0, 0, 0
	}
}

// serviceHold runs at the start of a poll while packets are held: those
// whose next hop resolved go out, in arrival order, and those whose next
// hop did not answer within holdTimeout are dropped and counted.
func (w *Worker) serviceHold(c *config) bool {
	q := w.pipe.hold
	m := w.sw.neigh.m.Load()
	now := w.sw.clock.Load()
	if m == q.seen && now == q.seenNow {
		return false
	}
	q.seen, q.seenNow = m, now
	work := false
	for h := 0; h < q.nhops; {
		hop := q.hops[h]
		e, ok := (*m)[hop.k]
		resolved := ok && now-e.seen <= neighExpire
		if !resolved && now-hop.since <= holdTimeout {
			h++
			continue
		}
		q.nhops--
		q.hops[h] = q.hops[q.nhops]
		q.Pending.Store(int32(q.nhops))
		if resolved {
			w.releaseHop(c, hop.k, e.mac, now)
			work = true
			continue
		}
		for j := 0; j < q.n; j++ {
			if hp := &q.pkts[(q.first+j)%holdMax]; !hp.gone && hp.k == hop.k {
				hp.gone = true
				q.drop(c, hp, DropNeighborUnresolved)
			}
		}
	}
	q.reclaim()
	return work
}

// drop counts a held packet dropped, on its input port if that is still
// there.
func (q *holdQ) drop(c *config, hp *heldPkt, r DropReason) {
	q.Bytes.Add(-int64(hp.len))
	if r == DropNeighborUnresolved {
		q.Unresolved.Add(1)
	}
	q.Dropped.Add(1)
	if pe := c.ports[hp.in]; pe != nil {
		pe.Counters.Drops[r].Add(1)
	}
}

// releaseHop sends the packets held for k, now at mac, through the rest
// of the routed path (TTL, MACs, then the L2 stage and the output ports),
// batched by input port.
func (w *Worker) releaseHop(c *config, k neighKey, mac uint64, now uint32) {
	q := w.pipe.hold
	out := c.rifByID(k.rif)
	b, p := &w.batch, &w.pipe
	b.N = 0
	var in *portEntry
	for j := 0; j < q.n; j++ {
		hp := &q.pkts[(q.first+j)%holdMax]
		if hp.gone || hp.k != k {
			continue
		}
		hp.gone = true
		pe := c.ports[hp.in]
		if pe == nil || out == nil || out.br == nil { // its port, router or interface went away meanwhile
			q.drop(c, hp, DropNoOutput)
			continue
		}
		if b.N == BatchSize || (b.N > 0 && pe != in) {
			w.releaseBatch(c, in, now)
		}
		in = pe
		i := b.N
		pkt := &b.Pkts[i]
		frame := q.arena[hp.pos : hp.pos+hp.len]
		pkt.Off, pkt.Len, pkt.Offload = HeadRoom, hp.len, hp.meta
		pkt.NHead = copy(pkt.Head[HeadRoom:HeadRoom+min(hp.len, HeadLen)], frame)
		pkt.NSegs = 0
		if hp.len > pkt.NHead {
			pkt.Segs[0], pkt.NSegs = frame[pkt.NHead:], 1
		}
		h := pkt.HeadBytes()
		if k.v6 {
			header.IPv6(h[hp.l3:]).DecHopLimit()
		} else {
			header.IPv4(h[hp.l3:]).DecTTL()
		}
		header.PutMAC48(h[0:6], mac)
		header.PutMAC48(h[6:12], out.mac)
		p.routed[i], p.br[i], p.vlan[i], p.tci[i] = true, out.br, out.vlan, hp.tci
		p.live[i] = uint16(i)
		b.N++
		q.Bytes.Add(-int64(hp.len))
		q.Released.Add(1)
	}
	if b.N > 0 {
		w.releaseBatch(c, in, now)
	}
}

// releaseBatch sends the released packets gathered in the worker's batch,
// all from input port in.
func (w *Worker) releaseBatch(c *config, in *portEntry, now uint32) {
	b, p := &w.batch, &w.pipe
	b.InPort, b.InQueue = in.ID, 0
	p.nlive, p.untagged = b.N, false
	w.cur = nil // a fault now is the output port's: the input port's buffers are long returned
	stageL2(p, c, in, b, now)
	w.output(in, b, c, now)
	w.flushRejects(c)
	b.N = 0
}

// rifByID finds a router interface of c by its id.
func (c *config) rifByID(id uint32) *rif {
	for _, r := range c.routers {
		for _, ri := range r.ifs {
			if ri.id == id {
				return ri
			}
		}
	}
	return nil
}

// hold keeps packet i while its next hop k is resolved and, once a second
// per next hop (within the worker's rate), turns its slot into the ARP
// request or neighbour solicitation for k. A packet that finds the hold
// at its bound is dropped and counted. One that finds k resolved while
// earlier packets for it are still held (resolved) waits behind them.
func hold(p *pipe, in *portEntry, out *rif, pkt *Packet, ph *header.Parsed, i int, k neighKey, now uint32, resolved bool) bool {
	held, ask := true, true // a trace holds nothing but says what would happen
	if q := p.hold; q != nil {
		held, ask = q.put(k, in.ID, pkt, ph, p.tci[i], now)
	}
	if !held {
		p.drop(i, DropNeighborHoldFull, "route")
		if p.hold != nil {
			p.hold.Full.Add(1)
		}
	} else if t := p.tr(i); t != nil {
		t.at("route").s("held until the next hop on ").s(out.name).s(" resolves")
	}
	if resolved || !ask || !p.token(now, &p.resolveTok) || !solicit(pkt, out, k, 0) {
		return false
	}
	if q := p.hold; q != nil {
		q.solicited(k, false)
	}
	p.routed[i], p.br[i], p.vlan[i], p.tci[i] = true, out.br, out.vlan, 0
	return true
}

// solicited counts a solicitation made for k.
func (q *holdQ) solicited(k neighKey, probe bool) {
	if k.v6 {
		q.ND.Add(1)
	} else {
		q.ARP.Add(1)
	}
	if probe {
		q.Probes.Add(1)
	}
}

// refresh asks again, before its entry expires, a neighbour that packet
// traffic still goes to (see neighRefresh): it queues a unicast probe to
// the MAC the entry has, which the worker sends once the batches of its
// poll are through, within the solicitation rate. The packet goes on to
// that MAC meanwhile.
func refresh(p *pipe, in *portEntry, out *rif, k neighKey, e *neighEntry, now uint32) {
	q := p.hold
	if q == nil || q.nprobe == len(q.probes) || !p.token(now, &p.resolveTok) || !e.claimProbe(now) {
		return // a trace, or asked already: later packets ask
	}
	q.probes[q.nprobe] = neighProbe{k: k, mac: e.mac, in: in, out: out}
	q.nprobe++
}

// sendProbes sends the refresh probes queued during this poll through
// the L2 stage and the output ports, batched by the input port of the
// packet that asked.
func (w *Worker) sendProbes(c *config) {
	q := w.pipe.hold
	defer func() { // also when a port fault unwinds the worker
		clear(q.probes[:q.nprobe]) // keeps no removed port or router alive
		q.nprobe = 0
	}()
	b, p := &w.batch, &w.pipe
	now := w.sw.clock.Load()
	b.N = 0
	var in *portEntry
	for j := range q.probes[:q.nprobe] {
		pr := &q.probes[j]
		if b.N > 0 && pr.in != in {
			w.releaseBatch(c, in, now)
		}
		in = pr.in
		i := b.N
		pkt := &b.Pkts[i]
		if !solicit(pkt, pr.out, pr.k, pr.mac) {
			continue
		}
		pkt.Offload = offload.Meta{}
		p.routed[i], p.br[i], p.vlan[i], p.tci[i] = true, pr.out.br, pr.out.vlan, 0
		p.live[i] = uint16(i)
		b.N++
		q.solicited(pr.k, true)
	}
	if b.N > 0 {
		w.releaseBatch(c, in, now)
	}
}
