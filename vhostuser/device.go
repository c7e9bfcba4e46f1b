package vhostuser

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/virtio"
)

// MaxQueuePairs bounds the queue pairs one device may have.
const MaxQueuePairs = 16

// State is what the data plane sees of a device. It is immutable once
// published; a change publishes a new one.
type State struct {
	Memory   *virtio.Memory
	Features uint64
	HdrLen   int // virtio-net header length
	MTU      int // from NET_SET_MTU, 0 if none
	// Rx are the guest's receive queues (vring 2i), Tx its transmit queues
	// (vring 2i+1). A nil entry is a queue that is not running.
	Rx []*virtio.SplitQueue
	Tx []*virtio.SplitQueue
	// With VIRTIO_F_RING_PACKED the rings are packed and live here instead
	// (same indexing); the data plane picks the engine once per burst.
	Packed bool
	PRx    []*virtio.PackedQueue
	PTx    []*virtio.PackedQueue
}

// Running says whether any queue runs.
func (s *State) Running() bool {
	if s == nil {
		return false
	}
	for i := range s.Rx {
		if s.Rx[i] != nil || s.Tx[i] != nil {
			return true
		}
	}
	for i := range s.PRx {
		if s.PRx[i] != nil || s.PTx[i] != nil {
			return true
		}
	}
	return false
}

// Backend is the data-plane side of a device.
type Backend interface {
	// Publish makes st current and returns once no worker can still be
	// using the previous state (its rings and memory may then be freed).
	Publish(st *State)
	// SendRARP asks the data plane to announce mac on the guest's behalf,
	// as after a live migration.
	SendRARP(mac net.HardwareAddr)
}

// Options configure a device.
type Options struct {
	Name       string
	QueuePairs int // queue pairs offered (GET_QUEUE_NUM); 1 if zero
	// NoOffloads withholds the checksum and TSO features (OffloadFeatures).
	NoOffloads bool
	Log        *logrus.Entry
}

// Counters are the control-plane counters of a device.
type Counters struct {
	Connects    atomic.Uint64
	Messages    atomic.Uint64
	BadMessages atomic.Uint64
	Refused     atomic.Uint64 // unsupported requests refused
	RingErrors  atomic.Uint64 // rings that could not start
}

// Status is a snapshot for the API.
type Status struct {
	Connected        bool
	Features         uint64
	ProtocolFeatures uint64
	QueuePairs       int // running queue pairs
	MTU              int
	Regions          int
	// Err says why the device last failed (a connection closed for a bad
	// message, a ring that cannot start, a data-plane fault, a front-end
	// that cannot be reached); empty once a new connection starts.
	Err string
}

type vring struct {
	num     uint16
	addr    VringAddr
	addrSet bool
	base    uint32 // split: last avail; packed: avail|wrap<<15, used|wrap<<15 in the high half
	kickFd  int
	kicked  bool
	callFd  int
	errFd   int
	enabled bool
	q       *virtio.SplitQueue
	pq      *virtio.PackedQueue
	failed  bool // could not start with the current config; logged once
}

// Device is the backend state of one vhost-user net device. One goroutine
// (its connection's) drives it; Status may be called from anywhere.
type Device struct {
	opts     Options
	backend  Backend
	log      *logrus.Entry
	offered  uint64
	protocol uint64 // protocol features offered
	Counters Counters

	mu          sync.Mutex // guards the fields below against Status
	conn        *net.UnixConn
	connected   bool
	features    uint64
	featuresSet bool
	protoAcked  uint64
	mem         *virtio.Memory
	vrings      [2 * MaxQueuePairs]vring
	mtu         int
	status      uint8 // virtio device status (SET_STATUS)
	published   *State
	lastErr     string // why the port last failed; cleared by a new connection
}

