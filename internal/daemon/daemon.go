// Package daemon builds a running switch from a config: bridges, ports with
// their vhost-user devices and sockets, and the status the API shows.
package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/api"
	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/virtio"
)

// Daemon is a running switch.
type Daemon struct {
	Switch *vswitch.Switch
	cfg    *api.Config
	log    *logrus.Entry

	mu    sync.Mutex
	ports map[string]*port

	// running is the config that runs now: the start-time settings plus
	// every action carried out. Reconcile owns it.
	recMu   sync.Mutex
	running *api.Config
}

type port struct {
	cfg    api.PortConfig
	info   *vswitch.PortInfo
	vp     *vswitch.VhostPort
	dev    *vhostuser.Device
	server *vhostuser.Server
	client *vhostuser.Client
	xp     *vswitch.AFXDPPort // type afxdp (then vp and dev are nil)
}

// Start builds the switch described by cfg: the data plane with cfg's
// start-time settings, then bridges and ports through Reconcile.
func Start(cfg *api.Config, log *logrus.Entry) (*Daemon, error) {
	if err := makeRunDir(cfg, log); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log, ports: map[string]*port{}, running: cfg.Startup()}
	d.Switch = vswitch.New(vswitch.Options{
		Workers: cfg.Dataplane.Workers, CPUs: cfg.Dataplane.CPUs,
		Busy: cfg.Dataplane.Poll == "busy", Log: log,
	})
	// The conntrack settings are in the start-up config: set them before
	// anything makes the table, so it gets their size.
	if err := d.setConntrack(cfg.Conntrack); err != nil {
		d.Close()
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	if _, err := d.Reconcile(cfg); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Running returns a copy of the config that runs now.
func (d *Daemon) Running() *api.Config {
	d.recMu.Lock()
	defer d.recMu.Unlock()
	return d.running.Clone()
}

// Reconcile takes the running switch to target, carrying out only the
// actions api.Diff finds: a port whose config did not change keeps its
// connection and traffic. It stops at the first action that fails and
// returns what it did; the running config then says where it stopped, and
// a Reconcile back to the old config undoes the rest.
func (d *Daemon) Reconcile(target *api.Config) ([]api.Action, error) {
	d.recMu.Lock()
	defer d.recMu.Unlock()
	acts, err := api.Diff(d.running, target)
	if err != nil {
		return nil, err
	}
	var done []api.Action
	for _, a := range acts {
		if err := d.do(a); err != nil {
			return done, fmt.Errorf("%s: %w", a, err)
		}
		d.running.Apply(a)
		done = append(done, a)
		d.log.WithField("action", a.String()).Info("reconciled")
	}
	return done, nil
}

func (d *Daemon) do(a api.Action) error {
	switch {
	case a.Kind == api.KindPort && a.Op == api.OpRemove:
		return d.RemovePort(a.Name)
	case a.Kind == api.KindPort && a.Op == api.OpAdd:
		return d.AddPort(*a.Port)
	case a.Kind == api.KindBridge && a.Op == api.OpRemove:
		return d.Switch.RemoveBridge(a.Name)
	case a.Kind == api.KindBridge && a.Op == api.OpAdd:
		return d.Switch.AddBridge(a.Name, a.Bridge.MACTableSize, time.Duration(a.Bridge.MACAging)*time.Second,
			vswitch.BridgeOptions{FDBMax: a.Bridge.FDBMax, Xconnect: a.Bridge.Mode == api.BridgeXconnect})
	case a.Kind == api.KindRouter && a.Op == api.OpRemove:
		return d.Switch.RemoveRouter(a.Name)
	case a.Kind == api.KindRouter && a.Op == api.OpAdd:
		spec, err := RouterSpec(*a.Router)
		if err != nil {
			return err
		}
		return d.Switch.SetRouter(spec)
	case a.Kind == api.KindFilter:
		return d.Switch.SetFilter(a.Filter)
	case a.Kind == api.KindConntrack:
		if err := d.Switch.SetConntrack(a.Conntrack.NAT()); err != nil {
			return fmt.Errorf("conntrack.max_entries: %w; restart vswitchd to make a larger table", err)
		}
		if err := d.Switch.SetZoneLimits(zoneLimits(*a.Conntrack)); err != nil {
			return fmt.Errorf("conntrack.zone_limits: %w", err)
		}
		return nil
	case a.Kind == api.KindLog:
		SetLog(d.log.Logger, *a.Log)
		return nil
	}
	return fmt.Errorf("unknown action %s", a)
}

// SetLog applies the log settings to l.
func SetLog(l *logrus.Logger, c api.LogConfig) {
	if c.Format == "json" {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{})
	}
	lvl := logrus.InfoLevel
	if c.Level != "" {
		if v, err := logrus.ParseLevel(c.Level); err == nil {
			lvl = v
		}
	}
	l.SetLevel(lvl)
}

