package vswitch_test

import (
	"bytes"
	"net"
	"testing"

	vswitch "github.com/vswitch/vswitch/switch"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
)

// A cross-connect passes every frame from one port to the other as it is:
// unknown, broadcast and multicast-source frames alike, in both directions,
// without learning a MAC.
func TestXconnectForwardsEverythingToThePeer(t *testing.T) {
	r := newRigMode(t, 2, vhostusertest.Options{}, true)
	for _, fe := range r.fes {
		fe.PostRxBuffers(0, 64, 2048)
	}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	mcastSrc := net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1} // a learning bridge drops it
	from0 := [][]byte{frame(t, mac(0), mac(7), 100), frame(t, mac(0), bcast, 60), frame(t, mcastSrc, mac(1), 80)}
	for _, f := range from0 {
		r.fes[0].SendPacket(0, f)
	}
	from1 := frame(t, mac(1), mac(0), 200)
	r.fes[1].SendPacket(0, from1)
	r.poll()

	got := r.fes[1].Received(0)
	if len(got) != len(from0) {
		t.Fatalf("port 1 got %d frames, want %d", len(got), len(from0))
	}
	for i := range got {
		if !bytes.Equal(got[i], from0[i]) {
			t.Fatalf("port 1 frame %d differs from what port 0 sent", i)
		}
	}
	if got := r.fes[0].Received(0); len(got) != 1 || !bytes.Equal(got[0], from1) {
		t.Fatalf("port 0 got %d frames, want port 1's frame", len(got))
	}
	for i := range r.ports {
		if d := r.drops(i); len(d) != 0 {
			t.Fatalf("port %d drops: %v", i, d)
		}
	}
	br := r.sw.Bridges()[0]
	if _, ok := br.FDB.Lookup(0, vswitch.MAC48(mac(0))); ok {
		t.Fatal("a cross-connect learned a MAC")
	}
}

// A cross-connect takes two ports, not three; with one it drops.
func TestXconnectTwoPorts(t *testing.T) {
	sw := vswitch.New(vswitch.Options{Manual: true})
	defer sw.Close()
	if err := sw.AddBridge("x0", 0, 0, vswitch.BridgeOptions{Xconnect: true}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if _, err := sw.AddPort(n, "test", "x0", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sw.AddPort("c", "test", "x0", nil); err == nil {
		t.Fatal("a third port joined a cross-connect")
	}
	if !sw.Bridges()[0].Xconnect {
		t.Fatal("bridge is not a cross-connect")
	}
}
