package vswitch_test

import (
	"fmt"
	"net"
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/afxdp/afxdptest"
	vswitch "github.com/vswitch/vswitch/switch"
)

// xdpRig is a switch with one bridge and an AF_XDP port on the near end of
// each host's veth.
type xdpRig struct {
	sw    *vswitch.Switch
	hosts []*afxdptest.Host
	ports []*vswitch.AFXDPPort
	infos []*vswitch.PortInfo
}

func newXDPRig(t *testing.T, opts vswitch.Options, queues int, cidrs ...string) *xdpRig {
	t.Helper()
	afxdptest.Require(t)
	if opts.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.WarnLevel)
		opts.Log = logrus.NewEntry(l)
	}
	r := &xdpRig{sw: vswitch.New(opts)}
	t.Cleanup(r.sw.Close)
	if err := r.sw.AddBridge("br0", 0, 0); err != nil {
		t.Fatal(err)
	}
	for i, c := range cidrs {
		h := afxdptest.NewHost(t, c, queues)
		p, err := vswitch.OpenAFXDPPort(r.sw, vswitch.AFXDPOptions{Device: h.Near, Log: opts.Log})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("x%d", i)
		info, err := r.sw.AddPort(name, "afxdp", "br0", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			r.sw.RemovePort(name)
			p.Close()
		})
		r.hosts = append(r.hosts, h)
		r.ports = append(r.ports, p)
		r.infos = append(r.infos, info)
	}
	return r
}

// TestAFXDPBridgeTwoNamespaces bridges two namespace hosts through two
// AF_XDP ports: ping, then 10 MiB of TCP each way at once.
func TestAFXDPBridgeTwoNamespaces(t *testing.T) {
	r := newXDPRig(t, vswitch.Options{Workers: 1}, 1, "10.78.0.1/24", "10.78.0.2/24")
	st := r.ports[0].Status()
	if st.Mode != "native" || st.ZeroCopy || !st.Up {
		t.Errorf("status %+v: want native XDP, copy mode (veth), up", st)
	}
	r.hosts[0].Ping(t, "10.78.0.2", 3)
	d := afxdptest.TCPExchange(t, r.hosts[1].NS, r.hosts[0].NS, "10.78.0.2:5001", 10<<20, 1, 60*time.Second)
	t.Logf("10 MiB each way in %v (%.0f Mbit/s per direction)", d, 10*8*1.048576/d.Seconds())
	for i, p := range r.infos {
		c := p.Counters
		t.Logf("port %d: rx %d tx %d drops %v status %+v", i, c.RxPackets.Load(), c.TxPackets.Load(), c.DropMap(), r.ports[i].Status())
		if c.RxPackets.Load() < 7000 || c.TxPackets.Load() < 7000 {
			t.Errorf("port %d moved too few packets", i)
		}
	}
}

// TestAFXDPMultiqueue uses two queues per veth, a socket on each, spread
// over two workers, with several TCP connections so both queues carry
// traffic.
func TestAFXDPMultiqueue(t *testing.T) {
	r := newXDPRig(t, vswitch.Options{Workers: 2}, 2, "10.78.1.1/24", "10.78.1.2/24")
	for i, p := range r.ports {
		if p.QueuePairs() != 2 {
			t.Fatalf("port %d: %d queues, want 2", i, p.QueuePairs())
		}
	}
	r.hosts[0].Ping(t, "10.78.1.2", 2)
	afxdptest.TCPExchange(t, r.hosts[1].NS, r.hosts[0].NS, "10.78.1.2:5001", 1<<20, 8, 60*time.Second)
	for i, p := range r.ports {
		st := p.Status()
		t.Logf("port %d: per-queue rx %v tx %v", i, st.QueueRx, st.QueueTx)
		for q, n := range st.QueueRx {
			if n == 0 {
				t.Errorf("port %d queue %d received nothing", i, q)
			}
		}
	}
}

