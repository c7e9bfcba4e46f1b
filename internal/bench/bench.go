// Package bench is the peer benchmark behind cmd/vswitch-bench: the
// learned-unicast loop of PEERS.md section 8 through vswitchd, OVS-DPDK and
// testpmd's vhost backend, side by side.
//
// The switch under test forwards on CPU 0. One testpmd frontend on CPU 1
// owns both virtio_user ports, forwards in mac mode with crossing
// --eth-peer addresses (so a learning switch sees each MAC on one port only)
// and primes the loop with --tx-first. Runs alternate between the switches;
// a point is the median of the runs. The routed and stateful scenarios
// (scenarios.go) use the same layout with other frontend modes.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// Switches under test, in the order runs alternate through them.
const (
	Vswitchd   = "vswitchd"    // vswitchd L2 learning bridge
	VswitchdXC = "vswitchd-xc" // vswitchd cross-connect bridge
	OVSNormal  = "ovs-normal"  // OVS-DPDK, actions=NORMAL
	OVSXC      = "ovs-xc"      // OVS-DPDK, in_port cross-connect flows
	Testpmd    = "testpmd"     // testpmd net_vhost io forward
)

// LoopSwitches are the switches of the two-port layout: the
// learned-unicast loop's and the routed and stateful scenarios'
// (scenarios.go). The OVS-DPDK ones run back to back, so one OVS serves a
// round: it takes seconds to start.
var LoopSwitches = []string{Vswitchd, VswitchdXC, VswitchdRouted, VswitchdSG, Testpmd, OVSNormal, OVSXC, OVSRouted, OVSCT}

// AllSwitches lists the switches a benchmark runs by default: the loop's,
// then the AF_XDP topology's (afxdp.go), which run after the loop.
var AllSwitches = append(slices.Clone(LoopSwitches), AFXDPSwitches...)

// KnownSwitches are AllSwitches and the references run only on request
// (TestpmdGen).
var KnownSwitches = append(slices.Clone(AllSwitches), TestpmdGen)

// Rings.
const (
	Split  = "split"
	Packed = "packed"
)

const (
	macA = "02:00:00:00:00:01"
	macB = "02:00:00:00:00:02"
)

// Options configure a benchmark.
type Options struct {
	Switches []string
	Frames   []int    // Ethernet frame sizes without FCS
	Rings    []string // split, packed
	Runs     int      // runs per switch and point
	Secs     float64  // measured seconds per run
	Skip     int      // testpmd stats blocks (about 2 s each) skipped as warm-up
	Dir      string   // scratch directory (sockets, logs); keep it short
	Vswitchd string   // vswitchd binary
	Testpmd  string   // dpdk-testpmd binary
	// OVSSocketMem is OVS's dpdk-socket-mem in MiB.
	OVSSocketMem int
	// Strict stops at the first run that fails or passes no traffic
	// (the smoke test); otherwise failed runs are logged and left out.
	Strict bool
	Log    *logrus.Entry
}

// Run is one measurement: the frontend's receive rate on each port.
type Run struct {
	Port0Mpps float64 `json:"port0_mpps"` // B -> A
	Port1Mpps float64 `json:"port1_mpps"` // A -> B
	// vswitchd's own view of the run (GET /v1/workers, the whole run):
	// busy nanoseconds per packet and packets per non-empty receive.
	NsPerPkt float64 `json:"switch_ns_per_packet,omitempty"`
	AvgBatch float64 `json:"switch_avg_batch,omitempty"`
	Error    string  `json:"error,omitempty"`
	// Check is what the run's path check saw (the routed and stateful
	// scenarios): the packets really were routed, or tracked.
	Check string `json:"check,omitempty"`
}

// Point is one switch at one frame size and ring layout.
type Point struct {
	Switch string `json:"switch"`
	// Traffic says what the frontend sends and what the switch does.
	Traffic string  `json:"traffic"`
	Ring    string  `json:"ring"`
	Frame   int     `json:"frame"`
	Runs    []Run   `json:"runs"`
	Mpps    float64 `json:"mpps_per_direction"` // median over good runs
	Gbps    float64 `json:"gbps"`               // both directions, L2 frame bytes
}

// Report is a whole benchmark.
type Report struct {
	Started  time.Time `json:"started"`
	Cores    int       `json:"cores"`
	Secs     float64   `json:"secs"`
	RunCount int       `json:"runs"`
	Points   []*Point  `json:"points"`
	// AFXDP are the AF_XDP topology's points (afxdp.go).
	AFXDP []*XDPPoint `json:"afxdp,omitempty"`
}

