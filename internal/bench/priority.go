package bench

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Prioritize moves this process into a CPU cgroup of its own with the
// largest weight the kernel allows, so the switch under test and the
// frontend it starts (children inherit the cgroup) keep their CPUs while
// other work on the machine (builds, tests) gets about 1 % of them. Every
// switch is measured under the same treatment. It returns the cgroup
// directory.
func Prioritize() (string, error) {
	procs := []byte(strconv.Itoa(os.Getpid()))
	// cgroup v1: the cpu controller's own hierarchy.
	if base := "/sys/fs/cgroup/cpu"; isDir(base) && exists(filepath.Join(base, "cpu.shares")) {
		dir := filepath.Join(base, "vswitch-bench")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, "cpu.shares"), []byte("262144"), 0o644); err != nil {
			return "", err
		}
		return dir, os.WriteFile(filepath.Join(dir, "cgroup.procs"), procs, 0o644)
	}
	// cgroup v2 with the cpu controller enabled at the root.
	for _, base := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		ctl, err := os.ReadFile(filepath.Join(base, "cgroup.subtree_control"))
		if err != nil || !strings.Contains(" "+string(ctl)+" ", " cpu ") && !strings.Contains(string(ctl), "cpu\n") {
			continue
		}
		dir := filepath.Join(base, "vswitch-bench")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, "cpu.weight"), []byte("10000"), 0o644); err != nil {
			return "", err
		}
		return dir, os.WriteFile(filepath.Join(dir, "cgroup.procs"), procs, 0o644)
	}
	return "", errors.New("no cgroup cpu controller found (v1 /sys/fs/cgroup/cpu or v2 with cpu enabled)")
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