// NewDevice returns a device that publishes to backend.
func NewDevice(opts Options, backend Backend) *Device {
	if opts.QueuePairs <= 0 {
		opts.QueuePairs = 1
	}
	if opts.QueuePairs > MaxQueuePairs {
		opts.QueuePairs = MaxQueuePairs
	}
	if opts.Log == nil {
		opts.Log = logrus.WithField("port", opts.Name)
	}
	d := &Device{opts: opts, backend: backend, log: opts.Log}
	for i := range d.vrings {
		d.vrings[i] = vring{kickFd: -1, callFd: -1, errFd: -1} // fd 0 is a real fd
	}
	d.offered = virtio.Bit(virtio.FVersion1) | virtio.Bit(virtio.FProtocolFeatures) |
		virtio.Bit(virtio.RingFEventIdx) | virtio.Bit(virtio.NetFMTU) | virtio.Bit(virtio.RingFIndirectDesc) |
		virtio.Bit(virtio.NetFMrgRxbuf) | virtio.Bit(virtio.FRingPacked) | virtio.Bit(virtio.FInOrder)
	if opts.QueuePairs > 1 {
		d.offered |= virtio.Bit(virtio.NetFMQ)
	}
	if !opts.NoOffloads {
		d.offered |= OffloadFeatures
	}
	d.protocol = 1<<ProtocolMQ | 1<<ProtocolReplyAck | 1<<ProtocolMTU | 1<<ProtocolRARP | 1<<ProtocolStatus
	d.resetLocked()
	return d
}

// OffloadFeatures are the virtio-net header offloads offered: partial
// checksums and TCP segmentation (with ECN) both ways; the data plane
// finishes in software whatever a receiver did not negotiate. UFO
// (HOST_UFO, GUEST_UFO) is not offered: Linux stopped generating it in 4.14
// and QEMU works without it.
const OffloadFeatures = 1<<virtio.NetFCsum | 1<<virtio.NetFGuestCsum |
	1<<virtio.NetFHostTSO4 | 1<<virtio.NetFHostTSO6 | 1<<virtio.NetFHostECN |
	1<<virtio.NetFGuestTSO4 | 1<<virtio.NetFGuestTSO6 | 1<<virtio.NetFGuestECN

// OfferedFeatures is what GET_FEATURES answers.
func (d *Device) OfferedFeatures() uint64 { return d.offered }

func (d *Device) resetLocked() {
	for i := range d.vrings {
		v := &d.vrings[i]
		closeFd(&v.kickFd)
		closeFd(&v.callFd)
		closeFd(&v.errFd)
		*v = vring{kickFd: -1, callFd: -1, errFd: -1}
	}
	d.features, d.featuresSet, d.protoAcked, d.mtu, d.status = 0, false, 0, 0, 0
}

func closeFd(fd *int) {
	if *fd >= 0 {
		syscall.Close(*fd)
	}
	*fd = -1
}

// Status returns a snapshot for the API.
func (d *Device) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{Connected: d.connected, Features: d.features, ProtocolFeatures: d.protoAcked, MTU: d.mtu, Err: d.lastErr}
	if d.mem != nil {
		s.Regions = len(d.mem.Regions())
	}
	if st := d.published; st != nil {
		for i := range st.Rx {
			if st.Rx[i] != nil || st.Tx[i] != nil || st.PRx[i] != nil || st.PTx[i] != nil {
				s.QueuePairs++
			}
		}
	}
	return s
}

// setErr records why the device failed, for Status.
func (d *Device) setErr(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.mu.Lock()
	d.lastErr = msg
	d.mu.Unlock()
}

// fdRule says how many fds a request carries.
type fdRule uint8

const (
	fdNone     fdRule = iota
	fdVring           // one, unless the body's NOFD bit is set
	fdRegions         // one per memory region
	fdOptional        // ignored
)

type handler struct {
	size     int // exact body size; -1 means the decoder checks it
	fds      fdRule
	protocol int  // protocol feature that must be negotiated, -1 for none
	stop     bool // the data path must be stopped around the handler
	reply    bool // the request always has a reply
	fn       func(d *Device, m *Message) ([]byte, error)
}

