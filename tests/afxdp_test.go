package tests

import (
	"crypto/md5"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/afxdp/afxdptest"
	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// TestAFXDPConfig: afxdp ports are validated with the rest of the config.
func TestAFXDPConfig(t *testing.T) {
	good := `bridges: [{name: br0}]
ports:
  - {name: up0, type: afxdp, bridge: br0, device: eth1}
  - {name: up1, type: afxdp, bridge: br0, device: eth2, queues: 2, xdp_mode: generic}
  - {name: up2, type: afxdp, bridge: br0, device: eth3, queues: [1, 3]}
`
	c, err := api.Load([]byte(good), "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Ports[0]; !p.Queues.IsZero() || p.Queues.Queues() != nil || p.Mode != "" {
		t.Errorf("afxdp defaults: queues %v (want none: all), mode %q (want none)", p.Queues, p.Mode)
	}
	if q := c.Ports[1].Queues.Queues(); !slices.Equal(q, []int{0, 1}) {
		t.Errorf("queues: 2 names %v, want [0 1]", q)
	}
	if q := c.Ports[2].Queues.Queues(); !slices.Equal(q, []int{1, 3}) {
		t.Errorf("queues: [1, 3] names %v", q)
	}
	for _, tc := range []struct{ port, want string }{
		{`{name: p, type: afxdp, bridge: br0}`, "ports[0].device: an afxdp port needs a device"},
		{`{name: p, type: afxdp, bridge: br0, device: "a/b"}`, "ports[0].device"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, queues: -1}`, "ports[0].queues"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, queues: []}`, "ports[0].queues: an empty list"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, queues: [0, 0]}`, "ports[0].queues[1]: queue 0 is listed twice"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, queues: [256]}`, "ports[0].queues[0]: queue id 256"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, queues: [x]}`, "queues"},
		{`{name: p, type: vhostuser, bridge: br0, socket: a, queues: [0, 1]}`, "ports[0].queues: a vhostuser port takes a number"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, xdp_mode: offload}`, "ports[0].xdp_mode"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, socket: a.sock}`, "ports[0].socket"},
		{`{name: p, type: afxdp, bridge: br0, device: eth1}, {name: q, type: afxdp, bridge: br0, device: eth1}`, "ports[1].device: eth1 is also port \"p\""},
		{`{name: p, type: afxdp, bridge: br0, device: eth1, devices: x}`, "devices"},
	} {
		_, err := api.Load([]byte("bridges: [{name: br0}]\nports: ["+tc.port+"]\n"), "/tmp/x")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.port, err, tc.want)
		}
	}
}

// forgetState removes vswitchd's saved state at the end of the test if it
// names dev: the state outlives the namespaces and veths of this test.
// (StartVswitchd does not pass --state-dir yet, so runs share
// /var/lib/vswitch.)
func forgetState(t *testing.T, dev string) {
	t.Cleanup(func() {
		const f = "/var/lib/vswitch/state.json"
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), `"`+dev+`"`) {
			os.Remove(f)
		}
	})
}

func afxdpPrereqs(t *testing.T) { afxdptest.Require(t) }

func xdpAttached(t *testing.T, dev string) bool {
	out, err := exec.Command("ip", "-d", "link", "show", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show %s: %v %s", dev, err, out)
	}
	return strings.Contains(string(out), "prog/xdp")
}

func waitState(t *testing.T, sw *testutil.Vswitchd, port, state string) api.PortStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var p api.PortStatus
	for time.Now().Before(deadline) {
		p = sw.MustPorts(t)[port]
		if p.State == state {
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("port %s: state %q, want %q", port, p.State, state)
	return p
}

// TestAFXDPVswitchd runs vswitchd with three AF_XDP ports on two-queue
// veths into three namespace hosts: ping and 10 MiB of TCP each way; one
// link down and up and another device deleted while traffic flows; a
// crash (SIGKILL) and a restart; and on SIGTERM the XDP programs are gone.
func TestAFXDPVswitchd(t *testing.T) {
	afxdpPrereqs(t)
	a := afxdptest.NewHost(t, "10.79.0.1/24", 2)
	b := afxdptest.NewHost(t, "10.79.0.2/24", 2)
	c := afxdptest.NewHost(t, "10.79.0.3/24", 1)
	cfg := fmt.Sprintf(`dataplane: {workers: 2}
