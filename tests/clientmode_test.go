package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/testutil"
)

// clientConfig has two client-mode ports: the front-ends listen.
func clientConfig(dir string) string {
	return fmt.Sprintf(`dataplane: {workers: 1, poll: adaptive}
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: %[1]s/fe1.sock, mode: client}
  - {name: vm2, type: vhostuser, bridge: br0, socket: %[1]s/fe2.sock, mode: client}
`, dir)
}

// replies counts ping replies on a guest's console.
func replies(g *testutil.Guest) int { return strings.Count(g.Serial(), "bytes from") }

// waitReplies waits until the guest has n more ping replies than before.
func waitReplies(t *testing.T, g *testutil.Guest, before, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for replies(g) < before+n {
		if time.Now().After(deadline) {
			t.Fatalf("guest %s: %d ping replies after %v, want %d more than %d:\n%s", g.Name, replies(g), timeout, n, before, g.Serial())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// QEMU listens (server=on, as OpenStack's vhostuser_mode=server has it),
// vswitchd connects. Killing vswitchd with SIGKILL and starting it again
// brings the guests' traffic back without a guest reboot.
func TestClientModeGuestsSurviveSwitchRestart(t *testing.T) {
	guestPrereqs(t)
	dir := testutil.ShortTempDir(t)
	g2 := testutil.StartGuest(t, testutil.GuestOptions{Name: "g2", Socket: dir + "/fe2.sock", Server: true,
		MAC: "52:54:00:00:00:02", IP: "10.0.0.2/24", Role: "wait", Dir: dir})
	g1 := testutil.StartGuest(t, testutil.GuestOptions{Name: "g1", Socket: dir + "/fe1.sock", Server: true,
		MAC: "52:54:00:00:00:01", IP: "10.0.0.1/24", Peer: "10.0.0.2", Role: "pingloop", Dir: dir})
	sw := testutil.StartVswitchd(t, dir+"/sw1", clientConfig(dir))
	g2.WaitSerial(t, "LAB-WAITING", 120*time.Second)
	g1.WaitSerial(t, "LAB-PINGLOOP", 120*time.Second)
	waitReplies(t, g1, 0, 3, 90*time.Second)
	for _, p := range []string{"vm1", "vm2"} {
		if st := sw.MustPorts(t)[p]; st.State != api.StateRunning || st.Mode != api.ModeClient {
			t.Fatalf("%s: state %s mode %s", p, st.State, st.Mode)
		}
	}

	sw.Kill()
	time.Sleep(2 * time.Second) // pings fail while the switch is away
	before := replies(g1)
	start := time.Now()
	sw2 := testutil.StartVswitchd(t, dir+"/sw2", clientConfig(dir))
	waitReplies(t, g1, before, 3, 60*time.Second)
	t.Logf("pings resumed %.1fs after the restart", time.Since(start).Seconds())
	if c := sw2.MustPorts(t)["vm1"].Protocol["connects"]; c != 1 {
		t.Errorf("restarted switch connected %d times to vm1", c)
	}
	if strings.Count(g1.Serial(), "LAB-NET-UP") != 1 || strings.Count(g2.Serial(), "LAB-NET-UP") != 1 {
		t.Errorf("a guest rebooted")
	}
}

// testpmd listens (virtio_user server=1); vswitchd connects. The loop runs,
// then survives first a restart of the switch and then one of testpmd.
func TestClientModeTestpmdRestarts(t *testing.T) {
	peerPrereqs(t)
	dir := testutil.ShortTempDir(t)
	startFE := func(name string) *testutil.Testpmd {
		return testutil.StartTestpmd(t, testutil.TestpmdOptions{
			Name: name, MainLcore: 0, NoHuge: true, Dir: dir, Interactive: true,
			Vdevs: []string{
				"net_virtio_user0,path=" + dir + "/fe1.sock,server=1,mac=02:00:00:00:00:01",
				"net_virtio_user1,path=" + dir + "/fe2.sock,server=1,mac=02:00:00:00:00:02",
			},
			Args: []string{"--forward-mode=mac", "--eth-peer=0,02:00:00:00:00:02", "--eth-peer=1,02:00:00:00:00:01", "--burst=32"},
		})
	}
	// loop starts forwarding once both ports run and returns how many
	// frames the switch moved in a few seconds.
	loop := func(sw *testutil.Vswitchd, fe *testutil.Testpmd) uint64 {
		t.Helper()
		sw.WaitPortState(t, "vm1", api.StateRunning, 30*time.Second)
		sw.WaitPortState(t, "vm2", api.StateRunning, 30*time.Second)
		before := sw.MustPorts(t)["vm2"].TxPackets
		fe.Cmd(t, "start tx_first")
		time.Sleep(3 * time.Second)
		fe.Cmd(t, "stop")
		moved := sw.MustPorts(t)["vm2"].TxPackets - before
		if moved < 10000 {
			t.Fatalf("only %d frames moved:\n%s", moved, sw.Log())
		}
		return moved
	}
	fe := startFE("fe1")
	sw := testutil.StartVswitchd(t, dir+"/sw1", clientConfig(dir))
	t.Logf("first switch: %d frames", loop(sw, fe))

	sw.Kill()
	sw2 := testutil.StartVswitchd(t, dir+"/sw2", clientConfig(dir))
	t.Logf("restarted switch: %d frames", loop(sw2, fe))

	if _, err := fe.Stop(); err != nil {
		t.Fatal(err)
	}
	sw2.WaitPortState(t, "vm1", api.StateConnecting, 15*time.Second)
	fe2 := startFE("fe2")
	t.Logf("restarted testpmd: %d frames", loop(sw2, fe2))
	if c := sw2.MustPorts(t)["vm1"].Protocol["connects"]; c != 2 {
		t.Errorf("vm1 connected %d times, want 2", c)
	}
}
