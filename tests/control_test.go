package tests

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// ctl runs vswitchctl against sw and returns its exit code and output.
func ctl(t *testing.T, sw *testutil.Vswitchd, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(testutil.VswitchctlBinary(t), args...)
	cmd.Env = append(os.Environ(), "VSWITCH_API=unix://"+sw.API)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func mustCtl(t *testing.T, sw *testutil.Vswitchd, want int, args ...string) string {
	t.Helper()
	code, out, errs := ctl(t, sw, args...)
	if code != want {
		t.Fatalf("vswitchctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	return out + errs
}

// vswitchctl end to end: every command against a running daemon, its
// tables, its JSON and its exit codes.
func TestVswitchctl(t *testing.T) {
	testutil.RequireRoot(t)
	sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))

	out := mustCtl(t, sw, 0, "port", "list")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "vm1") || !strings.Contains(out, "waiting") {
		t.Errorf("port list:\n%s", out)
	}
	out = mustCtl(t, sw, 0, "port", "add", "vm3", "--bridge", "br0", "--socket", "vm3.sock", "--queues", "2")
	if !strings.Contains(out, "port vm3 added") {
		t.Errorf("port add: %s", out)
	}
	if _, err := os.Stat(filepath.Join(sw.Dir, "vm3.sock")); err != nil {
		t.Errorf("vm3's socket: %v", err)
	}
	mustCtl(t, sw, 4, "port", "add", "vm3", "--bridge", "br0", "--socket", "other.sock") // exists
	mustCtl(t, sw, 5, "port", "add", "vm4", "--bridge", "nope", "--socket", "vm4.sock")  // invalid
	out = mustCtl(t, sw, 5, "port", "add", "vm4", "--bridge", "br0", "--socket", "vm1.sock")
	if !strings.Contains(out, "ports[") || !strings.Contains(out, "socket") {
		t.Errorf("duplicate socket error does not name the field: %s", out)
	}
	mustCtl(t, sw, 2, "port", "add") // usage
	mustCtl(t, sw, 2, "frobnicate")  // usage

	var ps api.PortStatus
	json.Unmarshal([]byte(mustCtl(t, sw, 0, "--json", "port", "show", "vm3")), &ps)
	if ps.Name != "vm3" || ps.Config == nil || ps.Config.Queues.N != 2 || ps.State != api.StateWaiting || ps.Revision == 0 {
		t.Fatalf("port show --json: %+v", ps)
	}
	out = mustCtl(t, sw, 0, "port", "show", "vm3")
	if !strings.Contains(out, "queues offered:") || !strings.Contains(out, "state:") {
		t.Errorf("port show:\n%s", out)
	}
	mustCtl(t, sw, 3, "port", "show", "nope")
	// A stale revision is refused; the current one wins.
	mustCtl(t, sw, 4, "port", "set", "vm3", "--queues", "4", "--revision", fmt.Sprint(ps.Revision+5))
	mustCtl(t, sw, 0, "port", "set", "vm3", "--queues", "4", "--revision", fmt.Sprint(ps.Revision))
	json.Unmarshal([]byte(mustCtl(t, sw, 0, "--json", "port", "show", "vm3")), &ps)
	if ps.Config.Queues.N != 4 {
		t.Errorf("queues %d after set", ps.Config.Queues)
	}

	// Two clients PATCH vm3 with the ETag they both read: one wins, the
	// other gets 409.
	_, _, etag, _ := sw.Do("GET", "/v1/ports/vm3", "")
	codes := make(chan int, 2)
	for _, q := range []int{5, 6} {
		go func() {
			code, _, _, _ := sw.Do("PATCH", "/v1/ports/vm3", fmt.Sprintf(`{"queues":%d}`, q), "If-Match", etag)
			codes <- code
		}()
	}
	if a, b := <-codes, <-codes; a+b != 200+409 {
		t.Errorf("concurrent PATCHes with one ETag: %d and %d, want 200 and 409", a, b)
	}

	mustCtl(t, sw, 0, "bridge", "add", "br1", "--mac-aging", "60")
	out = mustCtl(t, sw, 0, "bridge", "list")
	if !strings.Contains(out, "br1") || !strings.Contains(out, "vm1,vm2,vm3") {
		t.Errorf("bridge list:\n%s", out)
	}
	mustCtl(t, sw, 4, "bridge", "del", "br0") // has ports
	mustCtl(t, sw, 0, "bridge", "del", "br1")
	mustCtl(t, sw, 3, "bridge", "del", "br1")

	out = mustCtl(t, sw, 0, "stats")
	if !strings.Contains(out, "RX_PKTS") || !strings.Contains(out, "vm3") {
		t.Errorf("stats:\n%s", out)
	}
	var stats []map[string]any
	if err := json.Unmarshal([]byte(mustCtl(t, sw, 0, "--json", "stats", "vm1")), &stats); err != nil || len(stats) != 1 {
		t.Errorf("stats --json: %v %v", stats, err)
	}

	// config get prints YAML that config apply takes back; apply changes
	// only what differs.
	y := mustCtl(t, sw, 0, "config", "get")
	if !strings.Contains(y, "ports:") || !strings.Contains(y, "# revision") {
		t.Fatalf("config get:\n%s", y)
	}
	f := filepath.Join(sw.Dir, "applied.yaml")
	os.WriteFile(f, []byte(y), 0o644)
	out = mustCtl(t, sw, 0, "config", "apply", "-f", f)
	if !strings.Contains(out, "nothing changed") {
		t.Errorf("re-applying the same config: %s", out)
	}
	os.WriteFile(f, []byte("bridges: [{name: br0}]\nports:\n  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}\n  - {name: vm5, type: vhostuser, bridge: br0, socket: vm5.sock}\n"), 0o644)
	out = mustCtl(t, sw, 0, "config", "apply", "-f", f)
	for _, want := range []string{"remove port vm2", "remove port vm3", "add port vm5"} {
		if !strings.Contains(out, want) {
			t.Errorf("config apply did not %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "vm1") {
		t.Errorf("config apply touched vm1:\n%s", out)
	}
	os.WriteFile(f, []byte("bridges: [{name: br0}]\nportz: []\n"), 0o644)
	out = mustCtl(t, sw, 5, "config", "apply", "-f", f)
	if !strings.Contains(out, "portz") {
		t.Errorf("unknown key not named: %s", out)
	}

	// ACLs and security groups: empty tables; a group a port is in stays.
	for _, args := range [][]string{{"acl", "list"}, {"sg", "list"}} {
		if out = mustCtl(t, sw, 0, args...); !strings.Contains(out, "NAME") {
			t.Errorf("%v: %s", args, out)
		}
	}
	mustCtl(t, sw, 0, "sg", "add", "web", "--rule", "direction=ingress,protocol=tcp,ports=80,remote=0.0.0.0/0")
	mustCtl(t, sw, 0, "port", "set", "vm5", "--security-groups", "web")
	if out = mustCtl(t, sw, 4, "sg", "del", "web"); !strings.Contains(out, "port vm5") {
		t.Errorf("sg del of a group in use: %s", out)
	}
	mustCtl(t, sw, 5, "acl", "add", "x", "--port", "nope", "--direction", "ingress", "--action", "deny")
	// Read-only listings: no routers here, an FDB table, unknown names.
	if out = mustCtl(t, sw, 0, "route", "list"); !strings.Contains(out, "NAME") {
		t.Errorf("route list: %s", out)
	}
	if out = mustCtl(t, sw, 0, "fdb", "show", "br0"); !strings.Contains(out, "VLAN") {
		t.Errorf("fdb show: %s", out)
	}
	mustCtl(t, sw, 3, "fdb", "show", "nope")
	mustCtl(t, sw, 3, "route", "show", "nope")
	mustCtl(t, sw, 3, "neigh", "show", "nope")
	// VLAN flags: a trunk, an access port, and a mode the config refuses.
	mustCtl(t, sw, 0, "port", "add", "vt", "--bridge", "br0", "--socket", "vt.sock", "--trunks", "10,20", "--vlan-mode", "trunk")
	if out = mustCtl(t, sw, 0, "port", "show", "vt"); !strings.Contains(out, "mode trunk, trunks 10,20") {
		t.Errorf("port show vt: %s", out)
	}
	mustCtl(t, sw, 0, "port", "add", "va", "--bridge", "br0", "--socket", "va.sock", "--tag", "10")
	if out = mustCtl(t, sw, 5, "port", "add", "vx", "--bridge", "br0", "--socket", "vx.sock", "--vlan-mode", "access"); !strings.Contains(out, "tag") {
		t.Errorf("access without a tag: %s", out)
	}
	// A live trace on a port without traffic: armed, nothing captured.
	if out = mustCtl(t, sw, 0, "trace", "--live", "vm5", "--count", "2", "--wait", "500ms"); !strings.Contains(out, "0 of 2 packets captured") {
		t.Errorf("trace --live: %s", out)
	}
	mustCtl(t, sw, 3, "trace", "--live", "nope")
	// A trace of a broadcast from vm5: flooded to the bridge's other ports.
	out = mustCtl(t, sw, 0, "trace", "--in-port", "vm5", "--eth-dst", "ff:ff:ff:ff:ff:ff", "--ipv4-src", "10.0.0.1", "--ipv4-dst", "10.0.0.2")
	if !strings.Contains(out, "flood in vlan") || !strings.Contains(out, "Datapath actions: output") {
		t.Errorf("trace: %s", out)
	}
	mustCtl(t, sw, 3, "trace", "--in-port", "nope")
	// Shell completion, and port names completed from the daemon.
	if out = mustCtl(t, sw, 0, "completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: %.200s", out)
	}
	if out = mustCtl(t, sw, 0, "__complete", "port", "show", ""); !strings.Contains(out, "vm5") {
		t.Errorf("port name completion: %s", out)
	}
	// --api wins over $VSWITCH_API; an unreachable daemon is exit 1.
	mustCtl(t, sw, 1, "--api", "unix://"+sw.Dir+"/nothing.sock", "port", "list")
	mustCtl(t, sw, 2, "--api", "ftp://x", "port", "list")

	// Metrics and the OpenAPI document are served.
	code, body, _, err := sw.Do("GET", "/metrics", "")
	if err != nil || code != 200 || !strings.Contains(string(body), `vswitch_port_rx_packets_total{bridge="br0",port="vm5"`) {
		t.Errorf("/metrics: %d %v %.300s", code, err, body)
	}
	code, body, _, _ = sw.Do("GET", "/v1/openapi.json", "")
	if code != 200 || !strings.Contains(string(body), `"openapi": "3.`) {
		t.Errorf("/v1/openapi.json: %d", code)
	}
}

// The desired state survives kill -9 at random points, including during a
// save: after each restart it is the last accepted state (or the one whose
// answer the kill cut off), never a damaged file; server sockets come back.
func TestStateSurvivesKill(t *testing.T) {
	testutil.RequireRoot(t)
	sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
	rng := mrand.New(mrand.NewSource(time.Now().UnixNano()))
	t.Logf("seed state: %s", sw.StateDir)
	var accepted api.Config
	readConfig := func() api.Config {
		code, body, _, err := sw.Do("GET", "/v1/config", "")
		if err != nil || code != 200 {
			t.Fatalf("GET /v1/config: %d %v", code, err)
		}
		var c api.Config
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	accepted = readConfig()
	next, cut, duringSave := 3, 0, 0
	for round := 0; round < 8; round++ {
		// A burst of changes; the kill lands somewhere in it: after a
		// random delay in even rounds, and as soon as a save's temporary
		// file shows up (a kill during a save) in odd ones.
		var inflight []api.Config
		killAt := time.Duration(rng.Intn(40)) * time.Millisecond
		var timer *time.Timer
		stopWatch := make(chan struct{})
		watched := make(chan bool, 1)
		if round%2 == 0 {
			timer = time.AfterFunc(killAt, func() { sw.Signal(syscall.SIGKILL) })
			watched <- false
		} else {
			go func() {
				for {
					select {
					case <-stopWatch:
						watched <- false
						return
					default:
					}
					if m, _ := filepath.Glob(filepath.Join(sw.StateDir, api.StateFile+".tmp-*")); len(m) > 0 {
						sw.Signal(syscall.SIGKILL)
						watched <- true
						return
					}
				}
			}()
		}
		for i := 0; i < 20; i++ {
			var code int
			var err error
			if rng.Intn(3) == 0 && next > 3 {
				victim := fmt.Sprintf("p%d", 3+rng.Intn(next-3))
				code, _, _, err = sw.Do("DELETE", "/v1/ports/"+victim, "")
			} else {
				body := fmt.Sprintf(`{"type":"vhostuser","bridge":"br0","socket":"p%d.sock","mode":"%s"}`, next, []string{"server", "client"}[rng.Intn(2)])
				code, _, _, err = sw.Do("PUT", fmt.Sprintf("/v1/ports/p%d", next), body)
				next++
			}
			if err != nil {
				// Cut off by the kill: this change may or may not have been saved.
				inflight = append(inflight, accepted)
				break
			}
			if code < 300 {
				accepted = readConfigOr(t, sw, accepted)
			}
		}
		if timer != nil {
			timer.Stop()
		}
		close(stopWatch)
		if <-watched {
			duringSave++
		}
		sw.Kill()
		// The state file always parses.
		b, err := os.ReadFile(filepath.Join(sw.StateDir, api.StateFile))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := api.DecodeState(b); err != nil {
			t.Fatalf("round %d: damaged state file: %v", round, err)
		}
		sw.Restart(t)
		got := readConfig()
		if !reflect.DeepEqual(got, accepted) {
			// The request the kill cut off may have been saved: then the
			// restored state has exactly one more change.
			if len(inflight) == 0 || portDiff(accepted, got) > 1 {
				t.Fatalf("round %d: restored\n%+v\nwant the last accepted\n%+v", round, got, accepted)
			}
			accepted = got
		}
		for _, p := range got.Ports {
			if p.Mode == api.ModeServer {
				if fi, err := os.Stat(p.Socket); err != nil || fi.Mode()&os.ModeSocket == 0 {
					t.Errorf("round %d: server socket %s not recreated: %v", round, p.Socket, err)
				}
			}
		}
		cut += len(inflight)
		t.Logf("round %d: killed after %v (a request cut off: %v), %d ports restored", round, killAt, len(inflight) > 0, len(got.Ports))
	}
	t.Logf("%d of 8 kills cut a request off; %d landed while a save's temporary file existed", cut, duringSave)
	// A second vswitchd on the same state directory refuses to start.
	other := exec.Command(testutil.VswitchdBinary(t), "--run-dir", t.TempDir(), "--state-dir", sw.StateDir)
	if out, err := other.CombinedOutput(); err == nil || !strings.Contains(string(out), "in use by another vswitchd") {
		t.Errorf("second vswitchd on the same state: %v %s", err, out)
	}
	// SIGHUP applies the --config file through the same reconciler.
	os.WriteFile(sw.Config, []byte(twoPortConfig("adaptive")), 0o644)
	sw.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c := readConfig(); len(c.Ports) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not apply the config file:\n%s", sw.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readConfigOr(t *testing.T, sw *testutil.Vswitchd, old api.Config) api.Config {
	code, body, _, err := sw.Do("GET", "/v1/config", "")
	if err != nil || code != 200 {
		return old // killed between the answer and this read; the answer counts
	}
	var c api.Config
	json.Unmarshal(body, &c)
	return c
}

// portDiff counts the ports that differ between two configs.
func portDiff(a, b api.Config) int {
	m := map[string]api.PortConfig{}
	for _, p := range a.Ports {
		m[p.Name] = p
	}
	n := 0
	for _, p := range b.Ports {
		if q, ok := m[p.Name]; !ok || !q.Equal(p) {
			n++
		}
		delete(m, p.Name)
	}
	return n + len(m)
}

// Two guests (fake front-ends in QEMU's server=on role) on client-mode
// ports: after kill -9 and a restart, the switch reconnects both and
// traffic flows again.
func TestClientPortsResumeAfterKill(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.ShortTempDir(t)
	cfg := `bridges: [{name: br0}]
ports:
  - {name: c1, type: vhostuser, bridge: br0, socket: c1.sock, mode: client}
  - {name: c2, type: vhostuser, bridge: br0, socket: c2.sock, mode: client}
`
	listen := func(name string) <-chan *vhostusertest.Frontend {
		ch := make(chan *vhostusertest.Frontend, 1)
		go func() {
			fe, err := vhostusertest.TryConnect(t, filepath.Join(dir, name+".sock"), virtiotest.NewGuest(t, 4<<20),
				vhostusertest.Options{Server: true, Timeout: 30 * time.Second})
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			ch <- fe
		}()
		return ch
	}
	ping := func(sw *testutil.Vswitchd, fe1, fe2 *vhostusertest.Frontend, n int) {
		t.Helper()
		sw.WaitPortState(t, "c1", api.StateRunning, 15*time.Second)
		sw.WaitPortState(t, "c2", api.StateRunning, 15*time.Second)
		fe1.PostRxBuffers(0, 64, 2048)
		fe2.PostRxBuffers(0, 64, 2048)
		for i := 0; i < n; i++ {
			fe1.SendPacket(0, ethFrame(1, 2))
			fe2.SendPacket(0, ethFrame(2, 1))
		}
		for _, fe := range []*vhostusertest.Frontend{fe1, fe2} {
			got := 0
			deadline := time.Now().Add(5 * time.Second)
			for got < n && time.Now().Before(deadline) {
				got += len(fe.Received(0))
				time.Sleep(5 * time.Millisecond)
			}
			if got != n {
				t.Fatalf("a guest received %d frames, want %d", got, n)
			}
		}
	}
	c1, c2 := listen("c1"), listen("c2")
	sw := testutil.StartVswitchd(t, dir, cfg)
	fe1, fe2 := <-c1, <-c2
	if fe1 == nil || fe2 == nil {
		t.FailNow()
	}
	ping(sw, fe1, fe2, 8)

	sw.Kill()
	fe1.Close()
	fe2.Close()
	c1, c2 = listen("c1"), listen("c2")
	// Wait for the new listeners before the restart.
	for _, n := range []string{"c1", "c2"} {
		testutil.WaitSocket(t, filepath.Join(dir, n+".sock"), 5*time.Second)
	}
	sw.Restart(t)
	fe1, fe2 = <-c1, <-c2
	if fe1 == nil || fe2 == nil {
		t.FailNow()
	}
	ping(sw, fe1, fe2, 8)
}

// An ACL changed through /v1/acls (vswitchctl acl) takes effect at once
// and restarts no port: vm1's UDP to port 5000 stops reaching vm2 and is
// counted as acl_deny on vm2, then flows again when the ACL is changed to
// match another port.
func TestACLChangeTakesEffect(t *testing.T) {
	testutil.RequireRoot(t)
	sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
	fe := map[string]*vhostusertest.Frontend{}
	for _, p := range []string{"vm1", "vm2"} {
		fe[p] = vhostusertest.Connect(t, filepath.Join(sw.Dir, p+".sock"), virtiotest.NewGuest(t, 4<<20), vhostusertest.Options{})
		sw.WaitPortState(t, p, api.StateRunning, 15*time.Second)
		fe[p].PostRxBuffers(0, 64, 2048)
	}
	// send sends n frames from vm1 to vm2's UDP port 5000 and returns how
	// many vm2 received: all of them, or none once n more acl_deny drops
	// are counted.
	const n = 8
	send := func() int {
		t.Helper()
		before := sw.MustPorts(t)["vm2"].Drops["acl_deny"]
		for i := 0; i < n; i++ {
			fe["vm1"].SendPacket(0, udpFrame(1, 2, 5000))
		}
		got := 0
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			got += len(fe["vm2"].Received(0))
			if got >= n || sw.MustPorts(t)["vm2"].Drops["acl_deny"] >= before+n {
				break
			}
		}
		return got + len(fe["vm2"].Received(0))
	}
	if got := send(); got != n {
		t.Fatalf("before the ACL vm2 received %d frames, want %d", got, n)
	}
	mustCtl(t, sw, 0, "acl", "add", "no-5000", "--port", "vm2", "--direction", "ingress", "--protocol", "udp", "--ports", "5000", "--action", "deny")
	if got := send(); got != 0 {
		t.Fatalf("with the ACL vm2 received %d frames, want none (drops %v)", got, sw.MustPorts(t)["vm2"].Drops)
	}
	var a api.ACLStatus
	json.Unmarshal([]byte(mustCtl(t, sw, 0, "--json", "acl", "show", "no-5000")), &a)
	mustCtl(t, sw, 0, "acl", "set", "no-5000", "--ports", "5001", "--revision", fmt.Sprint(a.Revision))
	if got := send(); got != n {
		t.Fatalf("after the ACL changed vm2 received %d frames, want %d", got, n)
	}
	for _, p := range []string{"vm1", "vm2"} {
		if ps := sw.MustPorts(t)[p]; ps.State != api.StateRunning {
			t.Errorf("%s is %s after the ACL changes", p, ps.State)
		}
	}
}

// udpFrame is an IPv4 UDP frame from 52:54::src (10.0.0.src) to
// 52:54::dst (10.0.0.dst) port dport, 64 bytes.
func udpFrame(src, dst byte, dport uint16) []byte {
	f := ethFrame(src, dst)
	ip := f[14:34]
	copy(ip, []byte{0x45, 0, 0, 50, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, dst})
	var sum uint32
	for i := 0; i < len(ip); i += 2 {
		sum += uint32(ip[i])<<8 | uint32(ip[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	ip[10], ip[11] = byte(^sum>>8), byte(^sum)
	copy(f[34:42], []byte{0x03, 0xe8, byte(dport >> 8), byte(dport), 0, 30, 0, 0})
	return f
}

func ethFrame(src, dst byte) []byte {
	f := make([]byte, 64)
	copy(f, []byte{0x52, 0x54, 0, 0, 0, dst, 0x52, 0x54, 0, 0, 0, src, 0x08, 0x00})
	return f
}

// Listening beyond loopback needs TLS and a token: without them vswitchd
// refuses to start; with them, vswitchctl works over https with the token
// and is refused without it.
func TestRemoteAPINeedsTLSAndToken(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.ShortTempDir(t)
	bin := testutil.VswitchdBinary(t)
	port := freePort(t)
	run := func(yaml string) (*exec.Cmd, *bytes.Buffer) {
		f := filepath.Join(dir, "cfg.yaml")
		os.WriteFile(f, []byte(yaml), 0o644)
		cmd := exec.Command(bin, "--config", f, "--run-dir", dir, "--state-dir", filepath.Join(dir, "state"))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	cmd, out := run(fmt.Sprintf("api: {listen: 'tcp://0.0.0.0:%d'}\nbridges: [{name: br0}]\n", port))
	err := cmd.Wait()
	if err == nil || !strings.Contains(out.String(), "api.listen") || !strings.Contains(out.String(), "api.tls_cert") {
		t.Fatalf("vswitchd on 0.0.0.0 without TLS: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", api.StateFile)); err == nil {
		t.Error("a refused start saved a state")
	}

	cert, key := selfSigned(t, dir)
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("0123456789abcdef-secret\n"), 0o600)
	cmd, out = run(fmt.Sprintf("api: {listen: 'tcp://0.0.0.0:%d', tls_cert: %s, tls_key: %s, token_file: %s}\nbridges: [{name: br0}]\n", port, cert, key, token))
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ctlArgs := []string{"--api", fmt.Sprintf("https://127.0.0.1:%d", port), "--cacert", cert}
	runCtl := func(args ...string) (int, string) {
		c := exec.Command(testutil.VswitchctlBinary(t), append(append([]string{}, ctlArgs...), args...)...)
		c.Env = append(os.Environ(), "VSWITCH_TOKEN=")
		b, err := c.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(b)
		}
		return 0, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, o := runCtl("--token-file", token, "bridge", "list")
		if code == 0 && strings.Contains(o, "br0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vswitchctl over https: %d %s\n%s", code, o, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, o := runCtl("bridge", "list"); code != 6 {
		t.Errorf("without the token: exit %d %s", code, o)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vswitchd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}
