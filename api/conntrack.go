package api

import (
	"bytes"
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

// ConntrackLimiter reports the conntrack zones' limits and connection
// counts. A Source that is also one serves /v1/conntrack/limits.
type ConntrackLimiter interface {
	ConntrackLimits() *ConntrackLimits
}

// ConntrackLimits is GET /v1/conntrack/limits's answer (ovs-appctl
// dpctl/ct-get-limits): the default per-zone limit and, per zone, the
// limit in force and the connections it holds.
type ConntrackLimits struct {
	DefaultLimit int          `json:"default_limit"` // conntrack.zone_limit; 0: none
	Entries      int          `json:"entries"`       // connections in the table
	MaxEntries   int          `json:"max_entries"`
	Zones        []ZoneStatus `json:"zones"`
}

// ZoneStatus is one zone: every port with security groups and router
// with NAT has one; a zone nothing owns is listed while it holds
// connections.
type ZoneStatus struct {
	Zone  int    `json:"zone"`
	Owner string `json:"owner,omitempty"` // "port NAME", "router NAME"
	Limit int    `json:"limit"`           // 0: none but max_entries
	// Override says the limit is the zone's own (conntrack.zone_limits),
	// not the default.
	Override bool `json:"override"`
	Count    int  `json:"count"` // connections, expired ones not yet reclaimed included
}

// ZoneLimitsUpdate is PUT /v1/conntrack/limits's body: conntrack.zone_limit
// (left out: unchanged) and conntrack.zone_limits (replaced; empty: every
// zone takes the default).
type ZoneLimitsUpdate struct {
	ZoneLimit  *int              `json:"zone_limit,omitempty"`
	ZoneLimits []ZoneLimitConfig `json:"zone_limits"`
}

func (h *handler) limiter() ConntrackLimiter {
	l, _ := h.Source.(ConntrackLimiter)
	return l
}

func (h *handler) getConntrackLimits(w http.ResponseWriter, r *http.Request) {
	l := h.limiter().ConntrackLimits()
	if l.Zones == nil {
		l.Zones = []ZoneStatus{}
	}
	writeJSON(w, http.StatusOK, l)
}

func (h *handler) putConntrackLimits(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var u ZoneLimitsUpdate
	if err := decodeStrict(bytes.NewReader(body), &u); err != nil {
		writeError(w, http.StatusBadRequest, "zone limits body: "+err.Error())
		return
	}
	rev, has, err := ifMatch(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	res, err := h.Store.Update(func(cur *State, next *Config) error {
		if err := checkRevision("the config", cur.Revision, rev, has); err != nil {
			return err
		}
		if u.ZoneLimit != nil {
			next.Conntrack.ZoneLimit = *u.ZoneLimit
		}
		next.Conntrack.ZoneLimits = u.ZoneLimits
		return nil
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("ETag", etag(res.Revision))
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) conntrackRoutes() []route {
	var rs []route
	if h.limiter() != nil {
		rs = append(rs, route{Method: "GET", Path: "/v1/conntrack/limits", Summary: "Conntrack zone limits (ovs-appctl dpctl/ct-get-limits): the default per-zone limit and, per zone, its owner, the limit in force and the connections it holds",
			Response: ConntrackLimits{}, Codes: []int{200}, handle: h.getConntrackLimits})
		if h.Store != nil {
			rs = append(rs, route{Method: "PUT", Path: "/v1/conntrack/limits", Summary: "Set conntrack.zone_limit (if given) and replace conntrack.zone_limits (ovs-appctl dpctl/ct-set-limits); applied live, no port restarts (If-Match: the global revision)",
				Request: ZoneLimitsUpdate{}, Response: Result{}, Codes: []int{200, 400, 409, 413, 422}, handle: h.putConntrackLimits})
		}
	}
	if h.conntracker() == nil {
		return rs
	}
	return append(rs, []route{
		{Method: "GET", Path: "/v1/conntrack", Summary: "Tracked connections (security groups' and NAT's): keys both ways, zone and its owner, TCP state, expiry, NAT; filtered by the query, at most limit listed, total counts every match",
			Query: connQueryParams, Response: ConnList{}, Codes: []int{200, 400, 404}, handle: h.getConntrack},
		{Method: "DELETE", Path: "/v1/conntrack", Summary: "Flush the connections the query selects, all without one (ovs-appctl dpctl/flush-conntrack)",
			Query: connQueryParams[:len(connQueryParams)-1], Response: ConnFlush{}, Codes: []int{200, 400, 404}, handle: h.deleteConntrack},
	}...)
}
