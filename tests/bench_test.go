package tests

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/afxdp/afxdptest"
	"github.com/vswitch/vswitch/internal/bench"
	"github.com/vswitch/vswitch/internal/testutil"
)

// TestBenchSmoke runs the peer benchmark (cmd/vswitch-bench) in smoke mode:
// every switch starts, one 2-second 64-byte split-ring run each, and each
// must pass traffic both ways; the routed and stateful scenarios' runs must
// also pass their path check (vswitchd's live trace shows the route or
// conntrack established, OVS's flows and datapath show the same); in the
// AF_XDP topology (vswitchd-afxdp, dpdk-afxdp) frames from the namespace
// must reach the sink. It proves the harness works, not how fast.
func TestBenchSmoke(t *testing.T) {
	testutil.RequireRoot(t)
	tp := testutil.RequireBinary(t, "dpdk-testpmd")
	for _, b := range []string{"ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovs-ofctl"} {
		testutil.RequireBinary(t, b)
	}
	_, err := os.Stat(testutil.OVSDPDKVswitchd)
	testutil.Require(t, err == nil, "%s missing (apt-get install openvswitch-switch-dpdk)", testutil.OVSDPDKVswitchd)
	testutil.RequireHugepages(t, 384) // three testpmds -m 256 each, or two and OVS 512 MiB
	afxdptest.Require(t)
	log := logrus.New()
	log.SetOutput(testWriter{t})
	o := bench.Options{
		Switches: bench.AllSwitches, Frames: []int{64}, Rings: []string{bench.Split},
		Runs: 1, Secs: 2, Skip: 1, Strict: true,
		Dir: testutil.ShortTempDir(t), Vswitchd: testutil.VswitchdBinary(t), Testpmd: tp,
		Log: logrus.NewEntry(log),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rep, err := bench.Bench(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep.Table())
	if len(rep.Points) != len(bench.LoopSwitches) || len(rep.AFXDP) != len(bench.AFXDPSwitches) {
		t.Fatalf("%d loop and %d AF_XDP points, want one per switch", len(rep.Points), len(rep.AFXDP))
	}
	checked := []string{bench.VswitchdRouted, bench.OVSRouted, bench.VswitchdSG, bench.OVSCT}
	for _, p := range rep.Points {
		if p.Mpps <= 0 {
			t.Errorf("%s passed no traffic", p.Switch)
		}
		if slices.Contains(checked, p.Switch) && (len(p.Runs) != 1 || p.Runs[0].Check == "") {
			t.Errorf("%s: no path check recorded: %+v", p.Switch, p.Runs)
		}
	}
	for _, p := range rep.AFXDP {
		if p.Mpps <= 0 || p.SwitchMpps <= 0 {
			t.Errorf("%s: nothing from the namespace reached the sink (switch rx %.3f, sink %.3f Mpps)", p.Switch, p.SwitchMpps, p.Mpps)
		}
	}
	dir := t.TempDir()
	if err := rep.WriteJSON(dir + "/bench.json"); err != nil {
		t.Fatal(err)
	}
	if err := rep.WritePNG(dir + "/bench.png"); err != nil {
		t.Fatal(err)
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
