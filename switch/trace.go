package vswitch

import (
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"strconv"

	"github.com/vswitch/vswitch/switch/header"
)

// Trace records what each stage decided for one packet. Decisions are
// appended as text into one byte buffer; a bounded trace (a live capture)
// has its buffers sized when armed and cuts what does not fit, so
// recording never allocates on the data path.
type Trace struct {
	evs     []traceEv
	text    []byte
	drops   []DropReason
	bounded bool
	skip    bool // the last event did not fit: ignore its text
	// blocked marks the output ports whose filter dropped the packet: a
	// live trace takes them out of the outputs it recorded.
	blocked [MaxPorts / 64]uint64
}

type traceEv struct {
	stage string
	off   int32
}

// TraceStage is one stage's decision.
type TraceStage struct {
	Stage    string `json:"stage"`
	Decision string `json:"decision"`
}

// Sizes of a bounded trace.
const (
	traceMaxEvents = 16
	traceMaxText   = 1024
	traceMaxDrops  = 4
)

func newBoundedTrace() Trace {
	return Trace{evs: make([]traceEv, 0, traceMaxEvents), text: make([]byte, 0, traceMaxText),
		drops: make([]DropReason, 0, traceMaxDrops), bounded: true}
}

func (t *Trace) reset() {
	t.evs, t.text, t.drops, t.skip = t.evs[:0], t.text[:0], t.drops[:0], false
	t.blocked = [MaxPorts / 64]uint64{}
}

// block notes that the packet does not leave by port.
func (t *Trace) block(port uint16) { t.blocked[port/64%(MaxPorts/64)] |= 1 << (port % 64) }

func (t *Trace) isBlocked(port uint16) bool {
	return t.blocked[port/64%(MaxPorts/64)]&(1<<(port%64)) != 0
}

// nblocked counts the ports block noted.
func (t *Trace) nblocked() int {
	n := 0
	for _, w := range t.blocked {
		n += bits.OnesCount64(w)
	}
	return n
}

// at starts stage's next decision.
func (t *Trace) at(stage string) *Trace {
	if t.bounded && len(t.evs) == cap(t.evs) {
		t.skip = true
		return t
	}
	t.skip = false
	t.evs = append(t.evs, traceEv{stage: stage, off: int32(len(t.text))})
	return t
}

// room says whether n more bytes of text may be appended.
func (t *Trace) room(n int) bool {
	return !t.skip && (!t.bounded || len(t.text)+n <= cap(t.text))
}

func (t *Trace) s(v string) *Trace {
	if t.room(len(v)) {
		t.text = append(t.text, v...)
	}
	return t
}

func (t *Trace) n(v int) *Trace {
	if t.room(20) {
		t.text = strconv.AppendInt(t.text, int64(v), 10)
	}
	return t
}

func (t *Trace) ip(a netip.Addr) *Trace {
	if t.room(46) {
		t.text = a.AppendTo(t.text)
	}
	return t
}

func (t *Trace) add(stage, decision string) { t.at(stage).s(decision) }

func (t *Trace) dropped(r DropReason) {
	if !t.bounded || len(t.drops) < cap(t.drops) {
		t.drops = append(t.drops, r)
	}
}

// Stages returns the recorded decisions.
func (t *Trace) Stages() []TraceStage {
	out := make([]TraceStage, len(t.evs))
	for k, e := range t.evs {
		end := int32(len(t.text))
		if k+1 < len(t.evs) {
			end = t.evs[k+1].off
		}
		out[k] = TraceStage{Stage: e.stage, Decision: string(t.text[e.off:end])}
	}
	return out
}

// Dropped returns the drop reasons counted for the packet.
func (t *Trace) Dropped() []string {
	var out []string
	for _, r := range t.drops {
		out = append(out, r.String())
	}
	return out
}

// tr is packet i's trace, nil unless it is traced.
func (p *pipe) tr(i int) *Trace {
	if !p.tracing {
		return nil
	}
	return p.traces[i&(BatchSize-1)]
}

func traceVLAN(t *Trace, ph *header.Parsed, vid uint16) {
	t.at("classify")
	if ph.Tagged {
		t.s("tagged ").n(int(ph.VLAN)).s(": vlan ").n(int(vid))
	} else {
		t.s("untagged: vlan ").n(int(vid))
	}
}

// TraceOutput is where the traced packet would leave, and how.
type TraceOutput struct {
	Port   string `json:"port"`
	VLAN   uint16 `json:"vlan"`
	Tagged bool   `json:"tagged"`
}

// TraceResult is a dry run of one packet through the pipeline.
type TraceResult struct {
	InPort  string        `json:"in_port"`
	Stages  []TraceStage  `json:"stages"`
	Outputs []TraceOutput `json:"outputs"`
	Dropped []string      `json:"dropped,omitempty"` // the drop reasons counted
}

// Trace runs frame, as if received on port inPort, through the same stage
// functions the workers run, on the current tables, in dry-run mode: no
// FDB learning, no neighbour updates, no rate-limit tokens, no transmit,
// no connection committed. Conntrack is peeked: the trace shows the
// state the packet would have in each zone (a port's security groups, a
// router's NAT) and the rewrite NAT would apply, and the stages after NAT
// see the rewritten packet. Each output port's ingress filter runs too.
// Rule hit and drop counters are not touched.
func (s *Switch) Trace(inPort string, frame []byte) (*TraceResult, error) {
	c := s.cfg.Load()
	in := c.port(inPort)
	if in == nil {
		return nil, fmt.Errorf("no port %q", inPort)
	}
	if len(frame) < EthHdrLen {
		return nil, fmt.Errorf("a frame needs at least %d bytes", EthHdrLen)
	}
	b := &Batch{N: 1, InPort: in.ID}
	pkt := &b.Pkts[0]
	pkt.Len, pkt.Off = len(frame), HeadRoom
	pkt.NHead = copy(pkt.Head[HeadRoom:], frame)
	if len(frame) > HeadLen {
		pkt.Segs[0], pkt.NSegs = frame[HeadLen:], 1
	}
	t := &Trace{}
	p := &pipe{dry: true, tracing: true}
	p.traces[0] = t
	now := s.clock.Load()
	stageClassify(p, in, b, false)
	stageFilterIn(p, nil, c, in, b, now)
	stageNATDry(p, c, in, b, now)
	stageL3(p, in, b, now, &s.neigh)
	stageL2(p, c, in, b, now)
	res := &TraceResult{InPort: inPort, Outputs: []TraceOutput{}}
	for _, id := range p.touched[:p.nouch] {
		out := c.ports[id]
		if out == nil || p.nsel[id] == 0 {
			continue
		}
		if len(stageFilterOut(p, nil, c, out, b, p.sel[id][:p.nsel[id]], now)) == 0 {
			continue
		}
		vid := p.vlan[0]
		res.Outputs = append(res.Outputs, TraceOutput{Port: out.Name, VLAN: vid, Tagged: out.vlan.egressTagged(vid)})
	}
	res.Stages, res.Dropped = t.Stages(), t.Dropped()
	sort.Slice(res.Outputs, func(i, j int) bool { return res.Outputs[i].Port < res.Outputs[j].Port })
	return res, nil
}

// port finds a port by name.
func (c *config) port(name string) *portEntry {
	for _, pe := range c.ports {
		if pe != nil && pe.Name == name {
			return pe
		}
	}
	return nil
}
