package vswitch

import (
	"strconv"
	"sync/atomic"

	"github.com/vswitch/vswitch/internal/hw"
)

// WorkerStats is what a polling worker did, like OVS's pmd-stats-show or
// VPP's show runtime: how often it polled, how many polls found packets,
// how many packets and batches it took in, and where its cycles went.
type WorkerStats struct {
	ID          int
	CPU         int // -1: not pinned
	Queues      []string
	Polls       uint64 // iterations over all of its queues
	BusyPolls   uint64 // iterations that found at least one packet
	Packets     uint64 // packets received
	Batches     uint64 // non-empty receives (one queue each)
	BusyCycles  uint64 // cycles in iterations that found packets
	IdleCycles  uint64 // cycles in iterations that found none
	CyclesPerNs float64
	// StagePackets counts the packets that entered each pipeline stage
	// (StageNames); a stage's drops are the port drop reasons it owns.
	StagePackets [NumStages]uint64
}

// Pipeline stages, in the order a batch goes through them.
const (
	StageClassify = iota
	StageFilterIn
	StageNAT
	StageL3
	StageL2
	StageOutput // handed to output ports, after their egress filters
	NumStages
)

// StageNames names the stages for the API and metrics.
var StageNames = [NumStages]string{"classify", "filter_in", "nat", "l3", "l2", "output"}

// workerTally is the worker's own running count, in plain fields it alone
// writes; publish copies it out every publishEvery polls and before the
// worker sleeps, so counting costs no atomic per batch.
type workerTally struct {
	polls, busyPolls, packets, batches, busy, idle uint64
	stage                                          [NumStages]uint64
}

// workerPublished is the tally as readers see it.
type workerPublished struct {
	polls, busyPolls, packets, batches, busy, idle atomic.Uint64
	stage                                          [NumStages]atomic.Uint64
}

// publishEvery bounds how stale the published tally is: 1024 polls are
// about 100 µs of an idle worker.
const publishEvery = 1024

func (w *Worker) publish() {
	t, p := &w.tally, &w.pub
	p.polls.Store(t.polls)
	p.busyPolls.Store(t.busyPolls)
	p.packets.Store(t.packets)
	p.batches.Store(t.batches)
	p.busy.Store(t.busy)
	p.idle.Store(t.idle)
	for i := range t.stage {
		p.stage[i].Store(t.stage[i])
	}
}

// WorkerStats reads every worker's published tally.
func (s *Switch) WorkerStats() []WorkerStats {
	c := s.cfg.Load()
	n := len(s.workers)
	out := make([]WorkerStats, 0, n)
	for _, w := range s.workers {
		p := &w.pub
		ws := WorkerStats{
			ID: w.id, CPU: w.cpu,
			Polls: p.polls.Load(), BusyPolls: p.busyPolls.Load(),
			Packets: p.packets.Load(), Batches: p.batches.Load(),
			BusyCycles: p.busy.Load(), IdleCycles: p.idle.Load(),
			CyclesPerNs: hw.CyclesPerSecond() / 1e9,
		}
		for i := range p.stage {
			ws.StagePackets[i] = p.stage[i].Load()
		}
		// The same assignment rule as Worker.rebuild.
		for _, pe := range c.ports {
			if pe == nil {
				continue
			}
			for q := 0; q < pe.Port.QueuePairs(); q++ {
				if (int(pe.ID)+q)%n == w.id {
					ws.Queues = append(ws.Queues, queueName(pe.Name, q))
				}
			}
		}
		out = append(out, ws)
	}
	return out
}

func queueName(port string, q int) string {
	return port + "/" + strconv.Itoa(q)
}
