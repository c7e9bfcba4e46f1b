package testutil

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTestpmdLoopbackReference checks the testpmd launcher against the reference backend:
// a virtio_user txonly generator feeding a net_vhost rxonly sink (PEERS R1, --no-huge).
func TestTestpmdLoopbackReference(t *testing.T) {
	RequireRoot(t)
	dir := ShortTempDir(t)
	sock := filepath.Join(dir, "vh0.sock")

	// Backend forwards on CPU 0, generator on CPU 1 (G5).
	be := StartTestpmd(t, TestpmdOptions{
		Name: "be", MainLcore: 1, NoHuge: true, Dir: dir,
		Vdevs: []string{"net_vhost0,iface=" + sock + ",queues=1"},
		Args:  []string{"--forward-mode=rxonly"},
	})
	WaitSocket(t, sock, 20*time.Second)
	gen := StartTestpmd(t, TestpmdOptions{
		Name: "gen", MainLcore: 0, NoHuge: true, Dir: dir,
		Vdevs: []string{"net_virtio_user0,path=" + sock + ",queues=1"},
		Args:  []string{"--forward-mode=txonly", "--txpkts=64"},
	})
	be.WaitLog(t, "virtio is now ready for processing", 20*time.Second)
	gen.WaitLog(t, "start packet forwarding", 20*time.Second)
	time.Sleep(3 * time.Second)

	// Generator first, so the backend drains the ring before it sees the disconnect.
	gs, err := gen.Stop()
	if err != nil {
		t.Fatalf("generator: %v", err)
	}
	bs, err := be.Stop()
	if err != nil {
		t.Fatalf("backend: %v", err)
	}
	t.Logf("generator port 0: %+v", gs[0])
	t.Logf("backend   port 0: %+v", bs[0])
	rx, _ := TestpmdRate(be.Log(), 0, 0, 0)
	_, tx := TestpmdRate(gen.Log(), 0, 0, 0)
	t.Logf("rates: generator tx %.2f Mpps, backend rx %.2f Mpps", tx, rx)

	if gs[0].TxPackets == 0 {
		t.Errorf("generator sent nothing")
	}
	if bs[0].RxPackets == 0 {
		t.Errorf("backend received nothing")
	}
	// txonly TX-dropped means "ring full", not loss: every packet that entered the
	// ring must reach the backend.
	if bs[0].RxPackets != gs[0].TxPackets {
		t.Errorf("backend RX-packets %d != generator TX-packets %d", bs[0].RxPackets, gs[0].TxPackets)
	}
}

// TestGuestsPingThroughTestpmd checks the guest launcher and initramfs: two TCG guests
// ping each other through a testpmd io switch (PEERS 4.3).
func TestGuestsPingThroughTestpmd(t *testing.T) {
	RequireRoot(t)
	dir := ShortTempDir(t)
	s1, s2 := filepath.Join(dir, "g1.sock"), filepath.Join(dir, "g2.sock")

	sw := StartTestpmd(t, TestpmdOptions{
		Name: "sw", MainLcore: 1, NoHuge: true, Dir: dir,
		Vdevs: []string{"net_vhost0,iface=" + s1 + ",queues=1", "net_vhost1,iface=" + s2 + ",queues=1"},
		Args:  []string{"--forward-mode=io"},
	})
	WaitSocket(t, s1, 20*time.Second)
	WaitSocket(t, s2, 20*time.Second)

	start := time.Now()
	g2 := StartGuest(t, GuestOptions{Name: "g2", Socket: s2, MAC: "52:54:00:00:00:02",
		IP: "10.0.0.2/24", Role: "wait", Dir: dir})
	g1 := StartGuest(t, GuestOptions{Name: "g1", Socket: s1, MAC: "52:54:00:00:00:01",
		IP: "10.0.0.1/24", Peer: "10.0.0.2", Role: "ping", Dir: dir})

	out := g1.WaitSerial(t, "LAB-PING-OK", 90*time.Second)
	t.Logf("LAB-PING-OK after %.1fs wall", time.Since(start).Seconds())
	if n := CountLines(out, "bytes from 10.0.0.2"); n < 3 {
		t.Errorf("want >= 3 replies, got %d:\n%s", n, out)
	}
	if !strings.Contains(out, "LAB-NET-UP") || !strings.Contains(out, "52:54:00:00:00:01") {
		t.Errorf("no LAB-NET-UP with the MAC on g1 serial:\n%s", out)
	}
	g2.WaitSerial(t, "LAB-WAITING", 10*time.Second)
	// Role ping powers the guest off; QEMU (-no-reboot) then exits 0.
	if err := g1.Wait(30 * time.Second); err != nil {
		t.Errorf("g1 after poweroff: %v", err)
	}

	g2.Kill()
	st, err := sw.Stop()
	if err != nil {
		t.Fatalf("switch: %v", err)
	}
	t.Logf("switch: port 0 %+v, port 1 %+v", st[0], st[1])
	if st[0].RxPackets == 0 || st[1].RxPackets == 0 {
		t.Errorf("switch saw no traffic in one direction: %+v", st)
	}
	if got := CountLines(sw.Log(), "negotiated Virtio features"); got < 2 {
		t.Errorf("switch log: %d feature negotiations, want >= 2", got)
	}
}
