package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/testutil"
)

// TestOpenStack runs the Python tests of openstack/ (networking_vswitch:
// ML2 driver, Nova contract, host agent against a real vswitchd, and the
// agent process with a private rabbitmq-server and a neutron-server
// process) with Debian's /usr/bin/python3, which sees python3-neutron and
// python3-nova.
// Nova and Neutron both register options on oslo.config's global CONF,
// so their tests run in separate interpreters.
func TestOpenStack(t *testing.T) {
	openstackPython(t)
	bin := testutil.VswitchdBinary(t)
	groups := []struct{ name, modules string }{
		{"neutron", "networking_vswitch.tests.unit.test_mech_vswitch networking_vswitch.tests.unit.test_translate networking_vswitch.tests.unit.test_agent networking_vswitch.tests.functional.test_agent_vswitchd networking_vswitch.tests.functional.test_agent_rabbit"},
		{"nova", "networking_vswitch.tests.unit.test_nova_contract"},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Logf("%s", runPythonTests(t, 10*time.Minute, strings.Fields(g.modules), "VSWITCHD_BIN="+bin))
		})
	}
}

// TestOpenStackLibvirt is the end-to-end test with libvirt
// (openstack/networking_vswitch/tests/functional/test_libvirt.py): two TCG
// guests started by libvirtd from the domain XML Nova 26 renders for the ML2
// driver's binding, wired by the agent on vswitchd. They ping each other;
// the security group blocks, then admits, TCP between them; vswitchd is
// killed with SIGKILL mid-ping and started again and traffic resumes; both
// guests are started before vswitchd runs and come up once it does.
func TestOpenStackLibvirt(t *testing.T) {
	testutil.RequireRoot(t)
	// Each guest has 256 MiB in 2 MiB pages (Nova's hw:mem_page_size).
	testutil.RequireHugepages(t, 256)
	openstackPython(t)
	bin := testutil.VswitchdBinary(t)
	dir := testutil.ShortTempDir(t)
	// QEMU runs as libvirt-qemu: it reads the kernel and initramfs and
	// writes its console and socket in here.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kernel, initrd := testutil.GuestImage(t, dir)
	// A copy, so libvirt's ownership relabelling leaves /boot alone
	// (Debian's vmlinuz is root-only).
	b, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	kernel = filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, b, 0o644); err != nil {
		t.Fatal(err)
	}
	lv := testutil.StartLibvirtd(t, dir, "vsos-")
	t.Logf("%s", runPythonTests(t, 8*time.Minute, []string{"networking_vswitch.tests.functional.test_libvirt"},
		"VSWITCHD_BIN="+bin, "VSLAB_DIR="+dir, "GUEST_KERNEL="+kernel, "GUEST_INITRD="+initrd, "LIBVIRT_URI="+lv.URI))
}

const python = "/usr/bin/python3"

// openstackPython requires Debian's /usr/bin/python3 with python3-neutron,
// -nova, -os-vif and -oslotest.
func openstackPython(t *testing.T) {
	t.Helper()
	_, err := os.Stat(python)
	testutil.Require(t, err == nil, "%s not found", python)
	out, err := exec.Command(python, "-c",
		"import neutron.tests.unit.plugins.ml2._test_mech_agent, nova.virt.libvirt.vif, os_vif, oslotest").CombinedOutput()
	testutil.Require(t, err == nil, "python3-neutron/-nova/-os-vif/-oslotest not importable by %s: %s", python, lastLine(string(out)))
}

// runPythonTests runs unittest modules of openstack/ in one interpreter and
// returns its summary (call openstackPython first). A skipped Python test fails under CI=true, like a
// missing prerequisite on the Go side.
func runPythonTests(t *testing.T, timeout time.Duration, modules []string, env ...string) string {
	t.Helper()
	root, err := filepath.Abs("../openstack")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{"-m", "unittest", "-v"}, modules...)...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "PYTHONWARNINGS=ignore", "PYTHONDONTWRITEBYTECODE=1",
		"PYTHONUNBUFFERED=1", "PYTHONPATH="+root), env...)
	// The interpreter dies with the test binary; its children (vswitchd,
	// virsh) die with it the same way.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	if skipped := skippedTests(string(out)); testutil.InCI() && skipped != "" {
		t.Fatalf("CI=true: Python tests skipped:\n%s", skipped)
	}
	return summary(string(out))
}

// skippedTests lists unittest -v's "... skipped 'why'" lines.
func skippedTests(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, " ... skipped ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// summary keeps unittest's per-test verdicts and totals, and the E2E lines
// the libvirt test prints.
func summary(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasSuffix(l, " ok") || strings.Contains(l, "skipped") || strings.HasPrefix(l, "Ran ") || strings.HasPrefix(l, "OK") ||
			strings.HasPrefix(l, "E2E ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
