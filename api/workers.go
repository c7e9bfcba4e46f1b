package api

import "net/http"

// WorkerSource reports the polling workers; a Source that is one serves
// GET /v1/workers.
type WorkerSource interface {
	Workers() []WorkerStatus
}

// WorkerStatus is one polling worker's counters since the daemon started,
// like OVS's pmd-stats-show: polls, packets, and where its cycles went.
type WorkerStatus struct {
	ID          int      `json:"id"`
	CPU         int      `json:"cpu"` // -1: not pinned
	Queues      []string `json:"queues"`
	Polls       uint64   `json:"polls"`
	BusyPolls   uint64   `json:"busy_polls"` // polls that found packets
	Packets     uint64   `json:"packets"`    // packets received
	Batches     uint64   `json:"batches"`    // non-empty receives from one queue
	BusyCycles  uint64   `json:"busy_cycles"`
	IdleCycles  uint64   `json:"idle_cycles"`
	CyclesPerNs float64  `json:"cycles_per_ns"`
	// Stages counts the packets that entered each pipeline stage, in
	// order (classify, filter_in, nat, l3, l2, output); what a stage
	// drops is in the ports' drop reasons.
	Stages []StageCount `json:"stages,omitempty"`
	// Derived: packets per non-empty receive, busy share of the cycles,
	// and busy nanoseconds per packet received (the whole forwarding cost
	// of a packet, receive to transmit, on this worker).
	AvgBatch float64 `json:"avg_batch"`
	BusyPct  float64 `json:"busy_pct"`
	NsPerPkt float64 `json:"ns_per_packet"`
}

// StageCount is the packets that entered one pipeline stage.
type StageCount struct {
	Stage   string `json:"stage"`
	Packets uint64 `json:"packets"`
}

// Derive fills the derived fields from the counters.
func (s *WorkerStatus) Derive() {
	if s.Batches > 0 {
		s.AvgBatch = float64(s.Packets) / float64(s.Batches)
	}
	if t := s.BusyCycles + s.IdleCycles; t > 0 {
		s.BusyPct = 100 * float64(s.BusyCycles) / float64(t)
	}
	if s.Packets > 0 && s.CyclesPerNs > 0 {
		s.NsPerPkt = float64(s.BusyCycles) / s.CyclesPerNs / float64(s.Packets)
	}
}

// Sub is the difference s - old of two readings of the same worker, with
// the derived fields recomputed: the figures of the interval between them.
func (s WorkerStatus) Sub(old WorkerStatus) WorkerStatus {
	d := s
	d.Polls -= old.Polls
	d.BusyPolls -= old.BusyPolls
	d.Packets -= old.Packets
	d.Batches -= old.Batches
	d.BusyCycles -= old.BusyCycles
	d.IdleCycles -= old.IdleCycles
	d.Stages = nil
	for i, st := range s.Stages {
		if i < len(old.Stages) && old.Stages[i].Stage == st.Stage {
			st.Packets -= old.Stages[i].Packets
		}
		d.Stages = append(d.Stages, st)
	}
	d.AvgBatch, d.BusyPct, d.NsPerPkt = 0, 0, 0
	d.Derive()
	return d
}

func (h *handler) workerSource() WorkerSource {
	ws, _ := h.Source.(WorkerSource)
	return ws
}

func (h *handler) getWorkers(w http.ResponseWriter, r *http.Request) {
	ws := h.workerSource().Workers()
	if ws == nil {
		ws = []WorkerStatus{}
	}
	writeJSON(w, http.StatusOK, ws)
}

func (h *handler) workerRoutes() []route {
	if h.workerSource() == nil {
		return nil
	}
	return []route{
		{Method: "GET", Path: "/v1/workers", Summary: "Polling workers: queues, polls, packets, average batch, busy share and busy ns per packet", Response: []WorkerStatus{}, Codes: []int{200}, handle: h.getWorkers},
	}
}