// handlers is the one table of what the device accepts. A request not in it
// is refused.
var handlers = map[Request]handler{
	GetFeatures:         {size: 0, protocol: -1, reply: true, fn: (*Device).getFeatures},
	SetFeatures:         {size: 8, protocol: -1, stop: true, fn: (*Device).setFeatures},
	SetOwner:            {size: 0, protocol: -1, fn: func(*Device, *Message) ([]byte, error) { return nil, nil }},
	ResetOwner:          {size: 0, protocol: -1, stop: true, fn: (*Device).resetOwner},
	SetMemTable:         {size: -1, fds: fdRegions, protocol: -1, stop: true, fn: (*Device).setMemTable},
	SetVringNum:         {size: 8, protocol: -1, stop: true, fn: (*Device).setVringNum},
	SetVringAddr:        {size: vringAddrSize, protocol: -1, stop: true, fn: (*Device).setVringAddr},
	SetVringBase:        {size: 8, protocol: -1, stop: true, fn: (*Device).setVringBase},
	GetVringBase:        {size: 8, protocol: -1, stop: true, reply: true, fn: (*Device).getVringBase},
	SetVringKick:        {size: 8, fds: fdVring, protocol: -1, stop: true, fn: (*Device).setVringKick},
	SetVringCall:        {size: 8, fds: fdVring, protocol: -1, stop: true, fn: (*Device).setVringCall},
	SetVringErr:         {size: 8, fds: fdVring, protocol: -1, fn: (*Device).setVringErr},
	GetProtocolFeatures: {size: 0, protocol: -1, reply: true, fn: (*Device).getProtocolFeatures},
	SetProtocolFeatures: {size: 8, protocol: -1, fn: (*Device).setProtocolFeatures},
	GetQueueNum:         {size: 0, protocol: ProtocolMQ, reply: true, fn: (*Device).getQueueNum},
	SetVringEnable:      {size: 8, protocol: -1, stop: true, fn: (*Device).setVringEnable},
	SendRARP:            {size: 8, protocol: ProtocolRARP, fn: (*Device).sendRARP},
	NetSetMTU:           {size: 8, protocol: ProtocolMTU, stop: true, fn: (*Device).netSetMTU},
	SetStatus:           {size: 8, protocol: ProtocolStatus, fn: (*Device).setStatus},
	GetStatus:           {size: 0, protocol: ProtocolStatus, reply: true, fn: (*Device).getStatus},
}

// replyRequests are requests we do not support whose front-end waits for a
// reply we cannot give; refusing them means closing the connection.
var replyRequests = map[Request]bool{
	GetConfig: true, GetInflightFd: true, GetMaxMemSlots: true, PostcopyAdvise: true,
}

// Errors that refuse a message.
var (
	ErrUnsupported = errors.New("unsupported request")
	ErrBadMessage  = errors.New("invalid message")
)

// Handle validates and applies one message and returns the reply body to
// send, if any. A non-nil error is a refusal; ErrBadMessage-wrapped errors
// mean the connection must be closed. Handle takes ownership of m.Fds.
func (d *Device) Handle(m *Message) (reply []byte, err error) {
	d.Counters.Messages.Add(1)
	fds := m.Fds
	defer func() { closeFds(fds) }() // handlers that keep an fd set it to -1 here

	h, ok := handlers[m.Request]
	if !ok {
		d.Counters.Refused.Add(1)
		if replyRequests[m.Request] {
			return nil, fmt.Errorf("%w %s: it needs a reply we cannot give", ErrBadMessage, m.Request)
		}
		return nil, fmt.Errorf("%w %s", ErrUnsupported, m.Request)
	}
	if err := d.check(&h, m); err != nil {
		d.Counters.BadMessages.Add(1)
		return nil, fmt.Errorf("%w %s: %v", ErrBadMessage, m.Request, err)
	}
	if h.stop {
		d.pause()
		defer d.resume()
	}
	d.mu.Lock()
	reply, err = h.fn(d, m)
	d.mu.Unlock()
	if err != nil {
		d.Counters.BadMessages.Add(1)
		return nil, fmt.Errorf("%w %s: %v", ErrBadMessage, m.Request, err)
	}
	return reply, nil
}

