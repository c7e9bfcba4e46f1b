package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// featureLoop runs the learned loop of PEERS.md section 8 with extra
// virtio_user devargs (e.g. ",queues=2") and testpmd args, and checks that
// frames flow without drops. It returns the switch's view of vm1.
func featureLoop(t *testing.T, cfg, devargs string, args ...string) api.PortStatus {
	t.Helper()
	sw := testutil.StartVswitchd(t, "", cfg)
	fe := testutil.StartTestpmd(t, testutil.TestpmdOptions{
		Name: "fe", MainLcore: 0, NoHuge: true, Dir: sw.Dir, Interactive: true,
		Vdevs: []string{
			"net_virtio_user0,path=" + sw.Dir + "/vm1.sock,mac=02:00:00:00:00:01" + devargs,
			"net_virtio_user1,path=" + sw.Dir + "/vm2.sock,mac=02:00:00:00:00:02" + devargs,
		},
		Args: append([]string{"--forward-mode=mac", "--eth-peer=0,02:00:00:00:00:02", "--eth-peer=1,02:00:00:00:00:01", "--burst=32"}, args...),
	})
	sw.WaitPortState(t, "vm1", api.StateRunning, 30*time.Second)
	sw.WaitPortState(t, "vm2", api.StateRunning, 30*time.Second)
	fe.Cmd(t, "start tx_first")
	time.Sleep(3 * time.Second)
	fe.Cmd(t, "stop")
	fe.WaitLog(t, "Accumulated forward statistics", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	ports := sw.MustPorts(t)
	st, err := fe.Stop()
	if err != nil {
		t.Fatal(err)
	}
	vm1, vm2 := ports["vm1"], ports["vm2"]
	t.Logf("testpmd %+v; vm1 %s pairs=%d features=%v rx=%d drops=%v", st, vm1.State, vm1.QueuePairs, vm1.Features, vm1.RxPackets, vm1.Drops)
	if vm1.RxPackets < 10000 || vm2.RxPackets < 10000 {
		t.Fatalf("only %d / %d frames moved", vm1.RxPackets, vm2.RxPackets)
	}
	for _, p := range []api.PortStatus{vm1, vm2} {
		if totalDrops(p) != 0 {
			t.Errorf("%s dropped %v", p.Name, p.Drops)
		}
		if p.RxPackets != st[portIndex(p.Name)].TxPackets {
			t.Errorf("%s: switch received %d, testpmd sent %d", p.Name, p.RxPackets, st[portIndex(p.Name)].TxPackets)
		}
	}
	return vm1
}

func portIndex(name string) int { return int(name[len(name)-1] - '1') }

func portsConfig(queues int) string {
	return fmt.Sprintf(`dataplane: {workers: 1, poll: adaptive}
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock, queues: %[1]d}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock, queues: %[1]d}
`, queues)
}

// Two queue pairs per port: testpmd uses both (--rxq=2 --txq=2), the
// switch polls both transmit queues and negotiates VIRTIO_NET_F_MQ.
func TestTestpmdMultiqueue(t *testing.T) {
	peerPrereqs(t)
	vm1 := featureLoop(t, portsConfig(2), ",queues=2", "--rxq=2", "--txq=2")
	if vm1.QueuePairs != 2 || !contains(vm1.Features, "MQ") {
		t.Fatalf("vm1 runs %d queue pairs with %v, want 2 and MQ", vm1.QueuePairs, vm1.Features)
	}
}

// Virtio feature variants of DPDK's virtio_user, each a real front-end.
func TestTestpmdFeatureVariants(t *testing.T) {
	peerPrereqs(t)
	for _, v := range []struct{ name, devargs, want, absent string }{
		{"mrg_rxbuf=0", ",mrg_rxbuf=0", "", "MRG_RXBUF"},
		{"mrg_rxbuf=1", ",mrg_rxbuf=1", "MRG_RXBUF", ""},
		{"in_order=1", ",in_order=1", "", ""},
		{"in_order=0", ",in_order=0", "", ""},
		{"packed_vq=1", ",packed_vq=1", "RING_PACKED", ""},
		{"packed_vq=1,mrg_rxbuf=0", ",packed_vq=1,mrg_rxbuf=0", "RING_PACKED", "MRG_RXBUF"},
	} {
		t.Run(v.name, func(t *testing.T) {
			vm1 := featureLoop(t, portsConfig(1), v.devargs)
			f := strings.Join(vm1.Features, " ")
			if v.want != "" && !contains(vm1.Features, v.want) {
				t.Errorf("features %s, want %s", f, v.want)
			}
			if v.absent != "" && contains(vm1.Features, v.absent) {
				t.Errorf("features %s, want no %s", f, v.absent)
			}
		})
	}
}

// Linux guests on packed rings (QEMU packed=on) ping each other.
func TestGuestsPackedRing(t *testing.T) {
	guestPrereqs(t)
	sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
	dev := ",packed=on,mrg_rxbuf=on"
	g2 := testutil.StartGuest(t, testutil.GuestOptions{Name: "g2", Socket: sw.Dir + "/vm2.sock", DevOpts: dev,
		MAC: "52:54:00:00:00:02", IP: "10.0.0.2/24", Role: "wait", Dir: sw.Dir})
	g1 := testutil.StartGuest(t, testutil.GuestOptions{Name: "g1", Socket: sw.Dir + "/vm1.sock", DevOpts: dev,
		MAC: "52:54:00:00:00:01", IP: "10.0.0.1/24", Peer: "10.0.0.2", Role: "ping", Dir: sw.Dir})
	g2.WaitSerial(t, "LAB-WAITING", 120*time.Second)
	if f := sw.MustPorts(t)["vm2"].Features; !contains(f, "RING_PACKED") {
		t.Fatalf("vm2 negotiated %v, want RING_PACKED", f)
	}
	out := g1.WaitSerial(t, "LAB-PING-", 120*time.Second)
	if !strings.Contains(out, "LAB-PING-OK") {
		t.Fatalf("guests on packed rings could not ping:\n%s", out)
	}
}

// Linux guests with two queue pairs (mq=on, -smp 2): the driver enables
// both on probe (curr_queue_pairs = min(CPUs, max pairs), sent through the
// control queue that QEMU handles, which then enables the vrings with
// SET_VRING_ENABLE). A 10 MiB TCP transfer (after the sender's pings)
// arrives intact, both pairs run, and every queue carries frames: the
// guests transmit on the queue of the CPU they run on (nc pinned to CPU
// 1), and each of the two workers fills its own receive queue.
func TestGuestsMultiqueue(t *testing.T) {
	guestPrereqs(t)
	sw := testutil.StartVswitchd(t, "", strings.Replace(portsConfig(2), "workers: 1", "workers: 2", 1))
	netdev, dev := ",queues=2", ",mq=on"
	rx := testutil.StartGuest(t, testutil.GuestOptions{Name: "rx", Socket: sw.Dir + "/vm2.sock", SMP: 2,
		NetdevOpts: netdev, DevOpts: dev, MAC: "52:54:00:00:00:02", IP: "10.0.0.2/24", Role: "tcprecv", Dir: sw.Dir})
	tx := testutil.StartGuest(t, testutil.GuestOptions{Name: "tx", Socket: sw.Dir + "/vm1.sock", SMP: 2,
		NetdevOpts: netdev, DevOpts: dev, MAC: "52:54:00:00:00:01", IP: "10.0.0.1/24", Peer: "10.0.0.2",
		Role: "tcpsend", KernelArgs: "lab.kb=10240 lab.txmask=2", Dir: sw.Dir})
	for _, g := range []*testutil.Guest{rx, tx} {
		if q := field(g.WaitSerial(t, "LAB-QUEUES", 180*time.Second), "LAB-QUEUES"); q != "cpus=2 rx=2 tx=2" {
			t.Errorf("guest %s: %s, want 2 CPUs and 2 queue pairs enabled", g.Name, q)
		}
	}
	sent := field(tx.WaitSerial(t, "LAB-TCP-TX", 120*time.Second), "LAB-TCP-TX")
	got := field(rx.WaitSerial(t, "LAB-TCP-RX", 300*time.Second), "LAB-TCP-RX")
	if sent == "" || sent != got || !strings.HasSuffix(sent, " 10485760") {
		t.Fatalf("sent %q, received %q", sent, got)
	}
	ports := sw.MustPorts(t)
	for _, name := range []string{"vm1", "vm2"} {
		p := ports[name]
		t.Logf("%s: %d pairs running, features %v, rx %d tx %d, per queue rx %d/%d tx %d/%d, drops %v", name,
			p.QueuePairs, p.Features, p.RxPackets, p.TxPackets, p.Protocol["rx_queue0"], p.Protocol["rx_queue1"],
			p.Protocol["tx_queue0"], p.Protocol["tx_queue1"], p.Drops)
		if p.QueuePairs != 2 || !contains(p.Features, "MQ") {
			t.Errorf("%s: %d queue pairs running with %v, want 2 and MQ", name, p.QueuePairs, p.Features)
		}
		if p.Protocol["rx_queue0"]+p.Protocol["rx_queue1"] != p.RxPackets {
			t.Errorf("%s: per-queue rx %d+%d != rx %d", name, p.Protocol["rx_queue0"], p.Protocol["rx_queue1"], p.RxPackets)
		}
	}
	// Both queue pairs carried frames. Which queue a guest transmits on
	// follows the CPU its sender runs on, and which of our receive queues
	// a frame lands in follows the worker that forwarded it, so one
	// direction of one port may stay on a single queue: ask only that each
	// queue index was used somewhere.
	for _, q := range []string{"0", "1"} {
		n := uint64(0)
		for _, name := range []string{"vm1", "vm2"} {
			n += ports[name].Protocol["rx_queue"+q] + ports[name].Protocol["tx_queue"+q]
		}
		if n == 0 {
			t.Errorf("queue %s carried nothing on either port", q)
		}
	}
}
