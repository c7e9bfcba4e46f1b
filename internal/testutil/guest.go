package testutil

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GuestOptions configures one QEMU TCG guest with a single virtio-net-pci NIC on vhost-user.
type GuestOptions struct {
	Name   string // log and serial file names
	Socket string // vhost-user unix socket
	MAC    string // default: derived from Name (52:54:00:xx:xx:xx)
	IP     string // guest address with prefix, "10.0.0.1/24"
	Peer   string // address the guest pings, "10.0.0.2"
	Role   string // ping, wait, pingloop, tcprecv, tcpsend, tcpserve or probe, see guest_init.sh (default: ping when Peer is set, else wait)
	Count  int    // role ping: echo requests after the first reply (default 3)
	MTU    int    // eth0 MTU, 0: kernel default
	// KernelArgs are appended to the kernel command line (e.g. "lab.kb=10240").
	KernelArgs string
	// Server makes QEMU listen on Socket (chardev server=on,wait=off) so the switch connects.
	Server     bool
	DevOpts    string // appended to -device virtio-net-pci,..., e.g. ",packed=on,mrg_rxbuf=on"
	NetdevOpts string // appended to -netdev vhost-user,..., e.g. ",queues=2"
	Dir        string // serial, QEMU log and initramfs (default: a ShortTempDir)
	SMP        int    // vCPUs (default 1); a multiqueue guest enables min(CPUs, queue pairs)
}

// Guest is a running QEMU.
type Guest struct {
	Name       string
	SerialPath string
	LogPath    string // QEMU's own stdout/stderr
	Cmdline    []string

	proc
}

// StartGuest boots a guest: TCG, 256 MiB memfd memory with share=on (vhost-user needs the
// backend to map guest memory; share=off silently loses all traffic, G9), vectors=0 on the
// NIC (QEMU 7.2 TCG segfaults with MSI-X on vhost-user, G1), serial console to a file.
// The guest's /init (guest_init.sh) acts according to Role. The process is killed at cleanup.
func StartGuest(t testing.TB, o GuestOptions) *Guest {
	t.Helper()
	bin := RequireBinary(t, "qemu-system-x86_64")
	if o.Name == "" {
		o.Name = "guest"
	}
	if o.Dir == "" {
		o.Dir = ShortTempDir(t)
	}
	if o.MAC == "" {
		h := fnv.New32a()
		h.Write([]byte(o.Name))
		s := h.Sum32()
		o.MAC = fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(s>>16), byte(s>>8), byte(s))
	}
	if o.Role == "" {
		o.Role = "wait"
		if o.Peer != "" {
			o.Role = "ping"
		}
	}
	if o.Count == 0 {
		o.Count = 3
	}
	kernel, initrd := GuestImage(t, o.Dir)

	kargs := []string{"console=ttyS0", "quiet", "panic=-1", "lab.role=" + o.Role, fmt.Sprintf("lab.count=%d", o.Count)}
	if o.IP != "" {
		kargs = append(kargs, "lab.ip="+o.IP)
	}
	if o.Peer != "" {
		kargs = append(kargs, "lab.peer="+o.Peer)
	}
	if o.KernelArgs != "" {
		kargs = append(kargs, strings.Fields(o.KernelArgs)...)
	}
	if o.MTU > 0 {
		kargs = append(kargs, fmt.Sprintf("lab.mtu=%d", o.MTU))
	}
	chardev := "socket,id=c0,path=" + o.Socket
	if o.Server {
		chardev += ",server=on,wait=off"
	}
	g := &Guest{
		Name:       o.Name,
		SerialPath: filepath.Join(o.Dir, o.Name+".serial"),
		LogPath:    filepath.Join(o.Dir, o.Name+".qemu.log"),
	}
	os.Remove(g.SerialPath)
	args := []string{
		"-machine", "pc,accel=tcg", "-m", "256M", "-smp", fmt.Sprint(max(o.SMP, 1)),
		"-display", "none", "-no-reboot", "-monitor", "none",
		"-kernel", kernel, "-initrd", initrd, "-append", strings.Join(kargs, " "),
		"-serial", "file:" + g.SerialPath,
		"-object", "memory-backend-memfd,id=m,size=256M,share=on", "-numa", "node,memdev=m",
		"-chardev", chardev,
		"-netdev", "vhost-user,id=n0,chardev=c0" + o.NetdevOpts,
		"-device", "virtio-net-pci,netdev=n0,mac=" + o.MAC + ",vectors=0" + o.DevOpts,
	}
	g.Cmdline = append([]string{bin}, args...)

	logf, err := os.Create(g.LogPath)
	if err != nil {
		t.Fatalf("guest %s: %v", o.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s\n", strings.Join(g.Cmdline, " "))
	g.cmd = exec.Command(bin, args...)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.startProc(g.cmd); err != nil {
		t.Fatalf("guest %s: %v", o.Name, err)
	}
	t.Logf("guest %s: pid %d, %s %s on %s, serial %s", o.Name, g.cmd.Process.Pid, o.Role, o.IP, o.Socket, g.SerialPath)
	t.Cleanup(func() {
		g.Kill()
		if t.Failed() {
			t.Logf("guest %s serial tail:\n%s\nqemu log:\n%s", g.Name, tail(g.Serial(), 20), tail(g.qemuLog(), 10))
		}
	})
	return g
}

// Serial returns the serial console output so far.
func (g *Guest) Serial() string {
	b, _ := os.ReadFile(g.SerialPath)
	return string(b)
}

func (g *Guest) qemuLog() string {
	b, _ := os.ReadFile(g.LogPath)
	return string(b)
}

// WaitSerial waits until the serial output contains substr and returns the output.
// It fails the test with the serial tail on timeout or when QEMU exits first
// (role ping powers off after LAB-PING-FAIL, so a failed ping ends the wait early).
func (g *Guest) WaitSerial(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		exited := g.exited() // before reading, so output written just before exit counts
		out := g.Serial()
		if strings.Contains(out, substr) {
			return out
		}
		if exited {
			t.Fatalf("guest %s exited (%v) before %q on serial:\n%s\nqemu log:\n%s",
				g.Name, g.waitErr, substr, tail(out, 20), tail(g.qemuLog(), 10))
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest %s: %q not on serial within %v:\n%s", g.Name, substr, timeout, tail(out, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill kills QEMU (if running) and waits for it.
func (g *Guest) Kill() {
	if !g.exited() {
		g.cmd.Process.Kill()
	}
	<-g.done
}

// Wait waits up to timeout for QEMU to exit by itself and returns its exit error
// (nil after the guest's poweroff).
func (g *Guest) Wait(timeout time.Duration) error {
	select {
	case <-g.done:
		return g.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("guest %s still running after %v", g.Name, timeout)
	}
}

// Pid returns QEMU's process id.
func (g *Guest) Pid() int { return g.cmd.Process.Pid }