// check is checkSize, checkFDs and checkProtocolFeature in one.
func (d *Device) check(h *handler, m *Message) error {
	// Handlers index m.Payload by m.Size; a Message not built by Reader
	// may disagree (e.g. SEND_RARP with Size 8 and a short payload).
	if int(m.Size) != len(m.Payload) {
		return fmt.Errorf("header says %d body bytes, message has %d", m.Size, len(m.Payload))
	}
	if h.size >= 0 && int(m.Size) != h.size {
		return sizeErr(h.size, int(m.Size))
	}
	want := 0
	switch h.fds {
	case fdVring:
		if len(m.Payload) == 8 && m.Payload[1]&1 == 0 { // NOFD bit clear
			want = 1
		}
	case fdRegions:
		if len(m.Payload) >= 4 {
			want = int(uint32(m.Payload[0]) | uint32(m.Payload[1])<<8 | uint32(m.Payload[2])<<16 | uint32(m.Payload[3])<<24)
		}
	}
	if h.fds != fdOptional && len(m.Fds) != want {
		return fmt.Errorf("carries %d fds, want %d", len(m.Fds), want)
	}
	if h.protocol >= 0 && d.protoAcked&(1<<uint(h.protocol)) == 0 {
		return fmt.Errorf("needs protocol feature %d, which was not negotiated", h.protocol)
	}
	return nil
}

func (d *Device) vringIndex(i uint32) (*vring, error) {
	if i >= uint32(2*d.opts.QueuePairs) {
		return nil, fmt.Errorf("vring index %d out of range (%d queues)", i, 2*d.opts.QueuePairs)
	}
	return &d.vrings[i], nil
}

func (d *Device) getFeatures(*Message) ([]byte, error) { return U64(d.offered).Bytes(), nil }

func (d *Device) setFeatures(m *Message) ([]byte, error) {
	f, err := DecodeU64(m.Payload)
	if err != nil {
		return nil, err
	}
	if uint64(f)&^d.offered != 0 {
		return nil, fmt.Errorf("features %#x were not offered (offered %#x)", uint64(f), d.offered)
	}
	d.features, d.featuresSet = uint64(f), true
	d.log.WithFields(logrus.Fields{"features": fmt.Sprintf("%#x", uint64(f)), "names": virtio.FeatureString(uint64(f))}).
		Info("negotiated virtio features")
	return nil, nil
}

func (d *Device) getProtocolFeatures(*Message) ([]byte, error) { return U64(d.protocol).Bytes(), nil }

func (d *Device) setProtocolFeatures(m *Message) ([]byte, error) {
	f, err := DecodeU64(m.Payload)
	if err != nil {
		return nil, err
	}
	if uint64(f)&^d.protocol != 0 {
		return nil, fmt.Errorf("protocol features %#x were not offered (offered %#x)", uint64(f), d.protocol)
	}
	d.protoAcked = uint64(f)
	return nil, nil
}

func (d *Device) getQueueNum(*Message) ([]byte, error) { return U64(d.opts.QueuePairs).Bytes(), nil }

func (d *Device) resetOwner(*Message) ([]byte, error) {
	d.dropMemoryLocked()
	d.resetLocked()
	return nil, nil
}

func (d *Device) setMemTable(m *Message) ([]byte, error) {
	t, err := DecodeMemoryTable(m.Payload)
	if err != nil {
		return nil, err
	}
	mem, err := mapRegions(t, m.Fds)
	if err != nil {
		return nil, err
	}
	d.dropMemoryLocked()
	d.mem = mem
	for i := range d.vrings {
		d.vrings[i].failed = false
	}
	d.log.WithField("regions", len(t.Regions)).Info("memory table mapped")
	return nil, nil
}

// dropMemoryLocked unmaps the current table. The data path is stopped.
func (d *Device) dropMemoryLocked() {
	if d.mem != nil {
		d.mem.Close()
		d.mem = nil
	}
}

