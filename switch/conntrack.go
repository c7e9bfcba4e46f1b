package vswitch

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/nat"
)

// DefaultConntrack is the connection table's settings until SetConntrack:
// Linux nf_conntrack's timeouts and its window check (out-of-window TCP
// segments are invalid, as with nf_conntrack_tcp_be_liberal=0 and OVS's
// default tcp_seq_chk), no per-zone limit, DefaultConntrackSize entries
// (unless Options.Conntrack says otherwise).
func DefaultConntrack() nat.Config {
	return nat.Config{Window: nat.WindowStrict, Timeouts: nat.DefaultTimeouts()}
}

// SetConntrack replaces the conntrack settings. Before the table exists
// (no security group or NAT yet) they are kept for when it is made, with
// cfg.Capacity entries (0: Options.Conntrack, else DefaultConntrackSize).
// Once it exists they apply at once, workers seeing each at their next
// packet; the table keeps its allocation, so cfg.Capacity may lower the
// limit but not raise it above the size the table was made with.
func (s *Switch) SetConntrack(cfg nat.Config) error {
	if cfg.Capacity < 0 || cfg.Window > nat.WindowStrict {
		return fmt.Errorf("conntrack: capacity %d, window check %d: out of range", cfg.Capacity, cfg.Window)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.cfg.Load().ct; t != nil {
		if err := t.Reconfigure(cfg); err != nil {
			return err
		}
	}
	s.ctcfg = cfg
	return nil
}

// ConntrackSettings returns the settings in force: the table's once it
// exists (Capacity is then its limit), else those it will be made with.
func (s *Switch) ConntrackSettings() nat.Config {
	if t := s.cfg.Load().ct; t != nil {
		return t.Settings()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.ctcfg
	if cfg.Capacity <= 0 {
		cfg.Capacity = s.opts.Conntrack
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultConntrackSize
	}
	return cfg
}

// ConnFilter selects connections; each field set must match.
type ConnFilter struct {
	Port   string     // the zone of this port's security groups
	Router string     // the zone of this router's NAT
	Zone   uint16     // this zone; 0 any (the switch tracks in zones from 1)
	Proto  uint8      // IP protocol number; 0 any
	Addr   netip.Addr // an address of either direction's key; invalid: any
	Limit  int        // most rows Connections returns; 0: no limit
}

// ConnRow is one connection as an operator sees it.
type ConnRow struct {
	Zone uint16
	// Owner is what the zone belongs to: "port NAME" or "router NAME"
	// ("" for a zone nothing owns now).
	Owner       string
	Orig, Reply nat.Key
	TCPState    string
	ExpiresIn   uint32 // seconds
	Replied     bool
	SNAT, DNAT  bool
}

// ConnListing is a bounded listing: Rows holds at most the filter's
// Limit connections (in table order), Total counts every match.
type ConnListing struct {
	Total   int
	Rows    []ConnRow
	Entries int // connections in the table, expired ones not yet reclaimed included
	Limit   int // the table's connection limit; 0 before the table exists
}

// zoneOf resolves the filter's zone, port and router to the zone to
// match: -1 any, -2 none (they name different zones).
func (c *config) zoneOf(f *ConnFilter) (int, error) {
	zone := int(f.Zone)
	if zone == 0 {
		zone = -1
	}
	if f.Port != "" {
		pe := c.port(f.Port)
		if pe == nil {
			return 0, fmt.Errorf("no port %q", f.Port)
		}
		if f.Zone != 0 && int(f.Zone) != portZoneBase+int(pe.ID) {
			return -2, nil // a zone and a port's other zone: nothing matches
		}
		zone = portZoneBase + int(pe.ID)
	}
	if f.Router != "" {
		r, ok := c.routers[f.Router]
		if !ok {
			return 0, fmt.Errorf("no router %q", f.Router)
		}
		if r.nat == nil {
			return 0, fmt.Errorf("router %q has no NAT (no conntrack zone)", f.Router)
		}
		if zone >= 0 && zone != int(r.zone) || zone == -2 {
			zone = -2 // a port's and a router's zone: nothing matches
		} else {
			zone = int(r.zone)
		}
	}
	return zone, nil
}

// match says whether connection k matches the filter (zone resolved).
func (f *ConnFilter) match(zone int, cn *nat.Conn) bool {
	if zone >= 0 && int(cn.Zone()) != zone || zone == -2 {
		return false
	}
	if f.Proto != 0 && cn.Orig.Proto != f.Proto {
		return false
	}
	if f.Addr.IsValid() {
		a := f.Addr.Unmap()
		if cn.Orig.SrcAddr() != a && cn.Orig.DstAddr() != a && cn.Reply.SrcAddr() != a && cn.Reply.DstAddr() != a {
			return false
		}
	}
	return true
}

// owners names the zones of c's ports and NAT routers.
func (c *config) owners() map[uint16]string {
	m := map[uint16]string{}
	for _, pe := range c.ports {
		if pe != nil {
			m[portZoneBase+pe.ID] = "port " + pe.Name
		}
	}
	for n, r := range c.routers {
		if r.nat != nil {
			m[r.zone] = "router " + n
		}
	}
	return m
}

// Connections lists the connections f selects. It reads the table
// without stopping the workers or taking a lock they take per packet.
func (s *Switch) Connections(f ConnFilter) (ConnListing, error) {
	c := s.cfg.Load()
	zone, err := c.zoneOf(&f)
	if err != nil {
		return ConnListing{}, err
	}
	out := ConnListing{Rows: []ConnRow{}}
	t := c.ct
	if t == nil {
		return out, nil
	}
	out.Entries, out.Limit = t.Len(), t.Settings().Capacity
	owners := c.owners()
	now := s.clock.Load()
	t.Walk(now, func(cn *nat.Conn) bool {
		if !f.match(zone, cn) {
			return true
		}
		out.Total++
		if f.Limit > 0 && len(out.Rows) >= f.Limit {
			return true
		}
		out.Rows = append(out.Rows, ConnRow{Zone: cn.Zone(), Owner: owners[cn.Zone()], Orig: cn.Orig, Reply: cn.Reply,
			TCPState: cn.TCPState, ExpiresIn: cn.Expire - now, Replied: cn.Replied, SNAT: cn.SNAT, DNAT: cn.DNAT})
		return true
	})
	sort.SliceStable(out.Rows, func(i, j int) bool { return out.Rows[i].Zone < out.Rows[j].Zone })
	return out, nil
}

// FlushConnections deletes the connections f selects (f.Limit is
// ignored) and returns how many, like ovs-appctl dpctl/flush-conntrack.
// Packets of a flushed connection are new again: under a security group
// a TCP segment other than a SYN is then invalid.
func (s *Switch) FlushConnections(f ConnFilter) (int, error) {
	c := s.cfg.Load()
	zone, err := c.zoneOf(&f)
	if err != nil {
		return 0, err
	}
	if c.ct == nil {
		return 0, nil
	}
	return c.ct.FlushMatch(func(cn *nat.Conn) bool { return f.match(zone, cn) }), nil
}

// ZoneLimit is a conntrack zone's own connection limit (ovs-appctl
// dpctl/ct-set-limits zone=N,limit=L), the zone named by what owns it:
// a port (the zone of its security groups) or a router (its NAT's).
// Zone numbers are handed out as ports and routers come, so they are not
// stable across restarts; the owner is.
type ZoneLimit struct {
	Port   string
	Router string
	Limit  uint32 // 0: none, only the table's
}

// SetZoneLimits replaces the zones' own limits; zones not named take the
// default (nat.Config.ZoneLimit). A port or router the switch does not
// have (yet) is kept and applies once it is added. Workers see a limit
// at their next insert; connections beyond a lowered one stay until they
// end.
func (s *Switch) SetZoneLimits(ls []ZoneLimit) error {
	for i, l := range ls {
		if (l.Port == "") == (l.Router == "") {
			return fmt.Errorf("zone limit %d: name a port or a router", i)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zlimits = append([]ZoneLimit(nil), ls...)
	s.applyZoneLimits(s.cfg.Load())
	return nil
}

// applyZoneLimits gives the zones of c's ports and routers the limits
// s.zlimits asks for, and returns to the default the zones it set before
// that the current limits no longer name (under s.mu).
func (s *Switch) applyZoneLimits(c *config) {
	t := c.ct
	if t == nil {
		return
	}
	want := make(map[uint16]bool, len(s.zlimits))
	for _, l := range s.zlimits {
		z, ok := c.zoneOwnedBy(l.Port, l.Router)
		if !ok {
			continue
		}
		t.SetZoneLimit(z, l.Limit)
		want[z] = true
	}
	for z := range s.zset {
		if !want[z] {
			t.ClearZoneLimit(z)
		}
	}
	s.zset = want
}

// zoneOwnedBy is the zone of port (or, port empty, of router's NAT).
func (c *config) zoneOwnedBy(port, router string) (uint16, bool) {
	if port != "" {
		if pe := c.port(port); pe != nil {
			return portZoneBase + pe.ID, true
		}
		return 0, false
	}
	if r, ok := c.routers[router]; ok && r.nat != nil {
		return r.zone, true
	}
	return 0, false
}

// flushPortZone deletes the connections of removed port e's zone, so a
// port that gets e's ID (and with it the zone) starts with none: a
// packet of e's connections is new to it (OVS flushes a port's zone when
// it is deleted). It runs once no worker uses e (after publish); other
// zones' connections and traffic are untouched.
func (s *Switch) flushPortZone(c *config, e *portEntry) {
	z := portZoneBase + e.ID
	if c.ct == nil || c.ct.ZoneLen(z) == 0 { // the common case: skip the walk over the table
		return
	}
	if n := c.ct.FlushZone(z); n > 0 {
		s.log.WithFields(logrus.Fields{"port": e.Name, "zone": z, "connections": n}).Info("flushed the removed port's conntrack zone")
	}
}

// ZoneUsage is one conntrack zone's limit and connection count
// (ovs-appctl dpctl/ct-get-limits).
type ZoneUsage struct {
	Zone  uint16
	Owner string // "port NAME", "router NAME", "" for a zone nothing owns now
	Limit uint32 // 0: none
	Own   bool   // the zone's own limit (SetZoneLimits), not the default
	Count int    // connections, expired ones not yet reclaimed included
}

// ZoneUsages lists the zones of the ports with security groups and the
// routers with NAT, and any other zone that holds connections, in zone
// order, with the default per-zone limit.
func (s *Switch) ZoneUsages() (def uint32, zones []ZoneUsage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg.Load()
	t := c.ct
	def = s.ctcfg.ZoneLimit
	if t != nil {
		def = t.Settings().ZoneLimit
	}
	byZone := map[uint16]*ZoneUsage{}
	add := func(z uint16, owner string) *ZoneUsage {
		u := byZone[z]
		if u == nil {
			u = &ZoneUsage{Zone: z, Limit: def}
			byZone[z] = u
		}
		if owner != "" {
			u.Owner = owner
		}
		return u
	}
	for _, pe := range c.ports {
		if pe != nil && c.filt != nil && c.filt.flags[pe.ID]&fState != 0 {
			add(portZoneBase+pe.ID, "port "+pe.Name)
		}
	}
	for n, r := range c.routers {
		if r.nat != nil {
			add(r.zone, "router "+n)
		}
	}
	for _, l := range s.zlimits {
		if z, ok := c.zoneOwnedBy(l.Port, l.Router); ok {
			owner := "port " + l.Port
			if l.Port == "" {
				owner = "router " + l.Router
			}
			u := add(z, owner)
			u.Limit, u.Own = l.Limit, true
		}
	}
	if t != nil {
		owners := c.owners()
		t.ZoneCounts(func(z uint16, n int) { add(z, owners[z]).Count = n })
		for z, u := range byZone {
			u.Limit, u.Own = t.ZoneLimit(z)
		}
	}
	zones = make([]ZoneUsage, 0, len(byZone))
	for _, u := range byZone {
		zones = append(zones, *u)
	}
	sort.Slice(zones, func(i, j int) bool { return zones[i].Zone < zones[j].Zone })
	return def, zones
}
