package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func (f *fakeDaemon) NeighborStats() NeighborStats {
	return NeighborStats{HeldPackets: 3, HeldBytes: 1800, PendingNextHops: 1, HeldTotal: 70, Released: 61,
		Drops:       map[string]uint64{"neighbor_hold_full": 6, "neighbor_unresolved": 6, "no_output_port": 0},
		ARPRequests: 9, NDSolicitations: 4, RefreshProbes: 5}
}

func TestNeighborStats(t *testing.T) {
	r := newRig(t)
	rec := r.do("GET", "/v1/neighbors/stats", "")
	var st NeighborStats
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &st) != nil {
		t.Fatalf("neighbor stats: %d %s", rec.Code, rec.Body)
	}
	if st.HeldPackets != 3 || st.HeldBytes != 1800 || st.PendingNextHops != 1 || st.Drops["neighbor_unresolved"] != 6 || st.RefreshProbes != 5 {
		t.Fatalf("neighbor stats: %+v", st)
	}
	for _, k := range []string{`"held_packets"`, `"pending_next_hops"`, `"neighbor_hold_full"`, `"arp_requests"`, `"nd_solicitations"`, `"updates_lost"`} {
		if !strings.Contains(rec.Body.String(), k) {
			t.Errorf("no %s in %s", k, rec.Body)
		}
	}
	// A source that does not report them serves no such route.
	rr := httptest.NewRecorder()
	NewHandler(Options{Source: fakeSource{}}).ServeHTTP(rr, httptest.NewRequest("GET", "/v1/neighbors/stats", nil))
	if rr.Code != http.StatusNotFound {
		t.Fatalf("without a NeighborStatsSource: %d", rr.Code)
	}
}
