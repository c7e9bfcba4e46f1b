// Command vswitch-bench runs the peer benchmark (internal/bench): vswitchd
// against OVS-DPDK and testpmd's vhost backend in the learned-unicast loop,
// routed between two subnets (vswitchd-routed, ovs-routed) and through a
// stateful filter (vswitchd-sg, ovs-ct), then vswitchd's AF_XDP port
// against DPDK's net_af_xdp (switches vswitchd-afxdp, dpdk-afxdp), and
// prints a table for each; it also writes bench.json and bench.png.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/internal/bench"
)

func main() {
	switches := flag.String("switches", strings.Join(bench.AllSwitches, ","), "switches under test, alternated in this order (also: "+bench.TestpmdGen+")")
	frames := flag.String("frames", "64,512,1518", "frame sizes in bytes (without FCS)")
	rings := flag.String("rings", "split,packed", "ring layouts: split, packed")
	runs := flag.Int("runs", 3, "runs per switch and point (the point is their median)")
	secs := flag.Float64("secs", 10, "measured seconds per run")
	skip := flag.Int("skip", 2, "testpmd stats blocks (about 2 s each) skipped as warm-up")
	smoke := flag.Bool("smoke", false, "smoke mode: one 64-byte split point, 1 run of 2 s per switch, stop at the first failure")
	out := flag.String("out", "bench-results", "directory for bench.json and bench.png")
	vswitchd := flag.String("vswitchd", "", "vswitchd binary (default: vswitchd next to this binary, then PATH)")
	keep := flag.Bool("keep", false, "keep the scratch directory (sockets, peer logs)")
	verbose := flag.Bool("v", false, "debug logs")
	prio := flag.Bool("prioritize", true, "run in a CPU cgroup with the largest weight, so other work on the machine barely disturbs the measurement")
	flag.Parse()

	log := logrus.New()
	if *verbose {
		log.SetLevel(logrus.DebugLevel)
	}
	o := bench.Options{
		Switches: split(*switches), Rings: split(*rings), Runs: *runs, Secs: *secs, Skip: *skip,
		Vswitchd: findVswitchd(*vswitchd), Log: logrus.NewEntry(log),
	}
	for _, f := range split(*frames) {
		n, err := strconv.Atoi(f)
		if err != nil {
			log.Fatalf("-frames: %q is not a number", f)
		}
		o.Frames = append(o.Frames, n)
	}
	if *smoke {
		o.Frames, o.Rings, o.Runs, o.Secs, o.Skip, o.Strict = []int{64}, []string{bench.Split}, 1, 2, 1, true
	}
	if *prio {
		if dir, err := bench.Prioritize(); err != nil {
			log.WithError(err).Warn("-prioritize: cannot raise the benchmark's CPU weight; other work on the machine will disturb the figures")
		} else {
			log.WithField("cgroup", dir).Info("benchmark processes run with the largest CPU weight")
		}
	}
	if p, err := exec.LookPath("dpdk-testpmd"); err == nil {
		o.Testpmd = p
	}
	dir, err := os.MkdirTemp("/tmp", "vsb")
	if err != nil {
		log.Fatal(err)
	}
	o.Dir = dir

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := bench.Bench(ctx, o)
	interrupted := ctx.Err() != nil // before stop, which cancels ctx
	stop()
	if *keep {
		log.WithField("dir", dir).Info("kept the scratch directory")
	} else {
		os.RemoveAll(dir)
	}
	if rep != nil && len(rep.Points)+len(rep.AFXDP) > 0 && (err == nil || interrupted) {
		if err != nil {
			fmt.Println("interrupted: the table holds the runs completed so far")
		}
		fmt.Print(rep.Table())
		if e := os.MkdirAll(*out, 0o755); e != nil {
			log.Fatal(e)
		}
		if e := rep.WriteJSON(filepath.Join(*out, "bench.json")); e != nil {
			log.Fatal(e)
		}
		if len(rep.Points) > 0 { // the chart shows the loop
			if e := rep.WritePNG(filepath.Join(*out, "bench.png")); e != nil {
				log.Fatal(e)
			}
		}
		log.WithField("dir", *out).Info("wrote bench.json and bench.png")
	}
	if err != nil {
		log.WithError(err).Error("benchmark failed")
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func findVswitchd(flagVal string) string {
	if flagVal != "" {
		return flagVal
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "vswitchd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := exec.LookPath("vswitchd")
	return p
}
