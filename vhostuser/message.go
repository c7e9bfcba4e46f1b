// Package vhostuser implements the backend side of the vhost-user protocol
// (QEMU docs/interop/vhost-user.rst) for virtio-net devices: message framing,
// validation, the device state machine, and the server and client sockets.
// It hands running rings to the data plane through Backend and never touches
// packets itself.
package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Request is a vhost-user front-end request type.
type Request uint32

// Front-end requests (vhost-user.rst, "Front-end message types").
const (
	GetFeatures         Request = 1
	SetFeatures         Request = 2
	SetOwner            Request = 3
	ResetOwner          Request = 4
	SetMemTable         Request = 5
	SetLogBase          Request = 6
	SetLogFd            Request = 7
	SetVringNum         Request = 8
	SetVringAddr        Request = 9
	SetVringBase        Request = 10
	GetVringBase        Request = 11
	SetVringKick        Request = 12
	SetVringCall        Request = 13
	SetVringErr         Request = 14
	GetProtocolFeatures Request = 15
	SetProtocolFeatures Request = 16
	GetQueueNum         Request = 17
	SetVringEnable      Request = 18
	SendRARP            Request = 19
	NetSetMTU           Request = 20
	SetBackendReqFd     Request = 21
	IOTLBMsg            Request = 22
	SetVringEndian      Request = 23
	GetConfig           Request = 24
	SetConfig           Request = 25
	PostcopyAdvise      Request = 28
	PostcopyListen      Request = 29
	PostcopyEnd         Request = 30
	GetInflightFd       Request = 31
	SetInflightFd       Request = 32
	ResetDevice         Request = 34
	VringKick           Request = 35
	GetMaxMemSlots      Request = 36
	AddMemReg           Request = 37
	RemMemReg           Request = 38
	SetStatus           Request = 39
	GetStatus           Request = 40
)

// Protocol feature bits (VHOST_USER_PROTOCOL_F_*).
const (
	ProtocolMQ                = 0
	ProtocolLogShmfd          = 1
	ProtocolRARP              = 2
	ProtocolReplyAck          = 3
	ProtocolMTU               = 4
	ProtocolBackendReq        = 5
	ProtocolCrossEndian       = 6
	ProtocolConfig            = 9
	ProtocolInflightShmfd     = 12
	ProtocolResetDevice       = 13
	ProtocolConfigureMemSlots = 15
	ProtocolStatus            = 16
)

// Header flags.
const (
	FlagVersion   = 0x1
	flagVerMask   = 0x3
	FlagReply     = 0x4
	FlagNeedReply = 0x8
)

// Limits of the framing.
const (
	HeaderSize = 12
	// MaxPayload bounds a message body. The largest body a net device
	// uses is the 264-byte memory table; anything near this is hostile.
	MaxPayload = 4096
	// MaxFds is VHOST_MEMORY_BASELINE_NREGIONS: the most fds one message
	// carries.
	MaxFds = 8
	// MaxRegions is the most memory regions SET_MEM_TABLE may carry.
	MaxRegions = 8
	// vringNoFd is VHOST_USER_VRING_NOFD_MASK in a kick/call/err body.
	vringNoFd  = 1 << 8
	vringIdxMk = 0xff
)

// Header is the 12-byte message header.
type Header struct {
	Request Request
	Flags   uint32
	Size    uint32
}

// Message is one request with its body and the fds that came with it.
// The receiver owns Fds and must close those it does not keep.
type Message struct {
	Header
	Payload []byte
	Fds     []int
}

// NeedReply says the front-end asked for a REPLY_ACK.
func (m *Message) NeedReply() bool { return m.Flags&FlagNeedReply != 0 }

// Framing errors: after one of these the stream cannot be trusted.
var (
	ErrBadVersion   = errors.New("bad message version")
	ErrTooLarge     = errors.New("message body larger than the limit")
	ErrTooManyFds   = errors.New("more fds than any message carries")
	ErrReplyFlagSet = errors.New("request carries the reply flag")
)

