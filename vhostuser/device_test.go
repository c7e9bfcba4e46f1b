package vhostuser_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/vhostuser/vhostusertest"
	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// TestMain fails the package if tests leave goroutines behind (after
// wireguard-go's goroutineLeakCheck): servers, clients and connection
// goroutines must all end when their owner is closed.
func TestMain(m *testing.M) {
	before := goroutineIDs()
	code := m.Run()
	fuzzing := false
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if fl := flag.Lookup(name); fl != nil && fl.Value.String() != "" && fl.Value.String() != "false" {
			fuzzing = true
		}
	}
	if code == 0 && !fuzzing {
		if leaked := waitGoroutines(before, 5*time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// goroutineIDs returns the stacks of the running goroutines by id.
func goroutineIDs() map[int]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[int]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		f := strings.Fields(g)
		if len(f) < 2 || f[0] != "goroutine" {
			continue
		}
		if id, err := strconv.Atoi(f[1]); err == nil {
			out[id] = g
		}
	}
	return out
}

// waitGoroutines waits for goroutines not in before to end and returns the
// stacks of those still running at the deadline.
func waitGoroutines(before map[int]string, d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		var leaked []string
		for id, stack := range goroutineIDs() {
			if _, ok := before[id]; !ok {
				leaked = append(leaked, stack)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			sort.Strings(leaked)
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLog discards device logs unless VSWITCH_TEST_LOG=1.
func testLog(name string) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.PanicLevel)
	if os.Getenv("VSWITCH_TEST_LOG") == "1" {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return l.WithField("port", name)
}

// sockDir is a short directory for sockets (sun_path is 108 bytes).
func sockDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

const testGuestSize = 8 << 20

// bed is one device with a fake data plane behind a listening socket.
type bed struct {
	dev  *vhostuser.Device
	be   *vhostusertest.FakeBackend
	srv  *vhostuser.Server
	path string
}

func newBed(t testing.TB, name string, pairs int) *bed {
	t.Helper()
	b := &bed{be: &vhostusertest.FakeBackend{}, path: filepath.Join(sockDir(t), name+".sock")}
	b.dev = vhostuser.NewDevice(vhostuser.Options{Name: name, QueuePairs: pairs, Log: testLog(name)}, b.be)
	srv, err := vhostuser.Listen(b.path, vhostuser.SocketOptions{UID: -1, GID: -1}, b.dev)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	b.srv = srv
	t.Cleanup(func() { srv.Close() })
	return b
}

// waitDisconnected waits until the device has dropped its front-end and
// withdrawn its rings.
func (b *bed) waitDisconnected(t testing.TB) {
	t.Helper()
	b.be.WaitState(t, 0, func(st *vhostuser.State) bool { return !st.Running() })
	deadline := time.Now().Add(vhostusertest.DefaultTimeout)
	for b.dev.Status().Connected {
		if time.Now().After(deadline) {
			t.Fatal("device still connected")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// connect connects a front-end, retrying while the server is still
// cleaning up after the previous one (it serves one front-end at a time).
func (b *bed) connect(t testing.TB, g *virtiotest.Guest, o vhostusertest.Options) *vhostusertest.Frontend {
	t.Helper()
	deadline := time.Now().Add(vhostusertest.DefaultTimeout)
	for {
		f, err := vhostusertest.TryConnect(t, b.path, g, o)
		if err == nil {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func frame(qp, i, size int) []byte {
	b := make([]byte, size)
	copy(b, []byte{0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2, 0x08, 0x00})
	for j := 14; j < size; j++ {
		b[j] = byte(qp*31 + i*7 + j)
	}
	return b
}

// traffic sends n frames on every queue pair, runs the fake data plane and
// checks each frame came back on the same pair's receive ring.
func traffic(t testing.TB, f *vhostusertest.Frontend, be *vhostusertest.FakeBackend, pairs, n int) {
	t.Helper()
	for qp := 0; qp < pairs; qp++ {
		if got := f.PostRxBuffers(qp, n, 2048); got != n {
			t.Fatalf("posted %d rx buffers, want %d", got, n)
		}
		for i := 0; i < n; i++ {
			if !f.SendPacketSplit(qp, frame(qp, i, 60+i*17), i%3*40) {
				t.Fatalf("tx ring %d full", qp)
			}
		}
	}
	if d, drop := be.Loopback(); d != n*pairs || drop != 0 {
		t.Fatalf("loopback delivered %d dropped %d, want %d and 0", d, drop, n*pairs)
	}
	for qp := 0; qp < pairs; qp++ {
		got := f.Received(qp)
		if len(got) != n {
			t.Fatalf("queue pair %d received %d frames, want %d", qp, len(got), n)
		}
		for i, fr := range got {
			if !bytes.Equal(fr, frame(qp, i, 60+i*17)) {
				t.Fatalf("queue pair %d frame %d corrupted: %x", qp, i, fr)
			}
		}
		f.TxDone(qp)
		if n := f.Tx(qp).InFlight(); n != 0 {
			t.Fatalf("tx chains not returned: %d in flight", n)
		}
	}
}

func TestHandshake(t *testing.T) {
	cases := []struct {
		name  string
		pairs int
		o     vhostusertest.Options
	}{
		{"1 pair", 1, vhostusertest.Options{}},
		{"4 pairs", 4, vhostusertest.Options{QueuePairs: 4, RingSize: 64}},
		{"2 of 4 pairs", 4, vhostusertest.Options{QueuePairs: 2}},
		{"no event idx", 1, vhostusertest.Options{NoEventIdx: true, RingSize: 1024}},
		{"mtu", 1, vhostusertest.Options{MTU: 9000}},
		{"ring of one", 1, vhostusertest.Options{RingSize: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, "hs", c.pairs)
			g := virtiotest.NewGuest(t, testGuestSize)
			f := vhostusertest.Connect(t, b.path, g, c.o)
			pairs := max(c.o.QueuePairs, 1)
			// REPLY_ACK: every set request was applied before its ack, so
			// the rings already run.
			st := b.be.State()
			if got := vhostusertest.RunningPairs(st); got != pairs {
				t.Fatalf("%d queue pairs running after the handshake, want %d", got, pairs)
			}
			if len(st.Rx) != c.pairs || st.Features != f.Features || st.HdrLen != 12 || st.MTU != c.o.MTU {
				t.Fatalf("state: %d rx, features %#x (want %#x), hdr %d, mtu %d", len(st.Rx), st.Features, f.Features, st.HdrLen, st.MTU)
			}
			if f.Features&virtio.Bit(virtio.RingFEventIdx) != 0 == c.o.NoEventIdx {
				t.Fatalf("EVENT_IDX negotiated = %v with NoEventIdx %v", !c.o.NoEventIdx, c.o.NoEventIdx)
			}
			if c.pairs > 1 && (f.QueueNum != c.pairs || f.Features&virtio.Bit(virtio.NetFMQ) == 0) {
				t.Fatalf("GET_QUEUE_NUM = %d, features %s", f.QueueNum, virtio.FeatureString(f.Features))
			}
			if rs := st.Memory.Regions(); len(rs) != 1 || rs[0].Size != g.Size() || rs[0].UserAddr != virtiotest.UserBase {
				t.Fatalf("memory regions %+v", rs)
			}
			s := b.dev.Status()
			if !s.Connected || s.QueuePairs != pairs || s.Regions != 1 || s.Features != f.Features ||
				s.ProtocolFeatures != f.ProtocolFeatures || s.MTU != c.o.MTU {
				t.Fatalf("status %+v", s)
			}
			size := c.o.RingSize
			if size == 0 {
				size = 256
			}
			n := min(int(size), 8)
			traffic(t, f, b.be, pairs, n)
			for qp := 0; qp < pairs; qp++ {
				if f.Interrupts(2*qp) == 0 {
					t.Fatalf("no interrupt on rx ring %d", qp)
				}
			}
			traffic(t, f, b.be, pairs, n)
			if b.dev.Counters.BadMessages.Load() != 0 || b.dev.Counters.RingErrors.Load() != 0 {
				t.Fatalf("counters: bad %d ring errors %d", b.dev.Counters.BadMessages.Load(), b.dev.Counters.RingErrors.Load())
			}
		})
	}
}

// TestHandshakeWithoutReplyAck: without REPLY_ACK the front-end cannot
// tell when the rings run; they must start anyway.
func TestHandshakeWithoutReplyAck(t *testing.T) {
	b := newBed(t, "noack", 1)
	g := virtiotest.NewGuest(t, testGuestSize)
	f := vhostusertest.Connect(t, b.path, g, vhostusertest.Options{Protocol: vhostusertest.DefaultProtocol &^ (1 << vhostuser.ProtocolReplyAck)})
	if f.HasProtocol(vhostuser.ProtocolReplyAck) {
		t.Fatal("REPLY_ACK negotiated")
	}
	b.be.WaitRunning(t, 1)
	traffic(t, f, b.be, 1, 4)
}

// TestHandshakeWithoutProtocolFeatures: a front-end that does not ack
// VHOST_USER_F_PROTOCOL_FEATURES sends no SET_VRING_ENABLE; the rings start
// enabled.
func TestHandshakeWithoutProtocolFeatures(t *testing.T) {
	b := newBed(t, "noproto", 1)
	g := virtiotest.NewGuest(t, testGuestSize)
	f := vhostusertest.Connect(t, b.path, g, vhostusertest.Options{Features: ^virtio.Bit(virtio.FProtocolFeatures)})
	b.be.WaitRunning(t, 1)
	traffic(t, f, b.be, 1, 4)
}

// TestRingsDisabledUntilEnabled: with protocol features rings wait for
// SET_VRING_ENABLE.
func TestRingsDisabledUntilEnabled(t *testing.T) {
	b := newBed(t, "enable", 1)
	g := virtiotest.NewGuest(t, testGuestSize)
	f := vhostusertest.Connect(t, b.path, g, vhostusertest.Options{NoEnable: true})
	if b.be.State().Running() {
		t.Fatal("rings run before SET_VRING_ENABLE")
	}
	for i := 0; i < 2; i++ {
		if err := f.SetVringEnable(i, true); err != nil {
			t.Fatal(err)
		}
	}
	if vhostusertest.RunningPairs(b.be.State()) != 1 {
		t.Fatal("rings not running after SET_VRING_ENABLE")
	}
	if err := f.SetVringEnable(1, false); err != nil {
		t.Fatal(err)
	}
	if st := b.be.State(); st.Tx[0] != nil || st.Rx[0] == nil {
		t.Fatal("disabling vring 1 did not stop exactly the tx ring")
	}
}

// TestClientMode: the front-end listens (QEMU server=on) and the device
// connects, and connects again after the front-end restarts.
func TestClientMode(t *testing.T) {
	path := filepath.Join(sockDir(t), "client.sock")
	be := &vhostusertest.FakeBackend{}
	dev := vhostuser.NewDevice(vhostuser.Options{Name: "client", Log: testLog("client")}, be)
	c := vhostuser.Dial(path, dev)
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(vhostusertest.DefaultTimeout)
	for !strings.HasPrefix(dev.Status().Err, "cannot reach the front-end: ") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e := dev.Status().Err; !strings.Contains(e, "no such file") {
		t.Errorf("status error %q, want the front-end unreachable", e)
	}
	for round := 0; round < 2; round++ {
		g := virtiotest.NewGuest(t, testGuestSize)
		f := vhostusertest.Connect(t, path, g, vhostusertest.Options{Server: true})
		be.WaitRunning(t, 1)
		if e := dev.Status().Err; e != "" {
			t.Errorf("status error %q while connected", e)
		}
		traffic(t, f, be, 1, 4)
		f.Close()
		be.WaitState(t, 0, func(st *vhostuser.State) bool { return !st.Running() })
	}
	if n := dev.Counters.Connects.Load(); n != 2 {
		t.Fatalf("%d connects, want 2", n)
	}
}

func TestGetVringBase(t *testing.T) {
	b := newBed(t, "base", 1)
	g := virtiotest.NewGuest(t, testGuestSize)
	f := vhostusertest.Connect(t, b.path, g, vhostusertest.Options{RingSize: 16})
	traffic(t, f, b.be, 1, 5)
	// Two more sent but not yet consumed: they stay with the guest.
	f.SendPacket(0, frame(0, 0, 64))
	f.SendPacket(0, frame(0, 1, 64))

	if got := f.GetVringBase(1); got != 5 {
		t.Fatalf("GET_VRING_BASE tx = %d, want 5", got)
	}
	st := b.be.State()
	if st.Tx[0] != nil || st.Rx[0] == nil {
		t.Fatalf("after GET_VRING_BASE tx: tx %v rx %v, want tx stopped only", st.Tx[0], st.Rx[0])
	}
	if got := f.GetVringBase(0); got != 5 {
		t.Fatalf("GET_VRING_BASE rx = %d, want 5", got)
	}
	if b.be.State().Running() || b.dev.Status().QueuePairs != 0 {
		t.Fatal("rings still run after GET_VRING_BASE on both")
	}
	// A stopped ring keeps its base.
	if got := f.GetVringBase(1); got != 5 {
		t.Fatalf("second GET_VRING_BASE tx = %d, want 5", got)
	}
	// Restart both where they stopped (QEMU: SET_VRING_BASE, _KICK).
	for i := 0; i < 2; i++ {
		if err := f.SetupVring(i); err != nil {
			t.Fatal(err)
		}
	}
	if vhostusertest.RunningPairs(b.be.State()) != 1 {
		t.Fatal("rings did not restart")
	}
	f.PostRxBuffers(0, 2, 2048)
	if d, _ := b.be.Loopback(); d != 2 {
		t.Fatalf("delivered %d of the 2 packets queued while stopped", d)
	}
	if got := f.Received(0); len(got) != 2 || !bytes.Equal(got[1], frame(0, 1, 64)) {
		t.Fatalf("received %d frames after restart", len(got))
	}
	traffic(t, f, b.be, 1, 3)
}

func TestReconnect(t *testing.T) {
	b := newBed(t, "reconn", 2)
	for round := 0; round < 3; round++ {
		g := virtiotest.NewGuest(t, testGuestSize) // a new guest: a new memory table
		f := b.connect(t, g, vhostusertest.Options{QueuePairs: 2})
		if vhostusertest.RunningPairs(b.be.State()) != 2 {
			t.Fatalf("round %d: rings not running", round)
		}
		traffic(t, f, b.be, 2, 4)
		f.Close()
		b.waitDisconnected(t)
		if s := b.dev.Status(); s.Regions != 0 || s.Features != 0 || s.QueuePairs != 0 {
			t.Fatalf("round %d: state kept after disconnect: %+v", round, s)
		}
	}
	if n := b.dev.Counters.Connects.Load(); n != 3 {
		t.Fatalf("%d connects, want 3", n)
	}
}

// TestSecondFrontendRefused: one front-end per device; a second one is
// hung up on and the first keeps working.
func TestSecondFrontendRefused(t *testing.T) {
	b := newBed(t, "second", 1)
	g := virtiotest.NewGuest(t, testGuestSize)
	f := vhostusertest.Connect(t, b.path, g, vhostusertest.Options{})
	if _, err := vhostusertest.TryConnect(t, b.path, virtiotest.NewGuest(t, testGuestSize), vhostusertest.Options{}); err == nil {
		t.Fatal("a second front-end was served")
	}
	traffic(t, f, b.be, 1, 4)
}

func TestListenSocketFile(t *testing.T) {
	dir := sockDir(t)
	dev := func() *vhostuser.Device {
		return vhostuser.NewDevice(vhostuser.Options{Log: testLog("listen")}, &vhostusertest.FakeBackend{})
	}
	opts := vhostuser.SocketOptions{UID: -1, GID: -1}
	// A stale socket file (no listener) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, err := vhostuser.Listen(stale, opts, dev())
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if fi, err := os.Stat(stale); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	// A live one is not taken over.
	if _, err := vhostuser.Listen(stale, opts, dev()); err == nil {
		t.Fatal("took over a socket in use")
	}
	s.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Close left the socket file")
	}
	// A regular file is not removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := vhostuser.Listen(file, opts, dev()); err == nil {
		t.Fatal("replaced a regular file")
	}
}

func TestReplyAck(t *testing.T) {
	b := newBed(t, "ack", 1)
	g := virtiotest.NewGuest(t, testGuestSize)
	f := vhostusertest.Connect(t, b.path, g, vhostusertest.Options{})
	send := func(req vhostuser.Request, flags uint32, body []byte) {
		t.Helper()
		if err := f.Send(req, flags, body); err != nil {
			t.Fatal(err)
		}
	}
	ack := func(req vhostuser.Request, want uint64) {
		t.Helper()
		h, body, err := f.Recv()
		if err != nil {
			t.Fatalf("%s: no ack: %v", req, err)
		}
		v, _ := vhostuser.DecodeU64(body)
		if h.Request != req || h.Flags != vhostuser.FlagVersion|vhostuser.FlagReply || uint64(v) != want {
			t.Fatalf("%s: ack %+v %x, want status %d", req, h, body, want)
		}
	}
	features := func() {
		t.Helper()
		b, err := f.Request(vhostuser.GetFeatures, nil)
		if err != nil {
			t.Fatalf("connection did not survive: %v", err)
		}
		if b2u(b) != f.Offered {
			t.Fatalf("GET_FEATURES = %x", b)
		}
	}
	const needReply = vhostuser.FlagVersion | vhostuser.FlagNeedReply
	send(vhostuser.SetOwner, needReply, nil)
	ack(vhostuser.SetOwner, 0)
	// No NEED_REPLY, no reply: the next reply is GET_FEATURES'.
	send(vhostuser.SetOwner, vhostuser.FlagVersion, nil)
	features()

	refused := b.dev.Counters.Refused.Load()
	send(vhostuser.SetLogBase, needReply, make([]byte, 16)) // unsupported, no reply of its own
	ack(vhostuser.SetLogBase, 1)
	send(vhostuser.Request(999), vhostuser.FlagVersion, []byte{1, 2, 3})
	send(vhostuser.Request(0), needReply, nil)
	ack(vhostuser.Request(0), 1)
	features()
	if got := b.dev.Counters.Refused.Load() - refused; got != 3 {
		t.Fatalf("Refused counted %d, want 3", got)
	}
	if b.dev.Counters.BadMessages.Load() != 0 {
		t.Fatal("unsupported requests counted as bad messages")
	}
	traffic(t, f, b.be, 1, 2)

	// An invalid request with NEED_REPLY is nacked, then the connection
	// closes.
	send(vhostuser.SetVringNum, needReply, vhostuser.VringState{Index: 0, Num: 3}.Bytes())
	ack(vhostuser.SetVringNum, 1)
	if !f.Closed(vhostusertest.DefaultTimeout) {
		t.Fatal("connection open after an invalid request")
	}
	b.waitDisconnected(t)
}

func b2u(b []byte) uint64 {
	v, _ := vhostuser.DecodeU64(b)
	return uint64(v)
}

// memfd returns a memfd of size bytes, closed at the end of the test.
func memfd(t testing.TB, size int) int {
	t.Helper()
	fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func eventfd(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func memTable(regions ...vhostuser.MemRegion) []byte {
	return vhostuser.MemoryTable{Regions: regions}.Bytes()
}

// rawTable encodes a memory table without the encoder's help (count as
// given).
func rawTable(count uint32, regions ...vhostuser.MemRegion) []byte {
	b := memTable(regions...)
	b[0], b[1], b[2], b[3] = byte(count), byte(count>>8), byte(count>>16), byte(count>>24)
	return b
}

type hostile struct {
	name string
	o    vhostusertest.Options
	// send sends the hostile message(s) on a connected front-end.
	send func(t *testing.T, f *vhostusertest.Frontend)
	// survive: the connection stays up (else it must be closed).
	survive bool
	// Expected counter increments.
	bad, refused, ringErrors uint64
}

func hostileCases(t *testing.T) []hostile {
	const ver = vhostuser.FlagVersion
	send := func(req vhostuser.Request, flags uint32, body []byte, fds ...int) func(*testing.T, *vhostusertest.Frontend) {
		return func(t *testing.T, f *vhostusertest.Frontend) {
			if err := f.Send(req, flags, body, fds...); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw := func(b []byte) func(*testing.T, *vhostusertest.Frontend) {
		return func(t *testing.T, f *vhostusertest.Frontend) {
			if err := f.SendRaw(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	hdr := func(req vhostuser.Request, flags, size uint32) []byte {
		b := make([]byte, vhostuser.HeaderSize)
		vhostuser.EncodeHeader(b, vhostuser.Header{Request: req, Flags: flags, Size: size})
		return b
	}
	withGuest := func(fn func(t *testing.T, f *vhostusertest.Frontend, g *virtiotest.Guest)) func(*testing.T, *vhostusertest.Frontend) {
		return func(t *testing.T, f *vhostusertest.Frontend) { fn(t, f, f.Guest()) }
	}
	region := func(g *virtiotest.Guest) vhostuser.MemRegion {
		r := g.Region()
		return vhostuser.MemRegion{GuestPhysAddr: r.GuestPhysAddr, Size: r.Size, UserAddr: r.UserAddr, MmapOffset: r.MmapOffset}
	}
	mem := func(regions func(g *virtiotest.Guest) []vhostuser.MemRegion, nfds int) func(*testing.T, *vhostusertest.Frontend) {
		return withGuest(func(t *testing.T, f *vhostusertest.Frontend, g *virtiotest.Guest) {
			fds := make([]int, nfds)
			for i := range fds {
				fds[i] = g.Fd()
			}
			if err := f.Send(vhostuser.SetMemTable, ver, memTable(regions(g)...), fds...); err != nil {
				t.Fatal(err)
			}
		})
	}
	state := func(i, n uint32) []byte { return vhostuser.VringState{Index: i, Num: n}.Bytes() }
	manyFds := func(n int) []int {
		fds := make([]int, n)
		for i := range fds {
			fds[i] = eventfd(t)
		}
		return fds
	}
	return []hostile{
		{name: "payload too short", send: send(vhostuser.SetFeatures, ver, []byte{1, 2, 3, 4}), bad: 1},
		{name: "payload on GET_FEATURES", send: send(vhostuser.GetFeatures, ver, make([]byte, 8)), bad: 1},
		{name: "vring state too long", send: send(vhostuser.SetVringNum, ver, make([]byte, 12)), bad: 1},
		{name: "version 0", send: send(vhostuser.GetFeatures, 0, nil), bad: 1},
		{name: "version 2", send: send(vhostuser.GetFeatures, 2, nil), bad: 1},
		{name: "reply flag on a request", send: send(vhostuser.GetFeatures, ver|vhostuser.FlagReply, nil), bad: 1},
		{name: "body over MaxPayload", send: raw(append(hdr(vhostuser.SetMemTable, ver, vhostuser.MaxPayload+1), make([]byte, 64)...)), bad: 1},
		{name: "body of 4 GiB", send: raw(hdr(vhostuser.SetFeatures, ver, 0xffffffff)), bad: 1},
		{name: "mem table overlapping regions", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r2 := r
			r2.UserAddr += r.Size
			r2.GuestPhysAddr += r.Size / 2
			return []vhostuser.MemRegion{r, r2}
		}, 2), bad: 1},
		{name: "mem table overlapping user addresses", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r2 := r
			r2.GuestPhysAddr += r.Size
			return []vhostuser.MemRegion{r, r2}
		}, 2), bad: 1},
		{name: "mem table zero-sized region", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r.Size = 0
			return []vhostuser.MemRegion{r}
		}, 1), bad: 1},
		{name: "mem table fewer fds than regions", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r.Size /= 2
			r2 := r
			r2.GuestPhysAddr, r2.UserAddr, r2.MmapOffset = r.Size, r.UserAddr+r.Size, r.Size
			return []vhostuser.MemRegion{r, r2}
		}, 1), bad: 1},
		{name: "mem table more fds than regions", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			return []vhostuser.MemRegion{region(g)}
		}, 2), bad: 1},
		{name: "mem table region larger than the memfd", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r.Size *= 2
			return []vhostuser.MemRegion{r}
		}, 1), bad: 1},
		{name: "mem table offset past the memfd", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r.Size, r.MmapOffset = 4096, r.Size
			return []vhostuser.MemRegion{r}
		}, 1), bad: 1},
		{name: "mem table huge region", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r.Size = 1 << 62
			return []vhostuser.MemRegion{r}
		}, 1), bad: 1},
		{name: "mem table offset wraps", send: mem(func(g *virtiotest.Guest) []vhostuser.MemRegion {
			r := region(g)
			r.MmapOffset = ^uint64(0) - 100
			return []vhostuser.MemRegion{r}
		}, 1), bad: 1},
		{name: "mem table fd is not memory", send: func(t *testing.T, f *vhostusertest.Frontend) {
			r := region(f.Guest())
			r.Size = 4096
			if err := f.Send(vhostuser.SetMemTable, ver, memTable(r), eventfd(t)); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "mem table count larger than body", send: func(t *testing.T, f *vhostusertest.Frontend) {
			g := f.Guest()
			if err := f.Send(vhostuser.SetMemTable, ver, rawTable(3, region(g)), g.Fd(), g.Fd(), g.Fd()); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "mem table of 9 regions", send: func(t *testing.T, f *vhostusertest.Frontend) {
			g := f.Guest()
			var rs []vhostuser.MemRegion
			for i := uint64(0); i < 9; i++ {
				rs = append(rs, vhostuser.MemRegion{GuestPhysAddr: i << 20, Size: 4096, UserAddr: i << 30})
			}
			if err := f.Send(vhostuser.SetMemTable, ver, memTable(rs...), g.Fd(), g.Fd(), g.Fd(), g.Fd(), g.Fd(), g.Fd(), g.Fd(), g.Fd()); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "mem table empty", send: send(vhostuser.SetMemTable, ver, rawTable(0)), bad: 1},
		{name: "too many fds", send: func(t *testing.T, f *vhostusertest.Frontend) {
			if err := f.Send(vhostuser.SetOwner, ver, nil, manyFds(vhostuser.MaxFds+4)...); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "fds beyond the control buffer", send: func(t *testing.T, f *vhostusertest.Frontend) {
			if err := f.Send(vhostuser.SetOwner, ver, nil, manyFds(60)...); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "fd on a request without fds", send: func(t *testing.T, f *vhostusertest.Frontend) {
			if err := f.Send(vhostuser.SetOwner, ver, nil, eventfd(t)); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "kick without fd", send: send(vhostuser.SetVringKick, ver, vhostuser.U64(1).Bytes()), bad: 1},
		{name: "kick reserved bits", send: func(t *testing.T, f *vhostusertest.Frontend) {
			if err := f.Send(vhostuser.SetVringKick, ver, vhostuser.U64(1<<20).Bytes(), eventfd(t)); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "vring index out of range", send: send(vhostuser.SetVringNum, ver, state(2, 256)), bad: 1},
		{name: "vring index huge", send: send(vhostuser.SetVringBase, ver, state(0xffffffff, 0)), bad: 1},
		{name: "call fd index out of range", send: func(t *testing.T, f *vhostusertest.Frontend) {
			if err := f.Send(vhostuser.SetVringCall, ver, vhostuser.U64(200).Bytes(), eventfd(t)); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "enable index out of range", send: send(vhostuser.SetVringEnable, ver, state(7, 1)), bad: 1},
		{name: "ring size 300", send: send(vhostuser.SetVringNum, ver, state(0, 300)), bad: 1},
		{name: "ring size 0", send: send(vhostuser.SetVringNum, ver, state(1, 0)), bad: 1},
		{name: "ring size 65536", send: send(vhostuser.SetVringNum, ver, state(1, 65536)), bad: 1},
		{name: "vring base over 16 bits", send: send(vhostuser.SetVringBase, ver, state(0, 0x10000)), bad: 1},
		{name: "vring enable 2", send: send(vhostuser.SetVringEnable, ver, state(0, 2)), bad: 1},
		{name: "vring addr misaligned", send: func(t *testing.T, f *vhostusertest.Frontend) {
			a := f.VringAddr(1)
			a.Desc += 8
			if err := f.Send(vhostuser.SetVringAddr, ver, a.Bytes()); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "vring addr unknown flags", send: func(t *testing.T, f *vhostusertest.Frontend) {
			a := f.VringAddr(1)
			a.Flags = 6
			if err := f.Send(vhostuser.SetVringAddr, ver, a.Bytes()); err != nil {
				t.Fatal(err)
			}
		}, bad: 1},
		{name: "features not offered", send: send(vhostuser.SetFeatures, ver, vhostuser.U64(virtio.Bit(virtio.NetFCtrlVQ)|virtio.Bit(virtio.FVersion1)).Bytes()), bad: 1},
		{name: "protocol features not offered", send: send(vhostuser.SetProtocolFeatures, ver, vhostuser.U64(1<<vhostuser.ProtocolBackendReq).Bytes()), bad: 1},
		{name: "GET_QUEUE_NUM without MQ", o: vhostusertest.Options{Protocol: vhostusertest.DefaultProtocol &^ (1 << vhostuser.ProtocolMQ)},
			send: send(vhostuser.GetQueueNum, ver, nil), bad: 1},
		{name: "SEND_RARP without RARP", o: vhostusertest.Options{Protocol: vhostusertest.DefaultProtocol &^ (1 << vhostuser.ProtocolRARP)},
			send: send(vhostuser.SendRARP, ver, make([]byte, 8)), bad: 1},
		{name: "MTU too small", send: send(vhostuser.NetSetMTU, ver, vhostuser.U64(67).Bytes()), bad: 1},
		{name: "MTU too large", send: send(vhostuser.NetSetMTU, ver, vhostuser.U64(1<<40).Bytes()), bad: 1},
		{name: "unknown request", send: send(vhostuser.Request(12345), ver, []byte("hello")), survive: true, refused: 1},
		{name: "unsupported request", send: send(vhostuser.SetLogFd, ver, nil), survive: true, refused: 1},
		{name: "unsupported request with a reply", send: send(vhostuser.GetConfig, ver, make([]byte, 12)), refused: 1},
		{name: "unsupported GET_MAX_MEM_SLOTS", send: send(vhostuser.GetMaxMemSlots, ver, nil), refused: 1},
		{name: "vring addresses outside guest memory", survive: true, ringErrors: 1, send: withGuest(func(t *testing.T, f *vhostusertest.Frontend, g *virtiotest.Guest) {
			a := f.VringAddr(1)
			a.Desc = virtiotest.UserBase + g.Size() + 0x1000
			if _, err := f.Request(vhostuser.SetVringAddr, a.Bytes()); err != nil {
				t.Fatal(err)
			}
		})},
		{name: "vring addresses are guest-physical", survive: true, ringErrors: 1, send: withGuest(func(t *testing.T, f *vhostusertest.Frontend, g *virtiotest.Guest) {
			a := f.VringAddr(1)
			a.Desc, a.Avail, a.Used = f.Tx(0).DescAddr, f.Tx(0).AvailAddr, f.Tx(0).UsedAddr
			if _, err := f.Request(vhostuser.SetVringAddr, a.Bytes()); err != nil {
				t.Fatal(err)
			}
		})},
		{name: "used ring crosses the end of memory", survive: true, ringErrors: 1, send: withGuest(func(t *testing.T, f *vhostusertest.Frontend, g *virtiotest.Guest) {
			a := f.VringAddr(1)
			a.Used = virtiotest.UserBase + g.Size() - 64
			if _, err := f.Request(vhostuser.SetVringAddr, a.Bytes()); err != nil {
				t.Fatal(err)
			}
		})},
		{name: "memory table replaced by one without the rings", survive: true, ringErrors: 2, send: withGuest(func(t *testing.T, f *vhostusertest.Frontend, g *virtiotest.Guest) {
			small := vhostuser.MemRegion{GuestPhysAddr: 0, Size: 4096, UserAddr: virtiotest.UserBase + 1<<40}
			if _, err := f.Request(vhostuser.SetMemTable, memTable(small), memfd(t, 4096)); err != nil {
				t.Fatal(err)
			}
		})},
	}
}

// TestHostileMessages sends each hostile message to its own device and
// checks it is counted, that the connection is dropped when it must be,
// that the device recovers for the next front-end, and that a second
// device on another socket keeps forwarding throughout.
func TestHostileMessages(t *testing.T) {
	other := newBed(t, "other", 1)
	og := virtiotest.NewGuest(t, 64<<20)
	of := vhostusertest.Connect(t, other.path, og, vhostusertest.Options{RingSize: 64})
	traffic(t, of, other.be, 1, 4)

	for _, c := range hostileCases(t) {
		t.Run(c.name, func(t *testing.T) {
			b := newBed(t, "victim", 1)
			g := virtiotest.NewGuest(t, testGuestSize)
			f := vhostusertest.Connect(t, b.path, g, c.o)
			cnt := &b.dev.Counters
			bad0, ref0, ring0 := cnt.BadMessages.Load(), cnt.Refused.Load(), cnt.RingErrors.Load()
			c.send(t, f)
			if c.survive {
				// The connection still answers.
				if _, err := f.Request(vhostuser.GetFeatures, nil); err != nil {
					t.Fatalf("connection did not survive: %v", err)
				}
			} else if !f.Closed(vhostusertest.DefaultTimeout) {
				t.Fatal("connection still open")
			}
			if c.survive && c.ringErrors == 0 {
				traffic(t, f, b.be, 1, 2)
			}
			if st := b.be.State(); c.ringErrors > 0 && len(st.Tx) > 0 && st.Tx[0] != nil {
				t.Fatal("a ring with addresses outside memory runs")
			}
			if !c.survive {
				b.waitDisconnected(t)
				if e := b.dev.Status().Err; !strings.HasPrefix(e, "connection closed: ") {
					t.Errorf("status error %q, want why the connection closed", e)
				}
			}
			if e := b.dev.Status().Err; c.survive && c.ringErrors > 0 && !strings.Contains(e, "cannot start") {
				t.Errorf("status error %q, want the ring that cannot start", e)
			}
			got := [3]uint64{cnt.BadMessages.Load() - bad0, cnt.Refused.Load() - ref0, cnt.RingErrors.Load() - ring0}
			if want := [3]uint64{c.bad, c.refused, c.ringErrors}; got != want {
				t.Fatalf("counters bad/refused/ring errors = %v, want %v", got, want)
			}
			// The other device kept working through it.
			traffic(t, of, other.be, 1, 4)
			if !c.survive {
				// And this one serves the next front-end from scratch.
				f2 := b.connect(t, virtiotest.NewGuest(t, testGuestSize), vhostusertest.Options{})
				traffic(t, f2, b.be, 1, 2)
				if e := b.dev.Status().Err; e != "" {
					t.Errorf("status error %q after a good connection", e)
				}
			}
		})
	}
	if n := other.dev.Counters.BadMessages.Load() + other.dev.Counters.Refused.Load(); n != 0 {
		t.Fatalf("the other device counted %d errors", n)
	}
}

// TestTruncatedMessage: a front-end that dies mid-message is a disconnect.
func TestTruncatedMessage(t *testing.T) {
	b := newBed(t, "trunc", 1)
	f := vhostusertest.Connect(t, b.path, virtiotest.NewGuest(t, testGuestSize), vhostusertest.Options{})
	hdr := make([]byte, vhostuser.HeaderSize)
	vhostuser.EncodeHeader(hdr, vhostuser.Header{Request: vhostuser.SetFeatures, Flags: vhostuser.FlagVersion, Size: 8})
	if err := f.SendRaw(append(hdr, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b.waitDisconnected(t)
	f2 := b.connect(t, virtiotest.NewGuest(t, testGuestSize), vhostusertest.Options{})
	traffic(t, f2, b.be, 1, 2)
}

// --- Device.Handle without a socket ---

type direct struct {
	t   *testing.T
	dev *vhostuser.Device
	be  *vhostusertest.FakeBackend
}

func newDirect(t *testing.T, pairs int) *direct {
	be := &vhostusertest.FakeBackend{}
	return &direct{t: t, be: be, dev: vhostuser.NewDevice(vhostuser.Options{Name: "direct", QueuePairs: pairs, Log: testLog("direct")}, be)}
}

// dup returns a duplicate of fd for Handle to own.
func dup(t *testing.T, fd int) int {
	t.Helper()
	n, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func (d *direct) handle(req vhostuser.Request, body []byte, fds ...int) ([]byte, error) {
	m := &vhostuser.Message{Header: vhostuser.Header{Request: req, Flags: vhostuser.FlagVersion, Size: uint32(len(body))}, Payload: body, Fds: fds}
	return d.dev.Handle(m)
}

func (d *direct) must(req vhostuser.Request, body []byte, fds ...int) []byte {
	d.t.Helper()
	r, err := d.handle(req, body, fds...)
	if err != nil {
		d.t.Fatalf("%s: %v", req, err)
	}
	return r
}

// setup does the handshake through Handle for rings in g.
func (d *direct) setup(g *virtiotest.Guest, rings []*virtiotest.SplitRing, calls []int) {
	d.t.Helper()
	offered := b2u(d.must(vhostuser.GetFeatures, nil))
	d.must(vhostuser.SetProtocolFeatures, vhostuser.U64(b2u(d.must(vhostuser.GetProtocolFeatures, nil))).Bytes())
	d.must(vhostuser.SetOwner, nil)
	d.must(vhostuser.SetFeatures, vhostuser.U64(offered&^virtio.Bit(virtio.FRingPacked)).Bytes())
	r := g.Region()
	d.must(vhostuser.SetMemTable, memTable(vhostuser.MemRegion{GuestPhysAddr: r.GuestPhysAddr, Size: r.Size, UserAddr: r.UserAddr}), dup(d.t, g.Fd()))
	for i, ring := range rings {
		c := ring.Config(false, -1)
		idx := uint32(i)
		d.must(vhostuser.SetVringNum, vhostuser.VringState{Index: idx, Num: uint32(ring.Size())}.Bytes())
		d.must(vhostuser.SetVringBase, vhostuser.VringState{Index: idx}.Bytes())
		d.must(vhostuser.SetVringAddr, vhostuser.VringAddr{Index: idx, Desc: c.Desc, Avail: c.Avail, Used: c.Used}.Bytes())
		d.must(vhostuser.SetVringKick, vhostuser.U64(idx).Bytes(), dup(d.t, calls[i]))
		d.must(vhostuser.SetVringCall, vhostuser.U64(idx).Bytes(), dup(d.t, calls[i]))
		d.must(vhostuser.SetVringEnable, vhostuser.VringState{Index: idx, Num: 1}.Bytes())
	}
}

func TestHandleDirect(t *testing.T) {
	d := newDirect(t, 1)
	t.Cleanup(d.dev.Disconnect)
	g := virtiotest.NewGuest(t, testGuestSize)
	rings := []*virtiotest.SplitRing{g.NewSplitRing(32), g.NewSplitRing(32)}
	calls := []int{eventfd(t), eventfd(t)}
	d.setup(g, rings, calls)
	if vhostusertest.RunningPairs(d.be.State()) != 1 {
		t.Fatal("rings not running")
	}
	// Data path through the device's own mapping of the memfd.
	rx, tx := rings[0], rings[1]
	for i := 0; i < 3; i++ {
		rx.AddRxBuffer(2048)
		tx.AddTxPacket(12, frame(0, i, 100), 0)
	}
	if n, _ := d.be.Loopback(); n != 3 {
		t.Fatalf("delivered %d", n)
	}
	for i, e := range rx.PopUsed() {
		if !bytes.Equal(rx.RxFrame(e, 12), frame(0, i, 100)) {
			t.Fatalf("frame %d corrupted", i)
		}
	}

	// Handle owns the fds of a refused message and closes them.
	fd := dup(t, calls[0])
	if _, err := d.handle(vhostuser.SetOwner, nil, fd); !errors.Is(err, vhostuser.ErrBadMessage) {
		t.Fatalf("SET_OWNER with an fd: %v", err)
	}
	if isOpen(fd) {
		t.Fatal("Handle leaked the fd of a refused message")
	}
	fd = dup(t, calls[0])
	if _, err := d.handle(vhostuser.SetVringCall, vhostuser.U64(9).Bytes(), fd); !errors.Is(err, vhostuser.ErrBadMessage) {
		t.Fatalf("SET_VRING_CALL out of range: %v", err)
	}
	if isOpen(fd) {
		t.Fatal("Handle leaked the fd of an invalid SET_VRING_CALL")
	}
	fd = dup(t, calls[0])
	if _, err := d.handle(vhostuser.Request(77), nil, fd); !errors.Is(err, vhostuser.ErrUnsupported) {
		t.Fatalf("unknown request: %v", err)
	}
	if isOpen(fd) {
		t.Fatal("Handle leaked the fd of an unknown request")
	}
	// NOFD: the call fd is dropped, the ring keeps running.
	d.must(vhostuser.SetVringCall, vhostuser.U64(0|1<<8).Bytes())
	if vhostusertest.RunningPairs(d.be.State()) != 1 {
		t.Fatal("rings stopped by SET_VRING_CALL NOFD")
	}

	// SEND_RARP reaches the data plane.
	mac := []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	d.must(vhostuser.SendRARP, append(append([]byte(nil), mac...), 0, 0))
	if r := d.be.RARPs(); len(r) != 1 || !bytes.Equal(r[0], mac) {
		t.Fatalf("RARPs %v", r)
	}
	// NET_SET_MTU is published with the next state.
	d.must(vhostuser.NetSetMTU, vhostuser.U64(1500).Bytes())
	if st := d.be.State(); st.MTU != 1500 || d.dev.Status().MTU != 1500 {
		t.Fatalf("MTU %d", st.MTU)
	}
	// A Message whose payload does not match its header is refused.
	m := &vhostuser.Message{Header: vhostuser.Header{Request: vhostuser.SendRARP, Flags: vhostuser.FlagVersion, Size: 8}, Payload: []byte{1}}
	if _, err := d.dev.Handle(m); !errors.Is(err, vhostuser.ErrBadMessage) {
		t.Fatalf("payload shorter than its header says: %v", err)
	}

	// A new memory table stops the rings, then restarts them over the new
	// mapping.
	pubs := d.be.Publishes()
	r := g.Region()
	d.must(vhostuser.SetMemTable, memTable(vhostuser.MemRegion{GuestPhysAddr: r.GuestPhysAddr, Size: r.Size, UserAddr: r.UserAddr}), dup(t, g.Fd()))
	if d.be.Publishes()-pubs != 2 || vhostusertest.RunningPairs(d.be.State()) != 1 {
		t.Fatalf("SET_MEM_TABLE: %d publishes, running %d", d.be.Publishes()-pubs, vhostusertest.RunningPairs(d.be.State()))
	}
	rx.AddRxBuffer(2048)
	tx.AddTxPacket(12, frame(0, 9, 80), 0)
	if n, _ := d.be.Loopback(); n != 1 {
		t.Fatal("no traffic over the new memory table")
	}

	// SET_VRING_ERR keeps its fd until the device is reset.
	errFd := dup(t, calls[1])
	d.must(vhostuser.SetVringErr, vhostuser.U64(1).Bytes(), errFd)
	if !isOpen(errFd) {
		t.Fatal("SET_VRING_ERR fd closed")
	}

	// RESET_OWNER stops everything and forgets the negotiation.
	d.must(vhostuser.ResetOwner, nil)
	if isOpen(errFd) {
		t.Fatal("RESET_OWNER kept the vring err fd open")
	}
	if d.be.State().Running() {
		t.Fatal("RESET_OWNER left rings running")
	}
	if s := d.dev.Status(); s.Features != 0 || s.Regions != 0 {
		t.Fatalf("status after RESET_OWNER %+v", s)
	}
	// Protocol features are gone: REPLY_ACK-gated requests are refused.
	if _, err := d.handle(vhostuser.GetQueueNum, nil); !errors.Is(err, vhostuser.ErrBadMessage) {
		t.Fatalf("GET_QUEUE_NUM after RESET_OWNER: %v", err)
	}
}

// TestHandleMemTableTooSmallFile: a region claiming more than its file
// holds is refused before mapping (touching it would be SIGBUS).
func TestHandleMemTableTooSmallFile(t *testing.T) {
	d := newDirect(t, 1)
	for _, c := range []struct{ file, size, off uint64 }{
		{4096, 8192, 0}, {8192, 4096, 4097}, {1 << 20, 1<<20 + 1, 0},
	} {
		fd := dup(t, memfd(t, int(c.file)))
		_, err := d.handle(vhostuser.SetMemTable, memTable(vhostuser.MemRegion{Size: c.size, UserAddr: 1 << 40, MmapOffset: c.off}), fd)
		if !errors.Is(err, vhostuser.ErrBadMessage) {
			t.Fatalf("file %d region %d+%d: %v", c.file, c.off, c.size, err)
		}
		if isOpen(fd) {
			t.Fatal("fd of a refused memory table leaked")
		}
	}
	if s := d.dev.Status(); s.Regions != 0 {
		t.Fatal("a refused table was kept")
	}
	// An exact fit with an offset is fine.
	fd := dup(t, memfd(t, 3*4096))
	d.must(vhostuser.SetMemTable, memTable(vhostuser.MemRegion{Size: 2 * 4096, UserAddr: 1 << 40, MmapOffset: 4096}), fd)
	if d.dev.Status().Regions != 1 {
		t.Fatal("table not kept")
	}
	d.dev.Disconnect()
}

// TestServerCloseDisconnects: when Server.Close returns, the device has
// let go of its front-end and withdrawn its rings, so the caller may tear
// the data plane down.
func TestServerCloseDisconnects(t *testing.T) {
	for i := 0; i < 20; i++ {
		b := newBed(t, "close", 1)
		vhostusertest.Connect(t, b.path, virtiotest.NewGuest(t, 1<<20), vhostusertest.Options{RingSize: 8})
		b.srv.Close()
		p := b.be.Publishes()
		if b.dev.Status().Connected || b.be.State().Running() {
			t.Fatalf("round %d: device still connected after Server.Close", i)
		}
		time.Sleep(time.Millisecond)
		if b.be.Publishes() != p {
			t.Fatalf("round %d: device published after Server.Close returned", i)
		}
	}
}

// TestAbort: the data plane can drop a misbehaving front-end; the device
// resets and serves the next connection.
func TestAbort(t *testing.T) {
	b := newBed(t, "abort", 1)
	f := vhostusertest.Connect(t, b.path, virtiotest.NewGuest(t, testGuestSize), vhostusertest.Options{})
	b.dev.Abort("test")
	if !f.Closed(vhostusertest.DefaultTimeout) {
		t.Fatal("Abort did not close the connection")
	}
	b.waitDisconnected(t)
	if e := b.dev.Status().Err; e != "connection dropped after a data-plane fault: test" {
		t.Errorf("status error %q", e)
	}
	b.dev.Abort("no connection") // a no-op
	f2 := b.connect(t, virtiotest.NewGuest(t, testGuestSize), vhostusertest.Options{})
	traffic(t, f2, b.be, 1, 2)
}

// With VHOST_USER_PROTOCOL_F_STATUS the front-end sets and reads the
// virtio device status; without it GET_STATUS closes the connection (the
// front-end waits for a reply we cannot give).
func TestDeviceStatus(t *testing.T) {
	b := newBed(t, "status", 1)
	g := virtiotest.NewGuest(t, testGuestSize)
	f := vhostusertest.Connect(t, b.path, g, vhostusertest.Options{
		Protocol: vhostusertest.DefaultProtocol | 1<<vhostuser.ProtocolStatus})
	if !f.HasProtocol(vhostuser.ProtocolStatus) {
		t.Fatal("STATUS not negotiated")
	}
	if _, err := f.Request(vhostuser.SetStatus, vhostuser.U64(0x0f).Bytes()); err != nil {
		t.Fatal(err)
	}
	body, err := f.Request(vhostuser.GetStatus, nil)
	if err != nil || b2u(body) != 0x0f {
		t.Fatalf("GET_STATUS = %x, %v; want 0x0f", body, err)
	}
	if _, err := f.Request(vhostuser.SetStatus, vhostuser.U64(0x100).Bytes()); err == nil {
		t.Fatal("a status that does not fit a byte was accepted")
	}

	b2 := newBed(t, "nostatus", 1)
	f2 := vhostusertest.Connect(t, b2.path, virtiotest.NewGuest(t, testGuestSize), vhostusertest.Options{})
	if err := f2.Send(vhostuser.GetStatus, vhostuser.FlagVersion, nil); err != nil {
		t.Fatal(err)
	}
	if !f2.Closed(vhostusertest.DefaultTimeout) {
		t.Fatal("GET_STATUS without STATUS negotiated left the connection open")
	}
}
