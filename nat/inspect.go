package nat

import (
	"net/netip"

	"github.com/vswitch/vswitch/switch/header"
)

// The control plane's view of the table: listing, flushing and a dry run
// of one packet. None of it takes a lock the workers take per packet:
// entries are read under their generation (the seqlock of table.go) and
// an entry that changed while being read is skipped; deletes take the
// shard locks that inserts take.

// SrcAddr is the key's source address.
func (k Key) SrcAddr() netip.Addr { return addrOf(k.Src, k.V6) }

// DstAddr is the key's destination address.
func (k Key) DstAddr() netip.Addr { return addrOf(k.Dst, k.V6) }

// Conn is one connection as Walk shows it.
type Conn struct {
	// Orig is the key of the direction that opened the connection; Reply
	// the key its replies carry (with NAT: the translated addresses).
	Orig, Reply Key
	TCPState    string // Linux's name of the TCP state; "" for other protocols
	Expire      uint32 // clock value at which the connection expires
	Replied     bool   // a packet was seen in the reply direction
	SNAT, DNAT  bool
	gen         uint32
}

// Zone is the connection's conntrack zone.
func (c *Conn) Zone() uint16 { return c.Orig.Zone }

// read copies entry idx into out if it is live, not expired at now
// (unless all), and did not change while it was read.
func (t *Table) read(idx int, now uint32, all bool, out *Conn) bool {
	c := &t.conns[idx]
	g := c.gen.Load()
	if g&1 != 0 {
		return false
	}
	st, exp := c.state.Load(), c.expire.Load()
	k0, k1 := c.loadKey(0), c.loadKey(1)
	if c.gen.Load() != g || !all && int32(exp-now) <= 0 {
		return false
	}
	*out = Conn{Orig: k0.Unpack(), Reply: k1.Unpack(), Expire: exp, Replied: st&flSeenReply != 0,
		SNAT: st&flSNAT != 0, DNAT: st&flDNAT != 0, gen: g}
	if k0.proto() == protoTCP {
		if s := st & stateMask; s < numTCPStates {
			out.TCPState = TCPStateNames[s]
		}
	}
	return true
}

// Walk calls f with each connection live at clock now, in table order,
// until f returns false. The Conn is reused between calls. Connections
// made or ended during the walk may or may not be seen.
func (t *Table) Walk(now uint32, f func(*Conn) bool) {
	var c Conn
	for idx := 1; idx < len(t.conns); idx++ {
		if t.read(idx, now, false, &c) && !f(&c) {
			return
		}
	}
}

// Flush deletes every connection and returns how many it deleted. It
// runs beside the workers: a connection they make during the flush may
// stay.
func (t *Table) Flush() int {
	return t.FlushMatch(func(*Conn) bool { return true })
}

// FlushZone deletes the connections of zone (ovs-appctl
// dpctl/flush-conntrack zone=N) and returns how many it deleted.
func (t *Table) FlushZone(zone uint16) int {
	return t.FlushMatch(func(c *Conn) bool { return c.Orig.Zone == zone })
}

// FlushMatch deletes the connections (expired or not) match selects and
// returns how many it deleted. Translated source ports go back to their
// pools.
func (t *Table) FlushMatch(match func(*Conn) bool) int {
	n := 0
	var c Conn
	for idx := 1; idx < len(t.conns); idx++ {
		if t.read(idx, 0, true, &c) && match(&c) && t.remove(uint32(idx), c.gen) {
			n++
		}
	}
	return n
}

// Peek is what conntrack, and NAT with rules, would do with one packet,
// found by Table.Peek without changing anything.
type Peek struct {
	State  CTState // as Lookup would set it, with StateSNAT/StateDNAT for a new connection NAT would translate
	Reason Reason  // why the packet would be invalid
	// Found says the packet matched a live connection (for an ICMP error:
	// the connection it is about).
	Found bool
	// TCPState is the connection's TCP state once the packet has been
	// seen ("" for other protocols and invalid packets).
	TCPState string
	// Orig and Reply are the connection's keys; for a new connection,
	// the keys Commit would give it.
	Orig, Reply Key
	// CommitReason is why Commit would refuse the new connection (table
	// or zone full, no NAT port left); ReasonNone if it would not.
	CommitReason Reason
	// PortFromPool: Commit would masquerade the new connection with a
	// port from the pool rather than its own (taken), so Reply shows the
	// packet's own port where the real one will differ.
	PortFromPool bool
	// Translated: frame was rewritten as Translate would rewrite it.
	Translated bool
}

