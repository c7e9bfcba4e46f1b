package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vswitch/vswitch/api"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// VswitchdBinary builds cmd/vswitchd once per test process and returns it.
func VswitchdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "vswitchd-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "vswitchd")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/vswitchd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/vswitchd: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// Vswitchd is a vswitchd process under test.
type Vswitchd struct {
	Dir      string // run directory: sockets and the API socket
	StateDir string // where vswitchd saves its desired state (Dir/state)
	LogPath  string
	API      string // API socket path
	Config   string // the --config file
	bin      string
	proc
	client *http.Client
}

// StartVswitchd runs vswitchd with the YAML config yaml in dir (a
// ShortTempDir if empty); relative socket paths land in dir, and the state
// directory is dir/state. It waits for the API to answer.
func StartVswitchd(t testing.TB, dir, yaml string) *Vswitchd {
	t.Helper()
	if dir == "" {
		dir = ShortTempDir(t)
	}
	v, err := newVswitchd(VswitchdBinary(t), dir, yaml)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			t.Logf("vswitchd log (%s):\n%s", v.LogPath, tail(v.Log(), 60))
		}
	})
	v.start(t)
	return v
}

// LaunchVswitchd is StartVswitchd without a test: bin is the vswitchd
// binary, dir must be set, and the caller calls Stop.
func LaunchVswitchd(bin, dir, yaml string) (*Vswitchd, error) {
	v, err := newVswitchd(bin, dir, yaml)
	if err != nil {
		return nil, err
	}
	if err := v.launch(); err != nil {
		v.Stop()
		return nil, err
	}
	return v, nil
}

func newVswitchd(bin, dir, yaml string) (*Vswitchd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "vswitchd.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	v := &Vswitchd{Dir: dir, StateDir: filepath.Join(dir, "state"), Config: cfg, bin: bin,
		LogPath: filepath.Join(dir, "vswitchd.log"), API: filepath.Join(dir, "api.sock")}
	v.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", v.API)
		}}}
	return v, nil
}

// Restart starts vswitchd again with the same directories and flags after
// it stopped or was killed; it restores its saved state.
func (v *Vswitchd) Restart(t testing.TB) {
	t.Helper()
	v.Stop()
	v.start(t)
}

func (v *Vswitchd) start(t testing.TB) {
	t.Helper()
	if err := v.launch(); err != nil {
		t.Fatal(err)
	}
}

// launch starts the process and waits until the API answers.
func (v *Vswitchd) launch() error {
	logf, err := os.OpenFile(v.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	v.cmd = exec.Command(v.bin, "--config", v.Config, "--run-dir", v.Dir, "--state-dir", v.StateDir, "--log-level", "debug")
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	err = v.startProc(v.cmd)
	logf.Close()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := v.Ports(); err == nil {
			return nil
		}
		select {
		case <-v.done:
			return fmt.Errorf("vswitchd exited at start:\n%s", v.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vswitchd API did not answer within 15s:\n%s", v.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Do sends an API request (headers in pairs) and returns the status, the
// body and the ETag.
func (v *Vswitchd) Do(method, path, body string, hdr ...string) (code int, respBody []byte, etag string, err error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://vswitchd"+path, rd)
	if err != nil {
		return 0, nil, "", err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get("ETag"), err
}

// Pid is the running process's id.
func (v *Vswitchd) Pid() int { return v.cmd.Process.Pid }

// Signal sends sig to the process.
func (v *Vswitchd) Signal(sig os.Signal) error { return v.cmd.Process.Signal(sig) }

// Exited reports whether the process has exited.
func (v *Vswitchd) Exited() bool { return v.exited() }

// Log returns what vswitchd logged so far.
func (v *Vswitchd) Log() string {
	b, _ := os.ReadFile(v.LogPath)
	return string(b)
}

// Ports reads GET /v1/ports.
func (v *Vswitchd) Ports() (map[string]api.PortStatus, error) {
	resp, err := v.client.Get("http://vswitchd/v1/ports")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/ports: %s", resp.Status)
	}
	var ports []api.PortStatus
	if err := json.NewDecoder(resp.Body).Decode(&ports); err != nil {
		return nil, err
	}
	m := map[string]api.PortStatus{}
	for _, p := range ports {
		m[p.Name] = p
	}
	return m, nil
}

// MustPorts is Ports that fails the test on error.
func (v *Vswitchd) MustPorts(t testing.TB) map[string]api.PortStatus {
	t.Helper()
	m, err := v.Ports()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// WaitPortState waits until port reaches state.
func (v *Vswitchd) WaitPortState(t testing.TB, port, state string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if m, err := v.Ports(); err == nil {
			if last = m[port].State; last == state {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("port %s: state %q, want %q after %v", port, last, state, timeout)
}

// Stop sends SIGTERM and waits (SIGKILL after 10 s). It returns whether
// the daemon exited cleanly.
func (v *Vswitchd) Stop() bool {
	if v.cmd == nil || v.cmd.Process == nil {
		return false
	}
	select {
	case <-v.done:
		return v.cmd.ProcessState != nil && v.cmd.ProcessState.Success()
	default:
	}
	v.stop(syscall.SIGTERM, 10*time.Second)
	return v.cmd.ProcessState.Success()
}

// Kill sends SIGKILL, as a crash would.
func (v *Vswitchd) Kill() {
	v.cmd.Process.Kill()
	<-v.done
}

var (
	buildMu   sync.Mutex
	buildBins = map[string]string{}
)

// VswitchctlBinary builds cmd/vswitchctl once per test process and returns
// it.
func VswitchctlBinary(t testing.TB) string {
	t.Helper()
	return buildCommand(t, "vswitchctl")
}

func buildCommand(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := buildBins[name]; ok {
		return bin
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", name+"-bin")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	buildBins[name] = bin
	return bin
}
