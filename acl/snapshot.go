package acl

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Snapshot is one compiled, immutable filtering config. The control plane
// builds a new one with Compile and publishes it with an atomic.Pointer
// swap between batches; workers load the pointer once per batch.
type Snapshot struct {
	ACL *Classifier // stateless rules; no match allows
	SG  *Classifier // per-port union of the port's groups' rules, all Allow
	// sgPort[port] says the port has security groups (is filtered).
	sgPort []bool
	// egressOpen[port]: none of the port's groups has an egress rule, so
	// egress is allowed (and committed, so replies come back).
	egressOpen []bool
	portSec    []*portSec // by port id; nil: no port security
}

// Compile validates c and builds a snapshot; ports maps port names to
// the data plane's port ids. Errors name the bad field.
func Compile(c *Config, ports map[string]uint16) (*Snapshot, error) {
	if ports == nil {
		ports = map[string]uint16{}
	}
	return compileConfig(c, ports)
}

// compileConfig with ports nil only validates: names resolve to port 0.
func compileConfig(c *Config, ports map[string]uint16) (*Snapshot, error) {
	portID := func(field, name string) (uint16, error) {
		if name == "" {
			return 0, ferr(field, "", "required")
		}
		if ports == nil {
			return 0, nil
		}
		id, ok := ports[name]
		if !ok {
			return 0, ferr(field, name, "unknown port")
		}
		return id, nil
	}

	groups := map[string]int{}
	for i, g := range c.SecurityGroups {
		f := fmt.Sprintf("security_groups[%d].name", i)
		if g.Name == "" {
			return nil, ferr(f, "", "required")
		}
		if _, dup := groups[g.Name]; dup {
			return nil, ferr(f, g.Name, "duplicate security group")
		}
		groups[g.Name] = i
	}

	// Ports: port security and group membership.
	snap := &Snapshot{}
	type member struct {
		id  uint16
		ips []netip.Prefix
	}
	members := map[string][]member{} // group -> ports in it
	seen := map[string]bool{}
	type portGroups struct {
		id     uint16
		groups []string
	}
	var withGroups []portGroups
	for i, p := range c.Ports {
		path := fmt.Sprintf("ports[%d]", i)
		id, err := portID(path+".name", p.Name)
		if err != nil {
			return nil, err
		}
		if seen[p.Name] {
			return nil, ferr(path+".name", p.Name, "duplicate port")
		}
		seen[p.Name] = true
		var ps *portSec
		if p.PortSecurity != nil {
			if ps, err = compilePortSec(path+".port_security", p.PortSecurity); err != nil {
				return nil, err
			}
			setAt(&snap.portSec, id, ps)
		}
		for j, g := range p.SecurityGroups {
			if _, ok := groups[g]; !ok {
				return nil, ferr(fmt.Sprintf("%s.security_groups[%d]", path, j), g, "unknown security group")
			}
			var ips []netip.Prefix
			if ps != nil {
				ips = ps.prefixes()
			}
			members[g] = append(members[g], member{id, ips})
		}
		if len(p.SecurityGroups) > 0 {
			setAt(&snap.sgPort, id, true)
			withGroups = append(withGroups, portGroups{id, p.SecurityGroups})
		}
	}

	// Security group rules, checked once per group, then instantiated
	// for every port in the group.
	type sgRule struct {
		Rule
		remoteGroup string
	}
	parsed := make([][]sgRule, len(c.SecurityGroups))
	for i, g := range c.SecurityGroups {
		for j, sr := range g.Rules {
			path := fmt.Sprintf("security_groups[%d].rules[%d]", i, j)
			r := Rule{Name: g.Name + "/rules[" + strconv.Itoa(j) + "]", Action: Allow}
			var err error
			if r.Dir, err = parseDirection(path+".direction", sr.Direction); err != nil {
				return nil, err
			}
			if sr.Remote != "" && sr.RemoteGroup != "" {
				return nil, ferr(path+".remote_group", sr.RemoteGroup, "remote and remote_group are exclusive")
			}
			if _, ok := groups[sr.RemoteGroup]; sr.RemoteGroup != "" && !ok {
				return nil, ferr(path+".remote_group", sr.RemoteGroup, "unknown security group")
			}
			m := match{et: sr.EtherType, proto: sr.Protocol, ports: sr.Ports, typ: sr.ICMPType, code: sr.ICMPCode}
			src, dst := "remote", "destination"
			if r.Dir == Ingress {
				m.src = sr.Remote
			} else {
				m.dst, src, dst = sr.Remote, "source", "remote"
			}
			// OpenStack's default ethertype is IPv4.
			if m.et == "" && sr.Remote == "" {
				m.et = "ipv4"
			}
			if err := buildRule(path, m, src, dst, &r); err != nil {
				return nil, err
			}
			parsed[i] = append(parsed[i], sgRule{r, sr.RemoteGroup})
		}
	}
	var sgRules []Rule
	for _, pg := range withGroups {
		open := true
		for _, g := range pg.groups {
			for _, sr := range parsed[groups[g]] {
				open = open && sr.Dir != Egress
			}
		}
		if open {
			setAt(&snap.egressOpen, pg.id, true)
		}
		for _, g := range pg.groups {
			for _, sr := range parsed[groups[g]] {
				r := sr.Rule
				r.Port = pg.id
				if sr.remoteGroup == "" {
					sgRules = append(sgRules, r)
					continue
				}
				for _, m := range members[sr.remoteGroup] {
					for _, ip := range m.ips {
						if r.EthType != prefixVersion(ip) {
							continue
						}
						rr := r
						if r.Dir == Ingress {
							rr.Src = ip
						} else {
							rr.Dst = ip
						}
						sgRules = append(sgRules, rr)
					}
				}
			}
		}
	}

	// Stateless ACLs.
	names := map[string]bool{}
	aclRules := make([]Rule, 0, len(c.ACLs))
	for i, a := range c.ACLs {
		path := fmt.Sprintf("acls[%d]", i)
		if a.Name == "" {
			return nil, ferr(path+".name", "", "required")
		}
		if names[a.Name] {
			return nil, ferr(path+".name", a.Name, "duplicate acl")
		}
		names[a.Name] = true
		r := Rule{Name: a.Name}
		var err error
		if r.Port, err = portID(path+".port", a.Port); err != nil {
			return nil, err
		}
		if r.Dir, err = parseDirection(path+".direction", a.Direction); err != nil {
			return nil, err
		}
		if a.Priority < 0 || a.Priority > 65535 {
			return nil, ferr(path+".priority", strconv.Itoa(a.Priority), "want 0-65535")
		}
		r.Priority = int32(a.Priority)
		if r.Action, err = parseAction(path+".action", a.Action); err != nil {
			return nil, err
		}
		m := match{et: a.EtherType, proto: a.Protocol, ports: a.Ports, srcPorts: a.SourcePorts,
			typ: a.ICMPType, code: a.ICMPCode, src: a.Source, dst: a.Destination}
		if err := buildRule(path, m, "source", "destination", &r); err != nil {
			return nil, err
		}
		aclRules = append(aclRules, r)
	}

	var err error
	if snap.ACL, err = CompileRules(aclRules); err != nil {
		return nil, err
	}
	if snap.SG, err = CompileRules(sgRules); err != nil {
		return nil, err
	}
	return snap, nil
}

// setAt stores v at index i of *s, growing it.
func setAt[T any](s *[]T, i uint16, v T) {
	for len(*s) <= int(i) {
		var zero T
		*s = append(*s, zero)
	}
	(*s)[i] = v
}