// DecodeHeader parses and checks a header.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, io.ErrUnexpectedEOF
	}
	h := Header{
		Request: Request(binary.LittleEndian.Uint32(b[0:])),
		Flags:   binary.LittleEndian.Uint32(b[4:]),
		Size:    binary.LittleEndian.Uint32(b[8:]),
	}
	if h.Flags&flagVerMask != FlagVersion {
		return h, fmt.Errorf("%w: flags %#x", ErrBadVersion, h.Flags)
	}
	if h.Flags&FlagReply != 0 {
		return h, ErrReplyFlagSet
	}
	if h.Size > MaxPayload {
		return h, fmt.Errorf("%w: %d bytes", ErrTooLarge, h.Size)
	}
	return h, nil
}

// EncodeHeader writes h into b[:HeaderSize].
func EncodeHeader(b []byte, h Header) {
	binary.LittleEndian.PutUint32(b[0:], uint32(h.Request))
	binary.LittleEndian.PutUint32(b[4:], h.Flags)
	binary.LittleEndian.PutUint32(b[8:], h.Size)
}

// Reader reads messages from a vhost-user connection.
type Reader struct {
	conn *net.UnixConn
	buf  [HeaderSize + MaxPayload]byte
	oob  []byte
	fds  []int
}

// NewReader wraps conn.
func NewReader(conn *net.UnixConn) *Reader {
	return &Reader{conn: conn, oob: make([]byte, unix.CmsgSpace(4*MaxFds)*2)}
}

// Read reads one message. The payload aliases the reader's buffer until the
// next call. On error every fd received is closed.
func (r *Reader) Read() (*Message, error) {
	r.fds = r.fds[:0]
	if err := r.readFull(r.buf[:HeaderSize]); err != nil {
		return nil, r.fail(err)
	}
	h, err := DecodeHeader(r.buf[:HeaderSize])
	if err != nil {
		return nil, r.fail(err)
	}
	body := r.buf[HeaderSize : HeaderSize+int(h.Size)]
	if err := r.readFull(body); err != nil {
		return nil, r.fail(err)
	}
	if len(r.fds) > MaxFds {
		return nil, r.fail(fmt.Errorf("%w: %d", ErrTooManyFds, len(r.fds)))
	}
	return &Message{Header: h, Payload: body, Fds: append([]int(nil), r.fds...)}, nil
}

func (r *Reader) fail(err error) error {
	closeFds(r.fds)
	r.fds = r.fds[:0]
	return err
}

