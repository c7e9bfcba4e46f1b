package main

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/api"
)

// inspectSource is a Source that is also an api.Inspector.
type inspectSource struct{ fakeSource }

func (inspectSource) FDB(b string) ([]api.FDBEntry, error) {
	if b != "br0" {
		return nil, fmt.Errorf("no such bridge %q", b)
	}
	return []api.FDBEntry{{MAC: "52:54:00:00:00:01", VLAN: 10, Port: "a", Age: 7}}, nil
}

var r1 = api.RouterStatus{Name: "r1",
	Interfaces: []api.RouterIfStatus{{Name: "r1-v10", Bridge: "br0", VLAN: 10, MAC: "02:00:00:00:00:10", Addresses: []string{"10.10.0.1/24", "fd10::1/64"}}},
	Routes: []api.RouteStatus{{Prefix: "10.10.0.0/24", Kind: "connected", Interface: "r1-v10"},
		{Prefix: "0.0.0.0/0", Kind: "static", Interface: "r1-v10", Via: "10.10.0.254"}}}

func (inspectSource) Routers() []api.RouterStatus { return []api.RouterStatus{r1} }

func (inspectSource) Router(n string) (api.RouterStatus, error) {
	if n != "r1" {
		return api.RouterStatus{}, fmt.Errorf("no router %q", n)
	}
	return r1, nil
}

func (inspectSource) Neighbors(n string) ([]api.Neighbor, error) {
	if n != "r1" {
		return nil, fmt.Errorf("no router %q", n)
	}
	return []api.Neighbor{{IP: "10.10.0.2", MAC: "52:54:00:00:00:01", Interface: "r1-v10", Age: 3, State: "reachable"}}, nil
}

func (inspectSource) Workers() []api.WorkerStatus {
	w := api.WorkerStatus{ID: 0, CPU: 1, Queues: []string{"a/0"}, Polls: 100, BusyPolls: 10, Packets: 320, Batches: 10,
		BusyCycles: 32000, IdleCycles: 32000, CyclesPerNs: 2, Stages: []api.StageCount{{Stage: "classify", Packets: 320}}}
	w.Derive()
	return []api.WorkerStatus{w}
}

func (inspectSource) NeighborStats() api.NeighborStats {
	return api.NeighborStats{HeldPackets: 2, HeldBytes: 300, PendingNextHops: 1, HeldTotal: 9, Released: 7,
		Drops: map[string]uint64{"neighbor_hold_full": 0, "neighbor_unresolved": 4}, ARPRequests: 3, RefreshProbes: 1}
}

func TestListingCommands(t *testing.T) {
	srv := httptest.NewServer(api.NewHandler(api.Options{Source: inspectSource{}}))
	defer srv.Close()
	addr := "tcp://" + strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"fdb", "show", "br0"}, []string{"VLAN", "52:54:00:00:00:01", "a"}},
		{[]string{"route", "show", "r1"}, []string{"r1-v10", "02:00:00:00:00:10", "10.10.0.1/24,fd10::1/64", "0.0.0.0/0", "static", "10.10.0.254", "connected"}},
		{[]string{"route", "list"}, []string{"r1", "r1-v10"}},
		{[]string{"neigh", "show", "r1"}, []string{"10.10.0.2", "reachable"}},
		{[]string{"--json", "neigh", "show", "r1"}, []string{`"state": "reachable"`}},
		{[]string{"neigh", "stats"}, []string{"held_bytes", "300", "neighbor_hold_full=0 neighbor_unresolved=4", "refresh_probes"}},
		{[]string{"--json", "neigh", "stats"}, []string{`"pending_next_hops": 1`}},
		{[]string{"workers"}, []string{"AVG_BATCH", "32.0", "50.0%", "50.0", "a/0", "worker 0 stages: classify=320"}},
		{[]string{"--json", "workers"}, []string{`"ns_per_packet": 50`}},
	} {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"--api", addr}, tc.args...), &out, &errOut); code != exitOK {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: no %q in\n%s", tc.args, w, out.String())
			}
		}
	}
	for _, args := range [][]string{{"fdb", "show", "nope"}, {"route", "show", "nope"}, {"neigh", "show", "nope"}} {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"--api", addr}, args...), &out, &errOut); code != exitNotFound {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}
