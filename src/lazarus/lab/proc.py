"""Process helpers for the lab: run commands (never through a shell), find and kill processes.

Used by lab.netns, lab.hosts and lab.lab. Everything here is synchronous and talks to the real
system; the lab is test infrastructure, so subprocess and short real waits are fine here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from lazarus.domain.errors import LazarusError


class LabError(LazarusError):
    """A lab operation failed (a command exited non-zero, a daemon did not come up, ...)."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
    """Run `argv`, return its stdout; raise LabError with stderr when it fails and check."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{argv[0]}: {exc}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _ns_inode(path: Path | str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_mount_ns(ns_file: Path) -> list[int]:
    """Every live process whose mount namespace is the one bound at `ns_file`."""
    want = _ns_inode(ns_file)
    if want is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ns_inode(f"/proc/{entry}/ns/mnt") == want:
            found.append(int(entry))
    return sorted(found)


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (PID 1 here reaps orphans only every few s)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def proc_state(pid: int) -> str | None:
    """The one-letter /proc state of `pid` (R, S, T, Z, ...), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3].decode()


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [p.decode(errors="replace") for p in fh.read().split(b"\0") if p]
    except OSError:
        return []


def signal_pids(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_and_wait(pids: Iterable[int], timeout: float = 10.0) -> None:
    """SIGKILL `pids` and wait until none is alive (zombies count as dead)."""
    todo = list(pids)
    signal_pids(todo, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in todo):
        if time.monotonic() > deadline:
            raise LabError(f"processes still alive after SIGKILL: {[p for p in todo if alive(p)]}")
        time.sleep(0.01)


def tcp_reachable(address: str, port: int, timeout: float = 1.0) -> bool:
    """Can a TCP connection to address:port be opened from this network namespace?"""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def mounts_under(root: Path) -> list[str]:
    """Mount points (this mount namespace) at or under `root`, deepest first."""
    prefix = str(root.resolve())
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)
