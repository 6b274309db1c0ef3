"""Test-only libvirtd daemons: one pretend host each, serving only libvirt's test driver.

Used by the hypervisor contract tests and by any root integration test that needs a host it can
kill (SIGKILL), hang (SIGSTOP) and bring back (SIGCONT / restart). testbed.md section 2a:
LIBVIRT_DRIVER_DIR=<empty dir> loads no hypervisor modules, so the daemon starts in tens of
milliseconds and only the built-in test driver answers; its state ("test:///default") lives
only while a client is connected, so the daemon holds a keeper connection for its lifetime.

    with Libvirtd(tmp_path / "hv1") as hv1:
        host.template.set("LIBVIRT_URI", hv1.uri)
        hv1.stop()   # hung host: calls block, keepalive closes connections
        hv1.cont()
        hv1.kill()   # dead host: connection refused
        hv1.start()  # back, on the same port, with fresh state

Every process is stopped by its pid when the context exits (also after a failed start). Root
only: call `require_libvirtd()` first (it skips the test with a reason elsewhere). It does what
helpers.env.require_root("libvirtd") does, plus the libvirt-python check.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_libvirtd() -> None:
    """Skip the calling test unless we are root with libvirtd and libvirt-python."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if shutil.which("libvirtd") is None:
        pytest.skip("missing binaries: libvirtd (run `make setup` as root)")
    if importlib.util.find_spec("libvirt") is None:
        pytest.skip("libvirt-python is not installed")


def _libvirt() -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


class Libvirtd:
    """A test-driver-only libvirtd in `workdir`, listening on 127.0.0.1:<free port>."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.keeper: Any = None
        self.stopped = False
        self._stderr: Any = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return f"test+tcp://127.0.0.1:{self.port}/default"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "run" / "libvirt-sock"

    @property
    def unix_uri(self) -> str:
        return f"test+unix:///default?socket={self.socket_path}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "log" / "libvirtd.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "daemon not started"
        return self.proc.pid

    # -- lifecycle ---------------------------------------------------------------------------
    def _write_config(self) -> Path:
        for sub in ("run", "log", "empty-drivers", "config"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "libvirtd.conf"
        conf.write_text(
            "listen_tls = 0\n"
            "listen_tcp = 1\n"
            'listen_addr = "127.0.0.1"\n'
            f'tcp_port = "{self.port}"\n'
            'auth_tcp = "none"\n'
            f'unix_sock_dir = "{self.workdir / "run"}"\n'
            'auth_unix_ro = "none"\n'
            'auth_unix_rw = "none"\n'
            f'log_outputs = "3:file:{self.log_path}"\n'
        )
        return conf

    def start(self) -> Libvirtd:
        """Start the daemon and open the keeper connection; raise (after cleanup) on failure."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("libvirtd already running")
        binary = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
        conf = self._write_config()
        env = dict(os.environ)
        env["LIBVIRT_DRIVER_DIR"] = str(self.workdir / "empty-drivers")
        env["XDG_CONFIG_HOME"] = str(self.workdir / "config")
        if self._stderr is None:
            self._stderr = (self.workdir / "log" / "stderr").open("ab")
        command = [binary, "-f", str(conf), "--listen", "-p", str(self.workdir / "run" / "pid")]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # If the test process dies without cleaning up (a crash, SIGKILL), the daemon
            # goes with it instead of lingering. The signal follows the starting *thread*,
            # so start daemons from the test's main thread.
            command = [setpriv, "--pdeathsig", "KILL", *command]
        self.proc = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        self.stopped = False
        try:
            self._wait_ready()
            self.keeper = _libvirt().open(self.uri)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"libvirtd exited with {self.proc.returncode}: {self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.01)  # real time: a root integration helper waiting for a daemon
        raise RuntimeError(f"libvirtd did not listen on {self.port}: {self._tail()}")

    def _tail(self) -> str:
        parts = []
        for path in (self.workdir / "log" / "stderr", self.log_path):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def _drop_keeper(self) -> None:
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            try:
                keeper.close()
            except Exception:
                pass

    def kill(self) -> None:
        """SIGKILL: the host dies at once; clients see their connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.stopped = False
        self._drop_keeper()

    def stop(self) -> None:
        """SIGSTOP: the host hangs; calls block until keepalive gives up on them."""
        assert self.proc is not None and self.proc.poll() is None, "daemon not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        """SIGCONT: a hung host answers again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def restart(self) -> Libvirtd:
        """Kill (if running) and start again on the same port, with fresh test-driver state."""
        self.kill()
        return self.start()

    def close(self) -> None:
        """Stop the daemon and forget the keeper; safe to call twice and after failures."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.stopped = False
        self._drop_keeper()  # after the daemon is gone, so close() cannot block on it
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Libvirtd:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
