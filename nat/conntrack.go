package nat

import (
	"github.com/vswitch/vswitch/switch/header"
)

// CTState is a packet's conntrack state, with OVS's ct_state bit values.
type CTState uint8

const (
	StateNew  CTState = 1 << 0 // first packet(s) of a connection not yet answered
	StateEst  CTState = 1 << 1 // part of a connection seen in both directions
	StateRel  CTState = 1 << 2 // an ICMP error about a connection
	StateRpl  CTState = 1 << 3 // travelling in the reply direction
	StateInv  CTState = 1 << 4 // conntrack could not make sense of it (see Reason)
	StateTrk  CTState = 1 << 5 // conntrack looked at it; unset for non-IP, ND, ...
	StateSNAT CTState = 1 << 6 // its connection has source translation
	StateDNAT CTState = 1 << 7 // its connection has destination translation
)

// Handle names a connection: generation<<32 | entry index; 0 is none.
type Handle uint64

func mkHandle(idx, gen uint32) Handle { return Handle(uint64(gen)<<32 | uint64(idx)) }
func (h Handle) idx() uint32          { return uint32(h) }
func (h Handle) gen() uint32          { return uint32(h >> 32) }

// Reason says why conntrack or NAT marked a packet invalid or could not
// commit it. The caller drops packets whose Reason is set; Worker.Counters
// has counted them.
type Reason uint8

