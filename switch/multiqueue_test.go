package vswitch_test

import (
	"slices"
	"testing"

	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
)

// With two queue pairs and two workers both pairs carry traffic and are
// counted per queue. After SET_VRING_ENABLE 0 on pair 1 (what QEMU sends
// when the guest's MQ_VQ_PAIRS_SET lowers the pairs) the switch neither
// polls its transmit queue nor fills its receive queue; enabling it again
// resumes both.
func TestDisabledQueuePairIsNotUsed(t *testing.T) {
	r := newRigWorkers(t, 2, 2, vhostusertest.Options{QueuePairs: 2})
	src, dst := r.fes[0], r.fes[1]
	for q := 0; q < 2; q++ {
		dst.PostRxBuffers(q, 32, 2048)
	}
	f := frame(t, mac(0), mac(1), 60)
	send := func(n int) {
		for i := 0; i < n; i++ {
			for q := 0; q < 2; q++ {
				if !src.SendPacket(q, f) {
					t.Fatal("transmit ring full")
				}
			}
		}
		r.poll()
	}
	received := func() (n [2]int) {
		for q := 0; q < 2; q++ {
			n[q] = len(dst.Received(q))
		}
		return n
	}
	send(4)
	rx0, _ := r.vps[0].QueueCounts()
	_, tx1 := r.vps[1].QueueCounts()
	got := received()
	t.Logf("both pairs: sender rx per queue %v, receiver tx per queue %v, received %v", rx0, tx1, got)
	if !slices.Equal(rx0, []uint64{4, 4}) || tx1[0] == 0 || tx1[1] == 0 || got[0]+got[1] != 8 ||
		got[0] != int(tx1[0]) || got[1] != int(tx1[1]) {
		t.Fatalf("per-queue counts rx %v tx %v received %v: want both queues used and counted", rx0, tx1, got)
	}

	for _, fe := range r.fes {
		for _, vring := range []int{2, 3} {
			if err := fe.SetVringEnable(vring, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(4) // four frames on each of the sender's transmit queues
	rx0b, _ := r.vps[0].QueueCounts()
	_, tx1b := r.vps[1].QueueCounts()
	got = received()
	if rx0b[1] != rx0[1] || rx0b[0] != rx0[0]+4 {
		t.Errorf("sender rx per queue %v after %v: the disabled transmit queue was polled", rx0b, rx0)
	}
	if tx1b[1] != tx1[1] || got[1] != 0 || got[0] != 4 {
		t.Errorf("receiver tx per queue %v after %v, received %v: want all into queue 0", tx1b, tx1, got)
	}

	for _, fe := range r.fes {
		for _, vring := range []int{2, 3} {
			if err := fe.SetVringEnable(vring, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.poll() // the four frames waiting on queue 1 go now
	if rx, _ := r.vps[0].QueueCounts(); rx[1] != rx0[1]+4 {
		t.Errorf("sender rx per queue %v after enabling pair 1 again", rx)
	}
}
