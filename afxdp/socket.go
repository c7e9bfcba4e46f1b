package afxdp

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options size a socket. Zero fields take the defaults.
type Options struct {
	// FrameSize is the UMEM chunk size: 2048 or 4096 (default). In copy
	// mode the kernel puts a frame XDP_PACKET_HEADROOM (256) bytes into its
	// chunk, so a chunk holds frames up to FrameSize-256 bytes.
	FrameSize uint32
	// NumFrames is the UMEM size in frames (default 4096): the first half
	// receives (fill ring), the second half transmits.
	NumFrames uint32
	// RingSize is the size of each of the four rings (default 2048, a
	// power of two).
	RingSize uint32
	// ForceCopy binds in copy mode even where the driver can do zero-copy.
	ForceCopy bool
}

func (o *Options) defaults() error {
	if o.FrameSize == 0 {
		o.FrameSize = 4096
	}
	if o.NumFrames == 0 {
		o.NumFrames = 4096
	}
	if o.RingSize == 0 {
		o.RingSize = 2048
	}
	if o.FrameSize != 2048 && o.FrameSize != 4096 {
		return fmt.Errorf("afxdp: frame size %d is not 2048 or 4096", o.FrameSize)
	}
	if o.RingSize&(o.RingSize-1) != 0 || o.NumFrames < 2 || o.NumFrames&1 != 0 || o.NumFrames/2 > o.RingSize {
		return fmt.Errorf("afxdp: ring size %d must be a power of two, frames %d even and at most twice the ring size", o.RingSize, o.NumFrames)
	}
	return nil
}

// Socket is one XDP socket bound to one NIC queue, with its own UMEM.
// The receive side (Fill, RX) and the transmit side (TX, Comp) may have
// different owners; each side is single-owner.
type Socket struct {
	fd       int
	Ifindex  int
	Queue    int
	ZeroCopy bool // bound in zero-copy mode; false: copy mode

	UMEM      []byte // mmap'd, not GC-owned
	FrameSize uint32
	RxFrames  uint32 // frames [0, RxFrames) receive
	TxFrames  uint32 // frames [RxFrames, RxFrames+TxFrames) transmit

	Fill FillQueue
	Comp CompletionQueue
	RX   RXQueue
	TX   TXQueue
}

// xdpMaxTxSkbBudget is XDP_MAX_TX_SKB_BUDGET (linux/if_xdp.h, 6.17).
const xdpMaxTxSkbBudget = 9

func setsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// NewSocket creates an XDP socket on queue of the interface ifindex, in
// the calling thread's network namespace. It fills the fill ring with the
// receive half of the UMEM and binds with XDP_USE_NEED_WAKEUP, letting the
// kernel pick zero-copy where the driver supports it (copy otherwise, or
// always with o.ForceCopy). The socket receives nothing until the XDP
// program redirects the queue into it (Device does both).
func NewSocket(ifindex, queue int, o Options) (_ *Socket, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("afxdp: socket: %w", err)
	}
	s := &Socket{fd: fd, Ifindex: ifindex, Queue: queue, FrameSize: o.FrameSize,
		RxFrames: o.NumFrames / 2, TxFrames: o.NumFrames / 2}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.UMEM, err = unix.Mmap(-1, 0, int(o.NumFrames*o.FrameSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("afxdp: umem mmap: %w", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.UMEM[0]))), Len: uint64(len(s.UMEM)), Size: o.FrameSize}
	if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, fmt.Errorf("afxdp: XDP_UMEM_REG: %w", err)
	}
	// The fill ring is twice the ring size, so it always has room for
	// every receive frame: the kernel publishes its consumer index late
	// (it takes fill entries in batches), and a fill ring exactly as big
	// as the receive frames can look full while we hold frames to return.
	fillSize := 2 * o.RingSize
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		n := int32(o.RingSize)
		if opt == unix.XDP_UMEM_FILL_RING {
			n = int32(fillSize)
		}
		if err := setsockopt(fd, opt, unsafe.Pointer(&n), 4); err != nil {
			return nil, fmt.Errorf("afxdp: ring size option %d: %w", opt, err)
		}
	}
	// Copy mode sends at most this many frames per sendto (32 unless
	// raised; Linux 6.17+ lets us).
	budget := uint32(min(256, o.RingSize/2))
	setsockopt(fd, xdpMaxTxSkbBudget, unsafe.Pointer(&budget), 4)
	var off unix.XDPMmapOffsets
	if err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("afxdp: XDP_MMAP_OFFSETS: %w", err)
	}
	mapRing := func(pgoff int64, o unix.XDPRingOffset, n, entry uint32) ([]byte, error) {
		b, err := unix.Mmap(fd, pgoff, int(o.Desc)+int(n*entry), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("afxdp: ring mmap at %#x: %w", pgoff, err)
		}
		return b, nil
	}
	n := o.RingSize
	mem, err := mapRing(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, fillSize, 8)
	if err != nil {
		return nil, err
	}
	s.Fill.init(mem, off.Fr, fillSize)
	s.Fill.addrs = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.Fr.Desc])), fillSize)
	// Our producer rings start with the whole ring free.
	s.Fill.cachedCons = fillSize
	if mem, err = mapRing(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, n, 8); err != nil {
		return nil, err
	}
	s.Comp.init(mem, off.Cr, n)
	s.Comp.addrs = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.Cr.Desc])), n)
	if mem, err = mapRing(unix.XDP_PGOFF_RX_RING, off.Rx, n, 16); err != nil {
		return nil, err
	}
	s.RX.init(mem, off.Rx, n)
	s.RX.descs = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&mem[off.Rx.Desc])), n)
	if mem, err = mapRing(unix.XDP_PGOFF_TX_RING, off.Tx, n, 16); err != nil {
		return nil, err
	}
	s.TX.init(mem, off.Tx, n)
	s.TX.descs = unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&mem[off.Tx.Desc])), n)
	s.TX.cachedCons = n

	// Give the kernel every receive frame the fill ring holds.
	k := s.Fill.Reserve(s.RxFrames)
	for i := uint32(0); i < k; i++ {
		s.Fill.Set(i, uint64(i)*uint64(s.FrameSize))
	}
	s.Fill.Submit(k)

	flags := uint16(unix.XDP_USE_NEED_WAKEUP)
	if o.ForceCopy {
		flags |= unix.XDP_COPY
	}
	if err := unix.Bind(fd, &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifindex), QueueID: uint32(queue)}); err != nil {
		return nil, fmt.Errorf("afxdp: bind to ifindex %d queue %d: %w", ifindex, queue, err)
	}
	var opts uint32
	if err := getsockopt(fd, unix.XDP_OPTIONS, unsafe.Pointer(&opts), 4); err == nil {
		s.ZeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	}
	return s, nil
}

// FD is the socket's file descriptor (for the XSKMAP).
func (s *Socket) FD() int { return s.fd }

// Frame returns the UMEM bytes of the descriptor addr, n.
func (s *Socket) Frame(addr uint64, n uint32) []byte { return s.UMEM[addr : addr+uint64(n)] }

// FrameBase returns the address of the chunk addr lies in (aligned mode).
func (s *Socket) FrameBase(addr uint64) uint64 { return addr &^ uint64(s.FrameSize-1) }

// WakeRX asks the kernel to take frames from the fill ring (a
// non-blocking recvfrom), for when the fill ring needs a wakeup.
func (s *Socket) WakeRX() {
	unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// KickTX asks the kernel to send what the TX ring holds (a non-blocking
// sendto). In copy mode one call sends at most the socket's TX budget;
// more says descriptors remain (EAGAIN, EBUSY, ENOBUFS: call again now or
// soon). Any other errno is an error: ENETDOWN and ENXIO mean the link is
// down or gone.
func (s *Socket) KickTX() (more bool, e unix.Errno) {
	_, _, e = unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
		return true, 0
	}
	return false, e
}

// Stats are the kernel's counters for the socket.
type Stats = unix.XDPStatistics

// Stats reads XDP_STATISTICS.
func (s *Socket) Stats() (Stats, error) {
	var st Stats
	err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st))
	return st, err
}

// Close closes the socket and unmaps its rings and UMEM. Nobody may use
// the socket after, nor while it runs.
func (s *Socket) Close() error {
	var errs []error
	if s.fd >= 0 {
		errs = append(errs, unix.Close(s.fd))
		s.fd = -1
	}
	for _, r := range []*ring{&s.Fill.ring, &s.Comp.ring, &s.RX.ring, &s.TX.ring} {
		if r.mem != nil {
			errs = append(errs, unix.Munmap(r.mem))
			r.mem = nil
		}
	}
	if s.UMEM != nil {
		errs = append(errs, unix.Munmap(s.UMEM))
		s.UMEM = nil
	}
	return errors.Join(errs...)
}