// RemovePort closes a port's socket (dropping its front-end) and detaches
// it from the switch; the other ports are not touched.
func (d *Daemon) RemovePort(name string) error {
	d.mu.Lock()
	p, ok := d.ports[name]
	delete(d.ports, name)
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("no port %q", name)
	}
	p.close()
	return d.Switch.RemovePort(name)
}

// close releases what the port holds outside the switch.
func (p *port) close() {
	if p.server != nil {
		p.server.Close()
	}
	if p.client != nil {
		p.client.Close()
	}
	if p.xp != nil {
		p.xp.Close() // stops the port and waits for the workers first
	}
}

// AddPort creates a port and its socket.
func (d *Daemon) AddPort(pc api.PortConfig) error {
	log := d.log.WithField("port", pc.Name)
	if pc.Type == api.TypeAFXDP {
		return d.addAFXDPPort(pc, log)
	}
	vp := vswitch.NewVhostPort(d.Switch, pc.Queues.N)
	dev := vhostuser.NewDevice(vhostuser.Options{Name: pc.Name, QueuePairs: pc.Queues.N, NoOffloads: pc.Offloads != nil && !*pc.Offloads, Log: log}, vp)
	vp.OnFault = dev.Abort
	info, err := d.Switch.AddPort(pc.Name, pc.Type, pc.Bridge, vp, portOptions(pc))
	if err != nil {
		return err
	}
	p := &port{cfg: pc, info: info, vp: vp, dev: dev}
	switch pc.Mode {
	case api.ModeServer:
		owner, group, mode := d.running.SocketPerms(pc)
		uid, gid, err := api.LookupOwner(owner, group)
		if err == nil {
			p.server, err = vhostuser.Listen(pc.Socket, vhostuser.SocketOptions{Mode: os.FileMode(mode), UID: uid, GID: gid}, dev)
		}
		if err != nil {
			d.Switch.RemovePort(pc.Name)
			return fmt.Errorf("port %s: %w", pc.Name, err)
		}
		log.WithField("socket", pc.Socket).Info("vhost-user port listening; connect a guest with: " + QEMUCommand(pc))
	case api.ModeClient:
		p.client = vhostuser.Dial(pc.Socket, dev)
		log.WithField("socket", pc.Socket).Info("vhost-user port connecting to the front-end")
	}
	d.mu.Lock()
	d.ports[pc.Name] = p
	d.mu.Unlock()
	return nil
}

// makeRunDir creates the run directory 0750, in the group that must reach
// its sockets (cfg.RunDirGroup). A directory that exists is the
// operator's: it is left as it is, with a warning if anyone may write it.
func makeRunDir(cfg *api.Config, log *logrus.Entry) error {
	if fi, err := os.Stat(cfg.RunDir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", cfg.RunDir)
		}
		if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&os.ModeSticky == 0 {
			log.WithField("run_dir", cfg.RunDir).Warn("anyone may write the run directory: another user could replace the sockets in it")
		}
		return nil
	}
	_, gid, err := api.LookupOwner("", cfg.RunDirGroup())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.RunDir, 0o750); err != nil {
		return err
	}
	// MkdirAll's mode passes through the umask; say it exactly.
	if err := os.Chmod(cfg.RunDir, 0o750); err != nil {
		return err
	}
	if gid >= 0 {
		return os.Chown(cfg.RunDir, -1, gid)
	}
	return nil
}

// QEMUCommand is a command line that plugs a guest into a server-mode port.
func QEMUCommand(pc api.PortConfig) string {
	return fmt.Sprintf("qemu-system-x86_64 -m 256M -object memory-backend-memfd,id=mem,size=256M,share=on "+
		"-numa node,memdev=mem -chardev socket,id=chr0,path=%s -netdev vhost-user,id=net0,chardev=chr0 "+
		"-device virtio-net-pci,netdev=net0 ...", pc.Socket)
}