// Bench runs o and returns the report; it stops between runs when ctx is
// done and always stops every peer it started.
func Bench(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	huge := snapshotHugepages()
	defer huge.sweep(o.Log)
	rep := &Report{Started: time.Now(), Cores: numCPU(), Secs: o.Secs, RunCount: o.Runs}
	var loop, xdp []string
	for _, sw := range o.Switches {
		if isAFXDP(sw) {
			xdp = append(xdp, sw)
		} else {
			loop = append(loop, sw)
		}
	}
	if err := o.benchLoop(ctx, rep, loop); err != nil || len(xdp) == 0 {
		return rep, err
	}
	return rep, o.benchAFXDP(ctx, rep, xdp)
}

// benchLoop runs the learned-unicast loop for switches.
func (o *Options) benchLoop(ctx context.Context, rep *Report, switches []string) error {
	if len(switches) == 0 {
		return nil
	}
	points := map[string]*Point{}
	for _, ring := range o.Rings {
		for _, frame := range o.Frames {
			for _, sw := range switches {
				p := &Point{Switch: sw, Ring: ring, Frame: frame, Traffic: Traffic(sw)}
				points[p.key()] = p
				rep.Points = append(rep.Points, p)
			}
		}
	}
	var ovs *ovsPeer // kept across consecutive OVS runs of a round
	defer func() { ovs.close() }()
	defer func() { // also on an interrupt: the runs so far make a table
		for _, p := range rep.Points {
			p.summarize()
		}
	}()
	for _, ring := range o.Rings {
		for _, frame := range o.Frames {
			for run := 1; run <= o.Runs; run++ {
				for _, sw := range switches {
					if err := ctx.Err(); err != nil {
						return err
					}
					if !isOVS(sw) {
						ovs.close()
						ovs = nil
					}
					p := points[(&Point{Switch: sw, Ring: ring, Frame: frame}).key()]
					dir := filepath.Join(o.Dir, fmt.Sprintf("%s-%s-%d-%d", sw, ring, frame, run))
					log := o.Log.WithFields(logrus.Fields{"switch": sw, "ring": ring, "frame": frame, "run": run})
					var r Run
					var err error
					// A loop direction dies when its --tx-first burst reaches
					// the switch before the other port is up (seen with OVS's
					// reconnecting client ports): try once more, from scratch.
					for attempt := 1; attempt <= 2; attempt++ {
						r, err = o.runOne(ctx, sw, ring, frame, fmt.Sprintf("%s.%d", dir, attempt), &ovs)
						if err == nil && (r.Port0Mpps == 0 || r.Port1Mpps == 0) {
							err = fmt.Errorf("no traffic through %s (frontend rx %.3f/%.3f Mpps); logs in %s.%d", sw, r.Port0Mpps, r.Port1Mpps, dir, attempt)
						}
						if err == nil || ctx.Err() != nil {
							break
						}
						log.WithError(err).WithField("attempt", attempt).Warn("run failed")
						ovs.close()
						ovs = nil
					}
					if err != nil {
						if ctx.Err() != nil {
							return ctx.Err()
						}
						if o.Strict {
							return fmt.Errorf("%s %s %dB run %d: %w", sw, ring, frame, run, err)
						}
						log.WithError(err).Warn("run failed; left out of the median")
						r.Error = err.Error()
					} else {
						f := logrus.Fields{"port0_mpps": fmt.Sprintf("%.3f", r.Port0Mpps), "port1_mpps": fmt.Sprintf("%.3f", r.Port1Mpps)}
						if r.Check != "" {
							f["check"] = r.Check
						}
						log.WithFields(f).Info("run")
					}
					p.Runs = append(p.Runs, r)
				}
			}
		}
	}
	return nil
}