// mapRegions maps each region's fd. It checks the fd really is as large as
// the region claims: touching a page past the end of a file is SIGBUS.
func mapRegions(t MemoryTable, fds []int) (*virtio.Memory, error) {
	regions := make([]virtio.Region, 0, len(t.Regions))
	unmap := func() {
		for _, r := range regions {
			unix.Munmap(r.Mapping)
		}
	}
	for i, r := range t.Regions {
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			unmap()
			return nil, fmt.Errorf("region %d: fstat: %v", i, err)
		}
		end := r.MmapOffset + r.Size
		if st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Size) < end {
			unmap()
			return nil, fmt.Errorf("region %d: file has %d bytes, region needs %d", i, st.Size, end)
		}
		align := uint64(st.Blksize)
		if align < uint64(unix.Getpagesize()) || align&(align-1) != 0 {
			align = uint64(unix.Getpagesize())
		}
		length := (end + align - 1) &^ (align - 1)
		if length < end || length > 1<<46 {
			unmap()
			return nil, fmt.Errorf("region %d: %d bytes is too large to map", i, end)
		}
		b, err := unix.Mmap(fds[i], 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			unmap()
			return nil, fmt.Errorf("region %d: mmap %d bytes: %v", i, length, err)
		}
		regions = append(regions, virtio.Region{
			GuestPhysAddr: r.GuestPhysAddr, Size: r.Size, UserAddr: r.UserAddr,
			Data: b[r.MmapOffset:end:end], Mapping: b,
		})
	}
	mem, err := virtio.NewMemory(regions)
	if err != nil {
		unmap()
		return nil, err
	}
	return mem, nil
}

func (d *Device) setVringNum(m *Message) ([]byte, error) {
	s, err := DecodeVringState(m.Payload)
	if err != nil {
		return nil, err
	}
	v, err := d.vringIndex(s.Index)
	if err != nil {
		return nil, err
	}
	if s.Num == 0 || s.Num > virtio.MaxQueueSize || s.Num&(s.Num-1) != 0 {
		return nil, fmt.Errorf("vring %d size %d is not a power of two in 1..%d", s.Index, s.Num, virtio.MaxQueueSize)
	}
	v.num, v.failed = uint16(s.Num), false
	return nil, nil
}

func (d *Device) setVringAddr(m *Message) ([]byte, error) {
	a, err := DecodeVringAddr(m.Payload)
	if err != nil {
		return nil, err
	}
	v, err := d.vringIndex(a.Index)
	if err != nil {
		return nil, err
	}
	v.addr, v.addrSet, v.failed = a, true, false
	return nil, nil
}

func (d *Device) setVringBase(m *Message) ([]byte, error) {
	s, err := DecodeVringState(m.Payload)
	if err != nil {
		return nil, err
	}
	v, err := d.vringIndex(s.Index)
	if err != nil {
		return nil, err
	}
	// A packed ring's base carries the avail index and wrap counter in
	// the low half and (from QEMU) the used ones in the high half.
	if s.Num > 0xffff && d.features&virtio.Bit(virtio.FRingPacked) == 0 {
		return nil, fmt.Errorf("vring %d base %d does not fit a split ring index", s.Index, s.Num)
	}
	v.base = s.Num
	return nil, nil
}

// getVringBase stops the ring (the data path is already paused, so base
// holds the engine's last avail index) and reports where it stopped.
func (d *Device) getVringBase(m *Message) ([]byte, error) {
	s, err := DecodeVringState(m.Payload)
	if err != nil {
		return nil, err
	}
	v, err := d.vringIndex(s.Index)
	if err != nil {
		return nil, err
	}
	v.kicked = false
	closeFd(&v.kickFd)
	return VringState{Index: s.Index, Num: v.base}.Bytes(), nil
}

