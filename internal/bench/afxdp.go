package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// The AF_XDP topology (issue 6): a testpmd net_af_packet txonly generator
// inside a network namespace sends on its end of a veth pair; the switch
// under test reads the host end through AF_XDP and forwards to a vhost-user
// port whose frontend is a testpmd virtio_user rxonly sink. The point is
// the sink's receive rate. The switch forwards on CPU 0; generator and
// sink share CPU 1, the same for both switches.
const (
	VswitchdAFXDP = "vswitchd-afxdp" // vswitchd: afxdp port + vhostuser port
	DPDKAFXDP     = "dpdk-afxdp"     // testpmd io: net_af_xdp <-> net_vhost
)

// AFXDPSwitches are the switches of the AF_XDP topology.
var AFXDPSwitches = []string{VswitchdAFXDP, DPDKAFXDP}

func isAFXDP(sw string) bool { return sw == VswitchdAFXDP || sw == DPDKAFXDP }

// xdpMTU lets a 1518-byte frame (1504 bytes of L3) through the veth.
const xdpMTU = 1600

// XDPRun is one AF_XDP topology measurement.
type XDPRun struct {
	SinkMpps float64 `json:"sink_mpps"` // what reached the virtio_user sink
	// SwitchMpps is what the switch took in from its AF_XDP socket.
	SwitchMpps float64 `json:"switch_rx_mpps"`
	GenMpps    float64 `json:"gen_mpps"` // what the generator sent
	Error      string  `json:"error,omitempty"`
}

// XDPPoint is one switch at one frame size in the AF_XDP topology.
type XDPPoint struct {
	Switch string   `json:"switch"`
	Frame  int      `json:"frame"`
	Runs   []XDPRun `json:"runs"`
	Mpps   float64  `json:"sink_mpps"` // median over good runs
	Gbps   float64  `json:"gbps"`      // L2 frame bytes at the sink
	// SwitchMpps and GenMpps are the medians of the runs' switch receive
	// and generator send rates.
	SwitchMpps float64 `json:"switch_rx_mpps"`
	GenMpps    float64 `json:"gen_mpps"`
}

func (p *XDPPoint) summarize() {
	var v, sw, gen []float64
	for _, r := range p.Runs {
		if r.Error == "" {
			v = append(v, r.SinkMpps)
			sw = append(sw, r.SwitchMpps)
			gen = append(gen, r.GenMpps)
		}
	}
	p.Mpps, p.SwitchMpps, p.GenMpps = median(v), median(sw), median(gen)
	p.Gbps = p.Mpps * 1e6 * float64(p.Frame) * 8 / 1e9
}

// veth is the generator's namespace and the veth pair into it.
type veth struct {
	ns, near, far string
}

