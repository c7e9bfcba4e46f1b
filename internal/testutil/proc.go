package testutil

import (
	"os"
	"os/exec"
	"syscall"
	"time"
)

// proc is a child process a test owns: it dies with the test binary
// (Pdeathsig: peers busy-poll a CPU) and is waited for in the background.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and waitErr is set
	waitErr error
}

// startProc starts cmd and waits for it in the background.
func (p *proc) startProc(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		p.waitErr = cmd.Wait()
		close(done)
	}()
	return nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to timeout, then kills; it reports whether
// it had to kill.
func (p *proc) stop(sig os.Signal, timeout time.Duration) (killed bool) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return false
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		return true
	}
}
