package nat

import (
	"sync/atomic"

	"github.com/vswitch/vswitch/switch/header"
)

// TCP states (Linux nf_conntrack_proto_tcp.c without SYN_SENT2).
const (
	tcpNone uint32 = iota
	tcpSynSent
	tcpSynRecv
	tcpEstablished
	tcpFinWait
	tcpCloseWait
	tcpLastAck
	tcpTimeWait
	tcpClose
	numTCPStates

	sIV       = 0xe // invalid transition
	sIG       = 0xf // ignored: the packet passes, the state stays
	stateMask = 0xf
)

// TCPStateNames name the states (Linux spelling), indexed by state.
var TCPStateNames = [numTCPStates]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED",
	"FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"}

// Exported state values for tests and the API.
const (
	TCPSynSent     = tcpSynSent
	TCPSynRecv     = tcpSynRecv
	TCPEstablished = tcpEstablished
	TCPFinWait     = tcpFinWait
	TCPCloseWait   = tcpCloseWait
	TCPLastAck     = tcpLastAck
	TCPTimeWait    = tcpTimeWait
	TCPClose       = tcpClose
)

const protoTCP = header.ProtoTCP

// Flag classes the transition table is indexed by.
const (
	cSyn = iota
	cSynAck
	cFin
	cAck
	cRst
	numClasses
	cBad = 0xff
)

const (
	sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL = 0, 1, 2, 3, 4, 5, 6, 7, 8 // the tcp* states, untyped
)

// tcpTrans is Linux's tcp_conntracks table: [dir][class][state] -> state.
var tcpTrans = [2][numClasses][numTCPStates]uint8{
	{ // original direction
		cSyn:    {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS},
		cSynAck: {sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV},
		cFin:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL},
		cAck:    {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL},
		cRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
	},
	{ // reply direction
		cSyn:    {sIV, sIG, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
		cSynAck: {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG},
		cFin:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL},
		cAck:    {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL},
		cRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
	},
}

// tcpClass maps flags to a class; combinations Linux calls invalid
// (SYN|FIN, FIN without ACK, no flags, ...) are cBad.
func tcpClass(f uint8) uint8 {
	switch f & (header.TCPFin | header.TCPSyn | header.TCPRst | header.TCPAck) {
	case header.TCPSyn:
		return cSyn
	case header.TCPSyn | header.TCPAck:
		return cSynAck
	case header.TCPFin | header.TCPAck:
		return cFin
	case header.TCPAck:
		return cAck
	case header.TCPRst, header.TCPRst | header.TCPAck:
		return cRst
	}
	return cBad
}

const noScale = 0xff

// tcpSeg is what window tracking needs from a segment.
type tcpSeg struct {
	seq, ack, end, win uint32
	flags              uint8
	wscale             uint8 // window scale option of a SYN, noScale if none
}

// readSeg reads the segment at p.L4. The head b holds at least the fixed
// TCP header (the parser checked); options are read when they are in b.
func readSeg(b []byte, p *header.Parsed, s *tcpSeg) bool {
	l3, l4 := int(p.L3), int(p.L4)
	if len(b) < l4+header.TCPMinLen {
		return false
	}
	t := header.TCP(b[l4:])
	var ipEnd int
	if p.EthType == header.EtherTypeIPv4 {
		ipEnd = l3 + int(header.IPv4(b[l3:]).TotalLen())
	} else {
		ipEnd = l3 + header.IPv6Len + int(header.IPv6(b[l3:]).PayloadLen())
	}
	doff := t.DataOffset()
	n := ipEnd - l4 - doff
	if n < 0 || doff < header.TCPMinLen {
		return false
	}
	s.seq, s.ack, s.win, s.flags = t.Seq(), t.Ack(), uint32(t.Window()), t.Flags()
	s.end = s.seq + uint32(n)
	if s.flags&header.TCPSyn != 0 {
		s.end++
	}
	if s.flags&header.TCPFin != 0 {
		s.end++
	}
	s.wscale = noScale
	if s.flags&header.TCPSyn != 0 && len(b) >= l4+doff {
		s.wscale = windowScale(b[l4+header.TCPMinLen : l4+doff])
	}
	return true
}

// windowScale finds the window scale option (kind 3).
func windowScale(o []byte) uint8 {
	for len(o) > 0 {
		switch o[0] {
		case 0:
			return noScale
		case 1:
			o = o[1:]
			continue
		}
		if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
			return noScale
		}
		if o[0] == 3 && o[1] == 3 {
			return min(o[2], 14)
		}
		o = o[o[1]:]
	}
	return noScale
}

