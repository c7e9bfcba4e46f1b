package testutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestpmdOptions configures one dpdk-testpmd process.
type TestpmdOptions struct {
	Name      string   // used for the log file name and --file-prefix
	MainLcore int      // 0 or 1; the forwarding lcore is the other CPU (PEERS G5)
	Vdevs     []string // e.g. "net_virtio_user0,path=/x/a.sock,mac=02:00:00:00:00:01"
	Args      []string // testpmd app args after "--", e.g. --forward-mode=txonly
	NoHuge    bool     // "--no-huge -m 512 --file-prefix NAME-PID" instead of "--in-memory --single-file-segments -m 256"
	Dir       string   // where the log goes (default: a ShortTempDir)
	// Interactive runs testpmd with -i and a stdin pipe for Cmd, so a test
	// decides when forwarding starts.
	Interactive bool
	// Netns runs testpmd inside this network namespace (ip netns exec),
	// e.g. a net_af_packet generator on a veth end that lives there.
	Netns string
	// LineBuffered line-buffers stdout (as Interactive does) so that
	// --stats-period blocks reach the log as they are printed, for a
	// reader that measures while testpmd runs.
	LineBuffered bool
}

// Testpmd is a running dpdk-testpmd.
type Testpmd struct {
	Name    string
	LogPath string
	Cmdline []string

	proc
	stdin  io.WriteCloser // Interactive only
	prefix string         // --file-prefix, for runtime dir cleanup ("" with --in-memory)
}

// PortStats are the final "Forward statistics for port N" counters.
type PortStats struct{ RxPackets, RxDropped, TxPackets, TxDropped uint64 }

// memFailureMarkers are logged when virtio_user cannot pass its memory to the backend.
// testpmd keeps running in that case and silently drops everything (PEERS 1.2, G2).
var memFailureMarkers = []string{"Failed to start device", "Too many memory regions"}

func memFailure(log string) string {
	for _, line := range strings.Split(log, "\n") {
		for _, m := range memFailureMarkers {
			if strings.Contains(line, m) {
				return strings.TrimSpace(line)
			}
		}
	}
	return ""
}

// StartTestpmd starts dpdk-testpmd with -l 0,1 --no-pci and the memory mode of o,
// plus --stats-period 1 --auto-start (unless o.Args has -i or sets them) and
// --total-num-mbufs=16384 (unless set; the default pool does not fit in -m 256).
// stdin is /dev/null; stdout and stderr go to Dir/NAME.log. The process is killed
// at test cleanup if still running.
func StartTestpmd(t testing.TB, o TestpmdOptions) *Testpmd {
	t.Helper()
	bin := RequireBinary(t, "dpdk-testpmd")
	if !o.NoHuge {
		RequireHugepages(t, 128) // -m 256 of 2 MiB pages
	}
	if o.Dir == "" {
		o.Dir = ShortTempDir(t)
	}
	p, err := LaunchTestpmd(bin, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testpmd %s: pid %d, log %s", p.Name, p.cmd.Process.Pid, p.LogPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testpmd %s log tail:\n%s", p.Name, tail(p.Log(), 30))
		}
		p.Close()
	})
	return p
}