// newVeth creates namespace vsb-PID with the far end of a veth inside and
// the near end (no address, IPv6 off, so the kernel sends nothing on it)
// in ours.
func newVeth() (*veth, error) {
	v := &veth{ns: fmt.Sprintf("vsb-%d", os.Getpid()), near: fmt.Sprintf("vsb%dh", os.Getpid()), far: "eth0"}
	mtu := fmt.Sprint(xdpMTU)
	steps := [][]string{
		{"ip", "netns", "add", v.ns},
		// One queue each way: the generator sends on one, both switches read one.
		{"ip", "link", "add", v.near, "mtu", mtu, "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
			"peer", "name", v.far, "netns", v.ns, "mtu", mtu, "numtxqueues", "1", "numrxqueues", "1"},
		{"sysctl", "-qw", "net.ipv6.conf." + v.near + ".disable_ipv6=1"},
		{"ip", "netns", "exec", v.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
		{"ip", "link", "set", v.near, "up"},
		{"ip", "-n", v.ns, "link", "set", "lo", "up"},
		{"ip", "-n", v.ns, "link", "set", v.far, "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			v.close()
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return v, nil
}

// close removes the pair and the namespace; deleting either end of a veth
// deletes both.
func (v *veth) close() {
	if v == nil {
		return
	}
	exec.Command("ip", "link", "del", v.near).Run()
	exec.Command("ip", "netns", "del", v.ns).Run()
}

// benchAFXDP runs the AF_XDP topology for the switches of o that belong
// to it, alternating them run by run, and appends the points to rep.
func (o *Options) benchAFXDP(ctx context.Context, rep *Report, switches []string) error {
	v, err := newVeth()
	if err != nil {
		return fmt.Errorf("bench: AF_XDP topology: %w", err)
	}
	defer v.close()
	points := map[string]*XDPPoint{}
	for _, frame := range o.Frames {
		for _, sw := range switches {
			p := &XDPPoint{Switch: sw, Frame: frame}
			points[fmt.Sprintf("%s/%d", sw, frame)] = p
			rep.AFXDP = append(rep.AFXDP, p)
		}
	}
	defer func() {
		for _, p := range rep.AFXDP {
			p.summarize()
		}
	}()
	for _, frame := range o.Frames {
		for run := 1; run <= o.Runs; run++ {
			for _, sw := range switches {
				if err := ctx.Err(); err != nil {
					return err
				}
				p := points[fmt.Sprintf("%s/%d", sw, frame)]
				dir := filepath.Join(o.Dir, fmt.Sprintf("%s-%d-%d", sw, frame, run))
				log := o.Log.WithFields(logrus.Fields{"switch": sw, "frame": frame, "run": run})
				r, err := o.runXDP(ctx, v, sw, frame, dir)
				if err == nil && r.SinkMpps == 0 {
					err = fmt.Errorf("no traffic through %s (generator %.3f Mpps); logs in %s", sw, r.GenMpps, dir)
				}
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if o.Strict {
						return fmt.Errorf("%s %dB run %d: %w", sw, frame, run, err)
					}
					log.WithError(err).Warn("run failed; left out of the median")
					r.Error = err.Error()
				} else {
					log.WithFields(logrus.Fields{"sink_mpps": fmt.Sprintf("%.3f", r.SinkMpps),
						"gen_mpps": fmt.Sprintf("%.3f", r.GenMpps)}).Info("run")
				}
				p.Runs = append(p.Runs, r)
			}
		}
	}
	return nil
}

// runXDP starts the switch, the sink and then the generator, waits until
// the sink's stats cover the window and stops everything it started.
func (o *Options) runXDP(ctx context.Context, v *veth, sw string, frame int, dir string) (r XDPRun, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return XDPRun{}, err
	}
	sock := filepath.Join(dir, "S.sock")
	var ready func() error // the switch's AF_XDP and vhost-user ports are up
	// switchRx gives the packets the switch received from AF_XDP so far
	// (vswitchd), or the switch's own rate over the window (testpmd).
	var switchRx func() uint64
	var switchRate func(skip int) float64
	switch sw {
	case VswitchdAFXDP:
		yaml := fmt.Sprintf(`log: {level: info}
dataplane: {workers: 1, poll: busy, cpus: [0]}
bridges: [{name: br0}]
ports:
  - {name: up, type: afxdp, bridge: br0, device: %s}
  - {name: vm, type: vhostuser, bridge: br0, socket: S.sock}
`, v.near)
		vs, err := testutil.LaunchVswitchd(o.Vswitchd, dir, yaml)
		if err != nil {
			return XDPRun{}, fmt.Errorf("vswitchd did not start: %w", err)
		}
		defer vs.Stop()
		if err := waitSockets(ctx, 10*time.Second, sock); err != nil {
			return XDPRun{}, fmt.Errorf("vswitchd: %w\n%s", err, tailLines(vs.Log(), 20))
		}
		ready = func() error {
			return waitFor(ctx, 30*time.Second, "vswitchd ports up and vm running", func() bool {
				m, err := vs.Ports()
				return err == nil && m["up"].State == api.StateRunning && m["vm"].State == api.StateRunning
			})
		}
		switchRx = func() uint64 {
			m, _ := vs.Ports()
			return m["up"].RxPackets
		}
	case DPDKAFXDP:
		be, err := testutil.LaunchTestpmd(o.Testpmd, testutil.TestpmdOptions{
			Name: "dpdk-afxdp", MainLcore: 1, Dir: dir, LineBuffered: true,
			Vdevs: []string{
				"net_af_xdp0,iface=" + v.near + ",start_queue=0,queue_count=1,force_copy=1",
				"net_vhost0,iface=" + sock + ",queues=1",
			},
			Args: []string{"--nb-cores=1", "--forward-mode=io", "--total-num-mbufs=32768"},
		})
		if err != nil {
			return XDPRun{}, fmt.Errorf("testpmd net_af_xdp did not start: %w", err)
		}
		defer be.Close()
		defer be.Stop()
		if err := waitSockets(ctx, 20*time.Second, sock); err != nil {
			return XDPRun{}, fmt.Errorf("testpmd net_af_xdp: %w\n%s", err, tailLines(be.Log(), 20))
		}
		ready = func() error {
			return waitFor(ctx, 30*time.Second, "testpmd net_vhost port ready", func() bool {
				return testutil.CountLines(be.Log(), "virtio is now ready for processing") >= 1
			})
		}
		switchRate = func(skip int) float64 {
			rx, _, _ := testutil.TestpmdWindow(be.Log(), 0, skip, o.Secs)
			return rx
		}
	}
	sink, err := testutil.LaunchTestpmd(o.Testpmd, testutil.TestpmdOptions{
		Name: "sink", MainLcore: 0, Dir: dir, LineBuffered: true,
		Vdevs: []string{"net_virtio_user0,path=" + sock + ",queues=1"},
		Args:  []string{"--nb-cores=1", "--forward-mode=rxonly", "--total-num-mbufs=32768"},
	})
	if err != nil {
		return XDPRun{}, fmt.Errorf("testpmd sink did not start: %w", err)
	}
	defer sink.Close()
	if err := ready(); err != nil {
		return XDPRun{}, fmt.Errorf("%w\nsink log:\n%s", err, tailLines(sink.Log(), 20))
	}
	gen, err := testutil.LaunchTestpmd(o.Testpmd, testutil.TestpmdOptions{
		Name: "gen", MainLcore: 0, Dir: dir, Netns: v.ns, LineBuffered: true,
		Vdevs: []string{"net_af_packet0,iface=" + v.far + ",qdisc_bypass=1"},
		Args:  []string{"--nb-cores=1", "--forward-mode=txonly", fmt.Sprintf("--txpkts=%d", frame), "--total-num-mbufs=32768"},
	})
	if err != nil {
		return XDPRun{}, fmt.Errorf("testpmd net_af_packet generator did not start: %w", err)
	}
	defer gen.Close()
	// Stats come every second; warm-up blocks are skipped at about 2 s each
	// in the loop topology, so skip twice as many here.
	skip := 2 * o.Skip
	start := time.Now()
	deadline := start.Add(time.Duration(o.Secs*float64(time.Second)) + time.Duration(skip+10)*time.Second)
	var rx0 uint64
	var t0 time.Time
	defer func() {
		if switchRate != nil {
			r.SwitchMpps = switchRate(skip)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(time.Second):
		}
		if m := sink.MemFailure(); m != "" {
			return r, fmt.Errorf("sink virtio_user memory failure: %s", m)
		}
		if gen.Exited() {
			return r, fmt.Errorf("generator exited early:\n%s", tailLines(gen.Log(), 20))
		}
		if sink.Exited() {
			return r, fmt.Errorf("sink exited early:\n%s", tailLines(sink.Log(), 20))
		}
		rx, _, covered := testutil.TestpmdWindow(sink.Log(), 0, skip, o.Secs)
		_, tx, _ := testutil.TestpmdWindow(gen.Log(), 0, skip, o.Secs)
		r.SinkMpps, r.GenMpps = rx, tx
		if switchRx != nil {
			// Sampled over wall time from the end of the warm-up on.
			if n := switchRx(); t0.IsZero() && time.Since(start) >= time.Duration(skip)*time.Second {
				rx0, t0 = n, time.Now()
			} else if !t0.IsZero() && n > rx0 {
				r.SwitchMpps = float64(n-rx0) / time.Since(t0).Seconds() / 1e6
			}
		}
		if covered >= o.Secs {
			break
		}
		if time.Now().After(deadline) {
			if covered >= o.Secs*0.8 {
				return r, nil
			}
			return r, fmt.Errorf("no %.0f s of traffic at the sink within the time allowed (covered %.1f s); log %s", o.Secs, covered, sink.LogPath)
		}
	}
	gen.Stop()
	sink.Stop()
	return r, nil
}