func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return int32(b-a) < 0 }

// seqMax raises a to v when v is after it.
func seqMax(a *atomic.Uint32, v uint32) {
	for {
		o := a.Load()
		if !after(v, o) || a.CompareAndSwap(o, v) {
			return
		}
	}
}

func umax(a *atomic.Uint32, v uint32) {
	for {
		o := a.Load()
		if v <= o || a.CompareAndSwap(o, v) {
			return
		}
	}
}

// initDir starts tracking a direction at its first segment (a SYN or a
// SYN-ACK).
func initDir(d *tcpDir, s *tcpSeg) {
	d.end.Store(s.end)
	d.maxEnd.Store(s.end)
	d.maxWin.Store(max(s.win, 1))
	if s.wscale != noScale {
		d.scale.Store(0x100 | uint32(s.wscale))
	} else {
		d.scale.Store(0)
	}
}

// inWindow is Linux's tcp_in_window without SACK: it checks the segment
// against the tracked windows and, when it fits, advances them. Concurrent
// updates from two workers are CAS-max operations, so they never move a
// window backwards.
func inWindow(c *conn, dir int, s *tcpSeg) bool {
	snd, rcv := &c.win[dir], &c.win[1-dir]
	if snd.maxWin.Load() == 0 {
		if s.flags&header.TCPSyn == 0 {
			return true // the other side's first segment is always a SYN-ACK here
		}
		initDir(snd, s)
		if snd.scale.Load()&0x100 == 0 || rcv.scale.Load()&0x100 == 0 {
			snd.scale.Store(0)
			rcv.scale.Store(0)
		}
	}
	ack := s.ack
	rEnd := rcv.end.Load()
	if s.flags&header.TCPAck == 0 {
		ack = rEnd
	}
	sMaxWin := snd.maxWin.Load()
	maxAck := max(sMaxWin, 66000)
	rMaxWin := rcv.maxWin.Load()
	inRecv := rMaxWin == 0 || after(s.end, snd.end.Load()-rMaxWin-1)
	if !(before(s.seq, snd.maxEnd.Load()+1) && inRecv &&
		before(ack, rEnd+1) && after(ack, rEnd-maxAck-1)) {
		return false
	}
	win := s.win
	if s.flags&header.TCPSyn == 0 {
		win <<= snd.scale.Load() & 0xff
	}
	umax(&snd.maxWin, win)
	sMaxEnd := snd.maxEnd.Load()
	seqMax(&snd.end, s.end)
	if rMaxWin != 0 && after(s.end, sMaxEnd) {
		rcv.maxWin.Add(s.end - sMaxEnd)
	}
	e := ack + win
	if win == 0 {
		e++
	}
	seqMax(&rcv.maxEnd, e)
	return true
}

// tcpTrack moves the connection's state for a segment in dir. It returns
// the new state, or a reason the segment is invalid.
func (w *Worker) tcpTrack(c *conn, dir int, s *tcpSeg) (uint32, Reason) {
	cl := tcpClass(s.flags)
	if cl == cBad {
		return 0, ReasonTCPFlags
	}
	mode := WindowCheck(w.t.window.Load())
	st := c.state.Load()
	cur := st & stateMask
	if tcpTrans[dir][cl][cur] == sIV {
		return 0, ReasonTCPState
	}
	if cl == cRst && cur == tcpSynSent {
		// A RST answering our SYN must acknowledge it (Linux).
		if s.flags&header.TCPAck == 0 || s.ack != c.win[0].end.Load() {
			return 0, ReasonTCPWindow
		}
	}
	if mode != WindowOff && !inWindow(c, dir, s) {
		if mode == WindowStrict || cl == cRst {
			return 0, ReasonTCPWindow
		}
		w.LooseWindow++
		return cur, 0
	}
	for range 8 {
		next := uint32(tcpTrans[dir][cl][cur])
		switch next {
		case sIV:
			return 0, ReasonTCPState
		case sIG:
			return cur, 0
		}
		nst := st&^stateMask | next
		if dir == 1 {
			nst |= flSeenReply
		}
		if nst == st || c.state.CompareAndSwap(st, nst) {
			return next, 0
		}
		st = c.state.Load()
		cur = st & stateMask
	}
	return cur, 0
}
