package daemon

import (
	"github.com/vswitch/vswitch/api"
	vswitch "github.com/vswitch/vswitch/switch"
)

// FDB implements api.Inspector.
func (d *Daemon) FDB(bridge string) ([]api.FDBEntry, error) {
	rows, err := d.Switch.BridgeFDB(bridge)
	if err != nil {
		return nil, err
	}
	out := make([]api.FDBEntry, 0, len(rows))
	for _, r := range rows {
		out = append(out, api.FDBEntry{MAC: r.MAC, VLAN: int(r.VLAN), Port: r.Port, Age: int(r.Age)})
	}
	return out, nil
}

// Routers implements api.Inspector.
func (d *Daemon) Routers() []api.RouterStatus {
	var out []api.RouterStatus
	for _, r := range d.Switch.Routers() {
		out = append(out, routerStatus(r))
	}
	return out
}

// Router implements api.Inspector.
func (d *Daemon) Router(name string) (api.RouterStatus, error) {
	r, err := d.Switch.Router(name)
	if err != nil {
		return api.RouterStatus{}, err
	}
	return routerStatus(r), nil
}

func routerStatus(r vswitch.RouterInfo) api.RouterStatus {
	rs := api.RouterStatus{Name: r.Name, Interfaces: []api.RouterIfStatus{}, Routes: []api.RouteStatus{}}
	for _, i := range r.Interfaces {
		rs.Interfaces = append(rs.Interfaces, api.RouterIfStatus{Name: i.Name, Bridge: i.Bridge, VLAN: int(i.VLAN), MAC: i.MAC, Addresses: i.Addresses})
	}
	for _, rt := range r.Routes {
		rs.Routes = append(rs.Routes, api.RouteStatus{Prefix: rt.Prefix, Kind: rt.Kind, Interface: rt.Interface, Via: rt.Via})
	}
	return rs
}

// Neighbors implements api.Inspector.
func (d *Daemon) Neighbors(router string) ([]api.Neighbor, error) {
	ns, err := d.Switch.Neighbors(router)
	if err != nil {
		return nil, err
	}
	out := make([]api.Neighbor, 0, len(ns))
	for _, n := range ns {
		out = append(out, api.Neighbor{IP: n.IP, MAC: n.MAC, Interface: n.Interface, Age: int(n.Age), State: n.State})
	}
	return out, nil
}

// Workers implements api.WorkerSource.
func (d *Daemon) Workers() []api.WorkerStatus {
	var out []api.WorkerStatus
	for _, w := range d.Switch.WorkerStats() {
		ws := api.WorkerStatus{
			ID: w.ID, CPU: w.CPU, Queues: w.Queues, Polls: w.Polls, BusyPolls: w.BusyPolls,
			Packets: w.Packets, Batches: w.Batches, BusyCycles: w.BusyCycles, IdleCycles: w.IdleCycles,
			CyclesPerNs: w.CyclesPerNs,
		}
		if ws.Queues == nil {
			ws.Queues = []string{}
		}
		for i, n := range w.StagePackets {
			ws.Stages = append(ws.Stages, api.StageCount{Stage: vswitch.StageNames[i], Packets: n})
		}
		ws.Derive()
		out = append(out, ws)
	}
	return out
}

// NeighborStats implements api.NeighborStatsSource.
func (d *Daemon) NeighborStats() api.NeighborStats {
	h := d.Switch.NeighborHold()
	return api.NeighborStats{
		HeldPackets: h.Queued, HeldBytes: h.QueuedBytes, PendingNextHops: h.PendingHops,
		HeldTotal: h.Held, Released: h.Released,
		Drops: map[string]uint64{
			vswitch.DropNeighborHoldFull.String():   h.Full,
			vswitch.DropNeighborUnresolved.String(): h.Unresolved,
			vswitch.DropNoOutput.String():           h.Dropped - h.Unresolved,
		},
		ARPRequests: h.ARPRequests, NDSolicitations: h.NDSolicits, RefreshProbes: h.Probes,
		UpdatesLost: h.UpdatesLost,
	}
}
