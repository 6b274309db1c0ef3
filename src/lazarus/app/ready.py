"""The two lines `lazarus serve` prints when it is ready, and a reader that waits for them.

    Lazarus controller listening on http://127.0.0.1:2633/RPC2
    oneadmin credentials: /var/lib/lazarus/one_auth (export LAZARUS_AUTH=...)

The daemon prints them (app/daemon.py); app/serve_process.py, which starts it as a child
process for the demo, the lab's controller and the test fixture, reads them with
`ReadyReader`, which drains the child's stdout in a thread for as long as the child lives, so
a wait is bounded by its timeout and the child never blocks on a full pipe.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import IO

LISTENING = "Lazarus controller listening on {url}"
CREDENTIALS = "oneadmin credentials: {path} (export LAZARUS_AUTH={path})"
DASHBOARD = "Lazarus dashboard on {url}"  # printed between the two, when served
_DASHBOARD = re.compile(r"^Lazarus dashboard on (\S+)")
_URL = re.compile(r"^Lazarus controller listening on (\S+)")
_AUTH = re.compile(r"^oneadmin credentials: (\S+)")


class ReadyReader:
    def __init__(self, stdout: IO[str], name: str = "serve-stdout") -> None:
        self.lines: list[str] = []
        self.url = ""
        self.dashboard_url = ""
        self.auth_file: Path | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(stdout,), name=name, daemon=True)
        self.thread.start()

    def _read(self, stdout: IO[str]) -> None:
        try:
            for line in stdout:
                self.lines.append(line)
                if match := _URL.match(line):
                    self.url = match.group(1)
                elif match := _DASHBOARD.match(line):
                    self.dashboard_url = match.group(1)
                elif match := _AUTH.match(line):
                    self.auth_file = Path(match.group(1))
                if self.url and self.auth_file is not None:
                    self._ready.set()
        finally:
            self._ready.set()  # EOF: the child ended (ready or not)

    def wait(self, timeout: float) -> bool:
        """True once both lines came; False on timeout or when the child ended before."""
        self._ready.wait(timeout)
        return bool(self.url) and self.auth_file is not None

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
