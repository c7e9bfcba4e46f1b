"""Run a real vswitchd for the agent tests: the binary from $VSWITCHD_BIN
or built from this repository with `go build`."""
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time

from networking_vswitch.agent import client as vs_client

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__),
                                    '..', '..', '..', '..'))
_built = None


def binary():
    """Path of a vswitchd binary, or None with the reason."""
    global _built
    env = os.environ.get('VSWITCHD_BIN')
    if env:
        return env, None
    if _built:
        return _built, None
    go = shutil.which('go')
    if not go:
        return None, 'no VSWITCHD_BIN and no go to build vswitchd'
    out = os.path.join(tempfile.mkdtemp(prefix='vsbin'), 'vswitchd')
    r = subprocess.run([go, 'build', '-o', out, './cmd/vswitchd'], cwd=REPO,
                       env=dict(os.environ, CGO_ENABLED='0'),
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, 'go build ./cmd/vswitchd failed: ' + r.stderr
    _built = out
    return out, None


def die_with_parent():
    """prctl(PR_SET_PDEATHSIG, SIGKILL): a child (vswitchd, virsh) must not
    outlive a test process that is killed."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


class Vswitchd(object):
    CONFIG = 'dataplane:\n  workers: 1\n'

    def __init__(self, binpath, workdir):
        self.bin = binpath
        self.dir = workdir
        self.state_dir = os.path.join(workdir, 'state')
        self.api = os.path.join(workdir, 'api.sock')
        self.log = os.path.join(workdir, 'vswitchd.log')
        self.config = os.path.join(workdir, 'vswitchd.yaml')
        os.makedirs(workdir, exist_ok=True)
        with open(self.config, 'w') as f:
            f.write(self.CONFIG)
        self.proc = None
        self.client = vs_client.Client(self.api)

    def start(self, timeout=15):
        logf = open(self.log, 'a')
        self.proc = subprocess.Popen(
            [self.bin, '--config', self.config, '--run-dir', self.dir,
             '--state-dir', self.state_dir, '--log-level', 'debug'],
            stdout=logf, stderr=logf, preexec_fn=die_with_parent)
        logf.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ports()
                return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError('vswitchd exited: ' + self.read_log())
            if time.monotonic() > deadline:
                raise RuntimeError('vswitchd API silent: ' + self.read_log())
            time.sleep(0.05)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()[-4000:]
        except OSError:
            return ''
