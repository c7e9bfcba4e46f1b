package vswitch

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/acl"
	"github.com/vswitch/vswitch/nat"
)

// Port is a switch port's data-plane side. A worker makes one call per
// batch, never one per packet.
type Port interface {
	// QueuePairs is how many receive queues the worker loop polls.
	QueuePairs() int
	// Receive fills b with up to BatchSize packets from queue q.
	Receive(w *Worker, q int, b *Batch, c *PortCounters) int
	// Release gives the sender back the buffers of the packets in b.
	Release(w *Worker, b *Batch)
	// Transmit copies the packets b.Pkts[sel[i]] out of the port. It
	// counts what it sends and drops in c.
	Transmit(w *Worker, b *Batch, sel []uint16, c *PortCounters)
}

// PortInfo is a port as the switch holds it.
type PortInfo struct {
	ID       uint16
	Name     string
	Type     string
	Bridge   string
	Counters *PortCounters
	Port     Port
}

// Bridge is an L2 learning bridge, or a cross-connect of two ports.
type Bridge struct {
	Name    string
	FDB     *FDB
	MaxAge  uint32 // seconds an FDB entry lives without traffic
	members []uint16
	rifs    []*rif // router interfaces on the bridge's VLANs
	// Xconnect sends every packet from one member to the other, with no
	// FDB lookup, learning or filtering (VPP "l2 xconnect"). It has at
	// most 2 members.
	Xconnect bool
}

// config is the immutable snapshot workers run on; the control plane
// builds a new one and swaps it.
type config struct {
	ports   [MaxPorts]*portEntry
	bridges map[string]*Bridge
	routers map[string]*router
	filt    *filter    // compiled ACLs, security groups and port security
	ct      *nat.Table // the connection table, once filters or NAT need it
}

type portEntry struct {
	PortInfo
	bridge *Bridge
	vlan   portVLAN
	live   *liveSlot
}

// PortOptions are a port's optional settings.
type PortOptions struct {
	VLAN VLANConfig
}

// BridgeOptions are a bridge's optional settings.
type BridgeOptions struct {
	FDBMax   int  // learned entries allowed; more are refused and counted (0: no limit)
	Xconnect bool // a cross-connect of two ports (see Bridge)
}

// Options configure a switch.
type Options struct {
	Workers int   // polling workers, 1 if zero
	CPUs    []int // CPU for each worker, if pinned
	// Busy makes workers spin when idle instead of backing off to short
	// sleeps. Busy is what a benchmark wants; the default leaves CPU to
	// guests on a small host.
	Busy bool
	// Manual builds the workers but starts none; tests and benchmarks
	// drive them with PollOnce.
	Manual bool
	Log    *logrus.Entry
	// Conntrack is the connection table's capacity (0: DefaultConntrackSize).
	// The table is made when security groups or NAT first need it.
	Conntrack int
}

