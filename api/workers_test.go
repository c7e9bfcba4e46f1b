package api

import (
	"encoding/json"
	"math"
	"testing"
)

func (f *fakeDaemon) Workers() []WorkerStatus {
	w := WorkerStatus{ID: 0, CPU: 2, Queues: []string{"vm1/0"}, Polls: 1000, BusyPolls: 250,
		Packets: 8000, Batches: 250, BusyCycles: 3_000_000, IdleCycles: 1_000_000, CyclesPerNs: 3}
	w.Derive()
	return []WorkerStatus{w}
}

func TestWorkers(t *testing.T) {
	r := newRig(t)
	var ws []WorkerStatus
	if rec := r.do("GET", "/v1/workers", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &ws) != nil || len(ws) != 1 {
		t.Fatalf("workers: %d %s", rec.Code, rec.Body)
	}
	w := ws[0]
	// 8000 packets in 250 batches; 3M of 4M cycles busy; 1M ns busy / 8000.
	if w.AvgBatch != 32 || w.BusyPct != 75 || math.Abs(w.NsPerPkt-125) > 1e-9 || w.Queues[0] != "vm1/0" {
		t.Fatalf("derived fields: %+v", w)
	}
}

func TestWorkerStatusSub(t *testing.T) {
	a := WorkerStatus{Packets: 100, Batches: 10, BusyCycles: 1000, IdleCycles: 1000, CyclesPerNs: 1, Stages: []StageCount{{"l2", 90}}}
	b := WorkerStatus{Packets: 300, Batches: 20, BusyCycles: 5000, IdleCycles: 1000, CyclesPerNs: 1, Stages: []StageCount{{"l2", 280}}}
	a.Derive()
	b.Derive()
	d := b.Sub(a)
	if d.Packets != 200 || d.AvgBatch != 20 || d.BusyPct != 100 || d.NsPerPkt != 20 || d.Stages[0].Packets != 190 || a.Stages[0].Packets != 90 {
		t.Fatalf("interval: %+v", d)
	}
}