// takeVringFd validates a kick/call/err body and moves its fd (if any) out
// of m so Handle does not close it.
func (d *Device) takeVringFd(m *Message) (*vring, int, error) {
	f, err := DecodeVringFd(m.Payload)
	if err != nil {
		return nil, -1, err
	}
	v, err := d.vringIndex(uint32(f.Index))
	if err != nil {
		return nil, -1, err
	}
	fd := -1
	if !f.NoFd {
		fd, m.Fds[0] = m.Fds[0], -1
	}
	return v, fd, nil
}

func (d *Device) setVringKick(m *Message) ([]byte, error) {
	v, fd, err := d.takeVringFd(m)
	if err != nil {
		return nil, err
	}
	// We poll; the kick fd is kept only so the front-end's writes succeed.
	closeFd(&v.kickFd)
	v.kickFd, v.kicked, v.failed = fd, true, false
	return nil, nil
}

func (d *Device) setVringCall(m *Message) ([]byte, error) {
	v, fd, err := d.takeVringFd(m)
	if err != nil {
		return nil, err
	}
	closeFd(&v.callFd)
	v.callFd = fd
	return nil, nil
}

func (d *Device) setVringErr(m *Message) ([]byte, error) {
	v, fd, err := d.takeVringFd(m)
	if err != nil {
		return nil, err
	}
	closeFd(&v.errFd)
	v.errFd = fd
	return nil, nil
}

func (d *Device) setVringEnable(m *Message) ([]byte, error) {
	s, err := DecodeVringState(m.Payload)
	if err != nil {
		return nil, err
	}
	v, err := d.vringIndex(s.Index)
	if err != nil {
		return nil, err
	}
	if s.Num > 1 {
		return nil, fmt.Errorf("vring %d enable value %d is not 0 or 1", s.Index, s.Num)
	}
	v.enabled = s.Num == 1
	return nil, nil
}

func (d *Device) sendRARP(m *Message) ([]byte, error) {
	mac := net.HardwareAddr(append([]byte(nil), m.Payload[:6]...))
	d.backend.SendRARP(mac)
	d.log.WithField("mac", mac.String()).Info("announcing guest MAC (SEND_RARP)")
	return nil, nil
}

// setStatus records the virtio device status the front-end drives (QEMU
// sends DRIVER_OK on start and 0 on stop). Rings start and stop through
// their own messages, so the status is kept for GET_STATUS and the API.
func (d *Device) setStatus(m *Message) ([]byte, error) {
	v, err := DecodeU64(m.Payload)
	if err != nil {
		return nil, err
	}
	if v > 0xff {
		return nil, fmt.Errorf("device status %#x does not fit a byte", uint64(v))
	}
	d.status = uint8(v)
	return nil, nil
}

func (d *Device) getStatus(*Message) ([]byte, error) { return U64(d.status).Bytes(), nil }

func (d *Device) netSetMTU(m *Message) ([]byte, error) {
	v, err := DecodeU64(m.Payload)
	if err != nil {
		return nil, err
	}
	if v < 68 || v > 65535 {
		return nil, fmt.Errorf("MTU %d outside 68..65535", uint64(v))
	}
	d.mtu = int(v)
	return nil, nil
}

// pause takes every ring away from the data plane and records where each
// stopped, so handlers may change rings and memory freely.
func (d *Device) pause() {
	d.mu.Lock()
	st := d.published
	d.mu.Unlock()
	if !st.Running() {
		return
	}
	d.backend.Publish(&State{Memory: st.Memory, Features: st.Features, HdrLen: st.HdrLen, MTU: st.MTU})
	d.mu.Lock()
	for i := range d.vrings {
		v := &d.vrings[i]
		if v.q != nil {
			v.base = uint32(v.q.LastAvail())
			v.q = nil
		}
		if v.pq != nil {
			v.base = uint32(v.pq.LastAvail()) | uint32(v.pq.LastUsed())<<16
			v.pq = nil
		}
	}
	d.published = nil
	d.mu.Unlock()
}

