package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	"github.com/vswitch/vswitch/acl"
)

// Action is one step that takes the running switch from one config to
// another. Diff computes them; the daemon carries them out in order.
type Action struct {
	Op   string `json:"op"`   // OpRemove, OpAdd or OpUpdate
	Kind string `json:"kind"` // KindBridge, KindPort or KindLog
	Name string `json:"name,omitempty"`

	Bridge    *BridgeConfig    `json:"-"` // the bridge to add
	Port      *PortConfig      `json:"-"` // the port to add
	Router    *RouterConfig    `json:"-"` // the router to add
	Filter    *acl.Config      `json:"-"` // the new groups, ACLs and port filter fields
	Conntrack *ConntrackConfig `json:"-"` // the new conntrack settings
	Log       *LogConfig       `json:"-"` // the new log settings
}

// Action operations and kinds.
const (
	OpRemove = "remove"
	OpAdd    = "add"
	OpUpdate = "update"

	KindBridge    = "bridge"
	KindPort      = "port"
	KindRouter    = "router"
	KindFilter    = "filter"
	KindConntrack = "conntrack"
	KindLog       = "log"
)

func (a Action) String() string {
	if a.Name == "" {
		return a.Op + " " + a.Kind
	}
	return a.Op + " " + a.Kind + " " + a.Name
}

// Diff returns the actions that turn the running config old into new,
// touching only what changed: a port whose config is unchanged (and whose
// bridge is unchanged) is left alone. The order is fixed: conntrack
// settings updated (first, so that a refused change stops before
// anything else changed, and a table made later has the new size),
// routers removed, ports removed, bridges removed, filters updated,
// bridges added, ports added, routers added, then in-place updates;
// within each group by name. A change to a setting that only takes effect
// at start (api, run_dir, dataplane, vhostuser) is an error naming the
// field.
//
// Diff is pure: no I/O, and the same inputs always give the same actions.
// Security groups, ACLs and the ports' filter fields are one "filter"
// update: the switch recompiles its filters and swaps them in, and no
// port restarts for them. It comes before ports are added, so a new port
// is filtered from its first packet.
func Diff(old, new *Config) ([]Action, error) {
	if !sameJSON(old.API, new.API) {
		return nil, fmt.Errorf("api: the API's address and credentials change only at start (restart vswitchd)")
	}
	if old.RunDir != new.RunDir {
		return nil, fmt.Errorf("run_dir: changes only at start (restart vswitchd)")
	}
	if !sameJSON(old.Dataplane, new.Dataplane) {
		return nil, fmt.Errorf("dataplane: workers, cpus and poll change only at start (restart vswitchd)")
	}
	if old.VhostUser != new.VhostUser {
		return nil, fmt.Errorf("vhostuser: the socket defaults change only at start (restart vswitchd; a port's own socket_owner, socket_group and socket_mode change at once)")
	}
	oldB, newB := bridgeMap(old), bridgeMap(new)
	oldP, newP := portMap(old), portMap(new)

	// A bridge whose settings changed is recreated, and its ports with it.
	replacedB := map[string]bool{}
	for name, ob := range oldB {
		if nb, ok := newB[name]; !ok || !reflect.DeepEqual(ob, nb) {
			replacedB[name] = true
		}
	}
	oldR, newR := routerMap(old), routerMap(new)
	replacedR := map[string]bool{}
	for name, or := range oldR {
		nr, ok := newR[name]
		changed := !ok || !reflect.DeepEqual(or, nr)
		for _, ri := range or.Interfaces {
			changed = changed || replacedB[ri.Bridge]
		}
		if changed {
			replacedR[name] = true
		}
	}
	var acts []Action
	if !sameJSON(old.Conntrack, new.Conntrack) {
		ct := new.Conntrack
		acts = append(acts, Action{Op: OpUpdate, Kind: KindConntrack, Conntrack: &ct})
	}
	for _, name := range sortedKeys(oldR) {
		if replacedR[name] {
			acts = append(acts, Action{Op: OpRemove, Kind: KindRouter, Name: name})
		}
	}
	for _, name := range sortedKeys(oldP) {
		op := oldP[name]
		if np, ok := newP[name]; !ok || !portCore(op).Equal(portCore(np)) || replacedB[op.Bridge] {
			acts = append(acts, Action{Op: OpRemove, Kind: KindPort, Name: name})
		}
	}
	for _, name := range sortedKeys(oldB) {
		if replacedB[name] {
			acts = append(acts, Action{Op: OpRemove, Kind: KindBridge, Name: name})
		}
	}
	if !sameJSON(filterKey(old), filterKey(new)) {
		acts = append(acts, Action{Op: OpUpdate, Kind: KindFilter, Filter: new.Filter()})
	}
	for _, name := range sortedKeys(newB) {
		if _, ok := oldB[name]; !ok || replacedB[name] {
			b := newB[name]
			acts = append(acts, Action{Op: OpAdd, Kind: KindBridge, Name: name, Bridge: &b})
		}
	}
	for _, name := range sortedKeys(newP) {
		np := newP[name]
		if op, ok := oldP[name]; !ok || !portCore(op).Equal(portCore(np)) || replacedB[np.Bridge] {
			acts = append(acts, Action{Op: OpAdd, Kind: KindPort, Name: name, Port: &np})
		}
	}
	for _, name := range sortedKeys(newR) {
		if _, ok := oldR[name]; !ok || replacedR[name] {
			r := newR[name]
			acts = append(acts, Action{Op: OpAdd, Kind: KindRouter, Name: name, Router: &r})
		}
	}
	if old.Log != new.Log {
		l := new.Log
		acts = append(acts, Action{Op: OpUpdate, Kind: KindLog, Log: &l})
	}
	return acts, nil
}