func (o *Options) check() error {
	if o.Log == nil {
		o.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if o.Runs < 1 || o.Secs <= 0 || len(o.Frames) == 0 || len(o.Rings) == 0 || len(o.Switches) == 0 {
		return errors.New("bench: need runs >= 1, secs > 0 and at least one frame size, ring and switch")
	}
	for _, s := range o.Switches {
		if !slices.Contains(KnownSwitches, s) {
			return fmt.Errorf("bench: unknown switch %q (known: %s)", s, strings.Join(KnownSwitches, ", "))
		}
	}
	var uniq []string // a switch named twice would share one point
	for _, s := range o.Switches {
		if !slices.Contains(uniq, s) {
			uniq = append(uniq, s)
		}
	}
	o.Switches = uniq
	for _, r := range o.Rings {
		if r != Split && r != Packed {
			return fmt.Errorf("bench: unknown ring %q (split or packed)", r)
		}
	}
	for _, f := range o.Frames {
		if f < 64 || f > 1518 {
			return fmt.Errorf("bench: frame size %d is not in 64..1518", f)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("bench: must run as root (hugepages, pinned busy-polling peers)")
	}
	if o.Testpmd == "" {
		return errors.New("bench: dpdk-testpmd not found (apt-get install dpdk-dev, or scripts/install-deps.sh)")
	}
	needOVS, needVS := false, false
	for _, s := range o.Switches {
		needOVS = needOVS || isOVS(s)
		needVS = needVS || isVswitchd(s) || s == VswitchdAFXDP
		if isAFXDP(s) {
			if _, err := exec.LookPath("ip"); err != nil {
				return errors.New("bench: the AF_XDP topology needs ip (iproute2)")
			}
		}
	}
	if needVS && o.Vswitchd == "" {
		return errors.New("bench: no vswitchd binary")
	}
	if needOVS {
		if _, err := os.Stat(testutil.OVSDPDKVswitchd); err != nil {
			return fmt.Errorf("bench: OVS-DPDK is not installed (%v); run scripts/install-deps.sh", err)
		}
		for _, b := range []string{"ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovs-ofctl"} {
			if _, err := exec.LookPath(b); err != nil {
				return fmt.Errorf("bench: %s not found; run scripts/install-deps.sh", b)
			}
		}
	}
	if o.Skip < 0 {
		o.Skip = 0
	}
	if o.OVSSocketMem == 0 {
		o.OVSSocketMem = 512
	}
	// Frontend and backend take -m 256 each (the AF_XDP topology three
	// testpmds); OVS its socket memory.
	want := 3 * 128
	if needOVS {
		want = 128 + o.OVSSocketMem/2
	}
	if free := testutil.FreeHugepages(); free < want {
		return fmt.Errorf("bench: %d free 2 MiB hugepages, need %d (scripts/install-deps.sh reserves them)", free, want)
	}
	return os.MkdirAll(o.Dir, 0o755)
}

func isOVS(sw string) bool {
	return sw == OVSNormal || sw == OVSXC || sw == OVSRouted || sw == OVSCT
}

// isVswitchd says sw is vswitchd in the two-port layout.
func isVswitchd(sw string) bool {
	return sw == Vswitchd || sw == VswitchdXC || sw == VswitchdRouted || sw == VswitchdSG
}

func (p *Point) key() string { return fmt.Sprintf("%s/%s/%d", p.Switch, p.Ring, p.Frame) }

// summarize sets the median per-direction rate over the good runs.
func (p *Point) summarize() {
	var v []float64
	for _, r := range p.Runs {
		if r.Error == "" {
			v = append(v, (r.Port0Mpps+r.Port1Mpps)/2)
		}
	}
	p.Mpps = median(v)
	p.Gbps = 2 * p.Mpps * 1e6 * float64(p.Frame) * 8 / 1e9
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// runOne starts the switch (or reuses the running OVS), runs the frontend
// for one window and stops what it started.
func (o *Options) runOne(ctx context.Context, sw, ring string, frame int, dir string, ovs **ovsPeer) (Run, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Run{}, err
	}
	sockA, sockB := filepath.Join(dir, "A.sock"), filepath.Join(dir, "B.sock")
	server := false                            // the frontend listens (OVS connects as dpdkvhostuserclient)
	var ready func() error                     // waits until the switch has both ports up
	var verify func() (string, error)          // checks the path while the traffic runs
	var worker func() (api.WorkerStatus, bool) // vswitchd's worker counters
	switch sw {
	case Vswitchd, VswitchdXC, VswitchdRouted, VswitchdSG:
		v, err := testutil.LaunchVswitchd(o.Vswitchd, dir, vswitchdYAML(sw))
		if err != nil {
			return Run{}, fmt.Errorf("vswitchd did not start: %w", err)
		}
		defer v.Stop()
		if err := waitSockets(ctx, 10*time.Second, sockA, sockB); err != nil {
			return Run{}, fmt.Errorf("vswitchd: %w\n%s", err, tailLines(v.Log(), 20))
		}
		worker = func() (api.WorkerStatus, bool) {
			var ws []api.WorkerStatus
			code, body, _, err := v.Do("GET", "/v1/workers", "")
			if err != nil || code != 200 || json.Unmarshal(body, &ws) != nil || len(ws) != 1 {
				return api.WorkerStatus{}, false
			}
			return ws[0], true
		}
		ready = func() error {
			return waitFor(ctx, 30*time.Second, "vswitchd ports vm1 and vm2 running", func() bool {
				m, err := v.Ports()
				return err == nil && m["vm1"].State == api.StateRunning && m["vm2"].State == api.StateRunning
			})
		}
		if sw == VswitchdRouted || sw == VswitchdSG {
			verify = func() (string, error) { return verifyVswitchd(sw, v) }
		}
	case Testpmd, TestpmdGen:
		be, err := testutil.LaunchTestpmd(o.Testpmd, testutil.TestpmdOptions{
			Name: "backend", MainLcore: 1, Dir: dir,
			Vdevs: []string{"net_vhost0,iface=" + sockA + ",queues=1", "net_vhost1,iface=" + sockB + ",queues=1"},
			Args:  []string{"--nb-cores=1", "--forward-mode=io", "--total-num-mbufs=32768"},
		})
		if err != nil {
			return Run{}, fmt.Errorf("testpmd net_vhost backend did not start: %w", err)
		}
		defer be.Close()
		defer be.Stop()
		if err := waitSockets(ctx, 20*time.Second, sockA, sockB); err != nil {
			return Run{}, fmt.Errorf("testpmd net_vhost backend: %w\n%s", err, tailLines(be.Log(), 20))
		}
		ready = func() error {
			return waitFor(ctx, 30*time.Second, "testpmd net_vhost ports ready", func() bool {
				return testutil.CountLines(be.Log(), "virtio is now ready for processing") >= 2
			})
		}
	case OVSNormal, OVSXC, OVSRouted, OVSCT:
		server = true
		// OVS keeps its ports across runs: they point at fixed socket names
		// and reconnect when the next frontend listens.
		sockA, sockB = filepath.Join(o.Dir, "ovs-A.sock"), filepath.Join(o.Dir, "ovs-B.sock")
		if *ovs == nil {
			p, err := startOVS(o, sockA, sockB)
			if err != nil {
				return Run{}, fmt.Errorf("OVS-DPDK did not start: %w", err)
			}
			*ovs = p
		}
		if err := (*ovs).SetFlows("br0", ovsFlows(sw)...); err != nil {
			return Run{}, err
		}
		if sw == OVSCT { // each run starts with no connections, as vswitchd does
			if _, err := (*ovs).Appctl("dpctl/flush-conntrack"); err != nil {
				return Run{}, err
			}
		}
		os.Remove(sockA) // the frontend binds them again
		os.Remove(sockB)
		peer := *ovs
		if sw == OVSRouted || sw == OVSCT {
			verify = func() (string, error) { return verifyOVS(sw, peer) }
		}
		ready = func() error {
			return waitFor(ctx, 30*time.Second, "OVS ports vu0 and vu1 up", func() bool {
				for _, port := range []string{"vu0", "vu1"} {
					out, err := peer.Vsctl("get", "Interface", port, "link_state")
					if err != nil || strings.TrimSpace(out) != "up" {
						return false
					}
				}
				return true
			})
		}
	}
	var before api.WorkerStatus
	if worker != nil {
		before, _ = worker()
	}
	r, err := o.frontend(ctx, dir, sockA, sockB, ring, frame, frontendKind(sw), server, ready, verify)
	if worker != nil {
		if after, ok := worker(); ok {
			d := after.Sub(before)
			r.NsPerPkt, r.AvgBatch = d.NsPerPkt, d.AvgBatch
			o.Log.WithFields(logrus.Fields{"ns_per_packet": fmt.Sprintf("%.1f", d.NsPerPkt), "avg_batch": fmt.Sprintf("%.1f", d.AvgBatch),
				"busy_pct": fmt.Sprintf("%.1f", d.BusyPct)}).Info("vswitchd worker over the run")
		}
	}
	return r, err
}

// waitFor polls cond every 100 ms.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// frontend runs the testpmd frontend of kind on CPU 1 until the window is
// covered and returns its receive rates. It runs interactively: the loop is
// primed (start tx_first) only once ready says the switch has both ports up,
// because a burst sent before that is lost and its direction never starts;
// "show port stats all" every 2 s then gives the blocks --stats-period would.
// verify, if not nil, checks the switch's path after the window, while the
// traffic still runs; its failure fails the run.
func (o *Options) frontend(ctx context.Context, dir, sockA, sockB, ring string, frame int, kind feKind, server bool,
	ready func() error, verify func() (string, error)) (Run, error) {
	extra := ""
	if server {
		extra += ",server=1"
	}
	if ring == Packed {
		extra += ",packed_vq=1"
	}
	vdevs, args, start, err := frontendArgs(kind, dir, frame)
	if err != nil {
		return Run{}, err
	}
	fe, err := testutil.LaunchTestpmd(o.Testpmd, testutil.TestpmdOptions{
		Name: "frontend", MainLcore: 0, Dir: dir, Interactive: true,
		Vdevs: append([]string{
			"net_virtio_user0,path=" + sockA + ",queues=1,mac=" + macA + extra,
			"net_virtio_user1,path=" + sockB + ",queues=1,mac=" + macB + extra,
		}, vdevs...),
		Args: args,
	})
	if err != nil {
		return Run{}, fmt.Errorf("testpmd frontend did not start: %w", err)
	}
	defer fe.Close()
	if err := ready(); err != nil {
		return Run{}, fmt.Errorf("%w\nfrontend log:\n%s", err, tailLines(fe.Log(), 20))
	}
	if err := fe.Send(start); err != nil {
		return Run{}, err
	}
	deadline := time.Now().Add(time.Duration(o.Secs*float64(time.Second)) + time.Duration(o.Skip+4)*3*time.Second + 10*time.Second)
	var r Run
	for {
		select {
		case <-ctx.Done():
			fe.Stop()
			return r, ctx.Err()
		case <-time.After(2 * time.Second):
		}
		if m := fe.MemFailure(); m != "" {
			return r, fmt.Errorf("frontend virtio_user memory failure: %s", m)
		}
		if fe.Exited() {
			return r, fmt.Errorf("frontend exited early:\n%s", tailLines(fe.Log(), 20))
		}
		if err := fe.Send("show port stats all"); err != nil {
			return r, err
		}
		time.Sleep(100 * time.Millisecond) // the answer reaches the log
		log := fe.Log()
		rx0, _, c0 := testutil.TestpmdWindow(log, 0, o.Skip, o.Secs)
		rx1, _, c1 := testutil.TestpmdWindow(log, 1, o.Skip, o.Secs)
		r.Port0Mpps, r.Port1Mpps = rx0, rx1
		if c0 >= o.Secs && c1 >= o.Secs {
			break
		}
		if time.Now().After(deadline) {
			// On a loaded machine testpmd answers late; most of the window
			// is still a measurement.
			if c0 >= o.Secs*0.8 && c1 >= o.Secs*0.8 {
				o.Log.WithFields(logrus.Fields{"covered0": c0, "covered1": c1}).Info("window cut short by late testpmd stats")
				break
			}
			fe.Stop()
			return r, fmt.Errorf("no %.0f s of traffic within the time allowed (covered %.1f/%.1f s); log %s", o.Secs, c0, c1, fe.LogPath)
		}
	}
	if verify != nil {
		check, err := verify()
		if err != nil {
			fe.Stop()
			return r, fmt.Errorf("path check: %w", err)
		}
		r.Check = check
	}
	fe.Send("stop")
	fe.Send("quit")
	if _, err := fe.Stop(); err != nil {
		o.Log.WithError(err).Debug("frontend stop")
	}
	return r, nil
}

func waitSockets(ctx context.Context, timeout time.Duration, paths ...string) error {
	deadline := time.Now().Add(timeout)
	for _, p := range paths {
		for {
			if st, err := os.Stat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("socket %s did not appear within %v", p, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ovsPeer is a private OVS-DPDK with br0 and two dpdkvhostuserclient
// ports (ofport 1 -> A, 2 -> B).
type ovsPeer struct{ *testutil.OVS }

func startOVS(o *Options, sockA, sockB string) (*ovsPeer, error) {
	v, err := testutil.LaunchOVS(testutil.OVSOptions{Dir: filepath.Join(o.Dir, "ovs"), SocketMem: o.OVSSocketMem})
	if err != nil {
		return nil, err
	}
	p := &ovsPeer{v}
	err = v.AddBridge("br0")
	if err == nil {
		err = v.AddVhostUserClient("br0", "vu0", sockA, 1)
	}
	if err == nil {
		err = v.AddVhostUserClient("br0", "vu1", sockB, 2)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *ovsPeer) close() {
	if p == nil {
		return
	}
	p.Close()
	os.RemoveAll(p.Dir)
}
