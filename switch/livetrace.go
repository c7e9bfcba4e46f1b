package vswitch

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/vswitch/vswitch/switch/header"
)

// MaxLiveTrace bounds how many packets one live trace captures.
const MaxLiveTrace = 1000

// liveMaxOuts bounds the outputs a captured packet records (a flood
// records the first ones and counts the rest).
const liveMaxOuts = 16

// liveSlot is a port's live trace, shared by every snapshot of the port.
// Workers load it once per batch; it is nil unless an operator armed it.
type liveSlot struct{ p atomic.Pointer[liveTrace] }

// liveTrace captures the next want packets received on a port (VPP
// `trace add`). Its records are allocated when armed; each is claimed by
// one worker, filled, and published with done.
type liveTrace struct {
	want  int32
	next  atomic.Int32 // records claimed so far
	armed time.Time
	recs  []liveRec
}

type liveRec struct {
	done   atomic.Bool
	at     int64 // unix nanoseconds the batch was taken
	worker int
	queue  int
	len    int
	nhead  int
	head   [HeadLen]byte // the frame's head as received
	tr     Trace
	outs   [liveMaxOuts]TraceOutput
	outID  [liveMaxOuts]uint16 // the port of each of outs
	nouts  int
	more   int
}

// claim takes records for up to n packets: the first record and how many.
func (lt *liveTrace) claim(n int) (int, int) {
	if lt.next.Load() >= lt.want {
		return 0, 0
	}
	end := lt.next.Add(int32(n))
	start := end - int32(n)
	if start >= lt.want {
		return 0, 0
	}
	return int(start), int(min(end, lt.want) - start)
}

// liveStart points the pipe at records first..first+k-1 for packets
// 0..k-1 of b.
func (w *Worker) liveStart(lt *liveTrace, first, k int, b *Batch) {
	p := &w.pipe
	at := time.Now().UnixNano()
	for j := 0; j < k; j++ {
		r := &lt.recs[first+j]
		pkt := &b.Pkts[j]
		r.at, r.worker, r.queue, r.len = at, w.id, b.InQueue, pkt.Len
		r.nhead = copy(r.head[:], pkt.HeadBytes())
		r.tr.reset()
		r.nouts, r.more = 0, 0
		p.traces[j] = &r.tr
	}
	p.tracing = true
}

// liveOutputs records the ports the stages selected for the traced
// packets, before the output ports' filters run.
func (w *Worker) liveOutputs(lt *liveTrace, first, k int, c *config) {
	p := &w.pipe
	for _, id := range p.touched[:p.nouch] {
		out := c.ports[id]
		if out == nil {
			continue
		}
		for _, i := range p.sel[id][:p.nsel[id]] {
			if int(i) >= k {
				continue
			}
			r := &lt.recs[first+int(i)]
			if r.nouts == liveMaxOuts {
				r.more++
				continue
			}
			vid := p.vlan[i&(BatchSize-1)]
			r.outs[r.nouts] = TraceOutput{Port: out.Name, VLAN: vid, Tagged: out.vlan.egressTagged(vid)}
			r.outID[r.nouts] = id
			r.nouts++
		}
	}
}

// livePublish takes the outputs whose filter dropped the packet out of
// the traced packets' records and publishes them.
func (w *Worker) livePublish(lt *liveTrace, first, k int) {
	p := &w.pipe
	for j := 0; j < k; j++ {
		r := &lt.recs[first+j]
		if nb := r.tr.nblocked(); nb > 0 {
			n := 0
			for o := 0; o < r.nouts; o++ {
				if r.tr.isBlocked(r.outID[o]) {
					nb--
					continue
				}
				r.outs[n], r.outID[n] = r.outs[o], r.outID[o]
				n++
			}
			r.nouts = n
			r.more -= min(nb, r.more) // blocked beyond the recorded outputs
		}
		r.done.Store(true)
		p.traces[j] = nil
	}
	p.tracing = false
}

// LiveRecord is one captured packet: its headers as received, each
// stage's decision and the ports it left by.
type LiveRecord struct {
	Seq         int           `json:"seq"`
	Time        time.Time     `json:"time"`
	Worker      int           `json:"worker"`
	Queue       int           `json:"queue"`
	Len         int           `json:"len"`
	Headers     string        `json:"headers"`
	Stages      []TraceStage  `json:"stages"`
	Outputs     []TraceOutput `json:"outputs"`
	MoreOutputs int           `json:"more_outputs,omitempty"`
	Dropped     []string      `json:"dropped,omitempty"`
}

// LiveTraceResult is a port's live trace.
type LiveTraceResult struct {
	Port     string       `json:"port"`
	Armed    bool         `json:"armed"`
	Count    int          `json:"count"`    // packets asked for
	Captured int          `json:"captured"` // packets recorded so far
	Since    time.Time    `json:"since,omitzero"`
	Records  []LiveRecord `json:"records"`
}

