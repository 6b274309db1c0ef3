"""`lazarus serve` as a child process: started on a data directory, ready when it says so,
stopped, crashed or restarted on purpose, and always ended by `close()`.

    with ServeProcess(data_dir, {"MONITORING_INTERVAL_HOST": "1"}) as serve:
        serve.start()
        serve.client().call("one.hostpool.info")
        serve.restart(crash=True)        # SIGKILL, as a power loss of the controller

Used by the lab's controller (lab/e2e.py) and the test fixture (tests/helpers/daemon.py). The
daemon listens on 127.0.0.1 on a free port, which it reports in its ready lines
(app/ready.py), so nobody races for a port; settings come as LAZARUS_<NAME> variables. The
daemon runs in a session of its own: `close()` also ends what it started there (hook commands,
fence agents).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from lazarus.api.client import Client
from lazarus.drivers.files import open_private

from .ready import ReadyReader

STOP_TIMEOUT = 15.0


class ServeError(RuntimeError):
    pass


class ServeProcess:
    def __init__(
        self,
        data_dir: Path,
        settings: Mapping[str, str] | None = None,
        *,
        log_path: Path | None = None,
        ready_timeout: float = 30.0,
        listen: str = "127.0.0.1",
        args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.listen = listen  # the lab's agents reach it on the controller's LAN address
        self.args = list(args)  # more `lazarus serve` options (--ha --etcd URLS --db URL)
        self.settings = dict(settings or {})
        self.log_path = log_path or data_dir / "daemon.log"  # the daemon's stderr
        self.ready_timeout = ready_timeout
        self.url = ""
        self.dashboard_url = ""  # the web dashboard's, when the daemon serves it
        self.auth_file = data_dir / "one_auth"
        self.process: subprocess.Popen[str] | None = None
        self._reader: ReadyReader | None = None

    # -------------------------------------------------------------------- environment
    def env(self) -> dict[str, str]:
        """What a client of this daemon needs (CLI, hook commands, pyone)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAZARUS_", "ONE_"))}
        env.update(LAZARUS_DATA_DIR=str(self.data_dir), LAZARUS_AUTH=str(self.auth_file))
        if self.url:
            env["LAZARUS_XMLRPC"] = self.url
        return env

    def session(self) -> str:
        return self.auth_file.read_text(encoding="utf-8").strip()

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.url, self.session(), timeout=timeout)

    # ------------------------------------------------------------------------ life cycle
    def start(self, wait: bool = True) -> Self:
        """Start the daemon; with `wait` (the default) return once it is ready. A --ha
        standby gets ready only when elected: start it with wait=False, then wait_ready()."""
        if self.running():
            raise ServeError("lazarus serve is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = self.env()
        env.pop("LAZARUS_XMLRPC", None)  # a restart listens on a new port
        env["LAZARUS_WEB_PORT"] = "0"  # a free port, as for the API (a setting overrides it)
        env.update({f"LAZARUS_{k.upper()}": str(v) for k, v in self.settings.items()})
        with open_private(self.log_path) as log:  # 0600: its lines may name hosts, paths
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lazarus.cli.main", "serve", "--port", "0",
                 "--listen", self.listen, "--data-dir", str(self.data_dir), *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
                env=env, start_new_session=True,
            )  # fmt: skip
        assert self.process.stdout is not None
        self._reader = ReadyReader(self.process.stdout, "serve-stdout")
        return self.wait_ready() if wait else self

    def ready(self) -> bool:
        """It said it listens (a --ha daemon: it was elected)."""
        return self._reader is not None and self._reader.wait(0) and \
            self._reader.auth_file is not None

    def wait_ready(self, timeout: float | None = None) -> Self:
        assert self._reader is not None
        if not self._reader.wait(self.ready_timeout if timeout is None else timeout) or \
                self._reader.auth_file is None:
            self.close()
            raise ServeError(f"lazarus serve did not get ready:\n{self.tail()}")
        self.url, self.auth_file = self._reader.url, self._reader.auth_file
        self.dashboard_url = self._reader.dashboard_url
        return self

    def tail(self, lines: int = 40) -> str:
        """The end of the daemon's stdout and stderr, for a failure message."""
        out = "".join(self._reader.lines[-lines:] if self._reader else [])
        try:
            err = "".join(self.log_path.read_text(encoding="utf-8").splitlines(True)[-lines:])
        except OSError:
            err = ""
        return f"--- stdout\n{out}--- stderr ({self.log_path})\n{err}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServeError("not started")
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
        """SIGTERM and wait: the daemon's orderly shutdown. Returns the exit code. A daemon that
        ignores it is made to log its asyncio tasks and thread stacks, then killed."""
        if self.process is None:
            raise ServeError("not started")
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
                raise ServeError(
                    f"lazarus serve ignored SIGTERM; its log:\n{self.tail(120)}"
                ) from None
        self._join_reader()
        return self.process.returncode

    def restart(self, *, crash: bool = True) -> Self:
        """kill() (or stop()) and start() again on the same data directory."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

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
        try:  # hook commands and fence agents run in the daemon's session
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._join_reader()

    def _join_reader(self) -> None:
        """After the process ended: the reader sees EOF; then the pipe is closed."""
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
            self._reader = None
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