const (
	ReasonNone Reason = iota
	ReasonInvalid
	ReasonFragment
	ReasonTCPFlags
	ReasonTCPState
	ReasonTCPWindow
	ReasonICMPUnrelated
	ReasonFull
	ReasonZoneFull
	ReasonBucketFull
	ReasonNoPort
	ReasonGone
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonNone:          "none",
	ReasonInvalid:       "ct_invalid",
	ReasonFragment:      "ct_fragment",
	ReasonTCPFlags:      "ct_tcp_bad_flags",
	ReasonTCPState:      "ct_tcp_bad_state",
	ReasonTCPWindow:     "ct_tcp_out_of_window",
	ReasonICMPUnrelated: "ct_icmp_unrelated",
	ReasonFull:          "conntrack_full",
	ReasonZoneFull:      "conntrack_zone_full",
	ReasonBucketFull:    "conntrack_bucket_full",
	ReasonNoPort:        "nat_no_port",
	ReasonGone:          "ct_connection_gone",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Result is conntrack's answer for one packet. The caller keeps one per
// packet of a batch; Lookup fills it, the ACL stage sets Admit on new
// packets it allows, Commit and Translate read it.
type Result struct {
	State  CTState
	Reason Reason
	Admit  bool
	kind   keyKind
	Conn   Handle
	h      uint64
	key    key // the packet's key (for an ICMP error: its connection's)
	old    Handle
}

// Key returns the packet's connection key as Lookup built it.
func (r *Result) Key() Key { return r.key.Unpack() }

// Worker is one worker thread's handle on a Table: its counters and
// scratch. It must not be shared between goroutines.
type Worker struct {
	t           *Table
	Counters    [NumReasons]uint64 // packets marked with each reason
	LooseWindow uint64             // out-of-window segments let through (WindowLoose)
	rnd         uint32             // port allocation start (LCG)
}

// NewWorker returns a handle for one worker thread.
func (t *Table) NewWorker() *Worker {
	return &Worker{t: t, rnd: uint32(t.seed[0]>>32) ^ uint32(t.workers.Add(1))*2654435761}
}

// Table returns the table w works on.
func (w *Worker) Table() *Table { return w.t }

func (w *Worker) mark(r *Result, why Reason) {
	r.State |= StateInv
	r.Reason = why
	w.Counters[why]++
}

// Lookup finds the connection of each packet of a batch in zone and moves
// its state. frames[i] is packet i's head (as much of the frame as is
// contiguous), ps[i] its parse; len(res) >= len(frames). It then sweeps a
// few entries for expiry. now is the caller's coarse clock.
func (w *Worker) Lookup(frames [][]byte, ps []header.Parsed, zone uint16, now uint32, res []Result) {
	t := w.t
	to := t.timeouts.Load()
	res = res[:len(frames)]
	ps = ps[:len(frames)]
	for i, b := range frames {
		r := &res[i]
		*r = Result{}
		p := &ps[i]
		r.kind = packetKey(b, p, zone, &r.key)
		switch r.kind {
		case kindUntracked:
			continue
		case kindInvalid:
			r.State = StateTrk
			w.mark(r, ReasonInvalid)
			continue
		case kindFragment:
			r.State = StateTrk
			w.mark(r, ReasonFragment)
			continue
		}
		r.State = StateTrk
		r.h = hash(&r.key, &t.seed)
		idx, dir, gen := t.find(&r.key, r.h)
		var c *conn
		if idx != 0 {
			c = &t.conns[idx]
			if int32(c.expire.Load()-now) <= 0 {
				idx = 0
			}
		}
		if r.kind == kindICMPError {
			if idx == 0 {
				w.mark(r, ReasonICMPUnrelated)
				continue
			}
			r.State |= StateRel | natBits(c)
			if dir == 1 {
				r.State |= StateRpl
			}
			r.Conn = mkHandle(idx, gen)
			continue
		}
		if idx == 0 {
			w.newConn(r, b, p)
			continue
		}
		st := c.state.Load()
		var tmo uint32
		switch r.key.proto() {
		case header.ProtoTCP:
			var s tcpSeg
			if !readSeg(b, p, &s) {
				w.mark(r, ReasonInvalid)
				continue
			}
			cur := st & stateMask
			if dir == 0 && tcpClass(s.flags) == cSyn && (cur == tcpTimeWait || cur == tcpClose) {
				// A new SYN on a closed connection's keys starts a new
				// connection: Commit replaces the old entry.
				r.State |= StateNew
				r.old = mkHandle(idx, gen)
				continue
			}
			next, why := w.tcpTrack(c, dir, &s)
			if why != 0 {
				w.mark(r, why)
				continue
			}
			tmo = to.TCP[next]
			st = c.state.Load()
		case header.ProtoUDP:
			if dir == 1 && st&flSeenReply == 0 {
				c.state.Or(flSeenReply)
				st |= flSeenReply
			}
			tmo = to.UDP
			if st&flSeenReply != 0 {
				tmo = to.UDPReplied
			}
		case header.ProtoICMP, header.ProtoICMPv6:
			tmo = to.ICMP
		default:
			tmo = to.Other
		}
		if dir == 1 && st&flSeenReply == 0 {
			c.state.Or(flSeenReply)
			st |= flSeenReply
		}
		if exp := now + tmo; c.expire.Load() != exp {
			c.expire.Store(exp)
		}
		r.Conn = mkHandle(idx, gen)
		r.State |= natBits(c)
		switch {
		case dir == 1:
			r.State |= StateEst | StateRpl
		case st&flSeenReply != 0:
			r.State |= StateEst
		default:
			r.State |= StateNew // committed, not answered yet (Linux IP_CT_NEW)
		}
	}
	t.Sweep(now)
}

func natBits(c *conn) CTState {
	st := c.state.Load()
	var s CTState
	if st&flSNAT != 0 {
		s |= StateSNAT
	}
	if st&flDNAT != 0 {
		s |= StateDNAT
	}
	return s
}

// newConn vets the first packet of a connection.
func (w *Worker) newConn(r *Result, b []byte, p *header.Parsed) {
	if r.key.proto() == header.ProtoTCP && tcpClass(p.TCPFlags) != cSyn {
		w.mark(r, ReasonTCPFlags) // no mid-stream pickup: only a SYN opens
		return
	}
	if r.key.flags()&keyEchoRep != 0 {
		w.mark(r, ReasonInvalid) // an echo reply never opens a connection
		return
	}
	r.State |= StateNew
}

// Commit creates connections for the packets that Lookup found new and the
// caller admitted (Result.Admit), translating them with rules when rules is
// not nil. A packet that cannot be committed gets a Reason (table or zone
// full, no NAT port). Packets already committed (Conn set) are left alone.
func (w *Worker) Commit(frames [][]byte, ps []header.Parsed, res []Result, rules *Rules, now uint32) {
	t := w.t
	to := t.timeouts.Load()
	res = res[:len(frames)]
	ps = ps[:len(frames)]
	for i, b := range frames {
		r := &res[i]
		if r.State&StateNew == 0 || r.Conn != 0 || !r.Admit || r.Reason != 0 {
			continue
		}
		if r.old != 0 {
			t.remove(r.old.idx(), r.old.gen())
		}
		reply := r.key.reverse()
		var st, tmo uint32
		var s tcpSeg
		seg := (*tcpSeg)(nil)
		switch r.key.proto() {
		case header.ProtoTCP:
			if !readSeg(b, &ps[i], &s) {
				w.mark(r, ReasonInvalid)
				continue
			}
			seg = &s
			st, tmo = tcpSynSent, to.TCP[tcpSynSent]
		case header.ProtoUDP:
			tmo = to.UDP
		case header.ProtoICMP, header.ProtoICMPv6:
			tmo = to.ICMP
		default:
			tmo = to.Other
		}
		var pool uint16
		if rules != nil {
			var why Reason
			st, pool, why = w.natNew(rules, &r.key, &reply, st, false)
			if why != 0 {
				w.mark(r, why)
				continue
			}
		}
		idx, gen, e := t.insert(&r.key, &reply, st, now, now+tmo, pool, seg)
		if e != insOK {
			if pool != 0 {
				t.releasePort(pool-1, &reply)
			}
			if e == insExists {
				// Another worker committed it (or its other direction) first.
				if idx, dir, gen := t.find(&r.key, r.h); idx != 0 {
					r.Conn = mkHandle(idx, gen)
					r.State |= natBits(&t.conns[idx])
					if dir == 1 {
						r.State = r.State&^StateNew | StateEst | StateRpl
					}
					continue
				}
				w.mark(r, ReasonGone)
				continue
			}
			w.mark(r, [...]Reason{insFull: ReasonFull, insZoneFull: ReasonZoneFull, insBucketFull: ReasonBucketFull}[e])
			continue
		}
		r.Conn = mkHandle(idx, gen)
		r.State |= natBits(&t.conns[idx])
	}
}

// State returns a connection's TCP state (0 for other protocols), whether
// it is live, and its expiry time. For tests and the API.
func (t *Table) State(h Handle) (tcpState uint32, expire uint32, live bool) {
	if h.idx() == 0 || int(h.idx()) >= len(t.conns) {
		return 0, 0, false
	}
	c := &t.conns[h.idx()]
	st, exp := c.state.Load(), c.expire.Load()
	if c.gen.Load() != h.gen() {
		return 0, 0, false
	}
	return st & stateMask, exp, true
}

// Keys returns a connection's original and reply keys.
func (t *Table) Keys(h Handle) (orig, reply Key, live bool) {
	if h.idx() == 0 || int(h.idx()) >= len(t.conns) {
		return orig, reply, false
	}
	c := &t.conns[h.idx()]
	k0, k1 := c.loadKey(0), c.loadKey(1)
	if c.gen.Load() != h.gen() {
		return orig, reply, false
	}
	return k0.Unpack(), k1.Unpack(), true
}
