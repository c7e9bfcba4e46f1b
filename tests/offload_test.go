package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/testutil"
)

// noOffloads turns every virtio-net offload of a QEMU NIC off.
const noOffloads = ",csum=off,guest_csum=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off," +
	"guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off"

// 10 MiB of TCP between two Linux guests arrives intact whichever side
// has offloads: TSO segments go whole to a guest that takes them, and are
// segmented and checksummed by the switch for one that does not (split
// rings, and packed for the segmenting case).
func TestGuestsTCPOffloadMatrix(t *testing.T) {
	guestPrereqs(t)
	for _, c := range []struct {
		name       string
		txOn, rxOn bool
		dev        string
	}{
		{"both_on", true, true, ""},
		{"sender_on_receiver_off", true, false, ""},
		{"sender_off_receiver_on", false, true, ""},
		{"packed_sender_on_receiver_off", true, false, ",packed=on"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sw := testutil.StartVswitchd(t, "", twoPortConfig("adaptive"))
			devOpts := func(on bool) string {
				if on {
					return c.dev
				}
				return c.dev + noOffloads
			}
			rx := testutil.StartGuest(t, testutil.GuestOptions{Name: "rx", Socket: sw.Dir + "/vm2.sock",
				MAC: "52:54:00:00:00:02", IP: "10.0.0.2/24", Role: "tcprecv", DevOpts: devOpts(c.rxOn), Dir: sw.Dir})
			tx := testutil.StartGuest(t, testutil.GuestOptions{Name: "tx", Socket: sw.Dir + "/vm1.sock",
				MAC: "52:54:00:00:00:01", IP: "10.0.0.1/24", Peer: "10.0.0.2", Role: "tcpsend",
				DevOpts: devOpts(c.txOn), KernelArgs: "lab.kb=10240", Dir: sw.Dir})
			start := time.Now()
			sent := field(tx.WaitSerial(t, "LAB-TCP-TX", 120*time.Second), "LAB-TCP-TX")
			got := field(rx.WaitSerial(t, "LAB-TCP-RX", 240*time.Second), "LAB-TCP-RX")
			ports := sw.MustPorts(t)
			vm1, vm2 := ports["vm1"], ports["vm2"]
			t.Logf("%s in %v; vm1 rx %d pkts %d B (%d B/pkt) drops %v; vm2 tx %d pkts %d B drops %v",
				c.name, time.Since(start).Round(time.Second), vm1.RxPackets, vm1.RxBytes, vm1.RxBytes/max(vm1.RxPackets, 1),
				vm1.Drops, vm2.TxPackets, vm2.TxBytes, vm2.Drops)
			t.Logf("vm1 features %v; vm2 features %v", vm1.Features, vm2.Features)
			if sent == "" || sent != got || !strings.HasSuffix(sent, " 10485760") {
				t.Fatalf("sent %q, received %q", sent, got)
			}
			for _, x := range []struct {
				on    bool
				feats []string
				names []string
			}{{c.txOn, vm1.Features, []string{"CSUM", "HOST_TSO4"}}, {c.rxOn, vm2.Features, []string{"GUEST_CSUM", "GUEST_TSO4"}}} {
				for _, n := range x.names {
					if contains(x.feats, n) != x.on {
						t.Errorf("feature %s negotiated=%v, want %v", n, !x.on, x.on)
					}
				}
			}
			if d := vm1.Drops["bad_offload_header"]; d != 0 {
				t.Errorf("%d bad_offload_header drops from a Linux guest", d)
			}
			// A TSO sender hands over segments larger than a frame; to a
			// guest without TSO they leave as more, MTU-sized frames.
			if c.txOn {
				if vm1.RxBytes/max(vm1.RxPackets, 1) <= 1514 {
					t.Errorf("the sender's frames average %d bytes: no TSO segments seen", vm1.RxBytes/max(vm1.RxPackets, 1))
				}
				if !c.rxOn && vm2.TxPackets <= vm1.RxPackets {
					t.Errorf("vm2 got %d frames from vm1's %d: not segmented", vm2.TxPackets, vm1.RxPackets)
				}
			}
		})
	}
}
