package vswitch

import (
	"fmt"
	"sort"

	"github.com/vswitch/vswitch/switch/header"
)

// Trace records what each stage decided for one packet (a dry run).
type Trace struct {
	Stages []TraceStage
}

// TraceStage is one stage's decision.
type TraceStage struct {
	Stage    string `json:"stage"`
	Decision string `json:"decision"`
}

func (t *Trace) add(stage, decision string) {
	t.Stages = append(t.Stages, TraceStage{Stage: stage, Decision: decision})
}

func traceVLAN(ph *header.Parsed, vid uint16) string {
	if ph.Tagged {
		return fmt.Sprintf("tagged %d: vlan %d", ph.VLAN, vid)
	}
	return fmt.Sprintf("untagged: vlan %d", vid)
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
// FDB learning, no neighbour updates, no rate-limit tokens, no transmit.
func (s *Switch) Trace(inPort string, frame []byte) (*TraceResult, error) {
	c := s.cfg.Load()
	var in *portEntry
	for _, pe := range c.ports {
		if pe != nil && pe.Name == inPort {
			in = pe
		}
	}
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
	p := &pipe{dry: true, trace: t}
	now := s.clock.Load()
	stageClassify(p, in, b)
	stageL3(p, in, b, now, &s.neigh)
	stageL2(p, c, in, b, now)
	res := &TraceResult{InPort: inPort, Stages: t.Stages, Outputs: []TraceOutput{}}
	for _, id := range p.touched[:p.nouch] {
		out := c.ports[id]
		if out == nil || p.nsel[id] == 0 {
			continue
		}
		vid := p.vlan[0]
		res.Outputs = append(res.Outputs, TraceOutput{Port: out.Name, VLAN: vid, Tagged: out.vlan.egressTagged(vid)})
	}
	sort.Slice(res.Outputs, func(i, j int) bool { return res.Outputs[i].Port < res.Outputs[j].Port })
	for r, n := range p.drops {
		if n != 0 {
			res.Dropped = append(res.Dropped, DropReason(r).String())
		}
	}
	return res, nil
}
