package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sirupsen/logrus"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func numCPU() int { return runtime.NumCPU() }

// find returns the point of sw at ring/frame, or nil.
func (r *Report) find(sw, ring string, frame int) *Point {
	for _, p := range r.Points {
		if p.Switch == sw && p.Ring == ring && p.Frame == frame {
			return p
		}
	}
	return nil
}

// Table renders the report: one row per switch and point, with the
// ratios of vswitchd's learning bridge (and of its cross-connect, on the
// cross-connect rows) to OVS-DPDK and to testpmd at that point.
func (r *Report) Table() string {
	var b strings.Builder
	if len(r.Points) > 0 {
		r.loopTable(&b)
	}
	if len(r.AFXDP) > 0 {
		if len(r.Points) > 0 {
			b.WriteString("\n")
		}
		r.xdpTable(&b)
	}
	return b.String()
}

// xdpTable renders the AF_XDP topology: one row per switch and frame, with
// vswitchd's ratio to DPDK's AF_XDP PMD at that frame size.
func (r *Report) xdpTable(b *strings.Builder) {
	fmt.Fprintf(b, "AF_XDP: netns af_packet txonly -> veth -> switch (AF_XDP) -> vhost-user -> virtio_user rxonly, median of %d runs x %.0f s\n",
		r.RunCount, r.Secs)
	w := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "frame\tswitch\tgen tx Mpps\tswitch rx Mpps\tsink rx Mpps\tsink Gbit/s\tvswitchd/dpdk (sw rx)\truns sw rx/sink Mpps\t")
	for _, p := range r.AFXDP {
		ratio := ""
		if p.Switch == VswitchdAFXDP {
			for _, q := range r.AFXDP {
				if q.Switch == DPDKAFXDP && q.Frame == p.Frame && q.SwitchMpps > 0 {
					ratio = fmt.Sprintf("%.2f", p.SwitchMpps/q.SwitchMpps)
				}
			}
		}
		var runs []string
		for _, run := range p.Runs {
			if run.Error != "" {
				runs = append(runs, "fail")
			} else {
				runs = append(runs, fmt.Sprintf("%.2f/%.3f", run.SwitchMpps, run.SinkMpps))
			}
		}
		fmt.Fprintf(w, "%d\t%s\t%.3f\t%.3f\t%.3f\t%.2f\t%s\t%s\t\n", p.Frame, p.Switch, p.GenMpps, p.SwitchMpps, p.Mpps, p.Gbps, ratio, strings.Join(runs, " "))
	}
	w.Flush()
	b.WriteString("vswitchd-afxdp: vswitchd afxdp port + vhostuser port; dpdk-afxdp: testpmd io net_af_xdp (force_copy) <-> net_vhost; switch on CPU 0, generator and sink share CPU 1 (two busy pollers on one CPU: the sink drains its ring once per scheduler slice, so sink rx is a floor)\n")
}

