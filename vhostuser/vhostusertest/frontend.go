// Package vhostusertest is a fake vhost-user front-end (what QEMU or DPDK
// virtio_user do) over a real unix socket, with a fake guest behind it, plus
// a FakeBackend that records what a vhostuser.Device publishes.
//
// Connect fails the test on error; TryConnect returns the error. Both
// register Close with t.Cleanup. Frontend methods that take the test (the
// ring and packet helpers) must run on the test's goroutine.
package vhostusertest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/vhostuser"
	"github.com/vswitch/vswitch/virtio"
	"github.com/vswitch/vswitch/virtio/virtiotest"
)

// DefaultProtocol is the protocol features the front-end accepts when
// Options.Protocol is zero: the ones a net device uses and this fake
// implements.
const DefaultProtocol = 1<<vhostuser.ProtocolMQ | 1<<vhostuser.ProtocolReplyAck |
	1<<vhostuser.ProtocolRARP | 1<<vhostuser.ProtocolMTU

// DefaultTimeout bounds each socket read and the wait for a connection.
const DefaultTimeout = 5 * time.Second

// Options configure a front-end.
type Options struct {
	QueuePairs int    // queue pairs to set up; 1 if zero
	RingSize   uint16 // descriptors per ring; 256 if zero
	// Features masks the offered virtio features (ANDed); 0 accepts all.
	Features uint64
	// Protocol masks the offered protocol features; 0 means
	// DefaultProtocol.
	Protocol   uint64
	NoEventIdx bool // do not accept VIRTIO_RING_F_EVENT_IDX
	// Server makes the front-end listen on the path and wait for the
	// back-end to connect (QEMU server=on); otherwise it dials.
	Server bool
	// MTU, if non-zero, is sent with NET_SET_MTU when negotiated.
	MTU int
	// NoEnable skips SET_VRING_ENABLE, leaving the rings disabled.
	NoEnable bool
	// Packed negotiates VIRTIO_F_RING_PACKED (when offered) and lays out
	// packed rings: use PRx/PTx instead of Rx/Tx/Ring.
	Packed  bool
	Timeout time.Duration // DefaultTimeout if zero
}

// Frontend is a connected fake front-end.
type Frontend struct {
	t    testing.TB
	g    *virtiotest.Guest
	opts Options
	conn *net.UnixConn
	ln   *net.UnixListener

	// Negotiated state.
	Offered          uint64 // GET_FEATURES answer
	Features         uint64 // sent with SET_FEATURES
	OfferedProtocol  uint64 // GET_PROTOCOL_FEATURES answer
	ProtocolFeatures uint64 // sent with SET_PROTOCOL_FEATURES
	QueueNum         int    // GET_QUEUE_NUM answer, 0 if not asked

	rings  []*virtiotest.SplitRing  // by vring index: rx 2i, tx 2i+1
	prings []*virtiotest.PackedRing // the same when packed
	packed bool
	kick   []int
	call   []int
	hdrLen int

	closeOnce sync.Once
}

// Connect runs the QEMU handshake on path and fails the test on error.
func Connect(t testing.TB, path string, g *virtiotest.Guest, o Options) *Frontend {
	t.Helper()
	f, err := TryConnect(t, path, g, o)
	if err != nil {
		t.Fatalf("vhostusertest: connect %s: %v", path, err)
	}
	return f
}

