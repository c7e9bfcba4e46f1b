// Package daemon builds a running switch from a config: bridges, ports with
// their vhost-user devices and sockets, and the status the API shows.
package daemon

import (
	"fmt"
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
}

type port struct {
	cfg    api.PortConfig
	info   *vswitch.PortInfo
	vp     *vswitch.VhostPort
	dev    *vhostuser.Device
	server *vhostuser.Server
	client *vhostuser.Client
}

// Start builds the switch described by cfg.
func Start(cfg *api.Config, log *logrus.Entry) (*Daemon, error) {
	if err := os.MkdirAll(cfg.RunDir, 0o750); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log, ports: map[string]*port{}}
	d.Switch = vswitch.New(vswitch.Options{
		Workers: cfg.Dataplane.Workers, CPUs: cfg.Dataplane.CPUs,
		Busy: cfg.Dataplane.Poll == "busy", Log: log,
	})
	for _, b := range cfg.Bridges {
		if err := d.Switch.AddBridge(b.Name, b.MACTableSize, time.Duration(b.MACAging)*time.Second); err != nil {
			d.Close()
			return nil, err
		}
	}
	for _, pc := range cfg.Ports {
		if err := d.AddPort(pc); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// AddPort creates a port and its socket.
func (d *Daemon) AddPort(pc api.PortConfig) error {
	log := d.log.WithField("port", pc.Name)
	vp := vswitch.NewVhostPort(d.Switch, pc.Queues)
	dev := vhostuser.NewDevice(vhostuser.Options{Name: pc.Name, QueuePairs: pc.Queues, Log: log}, vp)
	vp.OnFault = dev.Abort
	info, err := d.Switch.AddPort(pc.Name, pc.Type, pc.Bridge, vp)
	if err != nil {
		return err
	}
	p := &port{cfg: pc, info: info, vp: vp, dev: dev}
	switch pc.Mode {
	case api.ModeServer:
		mode, _ := api.ParseMode(pc.SocketMode)
		srv, err := vhostuser.Listen(pc.Socket, vhostuser.SocketOptions{Mode: os.FileMode(mode), UID: -1, GID: -1}, dev)
		if err != nil {
			d.Switch.RemovePort(pc.Name)
			return fmt.Errorf("port %s: %w", pc.Name, err)
		}
		p.server = srv
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
		c := p.info.Counters
		st := p.dev.Status()
		ps := api.PortStatus{
			Name: p.cfg.Name, Type: p.cfg.Type, Bridge: p.cfg.Bridge, Socket: p.cfg.Socket, Mode: p.cfg.Mode,
			QueuePairs: st.QueuePairs, MTU: st.MTU,
			RxPackets: c.RxPackets.Load(), RxBytes: c.RxBytes.Load(),
			TxPackets: c.TxPackets.Load(), TxBytes: c.TxBytes.Load(),
			Drops: c.DropMap(),
			Protocol: map[string]uint64{
				"connects": p.dev.Counters.Connects.Load(), "messages": p.dev.Counters.Messages.Load(),
				"bad_messages": p.dev.Counters.BadMessages.Load(), "refused": p.dev.Counters.Refused.Load(),
				"ring_errors": p.dev.Counters.RingErrors.Load(),
			},
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
		if p.server != nil {
			p.server.Close()
		}
		if p.client != nil {
			p.client.Close()
		}
		d.Switch.RemovePort(p.cfg.Name)
	}
	d.Switch.Close()
}
