package vswitch

import (
	"fmt"

	"github.com/vswitch/vswitch/switch/header"
)

// Trace records what each stage decided for one packet (a dry run).
type Trace struct {
	Stages  []TraceStage
	Outputs []string
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
