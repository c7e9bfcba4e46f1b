package afxdp_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/afxdp"
	"github.com/vswitch/vswitch/afxdp/afxdptest"
)

// recv polls s until pred accepts a frame or the timeout passes, giving
// every frame back to the fill ring.
func recv(t *testing.T, s *afxdp.Socket, timeout time.Duration, pred func([]byte) bool) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n := s.RX.Peek(64)
		if n == 0 {
			if s.Fill.NeedWakeup() {
				s.WakeRX()
			}
			time.Sleep(time.Millisecond)
			continue
		}
		var got []byte
		k := s.Fill.Reserve(n)
		for i := uint32(0); i < n; i++ {
			d := s.RX.Get(i)
			if got == nil && pred(s.Frame(d.Addr, d.Len)) {
				got = bytes.Clone(s.Frame(d.Addr, d.Len))
			}
			if i < k {
				s.Fill.Set(i, s.FrameBase(d.Addr))
			}
		}
		s.RX.Release(n)
		s.Fill.Submit(k)
		if got != nil {
			return got
		}
	}
	t.Fatalf("no matching frame within %v", timeout)
	return nil
}

func send(t *testing.T, s *afxdp.Socket, frame []byte) {
	t.Helper()
	// Reap completions first; tx frames are [RxFrames, RxFrames+TxFrames).
	if n := s.Comp.Peek(s.Comp.Len()); n > 0 {
		s.Comp.Release(n)
	}
	if s.TX.Reserve(1) != 1 {
		t.Fatal("tx ring full")
	}
	addr := uint64(s.RxFrames) * uint64(s.FrameSize)
	copy(s.UMEM[addr:], frame)
	s.TX.Set(0, addr, uint32(len(frame)))
	s.TX.Submit(1)
	if _, e := s.KickTX(); e != 0 {
		t.Fatalf("sendto: %v", e)
	}
}

var fakeMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x77, 0x01}

// TestSocketOnVeth opens a device on a veth whose far end is a namespace
// host, answers the host's ARP request through the TX ring and then gets
// the UDP datagram it sends to the answered address.
func TestSocketOnVeth(t *testing.T) {
	afxdptest.Require(t)
	h := afxdptest.NewHost(t, "10.77.0.2/24", 1)
	d, err := afxdp.Open(h.Near, afxdp.DeviceOptions{Mode: os.Getenv("XMODE")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	t.Logf("mode %s (fallback %q), zero-copy %v, queues %v, MTU %d", d.Mode, d.Fallback, d.ZeroCopy(), d.Queues, d.MTU)
	if d.Mode != afxdp.ModeNative {
		t.Errorf("veth supports native XDP; got %s (%s)", d.Mode, d.Fallback)
	}
	if len(d.Sockets) != 1 || d.Sockets[0].Queue != 0 {
		t.Fatalf("sockets %v", d.Sockets)
	}
	s := d.Sockets[0]
	// The host sends UDP datagrams to 10.77.0.1 (which nobody has yet).
	var conn net.Conn
	if err := afxdptest.Do(h.NS, func() (err error) { conn, err = net.Dial("udp4", "10.77.0.1:9"); return }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				conn.Write([]byte("hello"))
			}
		}
	}()

	arp := recv(t, s, 5*time.Second, func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 1
	})
	hostMAC := net.HardwareAddr(arp[6:12])
	reply := make([]byte, 60)
	copy(reply[0:], hostMAC)
	copy(reply[6:], fakeMAC)
	binary.BigEndian.PutUint16(reply[12:], 0x0806)
	copy(reply[14:], []byte{0, 1, 8, 0, 6, 4, 0, 2})
	copy(reply[22:], fakeMAC)
	copy(reply[28:], arp[38:42]) // sender IP: the address asked for
	copy(reply[32:], hostMAC)
	copy(reply[38:], arp[28:32])
	send(t, s, reply)
	udp := recv(t, s, 5*time.Second, func(f []byte) bool {
		return len(f) >= 47 && bytes.Equal(f[0:6], fakeMAC) && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 17
	})
	if !bytes.Equal(udp[30:34], []byte{10, 77, 0, 1}) || string(udp[42:47]) != "hello" {
		t.Fatalf("datagram to %v: % x", net.IP(udp[30:34]), udp)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("socket stats %+v", st)
	if out := h.Exec(t, "ip", "neigh", "show", "10.77.0.1"); !strings.Contains(out, fakeMAC.String()) {
		t.Fatalf("host did not learn the ARP reply: %s", out)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(h.Near)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Fatalf("XDP program still attached after Close: %+v", x)
	}
}

// TestLeftoverProgramReplaced attaches a program the old netlink way, as a
// crashed run (or another tool) would leave it, and opens the device.
func TestLeftoverProgramReplaced(t *testing.T) {
	afxdptest.Require(t)
	h := afxdptest.NewHost(t, "10.77.1.2/24", 1)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(h.Near)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetXdpFdWithFlags(l, prog.FD(), 1<<1); err != nil { // generic mode
		t.Fatal(err)
	}
	prog.Close() // the attachment keeps it alive, as after a crash
	d, err := afxdp.Open(h.Near, afxdp.DeviceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Replaced == "" || d.Mode != afxdp.ModeNative {
		t.Fatalf("replaced %q, mode %s (%s)", d.Replaced, d.Mode, d.Fallback)
	}
	t.Logf("replaced %s", d.Replaced)
}

// TestGenericMode forces generic XDP and copy mode on two queues.
func TestGenericModeMultiqueue(t *testing.T) {
	afxdptest.Require(t)
	h := afxdptest.NewHost(t, "10.77.2.2/24", 2)
	d, err := afxdp.Open(h.Near, afxdp.DeviceOptions{Mode: afxdp.ModeGeneric, Socket: afxdp.Options{ForceCopy: true, NumFrames: 1024, RingSize: 512}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Mode != afxdp.ModeGeneric || len(d.Sockets) != 2 || d.ZeroCopy() {
		t.Fatalf("mode %s, %d sockets, zero-copy %v", d.Mode, len(d.Sockets), d.ZeroCopy())
	}
	if _, err := afxdp.Open(h.Near, afxdp.DeviceOptions{Queues: []int{5}}); err == nil || !strings.Contains(err.Error(), "not 5") {
		t.Fatalf("queue 5 of 2: %v", err)
	}
}

// TestFallbackToGeneric opens an ifb device, whose driver has no XDP:
// native attach is refused, generic is used and the reason kept.
func TestFallbackToGeneric(t *testing.T) {
	afxdptest.Require(t)
	name := afxdptest.Name()
	afxdptest.Run(t, "ip", "link", "add", name, "type", "ifb")
	t.Cleanup(func() { afxdptest.Run(t, "ip", "link", "del", name) })
	d, err := afxdp.Open(name, afxdp.DeviceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	t.Logf("mode %s: %s", d.Mode, d.Fallback)
	if d.Mode != afxdp.ModeGeneric || d.Fallback == "" {
		t.Fatalf("mode %s, fallback %q", d.Mode, d.Fallback)
	}
	if _, err := afxdp.Open(name, afxdp.DeviceOptions{Mode: afxdp.ModeNative}); err == nil {
		t.Fatal("native mode forced on an ifb device worked")
	}
}
