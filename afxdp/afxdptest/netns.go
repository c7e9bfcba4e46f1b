// Package afxdptest holds test helpers for AF_XDP ports: network
// namespaces that play external hosts, veth pairs into them, commands and
// Go sockets inside them. Everything is removed in t.Cleanup.
//
// The switch's end of each veth stays in the test's own namespace with
// IPv6 off and no address, so the kernel sends nothing on it and every
// frame stays between the namespaces the test created.
package afxdptest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/testutil"
)

var seq atomic.Int32

// Name returns a short unique name, vsx-<pid>-<n> (fits IFNAMSIZ).
func Name() string {
	return fmt.Sprintf("vsx-%d-%d", os.Getpid(), seq.Add(1))
}

// Require skips (fails in CI) unless the test runs as root, the kernel
// has AF_XDP and network namespaces, and ip, ethtool and busybox exist.
func Require(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "ip")
	testutil.RequireBinary(t, "ethtool")
	testutil.RequireBinary(t, "busybox") // ping
	_, err := os.Stat("/proc/self/ns/net")
	testutil.Require(t, err == nil, "no network namespaces: %v", err)
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	testutil.Require(t, err == nil, "no AF_XDP sockets in this kernel: %v", err)
	if err == nil {
		unix.Close(fd)
	}
}

// Run runs a command and fails the test with its output on error.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NS creates a network namespace, removed at cleanup, with lo up.
func NS(t testing.TB) string {
	t.Helper()
	name := Name()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	// IPv4 only: no router solicitations, DAD or MLD reports on the wire.
	Run(t, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return name
}

// Host is a namespace playing an external host behind a veth.
type Host struct {
	NS   string // namespace
	Dev  string // the host's end (inside NS)
	Near string // the switch's end, in the test's namespace
	IP   string // the host's address, without prefix
}

// NewHost creates a namespace and a veth pair with queues queues per
// direction: the far end, ip/24 (e.g. "10.77.0.2/24"), inside the
// namespace with transmit checksum offload off, the near end up in ours.
func NewHost(t testing.TB, cidr string, queues int) *Host {
	t.Helper()
	h := &Host{NS: NS(t), Near: Name(), Dev: "eth0"}
	h.IP, _, _ = strings.Cut(cidr, "/")
	q := fmt.Sprint(max(queues, 1))
	Run(t, "ip", "link", "add", h.Near, "numtxqueues", q, "numrxqueues", q, "type", "veth",
		"peer", "name", h.Dev, "netns", h.NS, "numtxqueues", q, "numrxqueues", q)
	t.Cleanup(func() { exec.Command("ip", "link", "del", h.Near).Run() })
	// No IPv6 (router solicitations, DAD) and no address on our end.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+h.Near+"/disable_ipv6", []byte("1"), 0)
	Run(t, "ip", "link", "set", h.Near, "up")
	// Veth's transmit checksum offload leaves partial checksums on frames
	// that reach AF_XDP; a real NIC receives complete ones. Make the host
	// compute them.
	Run(t, "ip", "netns", "exec", h.NS, "ethtool", "-K", h.Dev, "tx", "off")
	Run(t, "ip", "-n", h.NS, "addr", "add", cidr, "dev", h.Dev)
	Run(t, "ip", "-n", h.NS, "link", "set", h.Dev, "up")
	return h
}

// Exec runs a command inside the host's namespace.
func (h *Host) Exec(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, append([]string{"ip", "netns", "exec", h.NS}, args...)...)
}

// Do runs fn on a thread inside namespace ns. Sockets fn creates belong
// to ns and may be used from any goroutine afterwards.
func Do(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with the goroutine.
		runtime.LockOSThread()
		return fmt.Errorf("restore netns: %w", err)
	}
	return ferr
}

// Ping runs busybox ping in the host's namespace and fails the test unless
// count replies come back.
func (h *Host) Ping(t testing.TB, ip string, count int) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "busybox", "ping", "-c", fmt.Sprint(count), "-W", "5", "-i", "0.2", ip).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", ip, h.NS, err, out)
	}
}

// pattern is the deterministic data a transfer sends, seeded per direction.
func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed | 1
	for i := 0; i+8 <= n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b
}

// Listen opens a TCP listener inside namespace ns.
func Listen(t testing.TB, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := Do(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects from inside namespace ns.
func Dial(ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return
	})
	return c, err
}

// exchange sends out on c while reading what the peer sends, then checks
// the received bytes against want.
func exchange(c net.Conn, out, want []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d bytes: %w", len(got), rerr)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("received %d bytes (sha256 %x), want %d (sha256 %x)", len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
	return nil
}

// TCPExchange connects from namespace client to a listener in namespace
// server at addr ("10.78.0.2:5001") and sends n bytes each way at the
// same time over conns connections, checking every byte. It returns how
// long the exchange took.
func TCPExchange(t testing.TB, server, client, addr string, n, conns int, timeout time.Duration) time.Duration {
	t.Helper()
	ln := Listen(t, server, addr)
	up, down := pattern(1, n), pattern(2, n)
	start := time.Now()
	errs := make(chan error, 2*conns)
	go func() {
		for i := 0; i < conns; i++ {
			c, err := ln.Accept()
			if err != nil {
				errs <- fmt.Errorf("accept: %w", err)
				return
			}
			go func() {
				defer c.Close()
				if err := exchange(c, down, up, timeout); err != nil {
					errs <- fmt.Errorf("server side: %w", err)
					return
				}
				errs <- nil
			}()
		}
	}()
	for i := 0; i < conns; i++ {
		go func() {
			c, err := Dial(client, addr)
			if err != nil {
				errs <- fmt.Errorf("dial: %w", err)
				return
			}
			defer c.Close()
			if err := exchange(c, up, down, timeout); err != nil {
				errs <- fmt.Errorf("client side: %w", err)
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < 2*conns; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("TCP %s -> %s: %v", client, addr, err)
		}
	}
	return time.Since(start)
}
