package api

import (
	"encoding/json"
	"fmt"
	"testing"
)

func (f *fakeDaemon) FDB(bridge string) ([]FDBEntry, error) {
	if bridge != "br1" {
		return nil, fmt.Errorf("no such bridge %q", bridge)
	}
	return []FDBEntry{{MAC: "52:54:00:00:00:01", VLAN: 10, Port: "vm1", Age: 3}}, nil
}

var fakeRouter = RouterStatus{Name: "r1",
	Interfaces: []RouterIfStatus{{Name: "r1-v10", Bridge: "br1", VLAN: 10, MAC: "02:00:00:00:00:10", Addresses: []string{"10.10.0.1/24"}}},
	Routes:     []RouteStatus{{Prefix: "10.10.0.0/24", Kind: "connected", Interface: "r1-v10"}, {Prefix: "0.0.0.0/0", Kind: "static", Interface: "r1-v10", Via: "10.10.0.254"}}}

func (f *fakeDaemon) Routers() []RouterStatus { return []RouterStatus{fakeRouter} }

func (f *fakeDaemon) Router(name string) (RouterStatus, error) {
	if name != "r1" {
		return RouterStatus{}, fmt.Errorf("no router %q", name)
	}
	return fakeRouter, nil
}

func (f *fakeDaemon) Neighbors(router string) ([]Neighbor, error) {
	if router != "r1" {
		return nil, fmt.Errorf("no router %q", router)
	}
	return []Neighbor{{IP: "10.10.0.2", MAC: "52:54:00:00:00:01", Interface: "r1-v10", State: "reachable"}}, nil
}

func TestListings(t *testing.T) {
	r := newRig(t)
	var fdb []FDBEntry
	if rec := r.do("GET", "/v1/bridges/br1/fdb", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &fdb) != nil || len(fdb) != 1 || fdb[0].Port != "vm1" {
		t.Fatalf("fdb: %d %s", rec.Code, rec.Body)
	}
	var rs []RouterStatus
	if rec := r.do("GET", "/v1/routers", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &rs) != nil || len(rs) != 1 || rs[0].Routes[1].Via != "10.10.0.254" {
		t.Fatalf("routers: %d %s", rec.Code, rec.Body)
	}
	var one RouterStatus
	if rec := r.do("GET", "/v1/routers/r1", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &one) != nil || one.Interfaces[0].MAC != "02:00:00:00:00:10" {
		t.Fatalf("router: %d %s", rec.Code, rec.Body)
	}
	var ns []Neighbor
	if rec := r.do("GET", "/v1/routers/r1/neighbors", ""); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &ns) != nil || len(ns) != 1 || ns[0].State != "reachable" {
		t.Fatalf("neighbors: %d %s", rec.Code, rec.Body)
	}
	for _, p := range []string{"/v1/bridges/nope/fdb", "/v1/routers/nope", "/v1/routers/nope/neighbors"} {
		if rec := r.do("GET", p, ""); rec.Code != 404 {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
}
