"""Hook processes that do not outlive the process that started them (Linux only).

Two halves, both for the crash of the controller while a hook runs (ft/host_error fencing):

- `die_with_parent()`, called first thing by the shipped hook programs (app/host_error.py,
  app/fence_host.py, app/fence_sim_agent.py): prctl(PR_SET_PDEATHSIG, SIGKILL), so the
  kernel kills the program when its parent dies. The starter passes its pid in
  $LAZARUS_PARENT_PID; a parent that died before the prctl is seen by comparing getppid().
- `GroupRecords`: the hook executor writes one file per running command (its process group
  and the leader's start time) under the data directory and removes it when the command
  ends; at start the daemon kills the groups still recorded (their controller died) and
  waits until they are gone (`reap`), so operators' own hooks, which do not call
  die_with_parent, cannot keep a host's lock either. A recorded group is killed only if it
  is still the same one: its leader alive with the recorded start time, or the leader gone
  and members left (Linux does not reuse a pid while a group of that id exists).

Before this, a SIGKILLed controller left ft/host_error fencing on its own; the re-run after
the restart found the host's lock held and gave up, and the orphan died at its next write to
the dead pipe: nobody fenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from lazarus.drivers.files import write_private

PARENT_ENV = "LAZARUS_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(env: Mapping[str, str] | None = None) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies, and name this process the
    parent of the ones it starts (in os.environ). False when the parent named by
    $LAZARUS_PARENT_PID is already gone (the caller should stop at once)."""
    env = os.environ if env is None else env
    expected = env.get(PARENT_ENV, "")
    os.environ[PARENT_ENV] = str(os.getpid())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the daemon's reaping still applies
        return True
    return not (expected.isdigit() and os.getppid() != int(expected))


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) of a process, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(entry.name))
    return members


class GroupRecords:
    """<directory>/<pgid>: "<pgid> <leader start time>" for each running hook command."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def add(self, pgid: int) -> None:
        """Best effort: a full disk must not stop the hook (die_with_parent still holds)."""
        stat = _stat(pgid)
        if stat is None:
            return  # already gone
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.directory / f".{pgid}.tmp"
            write_private(tmp, f"{pgid} {stat[2]}\n")
            tmp.replace(self.directory / str(pgid))

    def remove(self, pgid: int) -> None:
        with contextlib.suppress(OSError):
            (self.directory / str(pgid)).unlink()

    def recorded(self) -> dict[int, int]:
        found: dict[int, int] = {}
        if not self.directory.is_dir():
            return found
        for path in self.directory.iterdir():
            try:
                pgid, start = (int(x) for x in path.read_text().split())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            found[pgid] = start
        return found

    async def reap(self, timeout: float = 10.0) -> list[int]:
        """Kill the recorded groups that are still the recorded ones, wait until they are
        gone (at most `timeout` s), forget every record. Returns the groups killed."""
        killed = []
        for pgid, start in self.recorded().items():
            leader = _stat(pgid)
            same = leader[2] == start if leader is not None else bool(group_members(pgid))
            if same:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                    killed.append(pgid)
        deadline = time.monotonic() + timeout
        while any(group_members(pgid) for pgid in killed) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pgid in self.recorded():
            self.remove(pgid)
        return killed