// LaunchTestpmd is StartTestpmd without a test: bin is the dpdk-testpmd
// binary and o.Dir must be set. The caller owns the process and calls Close.
func LaunchTestpmd(bin string, o TestpmdOptions) (*Testpmd, error) {
	if o.Name == "" {
		o.Name = "testpmd"
	}
	if o.Dir == "" {
		return nil, fmt.Errorf("testpmd %s: no log directory", o.Name)
	}
	p := &Testpmd{Name: o.Name, LogPath: filepath.Join(o.Dir, o.Name+".log")}

	args := []string{"-l", "0,1", "--main-lcore", strconv.Itoa(o.MainLcore), "--no-pci"}
	if o.NoHuge {
		// Needs no hugepages; a unique prefix because the runtime dir /var/run/dpdk/PREFIX is
		// locked per process (G8). --no-huge cannot be combined with --in-memory.
		p.prefix = fmt.Sprintf("%s-%d", o.Name, os.Getpid())
		args = append(args, "--no-huge", "-m", "512", "--file-prefix", p.prefix)
	} else {
		// memfd-backed hugepages: no files, no runtime dir, and few enough regions
		// for virtio_user's SET_MEM_TABLE (max 8; G2).
		args = append(args, "--in-memory", "--single-file-segments", "-m", "256")
	}
	for _, v := range o.Vdevs {
		args = append(args, "--vdev", v)
	}
	args = append(args, "--")
	if o.Interactive {
		args = append(args, "-i")
	}
	args = append(args, o.Args...)
	has := func(flag string) bool {
		return slices.ContainsFunc(o.Args, func(a string) bool { return a == flag || strings.HasPrefix(a, flag+"=") })
	}
	if !o.Interactive && !has("-i") && !has("--interactive") {
		// Without --stats-period (or an open stdin) --auto-start waits for Enter, reads EOF
		// from /dev/null and quits at once (G4).
		if !has("--auto-start") && !has("-a") {
			args = append(args, "--auto-start")
		}
		if !has("--stats-period") {
			args = append(args, "--stats-period", "1")
		}
	}
	if !has("--total-num-mbufs") {
		args = append(args, "--total-num-mbufs=16384")
	}
	p.Cmdline = append([]string{bin}, args...)

	logf, err := os.Create(p.LogPath)
	if err != nil {
		return nil, fmt.Errorf("testpmd %s: %w", o.Name, err)
	}
	defer logf.Close() // the child keeps its own descriptor
	fmt.Fprintf(logf, "# %s\n", strings.Join(p.Cmdline, " "))
	p.cmd = exec.Command(bin, args...)
	if o.Interactive || o.LineBuffered {
		// Line-buffer stdout: the prompt's answers and the stats go to a
		// file, which stdio would otherwise write 4 KiB at a time.
		p.cmd = exec.Command("stdbuf", append([]string{"-oL", bin}, args...)...)
	}
	if o.Netns != "" {
		// ip netns exec execs the command: the pid stays testpmd's.
		p.cmd = exec.Command("ip", append([]string{"netns", "exec", o.Netns}, p.cmd.Args...)...)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf // stdin stays nil = /dev/null unless Interactive
	if o.Interactive {
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			return nil, fmt.Errorf("testpmd %s: %w", o.Name, err)
		}
	}
	if err := p.startProc(p.cmd); err != nil {
		return nil, fmt.Errorf("testpmd %s: %w", o.Name, err)
	}
	return p, nil
}

// Close kills the process if it still runs and removes its runtime dir.
func (p *Testpmd) Close() {
	if !p.exited() {
		p.cmd.Process.Kill()
		<-p.done
	}
	if p.prefix != "" {
		// --no-huge (without --in-memory) leaves its runtime dir behind (G8).
		for _, d := range []string{"/var/run/dpdk", os.Getenv("XDG_RUNTIME_DIR") + "/dpdk", "/tmp/dpdk"} {
			os.RemoveAll(filepath.Join(d, p.prefix))
		}
	}
}

// Exited reports whether the process has exited.
func (p *Testpmd) Exited() bool { return p.exited() }

// MemFailure returns the log line of a virtio_user memory failure, or "".
func (p *Testpmd) MemFailure() string { return memFailure(p.Log()) }

// Cmd types one command at an interactive testpmd's prompt.
func (p *Testpmd) Cmd(t testing.TB, line string) {
	t.Helper()
	if err := p.Send(line); err != nil {
		t.Fatal(err)
	}
}

