package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// OVSDPDKVswitchd is the DPDK build of ovs-vswitchd in Debian's
// openvswitch-switch-dpdk (the default alternative is the kernel one).
const OVSDPDKVswitchd = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"

// OVSOptions configure a private OVS-DPDK (PEERS.md section 3).
type OVSOptions struct {
	Dir       string // run, db and log files go here (required; keep it short: unix socket paths)
	PMDMask   string // other_config:pmd-cpu-mask, default 0x1 (one PMD thread on CPU 0)
	LcoreMask string // other_config:dpdk-lcore-mask, default 0x2
	SocketMem int    // MiB of hugepages (dpdk-socket-mem), default 512
	Vswitchd  string // ovs-vswitchd binary, default OVSDPDKVswitchd
}

// OVS is a private ovsdb-server plus a DPDK ovs-vswitchd, both children of
// this process (not detached), with their own run directory: the system
// service, if any, is not involved.
type OVS struct {
	Dir, RunDir, DBSock string
	db, vs              proc
}

// StartOVS starts a private OVS-DPDK for a test; it is stopped at cleanup.
func StartOVS(t testing.TB, o OVSOptions) *OVS {
	t.Helper()
	RequireRoot(t)
	for _, b := range []string{"ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovs-ofctl"} {
		RequireBinary(t, b)
	}
	_, err := os.Stat(OVSDPDKVswitchd)
	Require(t, err == nil, "%s not installed (apt-get install openvswitch-switch-dpdk)", OVSDPDKVswitchd)
	RequireHugepages(t, 256)
	if o.Dir == "" {
		o.Dir = ShortTempDir(t)
	}
	ovs, err := LaunchOVS(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ovs-vswitchd log tail:\n%s", tail(ovs.Log(), 40))
		}
		ovs.Close()
	})
	return ovs
}

// LaunchOVS creates a database under o.Dir, starts ovsdb-server and
// ovs-vswitchd with DPDK initialised, and waits until DPDK is up.
func LaunchOVS(o OVSOptions) (*OVS, error) {
	if o.Dir == "" {
		return nil, errors.New("ovs: no directory")
	}
	if o.PMDMask == "" {
		o.PMDMask = "0x1"
	}
	if o.LcoreMask == "" {
		o.LcoreMask = "0x2"
	}
	if o.SocketMem == 0 {
		o.SocketMem = 512
	}
	if o.Vswitchd == "" {
		o.Vswitchd = OVSDPDKVswitchd
	}
	if _, err := os.Stat(o.Vswitchd); err != nil {
		return nil, fmt.Errorf("ovs: %v (apt-get install openvswitch-switch-dpdk)", err)
	}
	v := &OVS{Dir: o.Dir, RunDir: filepath.Join(o.Dir, "run")}
	v.DBSock = filepath.Join(v.RunDir, "db.sock")
	if err := os.MkdirAll(v.RunDir, 0o755); err != nil {
		return nil, err
	}
	db := filepath.Join(o.Dir, "conf.db")
	if out, err := exec.Command("ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ovsdb-tool create: %v: %s", err, out)
	}
	if err := v.daemon(&v.db, "ovsdb-server", "ovsdb-server", db, "--remote=punix:"+v.DBSock,
		"--remote=db:Open_vSwitch,Open_vSwitch,manager_options"); err != nil {
		return nil, err
	}
	if err := v.waitFile(v.DBSock, &v.db, "ovsdb-server"); err != nil {
		v.Close()
		return nil, err
	}
	if _, err := v.Vsctl("--no-wait", "init"); err != nil {
		v.Close()
		return nil, err
	}
	if _, err := v.Vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
		"other_config:dpdk-extra=--no-pci", fmt.Sprintf("other_config:dpdk-socket-mem=%d", o.SocketMem),
		"other_config:pmd-cpu-mask="+o.PMDMask, "other_config:dpdk-lcore-mask="+o.LcoreMask); err != nil {
		v.Close()
		return nil, err
	}
	if err := v.daemon(&v.vs, "ovs-vswitchd", o.Vswitchd, "unix:"+v.DBSock); err != nil {
		v.Close()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := v.Vsctl("get", "Open_vSwitch", ".", "dpdk_initialized")
		if err == nil && strings.TrimSpace(out) == "true" {
			return v, nil
		}
		if v.vs.exited() || time.Now().After(deadline) {
			v.Close()
			return nil, fmt.Errorf("ovs-vswitchd: DPDK not initialised (exited: %v):\n%s", v.vs.exited(), tail(v.Log(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// daemon starts one OVS daemon in the foreground with its pid file, control
// socket and log under the private directories.
func (v *OVS) daemon(p *proc, name, bin string, args ...string) error {
	args = append(args, "--pidfile="+filepath.Join(v.RunDir, name+".pid"),
		"--unixctl="+filepath.Join(v.RunDir, name+".ctl"),
		"--log-file="+filepath.Join(v.Dir, name+".log"))
	cmd := exec.Command(bin, args...)
	cmd.Env = v.env()
	if err := p.startProc(cmd); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (v *OVS) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+v.RunDir, "OVS_DBDIR="+v.Dir, "OVS_LOGDIR="+v.Dir)
}

func (v *OVS) waitFile(path string, p *proc, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited at start: %v", name, p.waitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s did not appear within 10s", name, path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Vsctl runs ovs-vsctl against the private database.
func (v *OVS) Vsctl(args ...string) (string, error) {
	return v.run("ovs-vsctl", append([]string{"--timeout=20", "--db=unix:" + v.DBSock}, args...)...)
}

// Ofctl runs ovs-ofctl (bridge management sockets live in the run dir).
func (v *OVS) Ofctl(args ...string) (string, error) { return v.run("ovs-ofctl", args...) }

// Appctl runs ovs-appctl against the private ovs-vswitchd.
func (v *OVS) Appctl(args ...string) (string, error) {
	return v.run("ovs-appctl", append([]string{"-t", filepath.Join(v.RunDir, "ovs-vswitchd.ctl")}, args...)...)
}

func (v *OVS) run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = v.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// AddBridge adds a netdev (userspace datapath) bridge.
func (v *OVS) AddBridge(br string) error {
	_, err := v.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
	return err
}

// AddVhostUserClient adds a dpdkvhostuserclient port: OVS connects to
// sock, where the frontend listens (virtio_user server=1), and retries
// until it does.
func (v *OVS) AddVhostUserClient(br, port, sock string, ofport int) error {
	_, err := v.Vsctl("add-port", br, port, "--", "set", "Interface", port, "type=dpdkvhostuserclient",
		"options:vhost-server-path="+sock, fmt.Sprintf("ofport_request=%d", ofport))
	return err
}

// SetFlows replaces the bridge's OpenFlow table with flows.
func (v *OVS) SetFlows(br string, flows ...string) error {
	if _, err := v.Ofctl("del-flows", br); err != nil {
		return err
	}
	for _, f := range flows {
		if _, err := v.Ofctl("add-flow", br, f); err != nil {
			return err
		}
	}
	return nil
}

// Log returns ovs-vswitchd's log.
func (v *OVS) Log() string {
	b, _ := os.ReadFile(filepath.Join(v.Dir, "ovs-vswitchd.log"))
	return string(b)
}

// Close stops ovs-vswitchd, then ovsdb-server (SIGTERM, SIGKILL after 10 s).
func (v *OVS) Close() {
	for _, p := range []*proc{&v.vs, &v.db} {
		if p.cmd != nil && !p.exited() {
			p.stop(syscall.SIGTERM, 10*time.Second)
		}
	}
}
