// Package tests holds end-to-end tests of vswitchd with real peers: DPDK
// testpmd's virtio_user front-end and QEMU guests running Linux.
package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// twoPortConfig is one bridge with two server-mode vhost-user ports.
func twoPortConfig(poll string) string {
	return fmt.Sprintf(`dataplane: {workers: 1, poll: %s}
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock, mode: server}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock, mode: server}
`, poll)
}

func peerPrereqs(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "dpdk-testpmd")
}

func totalDrops(p api.PortStatus) uint64 {
	var n uint64
	for _, v := range p.Drops {
		n += v
	}
	return n
}

// A generator and a sink in two testpmd processes, the switch between
// them, all at full speed on 2 CPUs: every packet the generator queued is
// either received by the sink or counted as a drop by the switch, and the
// switch's counters agree with testpmd's.
func TestTestpmdGeneratorToSink(t *testing.T) {
	peerPrereqs(t)
	sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
	sink := testutil.StartTestpmd(t, testutil.TestpmdOptions{
		Name: "sink", MainLcore: 1, NoHuge: true, Dir: sw.Dir, Interactive: true,
		Vdevs: []string{"net_virtio_user0,path=" + sw.Dir + "/vm2.sock,mac=02:00:00:00:00:02"},
		Args:  []string{"--forward-mode=rxonly"},
	})
	gen := testutil.StartTestpmd(t, testutil.TestpmdOptions{
		Name: "gen", MainLcore: 0, NoHuge: true, Dir: sw.Dir, Interactive: true,
		Vdevs: []string{"net_virtio_user0,path=" + sw.Dir + "/vm1.sock,mac=02:00:00:00:00:01"},
		Args:  []string{"--forward-mode=txonly", "--txpkts=64", "--eth-peer=0,02:00:00:00:00:02"},
	})
	sw.WaitPortState(t, "vm1", api.StateRunning, 30*time.Second)
	sw.WaitPortState(t, "vm2", api.StateRunning, 30*time.Second)
	sink.Cmd(t, "start")
	gen.Cmd(t, "start")
	time.Sleep(4 * time.Second)
	// Stop the generator's forwarding but keep its port up until the
	// switch has taken every frame it queued, and the sink polling until
	// the switch has delivered everything: then the counts must add up.
	gen.Cmd(t, "stop")
	gen.WaitLog(t, "Accumulated forward statistics", 10*time.Second)
	settle(t, sw)
	sink.Cmd(t, "stop")
	sink.WaitLog(t, "Accumulated forward statistics", 10*time.Second)
	gs, err := gen.Stop()
	if err != nil {
		t.Fatal(err)
	}
	ss, err := sink.Stop()
	if err != nil {
		t.Fatal(err)
	}
	ports := sw.MustPorts(t)
	vm1, vm2 := ports["vm1"], ports["vm2"]
	sent, recv := gs[0].TxPackets, ss[0].RxPackets
	t.Logf("generator sent %d, sink received %d; switch vm1 rx=%d drops=%v, vm2 tx=%d drops=%v",
		sent, recv, vm1.RxPackets, vm1.Drops, vm2.TxPackets, vm2.Drops)
	if sent < 100000 {
		t.Fatalf("generator sent only %d packets", sent)
	}
	if vm1.RxPackets+totalDrops(vm1) != sent {
		t.Errorf("switch vm1 received %d + dropped %d, generator sent %d", vm1.RxPackets, totalDrops(vm1), sent)
	}
	// Inside the switch every frame is forwarded or counted.
	if vm2.TxPackets+totalDrops(vm2) != vm1.RxPackets {
		t.Errorf("switch vm2 sent %d + dropped %d, vm1 received %d", vm2.TxPackets, totalDrops(vm2), vm1.RxPackets)
	}
	// The sink counts what it polled; a few frames may still sit in its
	// receive ring when it stops (at most the ring).
	if recv > vm2.TxPackets || vm2.TxPackets-recv > 1024 {
		t.Errorf("switch vm2 transmitted %d, sink received %d", vm2.TxPackets, recv)
	}
	for reason := range vm2.Drops {
		if reason != "no_guest_rx_buffer" {
			t.Errorf("unexpected drop reason %q on vm2: %v", reason, vm2.Drops)
		}
	}
	if vm1.RxBytes != vm1.RxPackets*64 {
		t.Errorf("vm1 rx_bytes %d is not 64 per packet (%d packets)", vm1.RxBytes, vm1.RxPackets)
	}
}