// TestAFXDPQueueList binds sockets on the listed queues only, in the
// order listed: queues 3 and 1 of a four-queue veth.
func TestAFXDPQueueList(t *testing.T) {
	afxdptest.Require(t)
	sw := vswitch.New(vswitch.Options{Workers: 2})
	t.Cleanup(sw.Close)
	h := afxdptest.NewHost(t, "10.78.4.1/24", 4)
	p, err := vswitch.OpenAFXDPPort(sw, vswitch.AFXDPOptions{Device: h.Near, Queues: []int{3, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if st := p.Status(); p.QueuePairs() != 2 || !slices.Equal(st.Queues, []int{3, 1}) || len(st.QueueRx) != 2 {
		t.Errorf("queues %v (%d pairs), want [3 1]", st.Queues, p.QueuePairs())
	}
}

// TestAFXDPLinkEvents takes one port's link down and up while the others
// forward, then deletes a device: its port stops with an error and the
// rest keep forwarding.
func TestAFXDPLinkEvents(t *testing.T) {
	r := newXDPRig(t, vswitch.Options{Workers: 1}, 1, "10.78.2.1/24", "10.78.2.2/24", "10.78.2.3/24")
	a, b, c := r.hosts[0], r.hosts[1], r.hosts[2]
	a.Ping(t, "10.78.2.2", 2)
	a.Ping(t, "10.78.2.3", 2)

	// Traffic A <-> C runs the whole time.
	done := make(chan error, 1)
	go func() {
		done <- func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("%v", r)
				}
			}()
			afxdptest.TCPExchange(t, c.NS, a.NS, "10.78.2.3:5002", 10<<20, 1, 60*time.Second)
			return nil
		}()
	}()

	afxdptest.Run(t, "ip", "link", "set", b.Near, "down")
	waitFor(t, "port 1 down", func() bool { return !r.ports[1].Status().Up })
	before := r.infos[1].Counters.DropMap()["output_port_down"]
	out, _ := exec(a.NS, "busybox", "ping", "-c", "2", "-W", "1", "10.78.2.2")
	if strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping through a down port answered:\n%s", out)
	}
	if r.ports[1].LinkDowns.Load() != 1 || r.infos[1].Counters.DropMap()["output_port_down"] <= before {
		t.Errorf("link down not counted: downs %d, drops %v", r.ports[1].LinkDowns.Load(), r.infos[1].Counters.DropMap())
	}
	afxdptest.Run(t, "ip", "link", "set", b.Near, "up")
	waitFor(t, "port 1 up", func() bool { return r.ports[1].Status().Up })
	a.Ping(t, "10.78.2.2", 2)

	// Remove B's device altogether.
	afxdptest.Run(t, "ip", "link", "del", b.Near)
	waitFor(t, "port 1 stopped", func() bool { return r.ports[1].Status().Stopped })
	if e := r.ports[1].Status().Err; !strings.Contains(e, "disappeared") {
		t.Errorf("error %q", e)
	}
	if err := <-done; err != nil {
		t.Fatalf("A <-> C while B went down, up and away: %v", err)
	}
	a.Ping(t, "10.78.2.3", 2)
	// Removing the stopped port and closing it is clean.
	if err := r.sw.RemovePort("x1"); err != nil {
		t.Fatal(err)
	}
	if err := r.ports[1].Close(); err != nil {
		t.Errorf("close after the device went away: %v", err)
	}
}