bridges: [{name: br0}]
ports:
  - {name: xa, type: afxdp, bridge: br0, device: %s, queues: [0, 1]}
  - {name: xb, type: afxdp, bridge: br0, device: %s}
  - {name: xc, type: afxdp, bridge: br0, device: %s, queues: 1}
`, a.Near, b.Near, c.Near)
	dir := testutil.ShortTempDir(t)
	forgetState(t, a.Near)
	sw := testutil.StartVswitchd(t, dir, cfg)
	ports := sw.MustPorts(t)
	for name, q := range map[string]int{"xa": 2, "xb": 2, "xc": 1} {
		p := ports[name]
		t.Logf("%s: state %s features %v queues %d mtu %d", name, p.State, p.Features, p.QueuePairs, p.MTU)
		if p.State != api.StateRunning || p.QueuePairs != q || !contains(p.Features, "xdp_native") || !contains(p.Features, "copy") {
			t.Errorf("%s: %+v", name, p)
		}
	}
	a.Ping(t, b.IP, 3)
	a.Ping(t, c.IP, 3)
	d := afxdptest.TCPExchange(t, b.NS, a.NS, b.IP+":5001", 10<<20, 1, 60*time.Second)
	t.Logf("vswitchd, AF_XDP to AF_XDP: 10 MiB each way at once in %v (%.0f Mbit/s each way)", d, 80*1.048576/d.Seconds())
	afxdptest.TCPExchange(t, b.NS, a.NS, b.IP+":5002", 1<<20, 8, 60*time.Second)
	// Eight connections spread over both queues of each two-queue veth.
	for _, name := range []string{"xa", "xb"} {
		p := sw.MustPorts(t)[name]
		if p.Protocol["rx_queue0"] == 0 || p.Protocol["rx_queue1"] == 0 {
			t.Errorf("%s: a queue received nothing: %v", name, p.Protocol)
		}
	}

	// A crash (SIGKILL) leaves the XDP programs' links to the kernel, which
	// drops them with the process; the next run attaches again.
	sw.Kill()
	sw = testutil.StartVswitchd(t, dir, cfg)
	waitState(t, sw, "xa", api.StateRunning)
	a.Ping(t, b.IP, 2)
	a.Ping(t, c.IP, 2)

	// A <-> C carries 10 MiB each way while B's link goes down and up and
	// then B's device is deleted.
	done := make(chan string, 1)
	ln := afxdptest.Listen(t, c.NS, c.IP+":5003")
	go func() {
		go func() {
			s, err := ln.Accept()
			if err == nil {
				io.Copy(s, s) // echo
				s.Close()
			}
		}()
		conn, err := afxdptest.Dial(a.NS, c.IP+":5003")
		if err != nil {
			done <- err.Error()
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, 64<<10)
		sum := md5.New()
		go func() {
			for i := 0; i < 160; i++ { // 10 MiB
				for j := range buf {
					buf[j] = byte(i + j)
				}
				if _, err := conn.Write(buf); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		n, err := io.CopyN(sum, conn, 160<<16)
		if err != nil {
			done <- fmt.Sprintf("echo through C: %d bytes: %v", n, err)
			return
		}
		done <- ""
	}()
	time.Sleep(200 * time.Millisecond)
	afxdptest.Run(t, "ip", "link", "set", b.Near, "down")
	p := waitState(t, sw, "xb", api.StateDown)
	if p.Protocol["link_downs"] != 1 || !strings.Contains(p.Error, "is down") {
		t.Errorf("xb: link down not counted or not said: %v, error %q", p.Protocol, p.Error)
	}
	afxdptest.Run(t, "ip", "link", "set", b.Near, "up")
	waitState(t, sw, "xb", api.StateRunning)
	a.Ping(t, b.IP, 2)
	afxdptest.Run(t, "ip", "link", "del", b.Near)
	if p := waitState(t, sw, "xb", api.StateStopped); !strings.Contains(p.Error, "disappeared; the port is stopped") {
		t.Errorf("xb stopped with error %q", p.Error)
	}
	if msg := <-done; msg != "" {
		t.Fatalf("A <-> C while B went down, up and away: %s", msg)
	}
	if !strings.Contains(sw.Log(), "disappeared; the port is stopped") {
		t.Errorf("no clear error logged for the deleted device")
	}
	a.Ping(t, c.IP, 2)
	if p := sw.MustPorts(t)["xa"]; p.State != api.StateRunning {
		t.Errorf("xa: %+v", p)
	}
	if !sw.Stop() {
		t.Errorf("vswitchd did not exit cleanly:\n%s", sw.Log())
	}
	for _, dev := range []string{a.Near, c.Near} {
		if xdpAttached(t, dev) {
			t.Errorf("%s: XDP program still attached after shutdown", dev)
		}
	}
}

// TestAFXDPGuestToNamespace: two QEMU guests on vhost-user ports and a
// namespace host behind an AF_XDP port share a bridge. The host pings both
// guests; one guest sends it 10 MiB over TCP (busybox nc) and the host
// sends the other 10 MiB; both arrive intact.
func TestAFXDPGuestToNamespace(t *testing.T) {
	afxdpPrereqs(t)
	guestPrereqs(t)
	h := afxdptest.NewHost(t, "10.79.1.2/24", 1)
	sw := testutil.StartVswitchd(t, "", fmt.Sprintf(`dataplane: {workers: 1}
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock, mode: server}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock, mode: server}
  - {name: phys, type: afxdp, bridge: br0, device: %s}
