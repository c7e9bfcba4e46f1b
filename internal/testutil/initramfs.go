package testutil

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// guestInit is the guest's /init (busybox sh script).
//
//go:embed guest_init.sh
var guestInit []byte

// GuestModules are the kernel modules the guest needs for virtio-net, in load order
// (dependency order per modules.dep of Debian's 6.1 kernel, where all are =m).
var GuestModules = []string{
	"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
	"virtio_pci", "failover", "net_failover", "virtio_net",
}

// GuestApplets are the busybox applets linked into the guest's /bin.
var GuestApplets = []string{
	"sh", "ip", "ping", "insmod", "sleep", "cat", "echo", "mount", "poweroff", "seq",
	"grep", "sed", "date", "dmesg", "ls", "nc", "md5sum", "dd", "head", "ifconfig", "cut", "wc",
	"taskset", "nproc",
}

// BusyboxPath is the static busybox copied into the guest (Debian busybox-static).
const BusyboxPath = "/bin/busybox"

// GuestKernel returns the newest /boot/vmlinuz-* and its version (KVER).
func GuestKernel() (kernel, kver string, err error) {
	paths, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(paths) == 0 {
		return "", "", fmt.Errorf("no /boot/vmlinuz-* (apt-get install linux-image-amd64)")
	}
	sort.Slice(paths, func(i, j int) bool { return versionLess(paths[i], paths[j]) })
	kernel = paths[len(paths)-1]
	return kernel, strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-"), nil
}

// versionLess compares strings like sort -V: runs of digits compare numerically.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da != "" && db != "" {
			na, _ := strconv.Atoi(da)
			nb, _ := strconv.Atoi(db)
			if na != nb {
				return na < nb
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// BuildInitramfs writes a gzipped newc cpio with busybox, the guest /init and
// GuestModules of kernel kver (decompressed: busybox insmod cannot read .ko.xz/.ko.zst).
func BuildInitramfs(w io.Writer, kver string) error {
	busybox, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	mods, err := loadModules(kver, GuestModules)
	if err != nil {
		return err
	}

	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	c := &cpioWriter{w: gz}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"} {
		c.dir(d)
	}
	// The kernel's built-in rootfs already has /dev/console; adding it again is harmless and
	// makes the image work with kernels built without that default.
	c.charDev("dev/console", 0o600, 5, 1)
	c.file("bin/busybox", 0o755, busybox)
	for _, a := range GuestApplets {
		c.symlink("bin/"+a, "busybox")
	}
	c.file("init", 0o755, guestInit)
	var order []string
	for _, m := range mods {
		if m.data != nil { // nil: built into the kernel, nothing to load
			c.file("lib/modules/"+m.name+".ko", 0o644, m.data)
			order = append(order, m.name)
		}
	}
	c.file("lib/modules/order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	c.trailer()
	if c.err != nil {
		return c.err
	}
	return gz.Close()
}

type module struct {
	name string
	data []byte // nil when builtin
}

// loadModules finds each module through modules.dep (or modules.builtin) and reads it uncompressed.
func loadModules(kver string, names []string) ([]module, error) {
	base := filepath.Join("/lib/modules", kver)
	dep, err := os.ReadFile(filepath.Join(base, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("modules of kernel %s: %w", kver, err)
	}
	builtin, _ := os.ReadFile(filepath.Join(base, "modules.builtin"))
	// Module names treat '-' and '_' alike.
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	modName := func(path string) string {
		b := filepath.Base(path)
		return norm(b[:strings.Index(b, ".ko")])
	}
	paths := map[string]string{}
	for _, line := range strings.Split(string(dep), "\n") {
		if p, _, ok := strings.Cut(line, ":"); ok && strings.Contains(p, ".ko") {
			paths[modName(p)] = p
		}
	}
	builtins := map[string]bool{}
	for _, p := range strings.Fields(string(builtin)) {
		builtins[modName(p)] = true
	}

	var out []module
	for _, n := range names {
		p, ok := paths[norm(n)]
		if !ok {
			if builtins[norm(n)] {
				out = append(out, module{name: n})
				continue
			}
			return nil, fmt.Errorf("module %s not found in %s/modules.dep", n, base)
		}
		data, err := readModule(filepath.Join(base, p))
		if err != nil {
			return nil, err
		}
		out = append(out, module{name: n, data: data})
	}
	return out, nil
}

// readModule returns the raw ELF of a .ko, .ko.gz, .ko.xz or .ko.zst.
// Go's stdlib has no xz/zstd decoder, so those go through the xz/zstd tools.
func readModule(path string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.gz"):
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return io.ReadAll(zr)
	case strings.HasSuffix(path, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(path, ".ko.zst"):
		tool = "zstd"
	default:
		return nil, fmt.Errorf("%s: unknown module format", path)
	}
	out, err := exec.Command(tool, "-dc", path).Output()
	if err != nil {
		return nil, fmt.Errorf("%s -dc %s: %w", tool, path, err)
	}
	return out, nil
}

// cpioWriter writes the "newc" (SVR4, no CRC) format the kernel unpacks.
// Errors are sticky so call sites stay short.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
	cpioChr  = 0o020000
)

func (c *cpioWriter) dir(name string)                      { c.entry(name, cpioDir|0o755, 2, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm int, b []byte) { c.entry(name, cpioReg|perm, 1, 0, 0, b) }
func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, cpioLink|0o777, 1, 0, 0, []byte(target))
}
func (c *cpioWriter) charDev(name string, perm, major, minor int) {
	c.entry(name, cpioChr|perm, 1, major, minor, nil)
}
func (c *cpioWriter) trailer() { c.entry("TRAILER!!!", 0, 1, 0, 0, nil) }

func (c *cpioWriter) entry(name string, mode, nlink, rmajor, rminor int, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	var b bytes.Buffer
	// magic, then 13 fields of 8 hex digits: ino mode uid gid nlink mtime filesize
	// devmajor devminor rdevmajor rdevminor namesize check.
	fmt.Fprintf(&b, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(&b) // header+name padded to 4 bytes
	b.Write(data)
	pad4(&b) // data padded to 4 bytes
	_, c.err = c.w.Write(b.Bytes())
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// The initramfs is built once per test process and kept in memory (~1.2 MiB).
var initramfs struct {
	once   sync.Once
	data   []byte
	kver   string
	kernel string
	err    error
}

// GuestImage returns the guest kernel and an initramfs written into dir
// (built once per process, reused if dir already holds it).
func GuestImage(t testing.TB, dir string) (kernel, initrd string) {
	t.Helper()
	initramfs.once.Do(func() {
		initramfs.kernel, initramfs.kver, initramfs.err = GuestKernel()
		if initramfs.err != nil {
			return
		}
		var b bytes.Buffer
		initramfs.err = BuildInitramfs(&b, initramfs.kver)
		initramfs.data = b.Bytes()
	})
	Require(t, initramfs.err == nil, "guest image: %v", initramfs.err)
	// Debian's vmlinuz is mode 0600 root.
	f, err := os.Open(initramfs.kernel)
	Require(t, err == nil, "guest kernel not readable: %v", err)
	f.Close()

	initrd = filepath.Join(dir, "initramfs.cpio.gz")
	if st, err := os.Stat(initrd); err != nil || st.Size() != int64(len(initramfs.data)) {
		if err := os.WriteFile(initrd, initramfs.data, 0o644); err != nil {
			t.Fatalf("write initramfs: %v", err)
		}
	}
	return initramfs.kernel, initrd
}
