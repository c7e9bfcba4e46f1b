package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Conntracker reads and flushes the connection table. A Source that is
// also a Conntracker serves GET and DELETE /v1/conntrack.
type Conntracker interface {
	// Connections lists what q selects: at most q.Limit rows, with the
	// count of every match. An unknown port or router is an error.
	Connections(q ConnQuery) (*ConnList, error)
	// FlushConnections deletes what q selects (q.Limit aside) and says
	// how many.
	FlushConnections(q ConnQuery) (int, error)
}

// ConnQuery selects connections; each field set must match.
type ConnQuery struct {
	Zone     int        // a conntrack zone; 0 any
	Port     string     // the zone of a port's security groups
	Router   string     // the zone of a router's NAT
	Protocol int        // IP protocol number; 0 any
	Address  netip.Addr // an address of either direction; invalid: any
	Limit    int        // most rows listed
}

// ConnList is GET /v1/conntrack's answer.
type ConnList struct {
	Total       int          `json:"total"`     // connections that match
	Truncated   bool         `json:"truncated"` // more matched than limit: connections holds the first
	Entries     int          `json:"entries"`   // connections in the table (expired ones not yet reclaimed included)
	MaxEntries  int          `json:"max_entries"`
	Connections []Connection `json:"connections"`
}

// Connection is one tracked connection.
type Connection struct {
	Zone  int    `json:"zone"`
	Owner string `json:"owner,omitempty"` // what the zone is for: "port NAME" or "router NAME"
	// Protocol is tcp, udp, icmp, icmpv6, or the protocol number.
	Protocol string `json:"protocol"`
	// Orig is the direction that opened the connection; Reply what its
	// replies carry (with NAT, the translated addresses and ports).
	Orig      ConnTuple `json:"orig"`
	Reply     ConnTuple `json:"reply"`
	TCPState  string    `json:"tcp_state,omitempty"` // Linux's name: SYN_SENT, ESTABLISHED, TIME_WAIT...
	ExpiresIn int       `json:"expires_in"`          // seconds
	Replied   bool      `json:"replied"`             // a reply was seen
	SNAT      bool      `json:"snat,omitempty"`
	DNAT      bool      `json:"dnat,omitempty"`
}

// ConnTuple is one direction's addresses and ports (an ICMP echo's id
// is its source port in orig, its destination port in reply).
type ConnTuple struct {
	Src     string `json:"src"`
	Dst     string `json:"dst"`
	SrcPort int    `json:"sport,omitempty"`
	DstPort int    `json:"dport,omitempty"`
}

// ConnFlush is DELETE /v1/conntrack's answer.
type ConnFlush struct {
	Flushed int `json:"flushed"`
}

// Listing bounds.
const (
	DefaultConnLimit = 1000
	MaxConnLimit     = 10000
)

var protoNames = map[string]int{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}

// ProtoName names an IP protocol number as the listing does: tcp, udp,
// icmp, icmpv6, else the number.
func ProtoName(p int) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(p)
}

// connQueryParams are the query parameters of /v1/conntrack.
var connQueryParams = []queryParam{
	{"zone", "integer", "a conntrack zone (1..65535)"},
	{"port", "string", "the zone of this port's security groups"},
	{"router", "string", "the zone of this router's NAT"},
	{"protocol", "string", "tcp, udp, icmp, icmpv6 or a protocol number"},
	{"address", "string", "an IPv4 or IPv6 address either direction has as source or destination"},
	{"limit", "integer", fmt.Sprintf("most connections listed (1..%d, default %d; GET only)", MaxConnLimit, DefaultConnLimit)},
}

// ParseConnQuery reads the query parameters of /v1/conntrack; errors
// name the parameter.
func ParseConnQuery(v url.Values) (ConnQuery, error) {
	q := ConnQuery{Limit: DefaultConnLimit}
	for k := range v {
		known := false
		for _, p := range connQueryParams {
			known = known || p.Name == k
		}
		if !known {
			return q, fmt.Errorf("%s: unknown query parameter (want zone, port, router, protocol, address or limit)", k)
		}
		if len(v[k]) > 1 {
			return q, fmt.Errorf("%s: given %d times", k, len(v[k]))
		}
	}
	num := func(name string, lo, hi int) (int, error) {
		s := v.Get(name)
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("%s: %q is not a number in %d..%d", name, s, lo, hi)
		}
		return n, nil
	}
	var err error
	if v.Has("zone") {
		if q.Zone, err = num("zone", 1, 65535); err != nil {
			return q, err
		}
	}
	if v.Has("limit") {
		if q.Limit, err = num("limit", 1, MaxConnLimit); err != nil {
			return q, err
		}
	}
	if q.Port = v.Get("port"); v.Has("port") && validName(q.Port) != nil {
		return q, fmt.Errorf("port: %q is not a port name", q.Port)
	}
	if q.Router = v.Get("router"); v.Has("router") && validName(q.Router) != nil {
		return q, fmt.Errorf("router: %q is not a router name", q.Router)
	}
	if v.Has("protocol") {
		s := strings.ToLower(v.Get("protocol"))
		if n, ok := protoNames[s]; ok {
			q.Protocol = n
		} else if q.Protocol, err = num("protocol", 1, 255); err != nil {
			return q, fmt.Errorf("protocol: %q is not tcp, udp, icmp, icmpv6 or a number in 1..255", v.Get("protocol"))
		}
	}
	if v.Has("address") {
		a, err := netip.ParseAddr(v.Get("address"))
		if err != nil || a.Zone() != "" {
			return q, fmt.Errorf("address: %q is not an IPv4 or IPv6 address", v.Get("address"))
		}
		q.Address = a.Unmap()
	}
	return q, nil
}

func (h *handler) conntracker() Conntracker {
	c, _ := h.Source.(Conntracker)
	return c
}

func (h *handler) getConntrack(w http.ResponseWriter, r *http.Request) {
	q, err := ParseConnQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	l, err := h.conntracker().Connections(q)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if l.Connections == nil {
		l.Connections = []Connection{}
	}
	writeJSON(w, http.StatusOK, l)
}

func (h *handler) deleteConntrack(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if v.Has("limit") {
		writeError(w, http.StatusBadRequest, "limit: a flush deletes every match; limit is for GET")
		return
	}
	q, err := ParseConnQuery(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, err := h.conntracker().FlushConnections(q)
	if err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ConnFlush{Flushed: n})
}

func (h *handler) conntrackRoutes() []route {
	if h.conntracker() == nil {
		return nil
	}
	return []route{
		{Method: "GET", Path: "/v1/conntrack", Summary: "Tracked connections (security groups' and NAT's): keys both ways, zone and its owner, TCP state, expiry, NAT; filtered by the query, at most limit listed, total counts every match",
			Query: connQueryParams, Response: ConnList{}, Codes: []int{200, 400, 404}, handle: h.getConntrack},
		{Method: "DELETE", Path: "/v1/conntrack", Summary: "Flush the connections the query selects, all without one (ovs-appctl dpctl/flush-conntrack)",
			Query: connQueryParams[:len(connQueryParams)-1], Response: ConnFlush{}, Codes: []int{200, 400, 404}, handle: h.deleteConntrack},
	}
}
