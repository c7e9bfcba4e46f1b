package afxdp

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// XDP attach modes, as Device.Mode reports them.
const (
	ModeNative  = "native"  // in the driver
	ModeGeneric = "generic" // on the skb path, for drivers without XDP
)

// DeviceOptions configure Open.
type DeviceOptions struct {
	// Queues are the NIC receive queues to open a socket on; empty means
	// every queue the device has.
	Queues []int
	// Mode forces ModeNative or ModeGeneric; empty tries native first and
	// falls back to generic (Device.Fallback says why).
	Mode   string
	Socket Options
}

// Device is a network interface given to AF_XDP: an XSKMAP, the XDP
// program that redirects each open queue into its socket, the program's
// attachment, and one Socket per queue.
type Device struct {
	Name    string
	Ifindex int
	MTU     int
	// NumQueues is how many receive queues the device has.
	NumQueues int
	Queues    []int     // the queues opened, Sockets[i] is on Queues[i]
	Sockets   []*Socket // one per queue
	Mode      string    // ModeNative or ModeGeneric
	// Fallback says why native mode was not used ("" when it was).
	Fallback string
	// Replaced describes an XDP program found attached at Open (a crashed
	// run's, say) that was detached first; "" if there was none.
	Replaced string

	prog *ebpf.Program
	xsks *ebpf.Map
	lnk  link.Link
}

// Program builds the redirect program: frames of queue i go to the socket
// at key i of xsks; a queue without a socket passes frames to the kernel
// (the fallback action in bpf_redirect_map's flags, Linux 5.3+). It is
// written with cilium/ebpf's asm, so no C compiler is needed.
func Program(xsks *ebpf.Map) (*ebpf.Program, error) {
	spec := &ebpf.ProgramSpec{
		Name:    "vswitch_xsk",
		Type:    ebpf.XDP,
		License: "Dual MIT/GPL",
		Instructions: asm.Instructions{
			// r2 = ctx->rx_queue_index (struct xdp_md offset 16)
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word),
			asm.LoadMapPtr(asm.R1, xsks.FD()),
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS when the key holds no socket
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
	}
	return ebpf.NewProgram(spec)
}

// Open gives the interface name to AF_XDP in the calling thread's network
// namespace: a socket per queue, the XSKMAP and the redirect program,
// attached in native mode where the driver can (generic otherwise). An
// XDP program left attached (a crashed run's) is detached first.
func Open(name string, o DeviceOptions) (_ *Device, err error) {
	if err := o.Socket.defaults(); err != nil {
		return nil, err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("afxdp: device %q: %w", name, err)
	}
	a := l.Attrs()
	d := &Device{Name: name, Ifindex: a.Index, MTU: a.MTU, NumQueues: max(a.NumRxQueues, 1)}
	if max := int(o.Socket.FrameSize) - unix.XDP_PACKET_HEADROOM - 14 - 4; a.MTU > max {
		return nil, fmt.Errorf("afxdp: device %s: MTU %d is more than the %d a %d-byte UMEM frame holds", name, a.MTU, max, o.Socket.FrameSize)
	}
	d.Queues = slices.Clone(o.Queues)
	if len(d.Queues) == 0 {
		for q := 0; q < d.NumQueues; q++ {
			d.Queues = append(d.Queues, q)
		}
	}
	for _, q := range d.Queues {
		if q < 0 || q >= d.NumQueues {
			return nil, fmt.Errorf("afxdp: device %s has queues 0..%d, not %d", name, d.NumQueues-1, q)
		}
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if x := a.Xdp; x != nil && x.Attached {
		d.Replaced = fmt.Sprintf("XDP program id %d (attach mode %d)", x.ProgId, x.AttachMode)
		for _, f := range []int{xdpFlagsSKBMode, xdpFlagsDrvMode} {
			netlink.LinkSetXdpFdWithFlags(l, -1, f)
		}
		if l2, err := netlink.LinkByIndex(a.Index); err == nil && l2.Attrs().Xdp != nil && l2.Attrs().Xdp.Attached {
			return nil, fmt.Errorf("afxdp: device %s: cannot detach the %s already there (held by a live bpf_link: another vswitchd?)", name, d.Replaced)
		}
	}
	maxKey := slices.Max(d.Queues) + 1
	d.xsks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "vswitch_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(maxKey)})
	if err != nil {
		return nil, fmt.Errorf("afxdp: XSKMAP: %w", err)
	}
	if d.prog, err = Program(d.xsks); err != nil {
		return nil, fmt.Errorf("afxdp: XDP program: %w", err)
	}
	for _, q := range d.Queues {
		s, err := NewSocket(d.Ifindex, q, o.Socket)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", name, err)
		}
		d.Sockets = append(d.Sockets, s)
		if err := d.xsks.Put(uint32(q), uint32(s.FD())); err != nil {
			return nil, fmt.Errorf("afxdp: XSKMAP[%d]: %w", q, err)
		}
	}
	if o.Mode != ModeGeneric {
		d.lnk, err = link.AttachXDP(link.XDPOptions{Program: d.prog, Interface: d.Ifindex, Flags: link.XDPDriverMode})
		if err == nil {
			d.Mode = ModeNative
		} else if o.Mode == ModeNative {
			return nil, fmt.Errorf("afxdp: attach XDP to %s in native mode: %w", name, err)
		} else {
			d.Fallback = fmt.Sprintf("native mode refused: %v", err)
		}
	}
	if d.lnk == nil {
		d.lnk, err = link.AttachXDP(link.XDPOptions{Program: d.prog, Interface: d.Ifindex, Flags: link.XDPGenericMode})
		if err != nil {
			return nil, fmt.Errorf("afxdp: attach XDP to %s in generic mode: %w", name, err)
		}
		d.Mode = ModeGeneric
	}
	return d, nil
}

