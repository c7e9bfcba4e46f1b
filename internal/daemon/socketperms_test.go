package daemon

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/testutil"
)

// connectAs connects to the unix socket at path as uid:gid with no
// supplementary groups, from a thread of its own (raw set*id calls change
// only the calling thread, which dies with its locked goroutine).
func connectAs(path string, uid, gid int) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is not reused
		for _, c := range [][4]uintptr{
			{syscall.SYS_SETGROUPS, 0, 0, 0},
			{syscall.SYS_SETRESGID, ^uintptr(0), uintptr(gid), ^uintptr(0)},
			{syscall.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)},
		} {
			if _, _, e := syscall.RawSyscall(c[0], c[1], c[2], c[3]); e != 0 {
				ch <- e
				return
			}
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
			unix.Close(fd)
		}
		ch <- err
	}()
	return <-ch
}

func statOwner(t *testing.T, path string) (mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), int(st.Uid), int(st.Gid)
}

// Server sockets get their owner, group and mode (the port's, else the
// vhostuser defaults, else 0660 and the daemon's), before any front-end
// can connect; the run directory is created 0750 in the sockets' group.
// Numeric ids stand for QEMU's user and group (libvirt-qemu).
func TestSocketPermissions(t *testing.T) {
	testutil.RequireRoot(t)
	parent := shortDir(t)
	os.Chmod(parent, 0o711) // other users may pass through to the run dir
	dir := filepath.Join(parent, "run")
	const qemuUID, qemuGID, otherGID = 64101, 64102, 64103
	log := logrus.New()
	log.SetOutput(io.Discard)
	d, err := Start(load(t, dir, `vhostuser: {socket_group: "64102"}
bridges: [{name: br0}]
ports:
  - {name: vm1, type: vhostuser, bridge: br0, socket: vm1.sock}
  - {name: vm2, type: vhostuser, bridge: br0, socket: vm2.sock, socket_owner: "64101", socket_group: "64103", socket_mode: "0600"}
  - {name: vm3, type: vhostuser, bridge: br0, socket: vm3.sock, socket_group: nogroup}
`), logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if m, uid, gid := statOwner(t, dir); m != 0o750 || uid != 0 || gid != qemuGID {
		t.Errorf("run dir %o %d:%d, want 0750 0:%d", m, uid, gid, qemuGID)
	}
	for _, want := range []struct {
		sock     string
		mode     os.FileMode
		uid, gid int
	}{{"vm1.sock", 0o660, 0, qemuGID}, {"vm2.sock", 0o600, qemuUID, otherGID}, {"vm3.sock", 0o660, 0, 65534}} {
		if m, uid, gid := statOwner(t, filepath.Join(dir, want.sock)); m != want.mode || uid != want.uid || gid != want.gid {
			t.Errorf("%s: %o %d:%d, want %o %d:%d", want.sock, m, uid, gid, want.mode, want.uid, want.gid)
		}
	}
	// QEMU's group reaches vm1 through the run dir; vm2 by owner only.
	vm1, vm2 := filepath.Join(dir, "vm1.sock"), filepath.Join(dir, "vm2.sock")
	if err := connectAs(vm1, qemuUID+10, qemuGID); err != nil {
		t.Errorf("QEMU's group cannot connect to vm1: %v", err)
	}
	if err := connectAs(vm1, qemuUID+10, qemuGID+10); !errors.Is(err, unix.EACCES) {
		t.Errorf("another user reaches vm1: %v, want EACCES", err)
	}
	if err := connectAs(vm2, qemuUID, qemuGID); err != nil {
		t.Errorf("vm2's owner cannot connect: %v", err)
	}
	if err := connectAs(vm2, qemuUID+10, otherGID); !errors.Is(err, unix.EACCES) {
		t.Errorf("vm2's group (mode 0600) connects: %v, want EACCES", err)
	}
	// An unknown user refuses the port with the field named.
	cfg := d.Running()
	pc := cfg.Ports[0]
	pc.Name, pc.Socket, pc.SocketOwner = "vm4", filepath.Join(dir, "vm4.sock"), "no-such-user-here"
	if err := d.AddPort(pc); err == nil || !strings.Contains(err.Error(), "socket_owner") {
		t.Errorf("unknown owner: %v", err)
	}
}

// Without settings the run directory is 0750 and sockets 0660, owned by
// the daemon's user and group: nothing is open to other users.
func TestSocketPermissionDefaults(t *testing.T) {
	testutil.RequireRoot(t)
	_, dir, _ := startTwoPorts(t)
	if m, uid, gid := statOwner(t, filepath.Join(dir, "vm1.sock")); m != 0o660 || uid != 0 || gid != 0 {
		t.Errorf("vm1.sock %o %d:%d, want 0660 0:0", m, uid, gid)
	}
	sub := filepath.Join(dir, "a", "b")
	log := logrus.New()
	log.SetOutput(io.Discard)
	d2, err := Start(load(t, sub, "bridges: []\n"), logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	d2.Close()
	if m, _, gid := statOwner(t, sub); m != 0o750 || gid != 0 {
		t.Errorf("run dir %o gid %d, want 0750 and the daemon's group", m, gid)
	}
}