// Ports implements api.Source.
func (d *Daemon) Ports() []api.PortStatus {
	d.mu.Lock()
	ports := make([]*port, 0, len(d.ports))
	for _, p := range d.ports {
		ports = append(ports, p)
	}
	d.mu.Unlock()
	sort.Slice(ports, func(i, j int) bool { return ports[i].cfg.Name < ports[j].cfg.Name })
	out := make([]api.PortStatus, 0, len(ports))
	for _, p := range ports {
		if p.xp != nil {
			out = append(out, afxdpStatus(p))
			continue
		}
		c := p.info.Counters
		st := p.dev.Status()
		ps := api.PortStatus{
			Name: p.cfg.Name, Type: p.cfg.Type, Bridge: p.cfg.Bridge, Socket: p.cfg.Socket, Mode: p.cfg.Mode,
			QueuePairs: st.QueuePairs, MTU: st.MTU, Error: st.Err,
			RxPackets: c.RxPackets.Load(), RxBytes: c.RxBytes.Load(),
			TxPackets: c.TxPackets.Load(), TxBytes: c.TxBytes.Load(),
			Drops: c.DropMap(),
			Protocol: map[string]uint64{
				"connects": p.dev.Counters.Connects.Load(), "messages": p.dev.Counters.Messages.Load(),
				"bad_messages": p.dev.Counters.BadMessages.Load(), "refused": p.dev.Counters.Refused.Load(),
				"ring_errors": p.dev.Counters.RingErrors.Load(),
			},
		}
		rxq, txq := p.vp.QueueCounts()
		for i := range rxq {
			ps.Protocol[fmt.Sprintf("rx_queue%d", i)] = rxq[i]
			ps.Protocol[fmt.Sprintf("tx_queue%d", i)] = txq[i]
		}
		switch {
		case st.Connected && p.vp.Running():
			ps.State = api.StateRunning
			ps.Features = virtio.FeatureNames(st.Features)
		case st.Connected:
			ps.State = api.StateConnected
			ps.Features = virtio.FeatureNames(st.Features)
		case p.client != nil:
			ps.State = api.StateConnecting
		default:
			ps.State = api.StateWaiting
		}
		out = append(out, ps)
	}
	return out
}

// Close removes every port (closing its socket) and stops the data plane.
func (d *Daemon) Close() {
	d.mu.Lock()
	ports := d.ports
	d.ports = map[string]*port{}
	d.mu.Unlock()
	for _, p := range ports {
		p.close()
		d.Switch.RemovePort(p.cfg.Name)
	}
	d.Switch.Close()
}

// addAFXDPPort gives pc.Device to AF_XDP: a socket on each queue that
// pc.Queues names (every queue when none), spread over the workers.
func (d *Daemon) addAFXDPPort(pc api.PortConfig, log *logrus.Entry) error {
	xp, err := vswitch.OpenAFXDPPort(d.Switch, vswitch.AFXDPOptions{Device: pc.Device, Queues: pc.Queues.Queues(), Mode: pc.XDPMode, Log: log})
	if err != nil {
		return fmt.Errorf("port %s: %w", pc.Name, err)
	}
	info, err := d.Switch.AddPort(pc.Name, pc.Type, pc.Bridge, xp, portOptions(pc))
	if err != nil {
		xp.Close()
		return err
	}
	d.mu.Lock()
	d.ports[pc.Name] = &port{cfg: pc, info: info, xp: xp}
	d.mu.Unlock()
	return nil
}

// afxdpStatus shows an AF_XDP port: state running, down (link down) or
// stopped (device gone); features say the XDP attach mode and whether
// the sockets are zero-copy; protocol holds link events and the kernel's
// socket counters.
func afxdpStatus(p *port) api.PortStatus {
	c := p.info.Counters
	st := p.xp.Status()
	ps := api.PortStatus{
		Name: p.cfg.Name, Type: p.cfg.Type, Bridge: p.cfg.Bridge,
		QueuePairs: len(st.Queues), MTU: st.MTU, State: api.StateRunning, Error: st.Err,
		RxPackets: c.RxPackets.Load(), RxBytes: c.RxBytes.Load(),
		TxPackets: c.TxPackets.Load(), TxBytes: c.TxBytes.Load(),
		Drops:    c.DropMap(),
		Features: []string{"xdp_" + st.Mode, "copy", "need_wakeup"},
		Protocol: map[string]uint64{
			"link_downs": st.LinkDowns, "link_ups": st.LinkUps, "tx_errors": st.TxErrors,
			"xsk_rx_dropped": st.RxDropped, "xsk_rx_ring_full": st.RxRingFull,
			"xsk_fill_ring_empty": st.RxFillEmpty, "xsk_tx_invalid": st.TxInvalid,
		},
	}
	for i, q := range st.Queues {
		ps.Protocol[fmt.Sprintf("rx_queue%d", q)] = st.QueueRx[i]
		ps.Protocol[fmt.Sprintf("tx_queue%d", q)] = st.QueueTx[i]
	}
	if st.ZeroCopy {
		ps.Features[1] = "zero_copy"
	}
	switch {
	case st.Stopped:
		ps.State = api.StateStopped
	case !st.Up:
		ps.State = api.StateDown
		if ps.Error == "" {
			ps.Error = "link of device " + st.Device + " is down"
		}
	}
	return ps
}

