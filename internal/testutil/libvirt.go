package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LibvirtURI is the libvirt connection Nova uses.
const LibvirtURI = "qemu:///system"

// Libvirtd is the system libvirtd a test drives through virsh: one already
// running, or virtlogd and libvirtd started here in the foreground (the
// test machines have no systemd to start them) and stopped at cleanup.
type Libvirtd struct {
	URI     string
	virsh   string
	prefix  string
	daemons []*proc // started here, in start order
	// networks the libvirtd started here brought up (autostart, e.g.
	// Debian's "default" with its dnsmasq): they outlive libvirtd.
	networks []string
}

// StartLibvirtd makes libvirtd available. Domains whose names start with
// prefix belong to the test: leftovers of a killed run are destroyed first,
// and at cleanup they are destroyed (and their QEMU killed if libvirtd
// cannot) before libvirtd stops. Daemon logs go to dir.
func StartLibvirtd(t testing.TB, dir, prefix string) *Libvirtd {
	t.Helper()
	RequireRoot(t)
	l := &Libvirtd{URI: LibvirtURI, virsh: RequireBinary(t, "virsh"), prefix: prefix}
	libvirtd := RequireBinary(t, "libvirtd")
	virtlogd := RequireBinary(t, "virtlogd")
	RequireBinary(t, "qemu-system-x86_64")
	t.Cleanup(l.cleanup)
	if l.answers() {
		t.Logf("libvirtd: using the one already running")
	} else {
		// libvirtd hands QEMU's output to virtlogd (qemu.conf stdio_handler).
		for _, bin := range []string{virtlogd, libvirtd} {
			name := filepath.Base(bin)
			logf, err := os.Create(filepath.Join(dir, name+".log"))
			if err != nil {
				t.Fatal(err)
			}
			p := &proc{}
			cmd := exec.Command(bin)
			cmd.Stdout, cmd.Stderr = logf, logf
			err = p.startProc(cmd)
			logf.Close()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			l.daemons = append(l.daemons, p)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !l.answers() {
			if time.Now().After(deadline) || l.daemons[1].exited() {
				b, _ := os.ReadFile(filepath.Join(dir, "libvirtd.log"))
				t.Fatalf("libvirtd does not answer on %s:\n%s", l.URI, tail(string(b), 20))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if out, err := l.Virsh("net-list", "--name"); err == nil {
			l.networks = strings.Fields(out)
		}
		t.Logf("libvirtd: started (pid %d)", l.daemons[1].cmd.Process.Pid)
	}
	l.destroyDomains()
	return l
}

func (l *Libvirtd) answers() bool {
	return exec.Command(l.virsh, "-c", l.URI, "version").Run() == nil
}

// Virsh runs virsh on the test's connection.
func (l *Libvirtd) Virsh(args ...string) (string, error) {
	out, err := exec.Command(l.virsh, append([]string{"-c", l.URI}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// destroyDomains destroys (and undefines, if defined) the test's domains.
func (l *Libvirtd) destroyDomains() {
	out, err := l.Virsh("list", "--all", "--name")
	if err != nil {
		return
	}
	for _, name := range strings.Fields(out) {
		if strings.HasPrefix(name, l.prefix) {
			l.Virsh("destroy", name)
			l.Virsh("undefine", name)
		}
	}
}

func (l *Libvirtd) cleanup() {
	l.destroyDomains()
	for _, n := range l.networks {
		l.Virsh("net-destroy", n)
	}
	for i := len(l.daemons) - 1; i >= 0; i-- {
		l.daemons[i].stop(syscall.SIGTERM, 15*time.Second)
	}
	killGuests(l.prefix)
}

// killGuests kills QEMU processes libvirt started for domains named
// prefix* (libvirt passes -name guest=NAME,...): a QEMU outlives libvirtd,
// so one whose destroy failed would keep running.
func killGuests(prefix string) {
	pids, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("qemu-system")) {
			continue
		}
		if !bytes.Contains(b, []byte("\x00guest="+prefix)) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
