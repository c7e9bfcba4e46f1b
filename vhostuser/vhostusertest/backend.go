package vhostusertest

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/virtio"
)

// FakeBackend implements vhostuser.Backend for device tests. It records
// the published states and RARP requests. Its zero value is ready; it is
// safe for concurrent use.
//
// Do runs a "worker" over the current state under the same lock Publish
// takes, so Publish returns only once no Do is using the previous state:
// the quiescence the Backend contract asks for.
type FakeBackend struct {
	mu        sync.Mutex
	state     *vhostuser.State
	publishes int
	rarps     []net.HardwareAddr
}

var _ vhostuser.Backend = (*FakeBackend)(nil)

// Publish records st.
func (b *FakeBackend) Publish(st *vhostuser.State) {
	b.mu.Lock()
	b.state = st
	b.publishes++
	b.mu.Unlock()
}

// SendRARP records mac.
func (b *FakeBackend) SendRARP(mac net.HardwareAddr) {
	b.mu.Lock()
	b.rarps = append(b.rarps, append(net.HardwareAddr(nil), mac...))
	b.mu.Unlock()
}

// State is the last published state (nil before the first Publish).
func (b *FakeBackend) State() *vhostuser.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Publishes counts Publish calls.
func (b *FakeBackend) Publishes() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.publishes
}

// RARPs returns the MACs SendRARP was asked to announce, in order.
func (b *FakeBackend) RARPs() []net.HardwareAddr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]net.HardwareAddr(nil), b.rarps...)
}

// Do calls fn with the current state while holding off Publish, as a data
// plane worker between two quiescent points. fn must not block on the
// device's control connection.
func (b *FakeBackend) Do(fn func(st *vhostuser.State)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(b.state)
}

// WaitState waits until cond holds for the current state and returns that
// state; it fails the test after timeout (DefaultTimeout if zero).
func (b *FakeBackend) WaitState(t testing.TB, timeout time.Duration, cond func(st *vhostuser.State) bool) *vhostuser.State {
	t.Helper()
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		st := b.State()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("vhostusertest: state condition not reached within %v (last state %+v)", timeout, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// RunningPairs is how many queue pairs of st have both rings running.
func RunningPairs(st *vhostuser.State) int {
	if st == nil {
		return 0
	}
	n := 0
	for i := range st.Rx {
		if st.Rx[i] != nil && st.Tx[i] != nil {
			n++
		}
	}
	return n
}

// WaitRunning waits until pairs queue pairs run.
func (b *FakeBackend) WaitRunning(t testing.TB, pairs int) *vhostuser.State {
	t.Helper()
	return b.WaitState(t, 0, func(st *vhostuser.State) bool { return RunningPairs(st) == pairs })
}

// Loopback moves every packet the guest transmitted on each running queue
// pair to the same pair's receive ring (a one-port switch), copying header
// and frame, and flushes both rings. It runs as a worker under Do and
// returns how many packets it delivered and dropped (no receive buffer,
// or a chain the engine refused).
func (b *FakeBackend) Loopback() (delivered, dropped int) {
	b.Do(func(st *vhostuser.State) {
		if st == nil {
			return
		}
		var txs, rxs [virtio.MaxSegs][]byte
		for i := range st.Tx {
			tx, rx := st.Tx[i], st.Rx[i]
			if tx == nil {
				continue
			}
			n, err := tx.Avail()
			if err != nil {
				continue
			}
			rxAvail := 0
			if rx != nil {
				if rxAvail, err = rx.Avail(); err != nil {
					rxAvail = 0
				}
			}
			for ; n > 0; n-- {
				head, nseg, total, cerr := tx.Next(&txs, false)
				if cerr != virtio.ChainOK {
					if cerr != virtio.ChainBadHead {
						tx.PutUsed(head, 0)
					}
					dropped++
					continue
				}
				if rxAvail == 0 {
					tx.PutUsed(head, 0)
					dropped++
					continue
				}
				rhead, rseg, rtotal, rerr := rx.Next(&rxs, true)
				rxAvail--
				if rerr != virtio.ChainOK || rtotal < total {
					if rerr != virtio.ChainBadHead {
						rx.PutUsed(rhead, 0)
					}
					tx.PutUsed(head, 0)
					dropped++
					continue
				}
				copySegs(rxs[:rseg], txs[:nseg])
				rx.PutUsed(rhead, uint32(total))
				tx.PutUsed(head, 0)
				delivered++
			}
			tx.Flush()
			if rx != nil {
				rx.Flush()
			}
		}
	})
	return delivered, dropped
}

// copySegs copies the bytes of src segments into dst segments in order.
func copySegs(dst, src [][]byte) {
	di, doff := 0, 0
	for _, s := range src {
		for len(s) > 0 && di < len(dst) {
			n := copy(dst[di][doff:], s)
			s = s[n:]
			doff += n
			if doff == len(dst[di]) {
				di, doff = di+1, 0
			}
		}
	}
}
