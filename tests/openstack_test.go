package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/internal/testutil"
)

// TestOpenStack runs the Python tests of openstack/ (networking_vswitch:
// ML2 driver, Nova contract, host agent against a real vswitchd) with
// Debian's /usr/bin/python3, which sees python3-neutron and python3-nova.
// Nova and Neutron both register options on oslo.config's global CONF,
// so their tests run in separate interpreters.
func TestOpenStack(t *testing.T) {
	const py = "/usr/bin/python3"
	_, err := os.Stat(py)
	testutil.Require(t, err == nil, "%s not found", py)
	out, err := exec.Command(py, "-c",
		"import neutron.tests.unit.plugins.ml2._test_mech_agent, nova.virt.libvirt.vif, os_vif, oslotest").CombinedOutput()
	testutil.Require(t, err == nil, "python3-neutron/-nova/-os-vif/-oslotest not importable by %s: %s", py, lastLine(string(out)))
	bin := testutil.VswitchdBinary(t)
	root, err := filepath.Abs("../openstack")
	if err != nil {
		t.Fatal(err)
	}
	groups := []struct{ name, modules string }{
		{"neutron", "networking_vswitch.tests.unit.test_mech_vswitch networking_vswitch.tests.unit.test_translate networking_vswitch.tests.unit.test_agent networking_vswitch.tests.functional.test_agent_vswitchd"},
		{"nova", "networking_vswitch.tests.unit.test_nova_contract"},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			cmd := exec.Command(py, append([]string{"-m", "unittest", "-v"}, strings.Fields(g.modules)...)...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PYTHONWARNINGS=ignore", "PYTHONDONTWRITEBYTECODE=1",
				"PYTHONPATH="+root, "VSWITCHD_BIN="+bin)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
			}
			t.Logf("%s", summary(string(out)))
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// summary keeps unittest's per-test verdicts and totals.
func summary(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasSuffix(l, " ok") || strings.Contains(l, "skipped") || strings.HasPrefix(l, "Ran ") || strings.HasPrefix(l, "OK") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
