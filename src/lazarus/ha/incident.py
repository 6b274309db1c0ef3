"""The HA incident record and the per-host lock used by ft/host_error.

The incident is kept in the failed host's template, written with one.host.update (append), so
it survives crashes and is visible to operators (`lazarus host show`) while host_error uses
only OpenNebula API methods:

    HA_INCIDENT = [
      KEY = "3f2a9c1e",                     # which failure: a digest of the host's ERROR text
      STATE = "FENCED",                     # WAITING FENCING FENCED FENCE_FAILED FENCE_SKIPPED
                                            # RECOVERING DONE ABORTED
      STARTED = "1767225600", UPDATED = "1767225612",
      MODE = "migrate", FENCE = "fence_redfish level 1: off confirmed",
      HANDLED = "4 7 9", FAILED = "12" ]

A second run for the same KEY finds the record: DONE means nothing to do; anything else means
resume where the first run stopped (the -p wait and the fence are not repeated; VMs in HANDLED
are skipped). A new ERROR episode has a new ERROR text, hence a new KEY and a fresh record.

The lock serializes the runs for one host: `FileLock` (flock on a file in the data directory)
for the real hook processes, `MemoryLock` for in-process runs (simulator, tests). A run that
finds it held waits for it (`acquire_within`, polling on the injected clock, at most
`LOCK_WAIT` seconds by default) and then resumes the incident; one that cannot get it gives up
with an error, never with success. The holder can be a run that outlived a crashed controller
(its re-run starts while the orphan still fences): exiting 0 at once then left the incident
unfinished with a record saying SUCCESS, and nobody fenced.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lazarus.domain.template import Template, Vector
from lazarus.ports.clock import Clock

LOCK_WAIT = 90.0  # seconds: a fence's whole bound (FencePolicy.total_timeout 60 s) and margin
LOCK_POLL = 0.5

STATES = (
    "WAITING", "FENCING", "FENCED", "FENCE_FAILED", "FENCE_SKIPPED", "RECOVERING", "DONE",
    "ABORTED",
)


def incident_key(error_text: str, host_id: int) -> str:
    return hashlib.sha256(f"{host_id}\0{error_text}".encode()).hexdigest()[:12]


@dataclass
class Incident:
    key: str
    state: str = "WAITING"
    started: int = 0
    updated: int = 0
    mode: str = ""
    fence: str = ""
    handled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @classmethod
    def from_template(cls, template: Template) -> Incident | None:
        vectors = template.vectors("HA_INCIDENT")
        if not vectors:
            return None
        v = vectors[-1]

        def ids(name: str) -> list[int]:
            return [int(x) for x in (v.get(name) or "").split() if x.isdigit()]

        def num(name: str) -> int:
            raw = v.get(name) or "0"
            return int(raw) if raw.isdigit() else 0

        return cls(
            key=v.get("KEY") or "",
            state=v.get("STATE") or "WAITING",
            started=num("STARTED"),
            updated=num("UPDATED"),
            mode=v.get("MODE") or "",
            fence=v.get("FENCE") or "",
            handled=ids("HANDLED"),
            failed=ids("FAILED"),
        )

    def to_template(self) -> Template:
        return Template(
            [
                (
                    "HA_INCIDENT",
                    Vector(
                        [
                            ("KEY", self.key),
                            ("STATE", self.state),
                            ("STARTED", str(self.started)),
                            ("UPDATED", str(self.updated)),
                            ("MODE", self.mode),
                            ("FENCE", self.fence),
                            ("HANDLED", " ".join(map(str, self.handled))),
                            ("FAILED", " ".join(map(str, self.failed))),
                        ]
                    ),
                )
            ]
        )


class HostLock(Protocol):
    def acquire(self, host_id: int) -> bool:
        """Take the host's lock without waiting; False when another run holds it."""
        ...

    def release(self, host_id: int) -> None: ...


async def acquire_within(
    lock: HostLock, host_id: int, clock: Clock, wait: float, poll: float = LOCK_POLL
) -> bool:
    """Take the host's lock, waiting up to `wait` seconds (on `clock`) for its holder."""
    deadline = clock.now() + wait
    while not lock.acquire(host_id):
        if clock.now() >= deadline:
            return False
        await clock.sleep(min(poll, max(0.0, deadline - clock.now())) or poll)
    return True


class MemoryLock:
    def __init__(self) -> None:
        self.held: set[int] = set()

    def acquire(self, host_id: int) -> bool:
        if host_id in self.held:
            return False
        self.held.add(host_id)
        return True

    def release(self, host_id: int) -> None:
        self.held.discard(host_id)


class FileLock:
    """flock(2) on <directory>/host-<id>.lock: released by the kernel if the process dies."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: dict[int, int] = {}

    def acquire(self, host_id: int) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / f"host-{host_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fds[host_id] = fd
        return True

    def release(self, host_id: int) -> None:
        fd = self._fds.pop(host_id, None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
