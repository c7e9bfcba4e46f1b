package api

import "net/http"

// NeighborStatsSource reports how the routers resolve their next hops;
// a Source that is one serves GET /v1/neighbors/stats.
type NeighborStatsSource interface {
	NeighborStats() NeighborStats
}

// NeighborStats is next-hop resolution summed over the workers: the
// packets held while a next hop is asked (ARP or neighbour
// solicitation), what became of them, and the solicitations sent: what
// VPP's ip4-arp and ip6-discover node counters show. The neighbours
// themselves are GET /v1/routers/{name}/neighbors.
type NeighborStats struct {
	HeldPackets     uint64 `json:"held_packets"`      // held now
	HeldBytes       uint64 `json:"held_bytes"`        // their frame bytes
	PendingNextHops int    `json:"pending_next_hops"` // next hops being asked with packets held for them
	HeldTotal       uint64 `json:"held_total"`        // packets held since the daemon started
	Released        uint64 `json:"released"`          // sent on once their next hop answered
	// Drops counts by reason: neighbor_hold_full (not held: the hold
	// was at a bound), neighbor_unresolved (the next hop did not answer
	// in time), no_output_port (their port or router interface went
	// away while held). They are also in the input ports' drops.
	Drops           map[string]uint64 `json:"drops"`
	ARPRequests     uint64            `json:"arp_requests"`     // sent, refresh probes included
	NDSolicitations uint64            `json:"nd_solicitations"` // sent, refresh probes included
	// RefreshProbes are the unicast solicitations that asked a neighbour
	// still in use before its entry expired.
	RefreshProbes uint64 `json:"refresh_probes"`
	// UpdatesLost is what the data path learned (ARP, ND) that the
	// neighbour table missed because its update queue was full.
	UpdatesLost uint64 `json:"updates_lost"`
}

func (h *handler) neighborStatsSource() NeighborStatsSource {
	ns, _ := h.Source.(NeighborStatsSource)
	return ns
}

func (h *handler) getNeighborStats(w http.ResponseWriter, r *http.Request) {
	st := h.neighborStatsSource().NeighborStats()
	if st.Drops == nil {
		st.Drops = map[string]uint64{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) neighborRoutes() []route {
	if h.neighborStatsSource() == nil {
		return nil
	}
	return []route{
		{Method: "GET", Path: "/v1/neighbors/stats", Summary: "Next-hop resolution: packets and bytes held now, next hops pending, released, drops by reason, ARP requests and ND solicitations sent, refresh probes",
			Response: NeighborStats{}, Codes: []int{200}, handle: h.getNeighborStats},
	}
}