// TryConnect is Connect returning the error (for a reconnect that may race
// with the back-end noticing the previous front-end left). The Frontend is
// closed at the end of the test; on error everything is closed already.
func TryConnect(t testing.TB, path string, g *virtiotest.Guest, o Options) (*Frontend, error) {
	if o.QueuePairs <= 0 {
		o.QueuePairs = 1
	}
	if o.RingSize == 0 {
		o.RingSize = 256
	}
	if o.Protocol == 0 {
		o.Protocol = DefaultProtocol
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	f := &Frontend{t: t, g: g, opts: o}
	var err error
	if o.Server {
		err = f.listen(path)
	} else {
		err = f.dial(path)
	}
	if err == nil {
		t.Cleanup(f.Close)
		err = f.handshake()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *Frontend) dial(path string) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	f.conn = c
	return nil
}

func (f *Frontend) listen(path string) error {
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(true)
	f.ln = ln
	ln.SetDeadline(time.Now().Add(f.opts.Timeout))
	c, err := ln.AcceptUnix()
	if err != nil {
		ln.Close()
		f.ln = nil
		return fmt.Errorf("waiting for the back-end to connect: %w", err)
	}
	f.conn = c
	return nil
}

func (f *Frontend) handshake() error {
	o := f.opts
	v, err := f.requestU64(vhostuser.GetFeatures, nil)
	if err != nil {
		return err
	}
	f.Offered = v
	mask := o.Features
	if mask == 0 {
		mask = ^uint64(0)
	}
	if o.NoEventIdx {
		mask &^= virtio.Bit(virtio.RingFEventIdx)
	}
	if !o.Packed {
		mask &^= virtio.Bit(virtio.FRingPacked)
	}
	f.Features = f.Offered & mask
	f.packed = f.Features&virtio.Bit(virtio.FRingPacked) != 0

	if f.Offered&virtio.Bit(virtio.FProtocolFeatures) != 0 {
		if f.OfferedProtocol, err = f.requestU64(vhostuser.GetProtocolFeatures, nil); err != nil {
			return err
		}
		f.ProtocolFeatures = f.OfferedProtocol & o.Protocol
		if _, err := f.Request(vhostuser.SetProtocolFeatures, vhostuser.U64(f.ProtocolFeatures).Bytes()); err != nil {
			return err
		}
	}
	if f.HasProtocol(vhostuser.ProtocolMQ) {
		n, err := f.requestU64(vhostuser.GetQueueNum, nil)
		if err != nil {
			return err
		}
		f.QueueNum = int(n)
		if int(n) < o.QueuePairs {
			return fmt.Errorf("back-end has %d queue pairs, want %d", n, o.QueuePairs)
		}
	} else if o.QueuePairs > 1 {
		return errors.New("several queue pairs need VHOST_USER_PROTOCOL_F_MQ")
	}
	if _, err := f.Request(vhostuser.SetOwner, nil); err != nil {
		return err
	}
	if _, err := f.Request(vhostuser.SetFeatures, vhostuser.U64(f.Features).Bytes()); err != nil {
		return err
	}
	f.hdrLen = virtio.NetHdrLen(f.Features)
	if err := f.SetMemTable(); err != nil {
		return err
	}
	if o.MTU > 0 && f.HasProtocol(vhostuser.ProtocolMTU) {
		if _, err := f.Request(vhostuser.NetSetMTU, vhostuser.U64(o.MTU).Bytes()); err != nil {
			return err
		}
	}
	n := 2 * o.QueuePairs
	for i := 0; i < n; i++ {
		if f.packed {
			pr := f.g.NewPackedRing(o.RingSize)
			pr.InOrder = f.Features&virtio.Bit(virtio.FInOrder) != 0
			f.prings = append(f.prings, pr)
		} else {
			f.rings = append(f.rings, f.g.NewSplitRing(o.RingSize))
		}
		k, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return err
		}
		f.kick = append(f.kick, k)
		c, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return err
		}
		f.call = append(f.call, c)
	}
	for i := 0; i < n; i++ {
		if err := f.SetupVring(i); err != nil {
			return err
		}
	}
	if f.Features&virtio.Bit(virtio.FProtocolFeatures) != 0 && !o.NoEnable {
		for i := 0; i < n; i++ {
			if err := f.SetVringEnable(i, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// HasProtocol says whether protocol feature bit was negotiated.
func (f *Frontend) HasProtocol(bit int) bool { return f.ProtocolFeatures&(1<<uint(bit)) != 0 }

// HdrLen is the virtio-net header length the negotiated features give.
func (f *Frontend) HdrLen() int { return f.hdrLen }

// Guest is the guest behind the front-end.
func (f *Frontend) Guest() *virtiotest.Guest { return f.g }

// Conn is the socket, for tests that need to write raw bytes.
func (f *Frontend) Conn() *net.UnixConn { return f.conn }

// MemTable is the SET_MEM_TABLE body that describes the guest.
func (f *Frontend) MemTable() vhostuser.MemoryTable {
	r := f.g.Region()
	return vhostuser.MemoryTable{Regions: []vhostuser.MemRegion{{
		GuestPhysAddr: r.GuestPhysAddr, Size: r.Size, UserAddr: r.UserAddr, MmapOffset: r.MmapOffset,
	}}}
}

// SetMemTable sends the guest's memory table with its memfd.
func (f *Frontend) SetMemTable() error {
	_, err := f.Request(vhostuser.SetMemTable, f.MemTable().Bytes(), f.g.Fd())
	return err
}

// VringAddr is the SET_VRING_ADDR body of vring i.
func (f *Frontend) VringAddr(i int) vhostuser.VringAddr {
	if f.packed {
		c := f.prings[i].Config(false, -1)
		return vhostuser.VringAddr{Index: uint32(i), Desc: c.Desc, Avail: c.Driver, Used: c.Device}
	}
	c := f.rings[i].Config(false, -1)
	return vhostuser.VringAddr{Index: uint32(i), Desc: c.Desc, Used: c.Used, Avail: c.Avail}
}

// SetupVring sends SET_VRING_NUM, _BASE, _ADDR, _KICK and _CALL for vring i,
// with base = the ring's current avail index.
func (f *Frontend) SetupVring(i int) error {
	idx := uint32(i)
	var size, base uint32
	if f.packed {
		size, base = uint32(f.prings[i].Size()), f.prings[i].Base()
	} else {
		size, base = uint32(f.rings[i].Size()), uint32(f.rings[i].UsedIdx())
	}
	steps := []struct {
		req  vhostuser.Request
		body []byte
		fd   int
	}{
		{vhostuser.SetVringNum, vhostuser.VringState{Index: idx, Num: size}.Bytes(), -1},
		{vhostuser.SetVringBase, vhostuser.VringState{Index: idx, Num: base}.Bytes(), -1},
		{vhostuser.SetVringAddr, f.VringAddr(i).Bytes(), -1},
		{vhostuser.SetVringKick, vhostuser.U64(idx).Bytes(), f.kick[i]},
		{vhostuser.SetVringCall, vhostuser.U64(idx).Bytes(), f.call[i]},
	}
	for _, s := range steps {
		var fds []int
		if s.fd >= 0 {
			fds = []int{s.fd}
		}
		if _, err := f.Request(s.req, s.body, fds...); err != nil {
			return err
		}
	}
	return nil
}

// SetVringEnable sends SET_VRING_ENABLE.
func (f *Frontend) SetVringEnable(i int, on bool) error {
	n := uint32(0)
	if on {
		n = 1
	}
	_, err := f.Request(vhostuser.SetVringEnable, vhostuser.VringState{Index: uint32(i), Num: n}.Bytes())
	return err
}

// GetVringBase sends GET_VRING_BASE for vring i (which stops it) and
// returns the back-end's next avail index; it fails the test on error.
func (f *Frontend) GetVringBase(i int) uint16 {
	f.t.Helper()
	b, err := f.Request(vhostuser.GetVringBase, vhostuser.VringState{Index: uint32(i)}.Bytes())
	if err != nil {
		f.t.Fatalf("vhostusertest: GET_VRING_BASE %d: %v", i, err)
	}
	s, err := vhostuser.DecodeVringState(b)
	if err != nil || s.Index != uint32(i) {
		f.t.Fatalf("vhostusertest: GET_VRING_BASE %d: reply %x: %v", i, b, err)
	}
	return uint16(s.Num)
}

// Send writes one message with exactly the given flags (include
// vhostuser.FlagVersion for a well-formed one) and fds.
func (f *Frontend) Send(req vhostuser.Request, flags uint32, body []byte, fds ...int) error {
	b := make([]byte, vhostuser.HeaderSize+len(body))
	vhostuser.EncodeHeader(b, vhostuser.Header{Request: req, Flags: flags, Size: uint32(len(body))})
	copy(b[vhostuser.HeaderSize:], body)
	return f.SendRaw(b, fds...)
}

// SendRaw writes b in one sendmsg, with fds attached.
func (f *Frontend) SendRaw(b []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	f.conn.SetWriteDeadline(time.Now().Add(f.opts.Timeout))
	n, oobn, err := f.conn.WriteMsgUnix(b, oob, nil)
	if err == nil && (n != len(b) || oobn != len(oob)) {
		err = io.ErrShortWrite
	}
	return err
}

// Recv reads one message (normally a reply) within the timeout.
func (f *Frontend) Recv() (vhostuser.Header, []byte, error) {
	f.conn.SetReadDeadline(time.Now().Add(f.opts.Timeout))
	var hb [vhostuser.HeaderSize]byte
	if _, err := io.ReadFull(f.conn, hb[:]); err != nil {
		return vhostuser.Header{}, nil, err
	}
	h := vhostuser.Header{
		Request: vhostuser.Request(binary.LittleEndian.Uint32(hb[0:])),
		Flags:   binary.LittleEndian.Uint32(hb[4:]),
		Size:    binary.LittleEndian.Uint32(hb[8:]),
	}
	if h.Size > vhostuser.MaxPayload {
		return h, nil, fmt.Errorf("reply body of %d bytes", h.Size)
	}
	body := make([]byte, h.Size)
	if _, err := io.ReadFull(f.conn, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}

// expectsReply lists the requests the back-end always answers.
func expectsReply(req vhostuser.Request) bool {
	switch req {
	case vhostuser.GetFeatures, vhostuser.GetProtocolFeatures, vhostuser.GetQueueNum,
		vhostuser.GetVringBase, vhostuser.GetConfig, vhostuser.GetInflightFd,
		vhostuser.GetMaxMemSlots, vhostuser.GetStatus, vhostuser.PostcopyAdvise:
		return true
	}
	return false
}

// ErrNack is a REPLY_ACK with a non-zero status.
var ErrNack = errors.New("back-end refused the request (REPLY_ACK status != 0)")

// Request sends a well-formed request, with NEED_REPLY when REPLY_ACK was
// negotiated, and waits for its reply if one is due. It returns the reply
// body of requests that have one; for an ack it returns nil, or ErrNack.
func (f *Frontend) Request(req vhostuser.Request, body []byte, fds ...int) ([]byte, error) {
	flags := uint32(vhostuser.FlagVersion)
	reply := expectsReply(req)
	ack := !reply && f.HasProtocol(vhostuser.ProtocolReplyAck)
	if ack {
		flags |= vhostuser.FlagNeedReply
	}
	if err := f.Send(req, flags, body, fds...); err != nil {
		return nil, fmt.Errorf("%s: %w", req, err)
	}
	if !reply && !ack {
		return nil, nil
	}
	h, b, err := f.Recv()
	if err != nil {
		return nil, fmt.Errorf("%s: reply: %w", req, err)
	}
	if h.Request != req || h.Flags&vhostuser.FlagReply == 0 || h.Flags&3 != vhostuser.FlagVersion {
		return nil, fmt.Errorf("%s: bad reply header %+v", req, h)
	}
	if ack {
		v, err := vhostuser.DecodeU64(b)
		if err != nil {
			return nil, fmt.Errorf("%s: ack: %w", req, err)
		}
		if v != 0 {
			return nil, fmt.Errorf("%s: %w", req, ErrNack)
		}
		return nil, nil
	}
	return b, nil
}

func (f *Frontend) requestU64(req vhostuser.Request, body []byte) (uint64, error) {
	b, err := f.Request(req, body)
	if err != nil {
		return 0, err
	}
	v, err := vhostuser.DecodeU64(b)
	if err != nil {
		return 0, fmt.Errorf("%s: reply: %w", req, err)
	}
	return uint64(v), nil
}

// Ring is vring i (rx of pair i/2 when i is even, tx when odd).
func (f *Frontend) Ring(i int) *virtiotest.SplitRing { return f.rings[i] }

// Rx is the guest's receive ring of queue pair qp (vring 2qp).
func (f *Frontend) Rx(qp int) *virtiotest.SplitRing { return f.rings[2*qp] }

// Tx is the guest's transmit ring of queue pair qp (vring 2qp+1).
func (f *Frontend) Tx(qp int) *virtiotest.SplitRing { return f.rings[2*qp+1] }

// Packed says whether the rings are packed (PRx/PTx) rather than split.
func (f *Frontend) Packed() bool { return f.packed }

// PRx is the packed receive ring of queue pair qp.
func (f *Frontend) PRx(qp int) *virtiotest.PackedRing { return f.prings[2*qp] }

// PTx is the packed transmit ring of queue pair qp.
func (f *Frontend) PTx(qp int) *virtiotest.PackedRing { return f.prings[2*qp+1] }

// Vrings is the number of vrings set up.
func (f *Frontend) Vrings() int { return len(f.rings) + len(f.prings) }

// CallFd is the eventfd the back-end signals for vring i.
func (f *Frontend) CallFd(vring int) int { return f.call[vring] }

// KickFd is the eventfd the front-end signals for vring i.
func (f *Frontend) KickFd(vring int) int { return f.kick[vring] }

// Interrupts reads (and resets) the call eventfd of vring i: how many
// times the back-end interrupted the guest since the last call.
func (f *Frontend) Interrupts(vring int) uint64 {
	var b [8]byte
	n, err := unix.Read(f.call[vring], b[:])
	if err != nil || n != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (f *Frontend) kickRing(vring int) {
	if f.packed && f.prings[vring].DeviceFlags() == virtio.EventFlagsDisable ||
		!f.packed && f.rings[vring].UsedFlags()&virtio.UsedFNoNotify != 0 {
		return
	}
	var b [8]byte
	b[0] = 1
	unix.Write(f.kick[vring], b[:])
}

// SendPacket queues frame (after a zeroed virtio-net header) on the
// transmit ring of qp and kicks unless the back-end asked not to. It first
// reclaims completed transmit chains; it returns false if the ring is full.
func (f *Frontend) SendPacket(qp int, frame []byte) bool {
	return f.SendPacketSplit(qp, frame, 0)
}

// SendPacketSplit is SendPacket with the header and frame cut into
// descriptors of at most split bytes.
func (f *Frontend) SendPacketSplit(qp int, frame []byte, split int) bool {
	need := 1
	if split > 0 {
		need = (f.hdrLen + len(frame) + split - 1) / split
	}
	if f.packed {
		tx := f.PTx(qp)
		tx.PopUsed()
		if tx.FreeDescs() < need {
			return false
		}
		tx.AddTxPacket(f.hdrLen, frame, split)
	} else {
		tx := f.Tx(qp)
		tx.PopUsed()
		if tx.FreeDescs() < need {
			return false
		}
		tx.AddTxPacket(f.hdrLen, frame, split)
	}
	f.kickRing(2*qp + 1)
	return true
}

// TxDone reclaims completed transmit chains of qp and returns how many.
func (f *Frontend) TxDone(qp int) int {
	if f.packed {
		return len(f.PTx(qp).PopUsed())
	}
	return len(f.Tx(qp).PopUsed())
}

// PostRxBuffers adds n receive buffers of size bytes to the receive ring
// of qp (fewer if the ring fills up) and returns how many it added.
func (f *Frontend) PostRxBuffers(qp, n, size int) int {
	added := 0
	if f.packed {
		for rx := f.PRx(qp); added < n && rx.FreeDescs() > 0; added++ {
			rx.AddRxBuffer(size)
		}
	} else {
		for rx := f.Rx(qp); added < n && rx.FreeDescs() > 0; added++ {
			rx.AddRxBuffer(size)
		}
	}
	if added > 0 {
		f.kickRing(2 * qp)
	}
	return added
}

// Received returns the frames the back-end delivered on the receive ring of
// qp since the last call, virtio-net header stripped.
func (f *Frontend) Received(qp int) [][]byte {
	var out [][]byte
	if f.packed {
		rx := f.PRx(qp)
		for _, e := range rx.PopUsed() {
			if fr := rx.RxFrame(e, f.hdrLen); fr != nil {
				out = append(out, fr)
			}
		}
		return out
	}
	rx := f.Rx(qp)
	for _, e := range rx.PopUsed() {
		if fr := rx.RxFrame(e, f.hdrLen); fr != nil {
			out = append(out, fr)
		}
	}
	return out
}

// Closed reports whether the back-end has closed the connection: a read
// returns EOF (or reset) within d. Use it after a message that must make
// the back-end hang up.
func (f *Frontend) Closed(d time.Duration) bool {
	f.conn.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	for {
		_, err := f.conn.Read(b[:])
		if err == nil {
			continue // a stray reply; keep reading
		}
		return errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET)
	}
}

// Close closes the socket (and the listener in server mode) and the
// eventfds. It is safe to call more than once.
func (f *Frontend) Close() {
	f.closeOnce.Do(func() {
		if f.ln != nil {
			f.ln.Close()
		}
		if f.conn != nil {
			f.conn.Close()
		}
		for _, fd := range append(f.kick, f.call...) {
			unix.Close(fd)
		}
	})
}