// netlink's XDP attach flags (linux/if_link.h), for detaching leftovers.
const (
	xdpFlagsSKBMode = 1 << 1
	xdpFlagsDrvMode = 1 << 2
)

// ZeroCopy reports whether every socket is bound in zero-copy mode.
func (d *Device) ZeroCopy() bool {
	for _, s := range d.Sockets {
		if !s.ZeroCopy {
			return false
		}
	}
	return len(d.Sockets) > 0
}

// Close detaches the program and frees the sockets, the map and the
// program. Nobody may use the sockets after, nor while it runs.
func (d *Device) Close() error {
	var errs []error
	if d.lnk != nil {
		errs = append(errs, d.lnk.Close())
		d.lnk = nil
	}
	for _, s := range d.Sockets {
		errs = append(errs, s.Close())
	}
	d.Sockets = nil
	if d.prog != nil {
		errs = append(errs, d.prog.Close())
		d.prog = nil
	}
	if d.xsks != nil {
		errs = append(errs, d.xsks.Close())
		d.xsks = nil
	}
	return errors.Join(errs...)
}

// LinkState is what a link event says about the device.
type LinkState struct {
	Up   bool // administratively up and carrier on
	Gone bool // the device was deleted (or left the namespace)
	MTU  int
}

func stateOf(l netlink.Link) LinkState {
	a := l.Attrs()
	up := a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
	return LinkState{Up: up, MTU: a.MTU}
}

// State reads the device's link state now.
func (d *Device) State() LinkState {
	l, err := netlink.LinkByIndex(d.Ifindex)
	if err != nil || l.Attrs().Name != d.Name {
		return LinkState{Gone: true}
	}
	return stateOf(l)
}

// Watch calls fn (from its own goroutine) with the device's link state
// each time the kernel announces a change to it, until done is closed or
// the device is gone (fn then sees Gone and is not called again). If the
// netlink subscription fails (its socket overflowed, say), Watch
// subscribes again and reports the state it then reads.
func (d *Device) Watch(done <-chan struct{}, fn func(LinkState)) error {
	subscribe := func() (chan netlink.LinkUpdate, chan struct{}, error) {
		ch := make(chan netlink.LinkUpdate, 256)
		stop := make(chan struct{})
		if err := netlink.LinkSubscribeWithOptions(ch, stop, netlink.LinkSubscribeOptions{}); err != nil {
			return nil, nil, fmt.Errorf("afxdp: link subscribe: %w", err)
		}
		return ch, stop, nil
	}
	ch, stop, err := subscribe()
	if err != nil {
		return err
	}
	go func() {
		defer func() { close(stop) }()
		last := d.State()
		report := func(st LinkState) bool {
			if st != last {
				last = st
				fn(st)
			}
			return st.Gone
		}
		for {
			select {
			case <-done:
				return
			case u, ok := <-ch:
				if !ok {
					close(stop)
					for {
						select {
						case <-done:
							stop = make(chan struct{})
							return
						case <-time.After(100 * time.Millisecond):
						}
						if ch, stop, err = subscribe(); err == nil {
							break
						}
					}
					if report(d.State()) {
						return
					}
					continue
				}
				if int(u.Index) != d.Ifindex {
					continue
				}
				st := LinkState{Gone: true}
				if u.Header.Type != unix.RTM_DELLINK {
					st = stateOf(u.Link)
				}
				if report(st) {
					return
				}
			}
		}
	}()
	return nil
}
