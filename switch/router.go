package vswitch

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"sort"

	"github.com/vswitch/vswitch/nat"
	"github.com/vswitch/vswitch/switch/lpm"
)

// RouterSpec declares a router: interfaces that are endpoints on a
// bridge's VLAN, and static routes beside the connected ones.
type RouterSpec struct {
	Name       string
	Interfaces []RouterIfSpec
	Routes     []RouteSpec
	NAT        []nat.RuleConfig
}

// RouterIfSpec is one router interface. A zero MAC gets a stable one
// derived from the router and interface names.
type RouterIfSpec struct {
	Name   string
	Bridge string
	VLAN   uint16
	MAC    [6]byte
	Addrs  []netip.Prefix
}

// RouteSpec is a static route through a next hop on a connected subnet.
type RouteSpec struct {
	Prefix netip.Prefix
	Via    netip.Addr
}

// router is a compiled RouterSpec. Its FIBs are immutable; a change
// builds a new router and swaps the config.
type router struct {
	name string
	ifs  []*rif
	fib4 *lpm.Table4
	fib6 *lpm.Table6
	nh   []nextHop
	nat  *nat.Rules // nil: no NAT
	zone uint16     // conntrack zone of its NAT
}

// rif is a router interface as the data path sees it.
type rif struct {
	id     uint32 // neighbour table key; unique for the switch's life
	name   string
	r      *router
	bridge string
	br     *Bridge // set when the config is linked
	vlan   uint16
	mac    uint64
	addrs  []netip.Prefix
	fips   []netip.Addr // floating IPs on its subnets: ARP/ND answered
}

// nextHop is what a FIB entry points at: the egress interface and, for a
// static route, the gateway (otherwise the destination is on link).
type nextHop struct {
	rif    int // index in router.ifs
	via    [16]byte
	hasVia bool
}

// GeneratedMAC is the stable, locally administered unicast MAC a router
// interface without one gets.
func GeneratedMAC(router, iface string) [6]byte {
	h := sha256.Sum256([]byte("vswitch-router/" + router + "/" + iface))
	var m [6]byte
	copy(m[:], h[:6])
	m[0] = m[0]&^1 | 2
	return m
}

func mac6(m [6]byte) uint64 { return MAC48(m[:]) }

// compileRouter checks spec and builds its FIBs. ids hands out rif ids.
func compileRouter(spec RouterSpec, ids *uint32) (*router, error) {
	r := &router{name: spec.Name}
	b4, b6 := lpm.NewBuilder4(), lpm.NewBuilder6()
	for i, is := range spec.Interfaces {
		m := is.MAC
		if m == ([6]byte{}) {
			m = GeneratedMAC(spec.Name, is.Name)
		}
		if m[0]&1 != 0 {
			return nil, fmt.Errorf("router %s interface %s: MAC %x is multicast", spec.Name, is.Name, m)
		}
		if is.VLAN > 4094 {
			return nil, fmt.Errorf("router %s interface %s: vlan %d is not in 0..4094", spec.Name, is.Name, is.VLAN)
		}
		*ids++
		ri := &rif{id: *ids, name: is.Name, r: r, bridge: is.Bridge, vlan: is.VLAN, mac: mac6(m), addrs: is.Addrs}
		r.ifs = append(r.ifs, ri)
		for _, a := range is.Addrs {
			r.nh = append(r.nh, nextHop{rif: i})
			var err error
			if a.Addr().Is4() {
				err = b4.Add(a.Masked(), uint32(len(r.nh)-1))
			} else {
				err = b6.Add(a.Masked(), uint32(len(r.nh)-1))
			}
			if err != nil {
				return nil, fmt.Errorf("router %s interface %s: %w", spec.Name, is.Name, err)
			}
		}
	}
	for _, rt := range spec.Routes {
		ifi := -1
		for i, ri := range r.ifs {
			for _, a := range ri.addrs {
				if a.Contains(rt.Via) {
					ifi = i
				}
			}
		}
		if ifi < 0 {
			return nil, fmt.Errorf("router %s route %s: next hop %s is on no interface's subnet", spec.Name, rt.Prefix, rt.Via)
		}
		if rt.Prefix.Addr().Is4() != rt.Via.Is4() {
			return nil, fmt.Errorf("router %s route %s: next hop %s is of the other address family", spec.Name, rt.Prefix, rt.Via)
		}
		nh := nextHop{rif: ifi, hasVia: true}
		if rt.Via.Is4() {
			a := rt.Via.As4()
			copy(nh.via[:], a[:])
		} else {
			nh.via = rt.Via.As16()
		}
		r.nh = append(r.nh, nh)
		var err error
		if rt.Prefix.Addr().Is4() {
			err = b4.Add(rt.Prefix.Masked(), uint32(len(r.nh)-1))
		} else {
			err = b6.Add(rt.Prefix.Masked(), uint32(len(r.nh)-1))
		}
		if err != nil {
			return nil, fmt.Errorf("router %s route %s: %w", spec.Name, rt.Prefix, err)
		}
	}
	r.fib4, r.fib6 = b4.Build(), b6.Build()
	for _, rc := range spec.NAT {
		if rc.Type != nat.TypeDNAT || rc.Port != 0 {
			continue
		}
		a, err := netip.ParseAddr(rc.Destination)
		if err != nil {
			continue // nat.Compile reports it
		}
		for _, ri := range r.ifs {
			if ri.onLink(a) && !ri.owns(a) {
				ri.fips = append(ri.fips, a)
			}
		}
	}
	return r, nil
}