// portCore is a port's config without its filter fields: what needs
// the port recreated when it changes.
func portCore(p PortConfig) PortConfig {
	p.SecurityGroups, p.PortSecurity = nil, nil
	return p
}

// filterKey is c's filtering config with the ports in name order and
// those without filter fields left out, for comparing.
func filterKey(c *Config) *acl.Config {
	f := c.Filter()
	ports := f.Ports[:0:0]
	for _, p := range f.Ports {
		if len(p.SecurityGroups) > 0 || p.PortSecurity != nil {
			ports = append(ports, p)
		}
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].Name < ports[j].Name })
	f.Ports = ports
	return f
}

// sameJSON compares two settings as they are saved (an empty list and no
// list are the same).
func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Apply records a in c, as the daemon does once it has carried a out; c
// then describes what runs.
func (c *Config) Apply(a Action) {
	switch {
	case a.Kind == KindPort && a.Op == OpRemove:
		c.Ports = deleteFunc(c.Ports, func(p PortConfig) bool { return p.Name == a.Name })
	case a.Kind == KindPort && a.Op == OpAdd:
		c.Ports = append(c.Ports, *a.Port)
	case a.Kind == KindBridge && a.Op == OpRemove:
		c.Bridges = deleteFunc(c.Bridges, func(b BridgeConfig) bool { return b.Name == a.Name })
	case a.Kind == KindBridge && a.Op == OpAdd:
		c.Bridges = append(c.Bridges, *a.Bridge)
	case a.Kind == KindRouter && a.Op == OpRemove:
		c.Routers = deleteFunc(c.Routers, func(r RouterConfig) bool { return r.Name == a.Name })
	case a.Kind == KindRouter && a.Op == OpAdd:
		c.Routers = append(c.Routers, *a.Router)
	case a.Kind == KindFilter:
		c.SecurityGroups, c.ACLs = a.Filter.SecurityGroups, a.Filter.ACLs
		pf := map[string]acl.PortFilter{}
		for _, p := range a.Filter.Ports {
			pf[p.Name] = p
		}
		for i := range c.Ports {
			f := pf[c.Ports[i].Name]
			c.Ports[i].SecurityGroups, c.Ports[i].PortSecurity = f.SecurityGroups, f.PortSecurity
		}
	case a.Kind == KindConntrack:
		c.Conntrack = *a.Conntrack
	case a.Kind == KindLog:
		c.Log = *a.Log
	}
}

// Startup returns a config with c's start-time settings (api, run_dir,
// dataplane, log, conntrack) and nothing else: what the daemon runs
// before it reconciles towards c.
func (c *Config) Startup() *Config {
	s := c.Clone()
	s.Bridges, s.Ports, s.Routers = nil, nil, nil
	s.SecurityGroups, s.ACLs = nil, nil
	return s
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // plain data always marshals
	}
	var out Config
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return &out
}

// Equal reports whether p and o declare the same port (a queue list and a
// queue count are different declarations even when they name the same
// queues).
func (p PortConfig) Equal(o PortConfig) bool { return reflect.DeepEqual(p, o) }

// Port returns the port named name.
func (c *Config) Port(name string) (PortConfig, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return PortConfig{}, false
}

// Bridge returns the bridge named name.
func (c *Config) Bridge(name string) (BridgeConfig, bool) {
	for _, b := range c.Bridges {
		if b.Name == name {
			return b, true
		}
	}
	return BridgeConfig{}, false
}

// Normalize sorts bridges and ports by name, so that equal configs encode
// equally.
func (c *Config) Normalize() {
	sort.SliceStable(c.Bridges, func(i, j int) bool { return c.Bridges[i].Name < c.Bridges[j].Name })
	sort.SliceStable(c.Ports, func(i, j int) bool { return c.Ports[i].Name < c.Ports[j].Name })
}

func bridgeMap(c *Config) map[string]BridgeConfig {
	m := make(map[string]BridgeConfig, len(c.Bridges))
	for _, b := range c.Bridges {
		m[b.Name] = b
	}
	return m
}

func portMap(c *Config) map[string]PortConfig {
	m := make(map[string]PortConfig, len(c.Ports))
	for _, p := range c.Ports {
		m[p.Name] = p
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func deleteFunc[T any](s []T, del func(T) bool) []T {
	out := s[:0:0]
	for _, v := range s {
		if !del(v) {
			out = append(out, v)
		}
	}
	return out
}

func routerMap(c *Config) map[string]RouterConfig {
	m := make(map[string]RouterConfig, len(c.Routers))
	for _, r := range c.Routers {
		m[r.Name] = r
	}
	return m
}