// One testpmd owns both ports and bounces a fixed set of frames between
// them (PEERS.md section 8): the receiver always keeps up, so nothing may
// be dropped, and the counters on both sides agree.
func TestTestpmdLearnedLoopNoDrops(t *testing.T) {
	peerPrereqs(t)
	sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
	fe := testutil.StartTestpmd(t, testutil.TestpmdOptions{
		Name: "loop", MainLcore: 0, NoHuge: true, Dir: sw.Dir, Interactive: true,
		Vdevs: []string{
			"net_virtio_user0,path=" + sw.Dir + "/vm1.sock,mac=02:00:00:00:00:01",
			"net_virtio_user1,path=" + sw.Dir + "/vm2.sock,mac=02:00:00:00:00:02",
		},
		Args: []string{"--forward-mode=mac", "--eth-peer=0,02:00:00:00:00:02", "--eth-peer=1,02:00:00:00:00:01", "--burst=32"},
	})
	// virtio_user does not wait for the backend to act on its messages, so
	// start only once both ports run: a frame sent earlier would meet a
	// port that is still coming up.
	sw.WaitPortState(t, "vm1", api.StateRunning, 30*time.Second)
	sw.WaitPortState(t, "vm2", api.StateRunning, 30*time.Second)
	fe.Cmd(t, "start tx_first")
	time.Sleep(4 * time.Second)
	fe.Cmd(t, "stop")
	fe.WaitLog(t, "Accumulated forward statistics", 10*time.Second)
	time.Sleep(500 * time.Millisecond) // the switch drains both transmit rings
	ports := sw.MustPorts(t)
	st, err := fe.Stop()
	if err != nil {
		t.Fatal(err)
	}
	vm1, vm2 := ports["vm1"], ports["vm2"]
	t.Logf("testpmd %+v; switch vm1 rx=%d tx=%d, vm2 rx=%d tx=%d", st, vm1.RxPackets, vm1.TxPackets, vm2.RxPackets, vm2.TxPackets)
	if st[0].RxPackets < 10000 {
		t.Fatalf("loop moved only %d packets", st[0].RxPackets)
	}
	for _, p := range []api.PortStatus{vm1, vm2} {
		if totalDrops(p) != 0 {
			t.Errorf("%s dropped %v", p.Name, p.Drops)
		}
	}
	if st[0].RxDropped+st[1].RxDropped != 0 {
		t.Errorf("testpmd dropped on receive: %+v", st)
	}
	// The switch forwards everything it takes in (2 ports, all learned).
	if vm1.RxPackets != vm2.TxPackets || vm2.RxPackets != vm1.TxPackets {
		t.Errorf("switch in/out differ: vm1 rx %d vs vm2 tx %d, vm2 rx %d vs vm1 tx %d",
			vm1.RxPackets, vm2.TxPackets, vm2.RxPackets, vm1.TxPackets)
	}
	// What testpmd sent on a port the switch received. What the switch sent
	// testpmd received, but for the frames still in its receive ring when
	// it stopped polling (at most one burst per port is in flight).
	for i, p := range []api.PortStatus{vm1, vm2} {
		if p.RxPackets != st[i].TxPackets {
			t.Errorf("port %d: testpmd sent %d, switch received %d", i, st[i].TxPackets, p.RxPackets)
		}
		if p.TxPackets < st[i].RxPackets || p.TxPackets-st[i].RxPackets > 64 {
			t.Errorf("port %d: switch sent %d, testpmd received %d", i, p.TxPackets, st[i].RxPackets)
		}
	}
	// SIGTERM: a clean exit that removes the sockets it created.
	if !sw.Stop() {
		t.Errorf("vswitchd did not exit cleanly on SIGTERM:\n%s", sw.Log())
	}
	for _, f := range []string{"vm1.sock", "vm2.sock", "api.sock"} {
		if _, err := os.Stat(filepath.Join(sw.Dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s left behind after shutdown (%v)", f, err)
		}
	}
}

// settle waits until the switch's packet counters stop moving.
func settle(t *testing.T, sw *testutil.Vswitchd) {
	t.Helper()
	sum := func() uint64 {
		var n uint64
		for _, p := range sw.MustPorts(t) {
			n += p.RxPackets + p.TxPackets + totalDrops(p)
		}
		return n
	}
	last := sum()
	for i := 0; i < 50; i++ {
		time.Sleep(200 * time.Millisecond)
		if cur := sum(); cur == last {
			return
		} else {
			last = cur
		}
	}
	t.Fatal("switch counters still moving after 10s")
}

func guestPrereqs(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "qemu-system-x86_64")
}