// link gives the bridges of c their router interfaces and the interfaces
// their bridges. Bridges and routers are immutable once published, so it
// copies every one it touches.
func (c *config) link() {
	for name, b := range c.bridges {
		nb := *b
		nb.rifs = nil
		c.bridges[name] = &nb
	}
	names := make([]string, 0, len(c.routers))
	for n := range c.routers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		old := c.routers[n]
		nr := *old
		nr.ifs = make([]*rif, len(old.ifs))
		for i, ri := range old.ifs {
			nri := *ri
			nri.r = &nr
			nri.br = c.bridges[ri.bridge]
			if nri.br != nil {
				nri.br.rifs = append(nri.br.rifs, &nri)
			}
			nr.ifs[i] = &nri
		}
		c.routers[n] = &nr
	}
	for _, b := range c.bridges {
		relinkBridge(c, b)
	}
}

// rifFor is the router interface on VLAN vid of the bridge, if any.
func (b *Bridge) rifFor(vid uint16) *rif {
	for _, ri := range b.rifs {
		if ri.vlan == vid {
			return ri
		}
	}
	return nil
}

// SetRouter adds or replaces a router.
func (s *Switch) SetRouter(spec RouterSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clone()
	for _, is := range spec.Interfaces {
		if _, ok := c.bridges[is.Bridge]; !ok {
			return fmt.Errorf("router %s interface %s: %w %q", spec.Name, is.Name, ErrNoBridge, is.Bridge)
		}
		for n, r := range c.routers {
			for _, ri := range r.ifs {
				if n != spec.Name && ri.bridge == is.Bridge && ri.vlan == is.VLAN {
					return fmt.Errorf("router %s interface %s: bridge %s VLAN %d already has router %s's interface %s",
						spec.Name, is.Name, is.Bridge, is.VLAN, n, ri.name)
				}
			}
		}
	}
	r, err := compileRouter(spec, &s.rifIDs)
	if err != nil {
		return err
	}
	if len(spec.NAT) > 0 {
		t, err := s.conntrack(c)
		if err != nil {
			return err
		}
		if r.nat, err = nat.Compile(t, "router "+spec.Name+" nat", spec.NAT); err != nil {
			return err
		}
		if s.zones == nil {
			s.zones = map[string]uint16{}
		}
		z, ok := s.zones[spec.Name]
		if !ok {
			z = routerZoneBase + uint16(len(s.zones))
			s.zones[spec.Name] = z
		}
		r.zone = z
	}
	c.routers[spec.Name] = r
	s.publish(c)
	return nil
}

// RemoveRouter deletes a router.
func (s *Switch) RemoveRouter(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clone()
	if _, ok := c.routers[name]; !ok {
		return fmt.Errorf("no router %q", name)
	}
	delete(c.routers, name)
	s.publish(c)
	return nil
}

// RouterInterfaceMAC returns the MAC a router interface uses.
func (s *Switch) RouterInterfaceMAC(router, iface string) ([6]byte, bool) {
	if r, ok := s.cfg.Load().routers[router]; ok {
		for _, ri := range r.ifs {
			if ri.name == iface {
				var m [6]byte
				for i := range m {
					m[i] = byte(ri.mac >> (40 - 8*i))
				}
				return m, true
			}
		}
	}
	return [6]byte{}, false
}
