"""A real `lazarus serve` daemon for end-to-end tests, always cleaned up.

    from helpers.daemon import running_daemon

    @pytest.fixture
    def daemon(tmp_path): yield from running_daemon(tmp_path)

    def test_x(daemon): daemon.client().call("one.hostpool.info"); daemon.cli("host", "list")

The daemon runs as `python -m lazarus.cli.main serve --port 0` with LAZARUS_DATA_DIR in the
given directory; the free port is the one the daemon reports on stdout ("Lazarus controller
listening on URL", then "oneadmin credentials: PATH ..."), so tests never race for a port.
`kill()` (SIGKILL, like a crash) and `start()` again restart it on the same data directory
(the URL may change: it is read anew). `stop()` sends SIGTERM and waits; `close()` always
ends the process and is what the fixture calls in its `finally`.

Settings for fast tests come through LAZARUS_<NAME> variables (e.g. a 1 s monitoring
interval); pass `settings={...}` to override them. `wait_for(what, probe)` polls a daemon-side
condition with a bound, for the tests that talk to one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from lazarus.api.client import Client
from lazarus.app.ready import ReadyReader

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

# Fast cadence so tests see hosts MONITORED and VMs placed within a second or two.
FAST_SETTINGS = {
    "MONITORING_INTERVAL_HOST": "1",
    "RETRY_INTERVAL": "0.5",
    "PROBE_TIMEOUT": "1",
    "SCHED_INTERVAL": "0.5",
}


class DaemonError(RuntimeError):
    pass


class Daemon:
    """One `lazarus serve` process on a data directory (restartable)."""

    def __init__(self, data_dir: Path, settings: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.settings = dict(FAST_SETTINGS if settings is None else settings)
        self.url = ""
        self.auth_file = data_dir / "one_auth"
        self.process: subprocess.Popen[str] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.daemon.log"
        self._reader: ReadyReader | None = None

    # -------------------------------------------------------------------- environment
    def env(self) -> dict[str, str]:
        """The environment a client of this daemon needs (CLI, hook scripts, pyone)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LAZARUS_", "ONE_"))}
        env["LAZARUS_DATA_DIR"] = str(self.data_dir)
        if self.url:
            env["LAZARUS_XMLRPC"] = self.url
        env["LAZARUS_AUTH"] = str(self.auth_file)
        return env

    def session(self) -> str:
        return self.auth_file.read_text(encoding="utf-8").strip()

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.url, self.session(), timeout=timeout)

    # ------------------------------------------------------------------------ life cycle
    def start(self) -> Daemon:
        if self.process is not None and self.process.poll() is None:
            raise DaemonError("the daemon is already running")
        env = self.env()
        env.pop("LAZARUS_XMLRPC", None)
        env.update({f"LAZARUS_{k}": v for k, v in self.settings.items()})
        log = self.log_path.open("a", encoding="utf-8")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lazarus.cli.main", "serve", "--port", "0",
                 "--listen", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
                env=env, start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Wait for the two ready lines; the reader keeps draining stdout afterwards."""
        assert self.process is not None and self.process.stdout is not None
        self._reader = ReadyReader(self.process.stdout, "daemon-stdout")
        if not self._reader.wait(READY_TIMEOUT) or self._reader.auth_file is None:
            self.close()
            raise DaemonError(f"the daemon did not get ready:\n{self.tail()}")
        self.url, self.auth_file = self._reader.url, self._reader.auth_file

    def tail(self, lines: int = 40) -> str:
        out = "".join(self._reader.lines[-lines:] if self._reader else [])
        try:
            err = "".join(self.log_path.read_text(encoding="utf-8").splitlines(True)[-lines:])
        except OSError:
            err = ""
        return f"--- stdout\n{out}--- stderr\n{err}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise DaemonError("not started")
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or power loss of the controller would; waits for the exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self._join_reader()

    def stop(self) -> int:
        """SIGTERM and wait: the daemon's orderly shutdown. Returns the exit code."""
        if self.process is None:
            raise DaemonError("not started")
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGUSR2)  # the daemon logs its asyncio tasks
                time.sleep(0.5)
                self.process.send_signal(signal.SIGUSR1)  # and every thread's stack
                time.sleep(0.5)
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
                raise DaemonError(
                    f"the daemon ignored SIGTERM; its log:\n{self.tail(120)}"
                ) from None
        self._join_reader()
        return self.process.returncode

    def restart(self, *, crash: bool = True) -> Daemon:
        """kill() (or stop()) and start() again on the same data directory."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    def _join_reader(self) -> None:
        """After the process ended: the reader sees EOF; then the pipe is closed."""
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
            self._reader = None
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def close(self) -> None:
        """Always safe: ends the process (TERM, then KILL) and its process group."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        try:  # anything the daemon started in its session (hook commands, agents)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._join_reader()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def running_daemon(workdir: Path, settings: Mapping[str, str] | None = None
                   ) -> Iterator[Daemon]:
    """For fixtures: a started daemon with its data in `workdir/data`, closed afterwards."""
    daemon = Daemon(workdir / "data", settings)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


def wait_for(what: str, probe: Callable[[], Any], deadline: float = 40.0) -> Any:
    """Poll `probe` until it returns something truthy and return that; fail, naming `what`
    and the last value, after `deadline` seconds (a bound against hangs, not a measurement)."""
    end = time.monotonic() + deadline
    value = probe()
    while not value:
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.05)
        value = probe()
    return value
