package vswitch_test

import (
	"slices"
	"testing"

	vswitch "github.com/vswitch/vswitch/switch"
)

func TestWorkerStatsCountPacketsAndPolls(t *testing.T) {
	r := newRig(t, 2)
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	for i := 0; i < 10; i++ {
		r.fes[0].SendPacket(0, frame(t, mac(0), mac(1), 100))
	}
	r.poll()
	ws := r.sw.WorkerStats()
	if len(ws) != 1 {
		t.Fatalf("%d workers, want 1", len(ws))
	}
	w := ws[0]
	if w.Packets != 10 || w.Batches < 1 || w.Polls < 2 || w.BusyPolls < 1 || w.BusyPolls >= w.Polls {
		t.Fatalf("stats %+v: want 10 packets in at least one batch, a busy poll and an idle one", w)
	}
	if !slices.Contains(w.Queues, r.ports[0].Name+"/0") || !slices.Contains(w.Queues, r.ports[1].Name+"/0") {
		t.Fatalf("queues %v: want both ports' queue 0", w.Queues)
	}
	// Ten frames entered every stage; the first is flooded (one output
	// port of two) as is every other: p0's MAC is learned, p1's is not.
	for st := vswitch.StageClassify; st < vswitch.NumStages; st++ {
		if w.StagePackets[st] != 10 {
			t.Errorf("stage %s: %d packets, want 10", vswitch.StageNames[st], w.StagePackets[st])
		}
	}
	if w.CyclesPerNs <= 0 {
		t.Fatalf("cycles per ns %v", w.CyclesPerNs)
	}
}
