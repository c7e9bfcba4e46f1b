package api

import "net/http"

// Inspector lists what the data path learned and runs: a bridge's MAC
// table, the routers with their FIBs, their neighbour tables. A Source
// that is also an Inspector serves the read-only listings below.
type Inspector interface {
	FDB(bridge string) ([]FDBEntry, error)
	Routers() []RouterStatus
	Router(name string) (RouterStatus, error)
	Neighbors(router string) ([]Neighbor, error)
}

// FDBEntry is a learned MAC.
type FDBEntry struct {
	MAC  string `json:"mac"`
	VLAN int    `json:"vlan"`
	Port string `json:"port"`
	Age  int    `json:"age"` // seconds since last seen
}

// RouterStatus is a running router: interfaces and the FIB.
type RouterStatus struct {
	Name       string           `json:"name"`
	Interfaces []RouterIfStatus `json:"interfaces"`
	Routes     []RouteStatus    `json:"routes"`
}

// RouterIfStatus is a router interface with its MAC and addresses.
type RouterIfStatus struct {
	Name      string   `json:"name"`
	Bridge    string   `json:"bridge"`
	VLAN      int      `json:"vlan"`
	MAC       string   `json:"mac"`
	Addresses []string `json:"addresses"`
}

// RouteStatus is one FIB entry.
type RouteStatus struct {
	Prefix    string `json:"prefix"`
	Kind      string `json:"kind"` // connected or static
	Interface string `json:"interface"`
	Via       string `json:"via,omitempty"`
}

// Neighbor is a resolved neighbour of a router interface.
type Neighbor struct {
	IP        string `json:"ip"`
	MAC       string `json:"mac"`
	Interface string `json:"interface"`
	Age       int    `json:"age"` // seconds since last confirmed
	// State is reachable; stale past its refresh time; probe once
	// traffic to it made the router ask it again (unicast); expired.
	State string `json:"state"`
}

func (h *handler) inspector() Inspector {
	in, _ := h.Source.(Inspector)
	return in
}

func (h *handler) getFDB(w http.ResponseWriter, r *http.Request) {
	es, err := h.inspector().FDB(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if es == nil {
		es = []FDBEntry{}
	}
	writeJSON(w, http.StatusOK, es)
}

func (h *handler) getRouters(w http.ResponseWriter, r *http.Request) {
	rs := h.inspector().Routers()
	if rs == nil {
		rs = []RouterStatus{}
	}
	writeJSON(w, http.StatusOK, rs)
}

func (h *handler) getRouter(w http.ResponseWriter, r *http.Request) {
	rs, err := h.inspector().Router(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rs)
}

func (h *handler) getNeighbors(w http.ResponseWriter, r *http.Request) {
	ns, err := h.inspector().Neighbors(r.PathValue("name"))
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if ns == nil {
		ns = []Neighbor{}
	}
	writeJSON(w, http.StatusOK, ns)
}

func (h *handler) inspectRoutes() []route {
	if h.inspector() == nil {
		return nil
	}
	return []route{
		{Method: "GET", Path: "/v1/bridges/{name}/fdb", Summary: "A bridge's learned MACs: VLAN, port, age", Response: []FDBEntry{}, Codes: []int{200, 404}, handle: h.getFDB},
		{Method: "GET", Path: "/v1/routers", Summary: "Running routers: interfaces (MAC, addresses) and routes (connected and static)", Response: []RouterStatus{}, Codes: []int{200}, handle: h.getRouters},
		{Method: "GET", Path: "/v1/routers/{name}", Summary: "One running router", Response: RouterStatus{}, Codes: []int{200, 404}, handle: h.getRouter},
		{Method: "GET", Path: "/v1/routers/{name}/neighbors", Summary: "A router's neighbour table (ARP and ND): IP, MAC, interface, age, state", Response: []Neighbor{}, Codes: []int{200, 404}, handle: h.getNeighbors},
	}
}