// Two Linux guests ping each other through vswitchd; then the pinging
// guest goes away and a new one on the same socket pings again.
func TestGuestsPingAndReconnect(t *testing.T) {
	guestPrereqs(t)
	sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
	g2 := testutil.StartGuest(t, testutil.GuestOptions{Name: "g2", Socket: sw.Dir + "/vm2.sock",
		MAC: "52:54:00:00:00:02", IP: "10.0.0.2/24", Role: "wait", Dir: sw.Dir})
	g1 := testutil.StartGuest(t, testutil.GuestOptions{Name: "g1", Socket: sw.Dir + "/vm1.sock",
		MAC: "52:54:00:00:00:01", IP: "10.0.0.1/24", Peer: "10.0.0.2", Role: "ping", Dir: sw.Dir})
	out := g1.WaitSerial(t, "LAB-PING-", 120*time.Second)
	if !strings.Contains(out, "LAB-PING-OK") {
		t.Fatalf("first guest could not ping:\n%s\n--- g2:\n%s", out, g2.Serial())
	}
	ports := sw.MustPorts(t)
	for _, name := range []string{"vm1", "vm2"} {
		p := ports[name]
		t.Logf("%s: state=%s features=%v rx=%d tx=%d drops=%v", name, p.State, p.Features, p.RxPackets, p.TxPackets, p.Drops)
		if p.RxPackets == 0 || p.TxPackets == 0 {
			t.Errorf("%s moved no packets", name)
		}
	}
	// g1 powers off after its ping; g2 still runs.
	if f := ports["vm2"].Features; !contains(f, "EVENT_IDX") || !contains(f, "VERSION_1") {
		t.Errorf("vm2 negotiated %v, want EVENT_IDX and VERSION_1", f)
	}
	if err := g1.Wait(30 * time.Second); err != nil {
		g1.Kill()
	}
	sw.WaitPortState(t, "vm1", api.StateWaiting, 15*time.Second)

	g1b := testutil.StartGuest(t, testutil.GuestOptions{Name: "g1b", Socket: sw.Dir + "/vm1.sock",
		MAC: "52:54:00:00:00:03", IP: "10.0.0.3/24", Peer: "10.0.0.2", Role: "ping", Dir: sw.Dir})
	out = g1b.WaitSerial(t, "LAB-PING-", 120*time.Second)
	if !strings.Contains(out, "LAB-PING-OK") {
		t.Fatalf("reconnected guest could not ping:\n%s", out)
	}
	if c := sw.MustPorts(t)["vm1"].Protocol["connects"]; c != 2 {
		t.Errorf("vm1 saw %d connections, want 2", c)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A 10 MiB TCP transfer between two Linux guests arrives intact, at the
// default MTU and with jumbo frames (QEMU host_mtu=9000 tells the switch
// through NET_SET_MTU; mergeable receive buffers carry the big frames).
func TestGuestsTCPTransfer(t *testing.T) {
	guestPrereqs(t)
	for _, mtu := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("mtu%d", mtu), func(t *testing.T) {
			sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
			dev := ""
			if mtu != 1500 {
				dev = fmt.Sprintf(",host_mtu=%d", mtu)
			}
			rx := testutil.StartGuest(t, testutil.GuestOptions{Name: "rx", Socket: sw.Dir + "/vm2.sock",
				MAC: "52:54:00:00:00:02", IP: "10.0.0.2/24", Role: "tcprecv", MTU: mtu, DevOpts: dev, Dir: sw.Dir})
			tx := testutil.StartGuest(t, testutil.GuestOptions{Name: "tx", Socket: sw.Dir + "/vm1.sock",
				MAC: "52:54:00:00:00:01", IP: "10.0.0.1/24", Peer: "10.0.0.2", Role: "tcpsend", MTU: mtu,
				DevOpts: dev, KernelArgs: "lab.kb=10240", Dir: sw.Dir})
			sent := field(tx.WaitSerial(t, "LAB-TCP-TX", 120*time.Second), "LAB-TCP-TX")
			got := field(rx.WaitSerial(t, "LAB-TCP-RX", 180*time.Second), "LAB-TCP-RX")
			if sent == "" || sent != got {
				t.Fatalf("sent %q, received %q", sent, got)
			}
			if !strings.HasSuffix(sent, " 10485760") {
				t.Fatalf("sent %q, want 10485760 bytes", sent)
			}
			ports := sw.MustPorts(t)
			t.Logf("mtu %d: %s; vm1 rx=%d tx=%d drops=%v mtu=%d; vm2 rx=%d drops=%v mtu=%d", mtu, got,
				ports["vm1"].RxPackets, ports["vm1"].TxPackets, ports["vm1"].Drops, ports["vm1"].MTU,
				ports["vm2"].RxPackets, ports["vm2"].Drops, ports["vm2"].MTU)
			if mtu != 1500 && ports["vm2"].MTU != mtu {
				t.Errorf("vm2 reports MTU %d, want %d from NET_SET_MTU", ports["vm2"].MTU, mtu)
			}
		})
	}
}

// field returns what follows marker on the line that holds it.
func field(out, marker string) string {
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, marker); i >= 0 {
			return strings.TrimSpace(line[i+len(marker):])
		}
	}
	return ""
}