// ready says whether a ring has everything it needs to run.
func (d *Device) ready(v *vring) bool {
	enabled := v.enabled
	if d.features&virtio.Bit(virtio.FProtocolFeatures) == 0 {
		enabled = true // without protocol features rings start enabled
	}
	return d.mem != nil && v.num != 0 && v.addrSet && v.kicked && enabled && !v.failed
}

// resume starts every ready ring and publishes the result.
func (d *Device) resume() {
	d.mu.Lock()
	st := &State{Memory: d.mem, Features: d.features, HdrLen: virtio.NetHdrLen(d.features), MTU: d.mtu}
	pairs := d.opts.QueuePairs
	st.Rx = make([]*virtio.SplitQueue, pairs)
	st.Tx = make([]*virtio.SplitQueue, pairs)
	st.PRx = make([]*virtio.PackedQueue, pairs)
	st.PTx = make([]*virtio.PackedQueue, pairs)
	st.Packed = d.features&virtio.Bit(virtio.FRingPacked) != 0
	for i := 0; i < 2*pairs; i++ {
		v := &d.vrings[i]
		if !d.ready(v) {
			continue
		}
		if st.Packed {
			// SET_VRING_ADDR's avail and used are the driver and device
			// event suppression areas of a packed ring.
			pq, err := virtio.NewPackedQueue(d.mem, virtio.PackedConfig{
				Size: v.num, Desc: v.addr.Desc, Driver: v.addr.Avail, Device: v.addr.Used,
				LastAvail: uint16(v.base), LastUsed: uint16(v.base >> 16),
				EventIdx: d.features&virtio.Bit(virtio.RingFEventIdx) != 0, CallFd: v.callFd,
				InOrder: d.features&virtio.Bit(virtio.FInOrder) != 0,
			})
			if err != nil {
				v.failed = true
				d.Counters.RingErrors.Add(1)
				d.lastErr = fmt.Sprintf("vring %d cannot start: %v", i, err)
				d.log.WithError(err).WithField("vring", i).Warn("packed vring cannot start")
				continue
			}
			v.pq = pq
			if i%2 == 0 {
				st.PRx[i/2] = pq
			} else {
				st.PTx[i/2] = pq
			}
			continue
		}
		q, err := virtio.NewSplitQueue(d.mem, virtio.SplitConfig{
			Size: v.num, Desc: v.addr.Desc, Avail: v.addr.Avail, Used: v.addr.Used,
			LastAvail: uint16(v.base), EventIdx: d.features&virtio.Bit(virtio.RingFEventIdx) != 0, CallFd: v.callFd,
		})
		if err != nil {
			v.failed = true
			d.Counters.RingErrors.Add(1)
			d.lastErr = fmt.Sprintf("vring %d cannot start: %v", i, err)
			d.log.WithError(err).WithField("vring", i).Warn("vring cannot start")
			continue
		}
		if q.Resynced {
			d.log.WithFields(logrus.Fields{"vring": i, "base": v.base, "resumed_at": q.LastAvail()}).
				Warn("vring base disagrees with used.idx; resuming from used.idx (in-flight buffers may be lost)")
		}
		v.q = q
		if i%2 == 0 {
			st.Rx[i/2] = q
		} else {
			st.Tx[i/2] = q
		}
	}
	wasRunning := d.published.Running()
	d.published = st
	d.mu.Unlock()
	if st.Running() || wasRunning {
		d.backend.Publish(st)
	}
	if st.Running() && !wasRunning {
		d.log.WithField("queue_pairs", d.Status().QueuePairs).Debug("device rings running")
	}
}

// Disconnect stops the device and frees everything the connection gave it,
// so a new connection starts from scratch.
func (d *Device) Disconnect() {
	d.pause()
	d.backend.Publish(&State{})
	d.mu.Lock()
	d.dropMemoryLocked()
	d.resetLocked()
	d.connected = false
	d.published = nil
	d.mu.Unlock()
}

func (d *Device) setConnected() {
	d.mu.Lock()
	d.connected = true
	d.lastErr = ""
	d.mu.Unlock()
	d.Counters.Connects.Add(1)
}