// Peek runs one packet through conntrack (and NAT with rules not nil) in
// zone at clock now without changing the table: no state moves, no
// window advances, no connection is made, no port is taken, nothing is
// counted. When the packet would be translated, frame (parsed as p) is
// rewritten in place as Translate would, so pass a copy. It mirrors
// Worker.Lookup, Commit and Translate for one packet; a test holds them
// to the same answers.
func (t *Table) Peek(frame []byte, p *header.Parsed, zone uint16, rules *Rules, now uint32) Peek {
	w := &Worker{t: t} // scratch: its counters are thrown away
	var r Result
	var out Peek
	r.kind = packetKey(frame, p, zone, &r.key)
	switch r.kind {
	case kindUntracked:
		return out
	case kindInvalid:
		return Peek{State: StateTrk | StateInv, Reason: ReasonInvalid}
	case kindFragment:
		return Peek{State: StateTrk | StateInv, Reason: ReasonFragment}
	}
	r.State = StateTrk
	idx, dir, gen := t.find(&r.key, hash(&r.key, &t.seed))
	var c conn // a copy: tracking moves its state, not the table's
	if idx != 0 && (!t.snapshot(idx, gen, &c) || int32(c.expire.Load()-now) <= 0) {
		idx = 0
	}
	if r.kind == kindICMPError {
		if idx == 0 {
			return Peek{State: StateTrk | StateInv, Reason: ReasonICMPUnrelated}
		}
		out.State = StateTrk | StateRel | natBits(&c)
		if dir == 1 {
			out.State |= StateRpl
		}
		out.Found = true
		t.peekKeys(&c, &out)
		if out.State&(StateSNAT|StateDNAT) != 0 {
			cur, other := c.loadKey(dir), c.loadKey(1-dir)
			tgt := other.reverse()
			w.rewriteError(frame, p, &cur, &tgt)
			out.Translated = true
		}
		return out
	}
	if idx != 0 {
		st := c.state.Load()
		reopen := false
		switch r.key.proto() {
		case header.ProtoTCP:
			var s tcpSeg
			if !readSeg(frame, p, &s) {
				return Peek{State: StateTrk | StateInv, Reason: ReasonInvalid, Found: true}
			}
			cur := st & stateMask
			if dir == 0 && tcpClass(s.flags) == cSyn && (cur == tcpTimeWait || cur == tcpClose) {
				reopen = true // Commit replaces the closed connection
				break
			}
			next, why := w.tcpTrack(&c, dir, &s)
			if why != 0 {
				out = Peek{State: StateTrk | StateInv, Reason: why, Found: true}
				t.peekKeys(&c, &out)
				return out
			}
			out.TCPState = TCPStateNames[next]
			st = c.state.Load()
		}
		if !reopen {
			out.Found = true
			out.State = StateTrk | natBits(&c)
			switch {
			case dir == 1:
				out.State |= StateEst | StateRpl
			case st&flSeenReply != 0:
				out.State |= StateEst
			default:
				out.State |= StateNew
			}
			t.peekKeys(&c, &out)
			if out.State&(StateSNAT|StateDNAT) != 0 {
				cur, other := c.loadKey(dir), c.loadKey(1-dir)
				tgt := other.reverse()
				rewrite(frame, int(p.L3), int(p.L4), p.Proto, &cur, &tgt)
				out.Translated = true
			}
			return out
		}
	} else {
		w.newConn(&r, frame, p)
		if r.Reason != 0 {
			return Peek{State: r.State, Reason: r.Reason}
		}
	}
	// A new connection: what Commit would make of it.
	out.State = StateTrk | StateNew
	reply := r.key.reverse()
	var st uint32
	if r.key.proto() == protoTCP {
		st = tcpSynSent
		out.TCPState = TCPStateNames[tcpSynSent]
	}
	if rules != nil {
		var pool uint16
		st, pool, out.CommitReason = w.natNew(rules, &r.key, &reply, st, true)
		out.PortFromPool = pool != 0
		if st&flSNAT != 0 {
			out.State |= StateSNAT
		}
		if st&flDNAT != 0 {
			out.State |= StateDNAT
		}
	}
	if out.CommitReason == 0 {
		out.CommitReason = t.wouldRefuse(r.key.zone())
	}
	out.Orig, out.Reply = r.key.Unpack(), reply.Unpack()
	if out.State&(StateSNAT|StateDNAT) != 0 && out.CommitReason == 0 {
		tgt := reply.reverse()
		rewrite(frame, int(p.L3), int(p.L4), p.Proto, &r.key, &tgt)
		out.Translated = true
	}
	return out
}

// snapshot copies what tracking reads of entry idx into d; false if the
// entry changed (or went) while it was copied.
func (t *Table) snapshot(idx, gen uint32, d *conn) bool {
	c := &t.conns[idx]
	d.state.Store(c.state.Load())
	d.expire.Store(c.expire.Load())
	for k := range c.key {
		for i := range c.key[k] {
			d.key[k][i].Store(c.key[k][i].Load())
		}
	}
	for k := range c.win {
		s, o := &c.win[k], &d.win[k]
		o.end.Store(s.end.Load())
		o.maxEnd.Store(s.maxEnd.Load())
		o.maxWin.Store(s.maxWin.Load())
		o.scale.Store(s.scale.Load())
	}
	return c.gen.Load() == gen
}

func (t *Table) peekKeys(c *conn, out *Peek) {
	k0, k1 := c.loadKey(0), c.loadKey(1)
	out.Orig, out.Reply = k0.Unpack(), k1.Unpack()
}

// wouldRefuse says why an insert in zone would fail now for lack of room.
func (t *Table) wouldRefuse(zone uint16) Reason {
	if t.zoneFull(zone) {
		return ReasonZoneFull
	}
	if t.count.Load() >= t.limit.Load() {
		return ReasonFull
	}
	return ReasonNone
}

// String names the state bits the way OVS prints ct_state
// ("+trk+est+rpl"); "-" when conntrack did not look at the packet.
func (s CTState) String() string {
	names := [...]string{"new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"}
	// trk first, as OVS does.
	order := [...]int{5, 0, 1, 2, 3, 4, 6, 7}
	var b []byte
	for _, i := range order {
		if s&(1<<i) != 0 {
			b = append(b, '+')
			b = append(b, names[i]...)
		}
	}
	if b == nil {
		return "-"
	}
	return string(b)
}