// Switch owns ports, bridges and workers.
type Switch struct {
	opts    Options
	log     *logrus.Entry
	cfg     atomic.Pointer[config]
	workers []*Worker
	clock   atomic.Uint32 // coarse seconds for FDB aging
	rifIDs  uint32        // last router interface id handed out (under mu)
	neigh   neighTable
	fcfg    *acl.Config       // the filter config, recompiled as ports come and go (under mu)
	zones   map[string]uint16 // each router's conntrack zone (under mu)
	ctcfg   nat.Config        // conntrack settings (under mu); Capacity 0: Options.Conntrack
	zlimits []ZoneLimit       // zones' own connection limits, by owner (under mu)
	zset    map[uint16]bool   // the zones applyZoneLimits gave a limit of their own (under mu)
	mu      sync.Mutex        // serializes control-plane changes
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New starts a switch with its workers.
func New(opts Options) *Switch {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.Log == nil {
		opts.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	s := &Switch{opts: opts, log: opts.Log, stop: make(chan struct{}), ctcfg: DefaultConntrack()}
	s.cfg.Store(&config{bridges: map[string]*Bridge{}, routers: map[string]*router{}})
	s.neigh.init()
	for i := 0; i < opts.Workers; i++ {
		w := newWorker(s, i)
		if i < len(opts.CPUs) {
			w.cpu = opts.CPUs[i]
		}
		w.solo = opts.Workers == 1
		s.workers = append(s.workers, w)
	}
	if opts.Manual {
		return s
	}
	if runtime.GOMAXPROCS(0) <= opts.Workers {
		// Keep a processor for the control plane beside the locked workers.
		runtime.GOMAXPROCS(opts.Workers + 1)
	}
	for _, w := range s.workers {
		s.wg.Add(1)
		go w.run()
	}
	s.wg.Add(1)
	go s.housekeeping()
	s.wg.Add(1)
	go s.neighLoop()
	return s
}

// Close stops the workers.
func (s *Switch) Close() {
	close(s.stop)
	s.wg.Wait()
}

// PollOnce runs one turn of every worker in the caller's goroutine (for a
// Manual switch) and reports whether any moved packets.
func (s *Switch) PollOnce() bool {
	work := false
	for _, w := range s.workers {
		w.epoch.Add(1)
		busy := w.pollOnce()
		w.epoch.Add(1)
		w.tally.polls++
		if busy {
			w.tally.busyPolls++
		}
		w.publish()
		work = busy || work
	}
	s.neigh.apply(nil)
	return work
}

func (s *Switch) housekeeping() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.clock.Add(1)
			s.neigh.expire(now)
			if ct := s.cfg.Load().ct; ct != nil {
				// Workers sweep a little per batch; this covers idle ones.
				for i := 0; i < 16; i++ {
					ct.Sweep(now)
				}
			}
			for _, b := range s.cfg.Load().bridges {
				if n := b.FDB.Age(now, b.MaxAge); n > 0 {
					s.log.WithFields(logrus.Fields{"bridge": b.Name, "entries": n}).Debug("aged out MAC entries")
				}
			}
		}
	}
}

// Now is the coarse clock FDB ages are measured in.
func (s *Switch) Now() uint32 { return s.clock.Load() }

// publish swaps in c and waits until no worker runs on the old snapshot.
func (s *Switch) publish(c *config) {
	if f, err := compileFilter(c, s.fcfg); err != nil {
		// SetFilter compiled the same config against its ports; only
		// references to ports that are gone could differ, and those are
		// left out. Keep the last good filter.
		s.log.WithError(err).Error("cannot recompile the filters; keeping the previous ones")
	} else {
		c.filt = f
	}
	c.link()
	s.applyZoneLimits(c) // before workers see a new port: its zone is limited from its first packet
	s.cfg.Store(c)
	s.Quiesce()
}

func (s *Switch) clone() *config {
	old := s.cfg.Load()
	c := &config{ports: old.ports, bridges: make(map[string]*Bridge, len(old.bridges)), routers: make(map[string]*router, len(old.routers)),
		filt: old.filt, ct: old.ct}
	for k, v := range old.bridges {
		c.bridges[k] = v
	}
	for k, v := range old.routers {
		c.routers[k] = v
	}
	return c
}

