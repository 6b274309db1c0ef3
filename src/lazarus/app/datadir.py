"""One `lazarus serve` per data directory: an flock on <data dir>/lazarus.lock, held for life.

Two controllers on one database would both monitor the hosts, both run the HA hooks and both
drive the same VMs; several controllers need leader election, which is not built
(docs/architecture.md). So app/daemon.py takes this lock before it opens the store and a second
daemon is refused with a message naming the holder's pid. The kernel releases the lock when
the process dies, however it dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "lazarus.lock"


class DataDirBusy(OSError):
    """Another daemon holds the data directory."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DataDirBusy at once (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(
                f"another lazarus serve (pid {holder}) is using the data directory "
                f"{self.path.parent}; several controllers on one data directory are not "
                "supported"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
