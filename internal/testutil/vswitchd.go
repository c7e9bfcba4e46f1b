package testutil

import (
	"context"
	"encoding/json"
	"fmt"
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
	Dir     string // run directory: sockets and the API socket
	LogPath string
	API     string // API socket path
	cmd     *exec.Cmd
	done    chan struct{}
	client  *http.Client
}

// StartVswitchd runs vswitchd with the YAML config yaml in dir (a
// ShortTempDir if empty); relative socket paths land in dir. It waits for
// the API to answer.
func StartVswitchd(t testing.TB, dir, yaml string) *Vswitchd {
	t.Helper()
	bin := VswitchdBinary(t)
	if dir == "" {
		dir = ShortTempDir(t)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "vswitchd.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	v := &Vswitchd{Dir: dir, LogPath: filepath.Join(dir, "vswitchd.log"), API: filepath.Join(dir, "api.sock"), done: make(chan struct{})}
	logf, err := os.OpenFile(v.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	v.cmd = exec.Command(bin, "--config", cfg, "--run-dir", dir, "--log-level", "debug")
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	go func() { v.cmd.Wait(); close(v.done) }()
	v.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", v.API)
		}}}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			t.Logf("vswitchd log (%s):\n%s", v.LogPath, tail(v.Log(), 60))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := v.Ports(); err == nil {
			return v
		}
		select {
		case <-v.done:
			t.Fatalf("vswitchd exited at start:\n%s", v.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vswitchd API did not answer within 15s:\n%s", v.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

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
	select {
	case <-v.done:
		return v.cmd.ProcessState != nil && v.cmd.ProcessState.Success()
	default:
	}
	v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		v.cmd.Process.Kill()
		<-v.done
	}
	return v.cmd.ProcessState.Success()
}

// Kill sends SIGKILL, as a crash would.
func (v *Vswitchd) Kill() {
	v.cmd.Process.Kill()
	<-v.done
}