// Quiesce returns once every worker has been outside a batch at least once
// since the call: nothing it loaded before the call is still in use.
func (s *Switch) Quiesce() {
	for _, w := range s.workers {
		e := w.epoch.Load()
		if e&1 == 0 {
			continue
		}
		for spins := 0; w.epoch.Load() == e; spins++ {
			if spins < 100 {
				runtime.Gosched()
			} else {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
}

// AddBridge creates a bridge: a learning one, or a cross-connect of two
// ports with opts Xconnect.
func (s *Switch) AddBridge(name string, fdbSize int, maxAge time.Duration, opts ...BridgeOptions) error {
	var o BridgeOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clone()
	if _, ok := c.bridges[name]; ok {
		return fmt.Errorf("bridge %q exists", name)
	}
	if fdbSize <= 0 {
		fdbSize = 8192
	}
	if maxAge <= 0 {
		maxAge = 300 * time.Second
	}
	c.bridges[name] = &Bridge{Name: name, FDB: NewFDB(fdbSize, o.FDBMax), MaxAge: uint32(maxAge / time.Second), Xconnect: o.Xconnect}
	s.publish(c)
	return nil
}

// ErrNoBridge is returned for a port on a bridge that does not exist.
var ErrNoBridge = errors.New("no such bridge")

// AddPort attaches p to bridge under name and returns its counters.
func (s *Switch) AddPort(name, typ, bridge string, p Port, opts ...PortOptions) (*PortInfo, error) {
	var o PortOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	pv, err := o.VLAN.compile()
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clone()
	br, ok := c.bridges[bridge]
	if !ok {
		return nil, fmt.Errorf("port %q: %w %q", name, ErrNoBridge, bridge)
	}
	if br.Xconnect && len(br.members) >= 2 {
		return nil, fmt.Errorf("port %q: cross-connect bridge %q already has 2 ports", name, bridge)
	}
	id := -1
	for i := range c.ports {
		if c.ports[i] != nil && c.ports[i].Name == name {
			return nil, fmt.Errorf("port %q exists", name)
		}
		if c.ports[i] == nil && id < 0 {
			id = i
		}
	}
	if id < 0 {
		return nil, fmt.Errorf("port %q: all %d ports are in use", name, MaxPorts)
	}
	e := &portEntry{PortInfo: PortInfo{ID: uint16(id), Name: name, Type: typ, Bridge: bridge, Counters: &PortCounters{}, Port: p}, vlan: pv, live: &liveSlot{}}
	nb := *br
	nb.members = append(append([]uint16(nil), br.members...), uint16(id))
	e.bridge = &nb
	c.bridges[bridge] = &nb
	c.ports[id] = e
	relinkBridge(c, &nb)
	s.publish(c)
	return &e.PortInfo, nil
}

// relinkBridge points every member of b at the new bridge value.
func relinkBridge(c *config, b *Bridge) {
	for _, id := range b.members {
		pe := *c.ports[id]
		pe.bridge = b
		c.ports[id] = &pe
	}
}

// RemovePort detaches a port; once it returns no worker touches it.
func (s *Switch) RemovePort(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clone()
	for i, e := range c.ports {
		if e == nil || e.Name != name {
			continue
		}
		c.ports[i] = nil
		nb := *e.bridge
		nb.members = nil
		for _, m := range e.bridge.members {
			if m != e.ID {
				nb.members = append(nb.members, m)
			}
		}
		c.bridges[nb.Name] = &nb
		relinkBridge(c, &nb)
		s.publish(c)
		nb.FDB.FlushPort(e.ID)
		s.flushPortZone(c, e)
		return nil
	}
	return fmt.Errorf("no port %q", name)
}

// Ports lists the ports by name.
func (s *Switch) Ports() []PortInfo {
	c := s.cfg.Load()
	var out []PortInfo
	for _, e := range c.ports {
		if e != nil {
			out = append(out, e.PortInfo)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Bridges lists the bridges by name.
func (s *Switch) Bridges() []*Bridge {
	c := s.cfg.Load()
	var out []*Bridge
	for _, b := range c.bridges {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RemoveBridge deletes a bridge that has no ports left.
func (s *Switch) RemoveBridge(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clone()
	b, ok := c.bridges[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrNoBridge, name)
	}
	if len(b.members) > 0 {
		return fmt.Errorf("bridge %q still has %d ports", name, len(b.members))
	}
	delete(c.bridges, name)
	s.publish(c)
	return nil
}

// conntrack returns the connection table, making it on first use (under
// s.mu).
func (s *Switch) conntrack(c *config) (*nat.Table, error) {
	if c.ct != nil {
		return c.ct, nil
	}
	cfg := s.ctcfg
	if cfg.Capacity <= 0 {
		cfg.Capacity = s.opts.Conntrack
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultConntrackSize
	}
	t, err := nat.New(cfg)
	if err != nil {
		return nil, err
	}
	c.ct = t
	return t, nil
}

// SetFilter replaces the security groups, ACLs and the ports' filter
// settings. The compiled snapshot is swapped in between batches; ports
// keep running. Entries for ports the switch does not have yet apply
// once they are added.
func (s *Switch) SetFilter(fc *acl.Config) error {
	if err := acl.Validate(fc); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clone()
	f, err := compileFilter(c, fc)
	if err != nil {
		return err
	}
	if f.stateful() || hasGroups(fc) {
		if _, err := s.conntrack(c); err != nil {
			return err
		}
	}
	s.fcfg = fc
	s.publish(c)
	return nil
}

func hasGroups(fc *acl.Config) bool {
	for _, p := range fc.Ports {
		if len(p.SecurityGroups) > 0 {
			return true
		}
	}
	return false
}

// Conntrack is the connection table (nil until filters or NAT need one).
func (s *Switch) Conntrack() *nat.Table { return s.cfg.Load().ct }