`, h.Near))
	forgetState(t, h.Near)
	// Guest -> host: the host listens before the guest starts sending.
	ln := afxdptest.Listen(t, h.NS, h.IP+":5001")
	type result struct {
		sum string
		n   int64
		err error
	}
	up := make(chan result, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			up <- result{err: err}
			return
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(240 * time.Second))
		m := md5.New()
		n, err := io.Copy(m, s)
		up <- result{fmt.Sprintf("%x", m.Sum(nil)), n, err}
	}()
	tx := testutil.StartGuest(t, testutil.GuestOptions{Name: "tx", Socket: sw.Dir + "/vm1.sock",
		MAC: "52:54:00:00:01:01", IP: "10.79.1.10/24", Peer: h.IP, Role: "tcpsend",
		KernelArgs: "lab.kb=10240", Dir: sw.Dir})
	rx := testutil.StartGuest(t, testutil.GuestOptions{Name: "rx", Socket: sw.Dir + "/vm2.sock",
		MAC: "52:54:00:00:01:02", IP: "10.79.1.11/24", Role: "tcprecv", Dir: sw.Dir})
	rx.WaitSerial(t, "LAB-WAITING", 120*time.Second)
	tx.WaitSerial(t, "LAB-NET-UP", 120*time.Second) // booted second, it may be later
	h.Ping(t, "10.79.1.11", 3)
	h.Ping(t, "10.79.1.10", 3)

	// Host -> guest.
	data := make([]byte, 10<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	conn, err := afxdptest.Dial(h.NS, "10.79.1.11:5001")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn.SetDeadline(time.Now().Add(240 * time.Second))
	if _, err := conn.Write(data); err != nil {
		t.Fatalf("host -> guest: %v", err)
	}
	conn.Close()
	got := field(rx.WaitSerial(t, "LAB-TCP-RX", 240*time.Second), "LAB-TCP-RX")
	want := fmt.Sprintf("%x %d", md5.Sum(data), len(data))
	if got != want {
		t.Fatalf("host -> guest: guest got %q, sent %q", got, want)
	}
	t.Logf("host -> guest: 10 MiB in %v", time.Since(start))

	sent := field(tx.WaitSerial(t, "LAB-TCP-TX", 120*time.Second), "LAB-TCP-TX")
	var r result
	select {
	case r = <-up:
	case <-time.After(240 * time.Second):
		t.Fatal("guest -> host: nothing after 240s")
	}
	if r.err != nil || fmt.Sprintf("%s %d", r.sum, r.n) != sent {
		t.Fatalf("guest -> host: host got %s %d (%v), guest sent %q", r.sum, r.n, r.err, sent)
	}
	ports := sw.MustPorts(t)
	for _, name := range []string{"vm1", "vm2", "phys"} {
		p := ports[name]
		t.Logf("%s: %s rx %d tx %d drops %v %v", name, p.State, p.RxPackets, p.TxPackets, p.Drops, p.Protocol)
	}
}