// ArmTrace starts capturing the next n packets received on port,
// replacing any capture there.
func (s *Switch) ArmTrace(port string, n int) error {
	if n < 1 || n > MaxLiveTrace {
		return fmt.Errorf("count: %d is not in 1..%d", n, MaxLiveTrace)
	}
	pe := s.cfg.Load().port(port)
	if pe == nil {
		return fmt.Errorf("no port %q", port)
	}
	lt := &liveTrace{want: int32(n), armed: time.Now(), recs: make([]liveRec, n)}
	for i := range lt.recs {
		lt.recs[i].tr = newBoundedTrace()
	}
	pe.live.p.Store(lt)
	return nil
}

// DisarmTrace stops a port's live trace and forgets what it captured.
func (s *Switch) DisarmTrace(port string) error {
	pe := s.cfg.Load().port(port)
	if pe == nil {
		return fmt.Errorf("no port %q", port)
	}
	pe.live.p.Store(nil)
	return nil
}

// LiveTrace returns what port's live trace captured so far.
func (s *Switch) LiveTrace(port string) (*LiveTraceResult, error) {
	pe := s.cfg.Load().port(port)
	if pe == nil {
		return nil, fmt.Errorf("no port %q", port)
	}
	res := &LiveTraceResult{Port: port, Records: []LiveRecord{}}
	lt := pe.live.p.Load()
	if lt == nil {
		return res, nil
	}
	res.Armed, res.Count, res.Since = true, int(lt.want), lt.armed
	for i := range lt.recs {
		r := &lt.recs[i]
		if !r.done.Load() {
			continue
		}
		lr := LiveRecord{Seq: i, Time: time.Unix(0, r.at), Worker: r.worker, Queue: r.queue, Len: r.len,
			Headers: Summarize(r.head[:r.nhead], r.len), Stages: r.tr.Stages(), Outputs: append([]TraceOutput{}, r.outs[:r.nouts]...),
			MoreOutputs: r.more, Dropped: r.tr.Dropped()}
		res.Records = append(res.Records, lr)
	}
	res.Captured = len(res.Records)
	return res, nil
}

// Summarize describes a frame's headers in one line, from its head copy
// h of a frame of pktLen bytes.
func Summarize(h []byte, pktLen int) string {
	var ph header.Parsed
	e := header.Parse(h, pktLen, &ph)
	if len(h) < header.EthernetLen {
		return "runt frame of " + strconv.Itoa(pktLen) + " bytes"
	}
	mac := func(b []byte) string {
		const hex = "0123456789abcdef"
		var o [17]byte
		for i := 0; i < 6; i++ {
			o[3*i], o[3*i+1] = hex[b[i]>>4], hex[b[i]&15]
			if i < 5 {
				o[3*i+2] = ':'
			}
		}
		return string(o[:])
	}
	s := mac(h[6:12]) + " > " + mac(h[0:6])
	if ph.Tagged {
		s += " vlan " + strconv.Itoa(int(ph.VLAN))
	}
	addr := func(b [16]byte, v4 bool) string {
		if v4 {
			return netip.AddrFrom4([4]byte(b[:4])).String()
		}
		return netip.AddrFrom16(b).String()
	}
	switch ph.EthType {
	case header.EtherTypeARP:
		s += ", arp " + addr(ph.Src, true) + " > " + addr(ph.Dst, true)
	case header.EtherTypeIPv4, header.EtherTypeIPv6:
		v4 := ph.EthType == header.EtherTypeIPv4
		if v4 {
			s += ", ipv4 "
		} else {
			s += ", ipv6 "
		}
		if e == header.ErrTruncated && ph.L4 == 0 && ph.TTL == 0 {
			s += "(truncated)"
			break
		}
		s += addr(ph.Src, v4) + " > " + addr(ph.Dst, v4) + " ttl " + strconv.Itoa(int(ph.TTL))
		switch ph.Proto {
		case header.ProtoTCP:
			s += ", tcp " + strconv.Itoa(int(ph.SrcPort)) + " > " + strconv.Itoa(int(ph.DstPort)) + " flags 0x" + strconv.FormatUint(uint64(ph.TCPFlags), 16)
		case header.ProtoUDP:
			s += ", udp " + strconv.Itoa(int(ph.SrcPort)) + " > " + strconv.Itoa(int(ph.DstPort))
		case header.ProtoICMP, header.ProtoICMPv6:
			s += ", icmp type " + strconv.Itoa(int(ph.ICMPType)) + " code " + strconv.Itoa(int(ph.ICMPCode))
		default:
			s += ", proto " + strconv.Itoa(int(ph.Proto))
		}
		if ph.Frag != 0 {
			s += ", fragment"
		}
	default:
		s += ", ethertype 0x" + strconv.FormatUint(uint64(ph.EthType), 16)
	}
	if e != header.ParseOK {
		s += " (" + e.String() + ")"
	}
	return s + ", " + strconv.Itoa(pktLen) + " bytes"
}