func exec(ns string, args ...string) (string, error) {
	out, err := osexec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestAFXDPAllocatesNothing drives a manual switch: a burst of datagrams
// sits in port 0's RX ring, and each poll moves a batch through Receive,
// the bridge, Transmit on port 1 and Release without allocating.
func TestAFXDPAllocatesNothing(t *testing.T) {
	r := newXDPRig(t, vswitch.Options{Workers: 1, Manual: true}, 1, "10.78.3.1/24", "10.78.3.2/24")
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
				if !r.sw.PollOnce() {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}
	}()
	r.hosts[0].Ping(t, "10.78.3.2", 1) // ARP and FDB learned both ways
	close(stop)
	<-polled
	var conn net.Conn
	if err := afxdptest.Do(r.hosts[0].NS, func() (err error) { conn, err = net.Dial("udp4", "10.78.3.2:9"); return }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := make([]byte, 1000)
	for i := 0; i < 1500; i++ {
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	rx0 := r.infos[0].Counters.RxPackets.Load()
	allocs := testing.AllocsPerRun(20, func() { r.sw.PollOnce() })
	moved := r.infos[0].Counters.RxPackets.Load() - rx0
	t.Logf("%.1f allocs per poll; %d frames moved in %d polls; tx on port 1: %d, drops %v", allocs, moved, 21, r.infos[1].Counters.TxPackets.Load(), r.infos[1].Counters.DropMap())
	if moved < 20*vswitch.BatchSize {
		t.Fatalf("only %d frames moved: the measurement did not exercise full batches", moved)
	}
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch, want 0", allocs)
	}
}

// BenchmarkAFXDPForward polls a manual switch while a UDP generator in
// namespace A (python, 64-byte payloads, one core) sends to B: each op is
// one poll; frames/s is what crossed from A's socket to B's. The generator
// is the limit on a small host; allocs/op is the switch's own.
func BenchmarkAFXDPForward(b *testing.B) {
	r := newXDPRigB(b)
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
				if !r.sw.PollOnce() {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}
	}()
	r.hosts[0].Ping(b, "10.78.4.2", 1)
	close(stop)
	<-polled
	// Datagrams go to B's MAC but an address B does not have: B's kernel
	// drops them cheaply instead of answering each with an ICMP error.
	bmac := strings.Fields(r.hosts[1].Exec(b, "cat", "/sys/class/net/eth0/address"))[0]
	r.hosts[0].Exec(b, "ip", "neigh", "replace", "10.78.4.99", "lladdr", bmac, "dev", "eth0")
	gen := osexec.Command("ip", "netns", "exec", r.hosts[0].NS, "/usr/bin/python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); buf = b"x" * 64
while True:
    for _ in range(1000): s.sendto(buf, ("10.78.4.99", 9))
`)
	if err := gen.Start(); err != nil {
		b.Skip("no python3 generator:", err)
	}
	defer func() { gen.Process.Kill(); gen.Wait() }()
	time.Sleep(300 * time.Millisecond)
	rx0 := r.infos[1].Counters.TxPackets.Load()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r.sw.PollOnce()
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(r.infos[1].Counters.TxPackets.Load()-rx0)/el.Seconds(), "frames/s")
	st := r.ports[0].Status()
	b.Logf("%d polls in %v: port 0 rx %d (kernel dropped %d: fill ring empty %d, rx ring full %d); port 1 tx %d, drops %v",
		b.N, el, r.infos[0].Counters.RxPackets.Load(), st.RxDropped, st.RxFillEmpty, st.RxRingFull,
		r.infos[1].Counters.TxPackets.Load(), r.infos[1].Counters.DropMap())
}

func newXDPRigB(b *testing.B) *xdpRig {
	afxdptest.Require(b)
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	sw := vswitch.New(vswitch.Options{Workers: 1, Manual: true, Log: logrus.NewEntry(l)})
	b.Cleanup(sw.Close)
	sw.AddBridge("br0", 0, 0)
	r := &xdpRig{sw: sw}
	for i, c := range []string{"10.78.4.1/24", "10.78.4.2/24"} {
		h := afxdptest.NewHost(b, c, 1)
		p, err := vswitch.OpenAFXDPPort(sw, vswitch.AFXDPOptions{Device: h.Near, Log: logrus.NewEntry(l)})
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("x%d", i)
		info, err := sw.AddPort(name, "afxdp", "br0", p)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { sw.RemovePort(name); p.Close() })
		r.hosts = append(r.hosts, h)
		r.ports = append(r.ports, p)
		r.infos = append(r.infos, info)
	}
	return r
}

// TestAFXDPMTU follows MTU changes through link events: 3000-byte frames
// cross once both devices take them, and are dropped (frame_exceeds_mtu)
// at a port whose device went back to 1500.
func TestAFXDPMTU(t *testing.T) {
	r := newXDPRig(t, vswitch.Options{Workers: 1}, 1, "10.78.5.1/24", "10.78.5.2/24")
	for i, h := range r.hosts {
		afxdptest.Run(t, "ip", "link", "set", h.Near, "mtu", "3000")
		h.Exec(t, "ip", "link", "set", "eth0", "mtu", "3000")
		waitFor(t, "MTU 3000", func() bool { return r.ports[i].Status().MTU == 3000 })
	}
	big := func() error {
		_, err := exec(r.hosts[0].NS, "busybox", "ping", "-c", "2", "-W", "2", "-s", "2900", "10.78.5.2")
		return err
	}
	if err := big(); err != nil {
		t.Fatalf("2900-byte ping at MTU 3000: %v", err)
	}
	afxdptest.Run(t, "ip", "link", "set", r.hosts[1].Near, "mtu", "1500")
	waitFor(t, "MTU 1500", func() bool { return r.ports[1].Status().MTU == 1500 })
	if err := big(); err == nil {
		t.Fatal("2900-byte ping crossed a port at MTU 1500")
	}
	if n := r.infos[1].Counters.DropMap()["frame_exceeds_mtu"]; n == 0 {
		t.Errorf("no frame_exceeds_mtu drops at port 1: %v", r.infos[1].Counters.DropMap())
	}
	r.hosts[0].Ping(t, "10.78.5.2", 1)
}