// Send is Cmd without a test.
func (p *Testpmd) Send(line string) error {
	if p.stdin == nil {
		return fmt.Errorf("testpmd %s: commands need TestpmdOptions.Interactive", p.Name)
	}
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		return fmt.Errorf("testpmd %s: %q: %w", p.Name, line, err)
	}
	return nil
}

// Pid returns the process id.
func (p *Testpmd) Pid() int { return p.cmd.Process.Pid }

// Log returns the whole log so far.
func (p *Testpmd) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// WaitLog waits until the log contains substr. It fails the test with the log tail on
// timeout, when testpmd exits, or when the log shows a virtio_user memory failure.
func (p *Testpmd) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		exited := p.exited() // before reading the log, so a last line is not missed
		log := p.Log()
		if m := memFailure(log); m != "" {
			t.Fatalf("testpmd %s: virtio_user memory failure: %q\n%s", p.Name, m, tail(log, 30))
		}
		if strings.Contains(log, substr) {
			return
		}
		if exited {
			t.Fatalf("testpmd %s exited (%v) before logging %q:\n%s", p.Name, p.waitErr, substr, tail(log, 30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("testpmd %s: %q not logged within %v:\n%s", p.Name, substr, timeout, tail(log, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop sends SIGINT (SIGKILL after 20 s), waits, and returns the final per-port forward
// statistics. The error reports a memory failure, a kill, an unexpected exit status or
// missing statistics; the stats are returned whenever they could be parsed.
func (p *Testpmd) Stop() (map[int]PortStats, error) {
	var errs []error
	if !p.exited() {
		if p.stop(os.Interrupt, 20*time.Second) {
			errs = append(errs, fmt.Errorf("testpmd %s ignored SIGINT for 20s, killed", p.Name))
		}
	} else {
		errs = append(errs, fmt.Errorf("testpmd %s had already exited: %v", p.Name, p.waitErr))
	}
	log := p.Log()
	if m := memFailure(log); m != "" {
		errs = append(errs, fmt.Errorf("testpmd %s: virtio_user memory failure: %q", p.Name, m))
	}
	if p.waitErr != nil && !isSignal(p.waitErr, syscall.SIGINT) {
		errs = append(errs, fmt.Errorf("testpmd %s exit: %v", p.Name, p.waitErr))
	}
	stats := ParseTestpmdForwardStats(log)
	if len(stats) == 0 {
		errs = append(errs, fmt.Errorf("testpmd %s: no forward statistics in log:\n%s", p.Name, tail(log, 20)))
	}
	return stats, errors.Join(errs...)
}

// isSignal reports whether err is an exit caused by sig.
func isSignal(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			return ws.Signaled() && ws.Signal() == sig
		}
	}
	return false
}

var (
	reFwdHeader = regexp.MustCompile(`Forward statistics for port (\d+)`)
	reCounter   = regexp.MustCompile(`(RX-packets|RX-dropped|TX-packets|TX-dropped):\s+(\d+)`)
)

// ParseTestpmdForwardStats parses the "Forward statistics for port N" blocks testpmd
// prints when forwarding stops. Later blocks replace earlier ones, so the result is the
// final count of each port.
func ParseTestpmdForwardStats(log string) map[int]PortStats {
	out := map[int]PortStats{}
	port := -1
	for _, line := range strings.Split(log, "\n") {
		if m := reFwdHeader.FindStringSubmatch(line); m != nil {
			port, _ = strconv.Atoi(m[1])
			out[port] = PortStats{}
			continue
		}
		if port < 0 {
			continue
		}
		ms := reCounter.FindAllStringSubmatch(line, -1)
		if ms == nil {
			// The block ends with a line of dashes; any other counter line (e.g.
			// Bad-ipcsum) is skipped.
			if strings.Trim(strings.TrimSpace(line), "-") == "" && strings.TrimSpace(line) != "" {
				port = -1
			}
			continue
		}
		s := out[port]
		for _, m := range ms {
			n, _ := strconv.ParseUint(m[2], 10, 64)
			switch m[1] {
			case "RX-packets":
				s.RxPackets = n
			case "RX-dropped":
				s.RxDropped = n
			case "TX-packets":
				s.TxPackets = n
			case "TX-dropped":
				s.TxDropped = n
			}
		}
		out[port] = s
	}
	return out
}

var (
	reNICHeader = regexp.MustCompile(`NIC statistics for port (\d+)`)
	reRxPkts    = regexp.MustCompile(`RX-packets:\s+(\d+)`)
	reTxPkts    = regexp.MustCompile(`TX-packets:\s+(\d+)`)
	reRxPps     = regexp.MustCompile(`Rx-pps:\s+(\d+)`)
	reTxPps     = regexp.MustCompile(`Tx-pps:\s+(\d+)`)
)

// TestpmdRate computes the steady-state receive and transmit rate of port from a log
// written with --stats-period (Go version of peers/scripts/pps.py).
//
// testpmd prints a block about every 2 s (not every period; G6) with cumulative counters
// and the pps since the previous block, so each interval lasts delta/pps seconds. Leading
// idle blocks and then skip warm-up blocks are dropped; blocks are summed until secs
// seconds are covered (secs <= 0: all).
func TestpmdRate(log string, port int, skip int, secs float64) (rxMpps, txMpps float64) {
	rxMpps, txMpps, _ = TestpmdWindow(log, port, skip, secs)
	return rxMpps, txMpps
}

// TestpmdWindow is TestpmdRate that also returns how many seconds the
// rates cover, so a caller can stop testpmd once the window is full.
func TestpmdWindow(log string, port int, skip int, secs float64) (rxMpps, txMpps, covered float64) {
	if secs <= 0 {
		secs = 1e18
	}
	type block struct{ rxc, txc, rxpps, txpps uint64 }
	var blocks []block
	var cur *block
	num := func(re *regexp.Regexp, line string) (uint64, bool) {
		m := re.FindStringSubmatch(line)
		if m == nil {
			return 0, false
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n, true
	}
	for _, line := range strings.Split(log, "\n") {
		if m := reNICHeader.FindStringSubmatch(line); m != nil {
			cur = nil
			if n, _ := strconv.Atoi(m[1]); n == port {
				cur = &block{}
			}
			continue
		}
		if cur == nil {
			continue
		}
		if n, ok := num(reRxPkts, line); ok {
			cur.rxc = n
		}
		if n, ok := num(reTxPkts, line); ok {
			cur.txc = n
		}
		if n, ok := num(reRxPps, line); ok {
			cur.rxpps = n
		}
		if n, ok := num(reTxPps, line); ok { // Tx-pps is the block's last rate line
			cur.txpps = n
			blocks = append(blocks, *cur)
			cur = nil
		}
	}

	type row struct {
		drx, dtx uint64
		dur      float64
	}
	var rows []row
	var prev block
	for _, b := range blocks {
		r := row{drx: b.rxc - prev.rxc, dtx: b.txc - prev.txc}
		switch {
		case b.rxpps > 0:
			r.dur = float64(r.drx) / float64(b.rxpps)
		case b.txpps > 0:
			r.dur = float64(r.dtx) / float64(b.txpps)
		}
		rows = append(rows, r)
		prev = b
	}
	first := len(rows)
	for i, r := range rows {
		if r.dur > 0 {
			first = i
			break
		}
	}
	var rx, tx uint64
	var n int
	for i := first + skip; i < len(rows); i++ {
		r := rows[i]
		if covered >= secs || r.dur == 0 {
			if n > 0 {
				break
			}
			continue
		}
		rx += r.drx
		tx += r.dtx
		covered += r.dur
		n++
	}
	if covered == 0 {
		return 0, 0, 0
	}
	return float64(rx) / covered / 1e6, float64(tx) / covered / 1e6, covered
}
