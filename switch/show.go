package vswitch

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
)

// FDBRow is a learned MAC as an operator sees it.
type FDBRow struct {
	MAC  string
	VLAN uint16
	Port string
	Age  uint32 // seconds since the MAC was last seen
}

// BridgeFDB lists a bridge's learned MACs by VLAN and MAC.
func (s *Switch) BridgeFDB(bridge string) ([]FDBRow, error) {
	c := s.cfg.Load()
	b, ok := c.bridges[bridge]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrNoBridge, bridge)
	}
	es := b.FDB.Entries(s.clock.Load())
	sort.Slice(es, func(i, j int) bool {
		if es[i].VLAN != es[j].VLAN {
			return es[i].VLAN < es[j].VLAN
		}
		return es[i].MAC < es[j].MAC
	})
	out := make([]FDBRow, 0, len(es))
	for _, e := range es {
		port := "?"
		if int(e.Port) < MaxPorts && c.ports[e.Port] != nil {
			port = c.ports[e.Port].Name
		}
		out = append(out, FDBRow{MAC: macString(e.MAC), VLAN: e.VLAN, Port: port, Age: e.Age})
	}
	return out, nil
}

func macString(m uint64) string {
	var b [6]byte
	for i := range b {
		b[i] = byte(m >> (40 - 8*i))
	}
	return net.HardwareAddr(b[:]).String()
}

// RouterInfo is a router as an operator sees it.
type RouterInfo struct {
	Name       string
	Interfaces []RouterIfInfo
	Routes     []RouteInfo
}

// RouterIfInfo is one router interface.
type RouterIfInfo struct {
	Name      string
	Bridge    string
	VLAN      uint16
	MAC       string
	Addresses []string
}

// RouteInfo is one FIB entry: a connected subnet or a static route.
type RouteInfo struct {
	Prefix    string
	Kind      string // connected or static
	Interface string // the egress interface
	Via       string // the gateway of a static route
}

// Routers describes every router, by name.
func (s *Switch) Routers() []RouterInfo {
	c := s.cfg.Load()
	out := make([]RouterInfo, 0, len(c.routers))
	for _, r := range c.routers {
		out = append(out, r.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Router describes one router.
func (s *Switch) Router(name string) (RouterInfo, error) {
	r, ok := s.cfg.Load().routers[name]
	if !ok {
		return RouterInfo{}, fmt.Errorf("no router %q", name)
	}
	return r.info(), nil
}

func (r *router) info() RouterInfo {
	ri := RouterInfo{Name: r.name, Interfaces: []RouterIfInfo{}, Routes: []RouteInfo{}}
	for _, i := range r.ifs {
		ii := RouterIfInfo{Name: i.name, Bridge: i.bridge, VLAN: i.vlan, MAC: macString(i.mac), Addresses: []string{}}
		for _, a := range i.addrs {
			ii.Addresses = append(ii.Addresses, a.String())
		}
		ri.Interfaces = append(ri.Interfaces, ii)
	}
	routes := append(r.fib4.Routes(), r.fib6.Routes()...)
	sort.SliceStable(routes, func(i, j int) bool {
		a, b := routes[i].Prefix, routes[j].Prefix
		if a.Addr().Is4() != b.Addr().Is4() {
			return a.Addr().Is4()
		}
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
	for _, rt := range routes {
		if int(rt.Value) >= len(r.nh) {
			continue
		}
		nh := r.nh[rt.Value]
		e := RouteInfo{Prefix: rt.Prefix.String(), Kind: "connected", Interface: r.ifs[nh.rif].name}
		if nh.hasVia {
			e.Kind = "static"
			if rt.Prefix.Addr().Is4() {
				e.Via = netip.AddrFrom4([4]byte(nh.via[:4])).String()
			} else {
				e.Via = netip.AddrFrom16(nh.via).String()
			}
		}
		ri.Routes = append(ri.Routes, e)
	}
	return ri
}

// NeighborInfo is a resolved neighbour of a router interface.
type NeighborInfo struct {
	IP        string
	MAC       string
	Interface string
	Age       uint32 // seconds since last confirmed
	// State is reachable; stale past the refresh time (neighRefresh),
	// probe once a packet to it asked it again; expired.
	State string
}

// Neighbors lists a router's neighbour table by interface and address.
func (s *Switch) Neighbors(router string) ([]NeighborInfo, error) {
	r, ok := s.cfg.Load().routers[router]
	if !ok {
		return nil, fmt.Errorf("no router %q", router)
	}
	names := map[uint32]string{}
	for _, i := range r.ifs {
		names[i.id] = i.name
	}
	now := s.clock.Load()
	type row struct {
		NeighborInfo
		ip netip.Addr
	}
	var rows []row
	for k, e := range *s.neigh.m.Load() {
		name, ok := names[k.rif]
		if !ok {
			continue
		}
		ip := netip.AddrFrom16(k.ip)
		if !k.v6 {
			ip = netip.AddrFrom4([4]byte(k.ip[:4]))
		}
		age := now - e.seen
		state := "reachable"
		switch {
		case age > neighExpire:
			state = "expired"
		case age >= neighRefresh && e.probes() > 0:
			state = "probe"
		case age >= neighRefresh:
			state = "stale"
		}
		rows = append(rows, row{NeighborInfo{IP: ip.String(), MAC: macString(e.mac), Interface: name, Age: age, State: state}, ip})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Interface != rows[j].Interface {
			return rows[i].Interface < rows[j].Interface
		}
		return rows[i].ip.Less(rows[j].ip)
	})
	out := make([]NeighborInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.NeighborInfo)
	}
	return out, nil
}