func (r *Report) loopTable(b *strings.Builder) {
	fmt.Fprintf(b, "two-port layout (PEERS.md 8: switch on CPU 0, one testpmd frontend on CPU 1), %d cores, median of %d runs x %.0f s; Mpps per direction, Gbit/s both directions (L2 bytes)\n",
		r.Cores, r.RunCount, r.Secs)
	w := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "ring\tframe\tswitch\tMpps/dir\tGbit/s\tvswitchd/OVS\tvswitchd/testpmd\truns (Mpps/dir)\t")
	var switches []string
	for _, p := range r.Points {
		if !slices.Contains(switches, p.Switch) {
			switches = append(switches, p.Switch)
		}
		ovsRatio, tpRatio := "", ""
		// A vswitchd row compares with OVS doing the same job (ovsPeerOf)
		// and with testpmd's io forward under the same frontend.
		if peer := ovsPeerOf(p.Switch); peer != "" {
			if o := r.find(peer, p.Ring, p.Frame); o != nil && o.Mpps > 0 {
				ovsRatio = fmt.Sprintf("%.2f", p.Mpps/o.Mpps)
			}
		}
		if tp := testpmdPeerOf(p.Switch); tp != "" {
			if t := r.find(tp, p.Ring, p.Frame); t != nil && t.Mpps > 0 {
				tpRatio = fmt.Sprintf("%.2f", p.Mpps/t.Mpps)
			}
		}
		var runs []string
		for _, run := range p.Runs {
			if run.Error != "" {
				runs = append(runs, "fail")
			} else {
				runs = append(runs, fmt.Sprintf("%.2f", (run.Port0Mpps+run.Port1Mpps)/2))
			}
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%.3f\t%.2f\t%s\t%s\t%s\t\n", p.Ring, p.Frame, p.Switch, p.Mpps, p.Gbps, ovsRatio, tpRatio, strings.Join(runs, " "))
	}
	w.Flush()
	b.WriteString("vswitchd/OVS: vswitchd vs ovs-normal, vswitchd-xc vs ovs-xc, vswitchd-routed vs ovs-routed, vswitchd-sg vs ovs-ct; vswitchd/testpmd: vs testpmd net_vhost io forward (testpmd-gen for vswitchd-routed)\n")
	for _, sw := range switches {
		fmt.Fprintf(b, "  %s: %s\n", sw, Traffic(sw))
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WritePNG draws a grouped bar chart: one group per ring and frame size,
// one bar per switch, Mpps per direction.
func (r *Report) WritePNG(path string) error {
	var switches, groups []string
	seen := map[string]bool{}
	for _, p := range r.Points {
		if !seen["s"+p.Switch] {
			seen["s"+p.Switch] = true
			switches = append(switches, p.Switch)
		}
		g := fmt.Sprintf("%s %dB", p.Ring, p.Frame)
		if !seen["g"+g] {
			seen["g"+g] = true
			groups = append(groups, g)
		}
	}
	pl := plot.New()
	pl.Title.Text = fmt.Sprintf("two-port layout, %d cores, median of %d x %.0f s", r.Cores, r.RunCount, r.Secs)
	pl.Y.Label.Text = "Mpps per direction"
	width := vg.Points(60 / float64(max(len(switches), 1)))
	for i, sw := range switches {
		vals := make(plotter.Values, len(groups))
		for j, g := range groups {
			var ring string
			var frame int
			fmt.Sscanf(g, "%s %dB", &ring, &frame)
			if p := r.find(sw, ring, frame); p != nil {
				vals[j] = p.Mpps
			}
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = width * vg.Length(float64(i)-float64(len(switches)-1)/2)
		pl.Add(bars)
		pl.Legend.Add(sw, bars)
	}
	pl.Legend.Top = true
	pl.NominalX(groups...)
	pl.BackgroundColor = color.White
	return pl.Save(vg.Length(max(6, 2*len(groups)))*vg.Inch, 4*vg.Inch, path)
}

// hugeSnapshot is the set of files in the hugetlbfs mounts when the
// benchmark started: only files that appear later and that no process
// maps are removed at the end (DPDK leaves rtemap files when it dies
// without --in-memory).
type hugeSnapshot struct {
	dirs  []string
	known map[string]bool
}

func snapshotHugepages() *hugeSnapshot {
	h := &hugeSnapshot{known: map[string]bool{}}
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return h
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fl := strings.Fields(sc.Text()); len(fl) > 2 && fl[2] == "hugetlbfs" {
			h.dirs = append(h.dirs, fl[1])
		}
	}
	for _, d := range h.dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			h.known[filepath.Join(d, e.Name())] = true
		}
	}
	return h
}

func (h *hugeSnapshot) sweep(log *logrus.Entry) {
	mapped := map[string]bool{}
	maps, _ := filepath.Glob("/proc/[0-9]*/maps")
	for _, m := range maps {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.IndexByte(line, '/'); i >= 0 {
				mapped[strings.TrimSuffix(line[i:], " (deleted)")] = true
			}
		}
	}
	for _, d := range h.dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if h.known[p] || mapped[p] {
				continue
			}
			if err := os.Remove(p); err == nil {
				log.WithField("file", p).Info("removed a leftover hugepage file")
			}
		}
	}
}