// portOptions is the data-plane side of a port's config.
func portOptions(pc api.PortConfig) vswitch.PortOptions {
	v := vswitch.VLANConfig{Mode: pc.VLANMode, Tag: uint16(pc.Tag)}
	for _, t := range pc.Trunks {
		v.Trunks = append(v.Trunks, uint16(t))
	}
	return vswitch.PortOptions{VLAN: v}
}

// RouterSpec turns a validated router config into the switch's form.
func RouterSpec(rc api.RouterConfig) (vswitch.RouterSpec, error) {
	spec := vswitch.RouterSpec{Name: rc.Name, NAT: rc.NAT}
	for _, ic := range rc.Interfaces {
		is := vswitch.RouterIfSpec{Name: ic.Name, Bridge: ic.Bridge, VLAN: uint16(ic.VLAN)}
		if ic.MAC != "" {
			m, err := net.ParseMAC(ic.MAC)
			if err != nil || len(m) != 6 {
				return spec, fmt.Errorf("router %s interface %s: bad mac %q", rc.Name, ic.Name, ic.MAC)
			}
			copy(is.MAC[:], m)
		}
		for _, a := range ic.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return spec, fmt.Errorf("router %s interface %s: %w", rc.Name, ic.Name, err)
			}
			is.Addrs = append(is.Addrs, p)
		}
		spec.Interfaces = append(spec.Interfaces, is)
	}
	for _, rt := range rc.Routes {
		p, err := netip.ParsePrefix(rt.Prefix)
		if err != nil {
			return spec, fmt.Errorf("router %s: %w", rc.Name, err)
		}
		via, err := netip.ParseAddr(rt.Via)
		if err != nil {
			return spec, fmt.Errorf("router %s: %w", rc.Name, err)
		}
		spec.Routes = append(spec.Routes, vswitch.RouteSpec{Prefix: p, Via: via})
	}
	return spec, nil
}

// Trace implements api.Tracer over the switch's dry run.
func (d *Daemon) Trace(inPort string, frame []byte) (*api.TraceResult, error) {
	r, err := d.Switch.Trace(inPort, frame)
	if err != nil {
		return nil, err
	}
	out := &api.TraceResult{InPort: r.InPort, Stages: []api.TraceStage{}, Outputs: []api.TraceOutput{}, Dropped: r.Dropped}
	for _, s := range r.Stages {
		out.Stages = append(out.Stages, api.TraceStage{Stage: s.Stage, Decision: s.Decision})
	}
	for _, o := range r.Outputs {
		out.Outputs = append(out.Outputs, api.TraceOutput{Port: o.Port, VLAN: int(o.VLAN), Tagged: o.Tagged})
	}
	return out, nil
}

// ArmTrace implements api.LiveTracer.
func (d *Daemon) ArmTrace(port string, n int) error { return d.Switch.ArmTrace(port, n) }

// DisarmTrace implements api.LiveTracer.
func (d *Daemon) DisarmTrace(port string) error { return d.Switch.DisarmTrace(port) }

// LiveTrace implements api.LiveTracer.
func (d *Daemon) LiveTrace(port string) (*api.LiveTrace, error) {
	r, err := d.Switch.LiveTrace(port)
	if err != nil {
		return nil, err
	}
	out := &api.LiveTrace{Port: r.Port, Armed: r.Armed, Count: r.Count, Captured: r.Captured, Since: r.Since, Records: []api.LiveTraceRecord{}}
	for _, rec := range r.Records {
		lr := api.LiveTraceRecord{Seq: rec.Seq, Time: rec.Time, Worker: rec.Worker, Queue: rec.Queue, Len: rec.Len, Headers: rec.Headers,
			Stages: []api.TraceStage{}, Outputs: []api.TraceOutput{}, MoreOutputs: rec.MoreOutputs, Dropped: rec.Dropped}
		for _, s := range rec.Stages {
			lr.Stages = append(lr.Stages, api.TraceStage{Stage: s.Stage, Decision: s.Decision})
		}
		for _, o := range rec.Outputs {
			lr.Outputs = append(lr.Outputs, api.TraceOutput{Port: o.Port, VLAN: int(o.VLAN), Tagged: o.Tagged})
		}
		out.Records = append(out.Records, lr)
	}
	return out, nil
}
