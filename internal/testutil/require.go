// Package testutil holds helpers for tests that drive real vhost-user peers:
// DPDK testpmd (as frontend and as reference backend) and QEMU TCG guests.
//
// Tests that need root, binaries or hugepages call the Require* helpers. They
// skip when a prerequisite is missing, except in CI (CI=true), where a missing
// prerequisite is a failure: CI must never pass by skipping everything.
// scripts/install-deps.sh installs the prerequisites.
//
// Lab directories come from ShortTempDir and are removed after the test; set
// VSWITCH_KEEP_LAB=1 to keep them (testpmd logs, guest serial consoles). The peers
// busy-poll a CPU each, so run packages with such tests one at a time (go test -p 1).
package testutil

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// InCI reports whether the tests run in CI (env CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Require skips the test with the formatted reason when ok is false,
// or fails it when running in CI.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI=true: missing prerequisite: %s (run scripts/install-deps.sh as root)", msg)
	}
	t.Skipf("missing prerequisite: %s", msg)
}

// RequireRoot requires euid 0 (vhost peers need hugepages, /boot/vmlinuz is root-only on Debian).
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "must run as root (euid %d)", os.Geteuid())
}

// RequireBinary looks name up in PATH (plus the sbin dirs, which a non-login root shell may lack)
// and returns its path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	Require(t, false, "binary %q not found in PATH", name)
	return ""
}

// RequireHugepages requires n free hugepages and a mounted hugetlbfs
// (DPDK --in-memory finds the page size through the mount).
func RequireHugepages(t testing.TB, n int) {
	t.Helper()
	free := meminfo("HugePages_Free")
	Require(t, free >= n, "need %d free hugepages, have %d (echo N > /proc/sys/vm/nr_hugepages)", n, free)
	Require(t, hugetlbfsMounted(), "no hugetlbfs mounted (mount -t hugetlbfs nodev /dev/hugepages)")
}

// FreeHugepages is HugePages_Free of /proc/meminfo.
func FreeHugepages() int { return meminfo("HugePages_Free") }

// meminfo returns a numeric field of /proc/meminfo, or 0.
func meminfo(key string) int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == key {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

func hugetlbfsMounted() bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "hugetlbfs" {
			return true
		}
	}
	return false
}

// ShortTempDir creates a directory directly under /tmp and removes it when the test ends
// (kept when VSWITCH_KEEP_LAB=1, for looking at logs afterwards).
// Use it for unix sockets: t.TempDir() paths include the test name and easily exceed
// the 108-byte sun_path limit.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vs")
	if err != nil {
		t.Fatalf("ShortTempDir: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("VSWITCH_KEEP_LAB") == "1" {
			t.Logf("kept lab dir %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// WaitSocket waits until the unix socket file path exists. It does not connect:
// a probe connection would look like a vhost-user peer that came and went, which
// shows up in the peer's log and in the switch's connection counters.
// DPDK and QEMU bind and listen back to back, so the file existing means listening.
func WaitSocket(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := os.Stat(path)
		if err == nil && st.Mode()&os.ModeSocket != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s did not appear within %v (stat: %v)", path, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CountLines counts the lines of s that contain substr.
func CountLines(s, substr string) int {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// tail returns the last n lines of s, for failure messages.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