// readFull reads len(b) bytes, collecting any fds that arrive on the way.
func (r *Reader) readFull(b []byte) error {
	for len(b) > 0 {
		n, oobn, flags, _, err := r.conn.ReadMsgUnix(b, r.oob)
		if oobn > 0 {
			if perr := r.parseRights(r.oob[:oobn]); perr != nil && err == nil {
				err = perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 && err == nil {
			err = fmt.Errorf("%w: control data truncated", ErrTooManyFds)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.EOF
		}
		b = b[n:]
	}
	return nil
}

func (r *Reader) parseRights(oob []byte) error {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return err
	}
	for _, c := range cmsgs {
		if c.Header.Level != unix.SOL_SOCKET || c.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		fds, err := unix.ParseUnixRights(&c)
		if err != nil {
			return err
		}
		r.fds = append(r.fds, fds...)
	}
	return nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

// WriteReply sends a reply to req with body.
func WriteReply(conn *net.UnixConn, req Request, body []byte) error {
	var b [HeaderSize + MaxPayload]byte
	EncodeHeader(b[:], Header{Request: req, Flags: FlagVersion | FlagReply, Size: uint32(len(body))})
	n := copy(b[HeaderSize:], body)
	_, err := conn.Write(b[:HeaderSize+n])
	return err
}

// U64 is the body of the requests that carry one 64-bit number.
type U64 uint64

// DecodeU64 parses an 8-byte body.
func DecodeU64(b []byte) (U64, error) {
	if len(b) != 8 {
		return 0, sizeErr(8, len(b))
	}
	return U64(binary.LittleEndian.Uint64(b)), nil
}

// Bytes encodes v.
func (v U64) Bytes() []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }

// VringFd is the body of SET_VRING_KICK/CALL/ERR.
type VringFd struct {
	Index uint8
	NoFd  bool
}

// DecodeVringFd parses a kick/call/err body.
func DecodeVringFd(b []byte) (VringFd, error) {
	v, err := DecodeU64(b)
	if err != nil {
		return VringFd{}, err
	}
	f := VringFd{Index: uint8(v & vringIdxMk), NoFd: v&vringNoFd != 0}
	return f, f.validate(uint64(v))
}

func (f VringFd) validate(raw uint64) error {
	if raw&^(vringIdxMk|vringNoFd) != 0 {
		return fmt.Errorf("reserved bits set in vring fd body %#x", raw)
	}
	return nil
}

// VringState is struct vhost_vring_state.
type VringState struct {
	Index uint32
	Num   uint32
}

// DecodeVringState parses an 8-byte vring state.
func DecodeVringState(b []byte) (VringState, error) {
	if len(b) != 8 {
		return VringState{}, sizeErr(8, len(b))
	}
	return VringState{Index: binary.LittleEndian.Uint32(b), Num: binary.LittleEndian.Uint32(b[4:])}, nil
}

// Bytes encodes s.
func (s VringState) Bytes() []byte {
	b := binary.LittleEndian.AppendUint32(nil, s.Index)
	return binary.LittleEndian.AppendUint32(b, s.Num)
}

// VringAddr is struct vhost_vring_addr.
type VringAddr struct {
	Index uint32
	Flags uint32
	Desc  uint64
	Used  uint64
	Avail uint64
	Log   uint64
}

const vringAddrSize = 40

// VringFLog is VHOST_VRING_F_LOG: the used ring is logged for migration.
const VringFLog = 1

// DecodeVringAddr parses and validates a vring address body.
func DecodeVringAddr(b []byte) (VringAddr, error) {
	if len(b) != vringAddrSize {
		return VringAddr{}, sizeErr(vringAddrSize, len(b))
	}
	a := VringAddr{
		Index: binary.LittleEndian.Uint32(b),
		Flags: binary.LittleEndian.Uint32(b[4:]),
		Desc:  binary.LittleEndian.Uint64(b[8:]),
		Used:  binary.LittleEndian.Uint64(b[16:]),
		Avail: binary.LittleEndian.Uint64(b[24:]),
		Log:   binary.LittleEndian.Uint64(b[32:]),
	}
	return a, a.Validate()
}

// Validate checks the syntax of a.
func (a VringAddr) Validate() error {
	if a.Flags&^VringFLog != 0 {
		return fmt.Errorf("unknown vring address flags %#x", a.Flags)
	}
	if a.Desc%16 != 0 || a.Avail%2 != 0 || a.Used%4 != 0 {
		return fmt.Errorf("misaligned rings: desc %#x avail %#x used %#x", a.Desc, a.Avail, a.Used)
	}
	return nil
}

// Bytes encodes a.
func (a VringAddr) Bytes() []byte {
	b := binary.LittleEndian.AppendUint32(nil, a.Index)
	b = binary.LittleEndian.AppendUint32(b, a.Flags)
	for _, v := range []uint64{a.Desc, a.Used, a.Avail, a.Log} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// MemRegion is struct vhost_user_memory_region.
type MemRegion struct {
	GuestPhysAddr uint64
	Size          uint64
	UserAddr      uint64
	MmapOffset    uint64
}

const memRegionSize = 32

// MemoryTable is the body of SET_MEM_TABLE.
type MemoryTable struct {
	Regions []MemRegion
}

// DecodeMemoryTable parses and validates a memory table body: a count,
// padding, and exactly that many regions.
func DecodeMemoryTable(b []byte) (MemoryTable, error) {
	if len(b) < 8 {
		return MemoryTable{}, fmt.Errorf("memory table body of %d bytes is shorter than its count", len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > MaxRegions {
		return MemoryTable{}, fmt.Errorf("memory table with %d regions (1..%d allowed)", n, MaxRegions)
	}
	if want := 8 + int(n)*memRegionSize; len(b) != want {
		return MemoryTable{}, fmt.Errorf("memory table with %d regions: %w", n, sizeErr(want, len(b)))
	}
	t := MemoryTable{Regions: make([]MemRegion, n)}
	for i := range t.Regions {
		o := 8 + i*memRegionSize
		t.Regions[i] = MemRegion{
			GuestPhysAddr: binary.LittleEndian.Uint64(b[o:]),
			Size:          binary.LittleEndian.Uint64(b[o+8:]),
			UserAddr:      binary.LittleEndian.Uint64(b[o+16:]),
			MmapOffset:    binary.LittleEndian.Uint64(b[o+24:]),
		}
	}
	return t, t.Validate()
}

// Validate checks that regions are non-empty, do not wrap and do not overlap.
func (t MemoryTable) Validate() error {
	for i, r := range t.Regions {
		if r.Size == 0 {
			return fmt.Errorf("region %d has size zero", i)
		}
		if r.GuestPhysAddr+r.Size < r.GuestPhysAddr || r.UserAddr+r.Size < r.UserAddr ||
			r.MmapOffset+r.Size < r.MmapOffset {
			return fmt.Errorf("region %d wraps the address space", i)
		}
		for j := 0; j < i; j++ {
			o := t.Regions[j]
			if r.GuestPhysAddr < o.GuestPhysAddr+o.Size && o.GuestPhysAddr < r.GuestPhysAddr+r.Size {
				return fmt.Errorf("regions %d and %d overlap in guest-physical memory", j, i)
			}
			if r.UserAddr < o.UserAddr+o.Size && o.UserAddr < r.UserAddr+r.Size {
				return fmt.Errorf("regions %d and %d overlap in front-end memory", j, i)
			}
		}
	}
	return nil
}

// Bytes encodes t.
func (t MemoryTable) Bytes() []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(t.Regions)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, r := range t.Regions {
		for _, v := range []uint64{r.GuestPhysAddr, r.Size, r.UserAddr, r.MmapOffset} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func sizeErr(want, got int) error {
	return fmt.Errorf("body is %d bytes, want %d", got, want)
}

var requestNames = map[Request]string{
	GetFeatures: "GET_FEATURES", SetFeatures: "SET_FEATURES", SetOwner: "SET_OWNER",
	ResetOwner: "RESET_OWNER", SetMemTable: "SET_MEM_TABLE", SetLogBase: "SET_LOG_BASE",
	SetLogFd: "SET_LOG_FD", SetVringNum: "SET_VRING_NUM", SetVringAddr: "SET_VRING_ADDR",
	SetVringBase: "SET_VRING_BASE", GetVringBase: "GET_VRING_BASE", SetVringKick: "SET_VRING_KICK",
	SetVringCall: "SET_VRING_CALL", SetVringErr: "SET_VRING_ERR",
	GetProtocolFeatures: "GET_PROTOCOL_FEATURES", SetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	GetQueueNum: "GET_QUEUE_NUM", SetVringEnable: "SET_VRING_ENABLE", SendRARP: "SEND_RARP",
	NetSetMTU: "NET_SET_MTU", SetBackendReqFd: "SET_BACKEND_REQ_FD", IOTLBMsg: "IOTLB_MSG",
	SetVringEndian: "SET_VRING_ENDIAN", GetConfig: "GET_CONFIG", SetConfig: "SET_CONFIG",
	PostcopyAdvise: "POSTCOPY_ADVISE", PostcopyListen: "POSTCOPY_LISTEN", PostcopyEnd: "POSTCOPY_END",
	GetInflightFd: "GET_INFLIGHT_FD", SetInflightFd: "SET_INFLIGHT_FD", ResetDevice: "RESET_DEVICE",
	VringKick: "VRING_KICK", GetMaxMemSlots: "GET_MAX_MEM_SLOTS", AddMemReg: "ADD_MEM_REG",
	RemMemReg: "REM_MEM_REG", SetStatus: "SET_STATUS", GetStatus: "GET_STATUS",
}

func (r Request) String() string {
	if n, ok := requestNames[r]; ok {
		return n
	}
	return fmt.Sprintf("REQUEST_%d", uint32(r))
}
