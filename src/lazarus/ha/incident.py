r"""The HA incident record and the per-host lock used by ft/host_error.

The incident is kept in the failed host's template, written with one.host.update (append), so
it survives crashes and is visible to operators (`lazarus host show`) while host_error uses
only OpenNebula API methods:

    HA_INCIDENT = [
      KEY = "3f2a9c1e",                     # which failure: a digest of the host's ERROR text
      STATE = "DONE",                       # IncidentState, moves per TRANSITIONS only
      STARTED = "1767225600", UPDATED = "1767225612",
      MODE = "migrate", FENCE = "fence_redfish level 1: off confirmed",
      HANDLED = "4 7 9", FAILED = "12",
      VM_4 = "RUNNING on node3", VM_7 = "GAVE_UP: deploy: node2: ...", ... ]

The incident is a state machine (rendered into docs/state-machines.md):

    (new) -> WAITING -> FENCING -> FENCED | FENCE_SKIPPED -> RECOVERING -> DONE
                    \-> ABORTED (the host came back)   \-> FENCE_FAILED -> (retry) FENCED ...
                    \-> ISOLATED (heartbeat advances) -> FENCING | FENCED | ABORTED

`Incident.advance()` refuses any other move (IllegalMove). A second run for the same KEY
finds the record and resumes its state: DONE and ABORTED are final (nothing to do: an
operator's retry of a run that ended "host came back" must not recover a healthy host's VMs);
WAITING resumes the wait (its deadline counts from STARTED), FENCING and FENCE_FAILED fence
again (an "off" is idempotent), FENCED / FENCE_SKIPPED / RECOVERING go on with the VMs (those
in HANDLED are skipped). A new ERROR episode has a new ERROR text, hence a new KEY and a
fresh record.

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
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from lazarus.domain.errors import LazarusError
from lazarus.domain.template import Template, Vector
from lazarus.ports.clock import Clock

LOCK_WAIT = 90.0  # seconds: a fence's whole bound (FencePolicy.total_timeout 60 s) and margin
LOCK_POLL = 0.5


class IncidentState(StrEnum):
    WAITING = "WAITING"  # the -p wait and the mass-failure guard
    ISOLATED = "ISOLATED"  # probes fail but the heartbeat advances: alive, not fenced yet
    FENCING = "FENCING"
    FENCED = "FENCED"  # proven off (or confirmed by an operator)
    FENCE_FAILED = "FENCE_FAILED"  # not proven off: an operator decides, then a retry
    FENCE_SKIPPED = "FENCE_SKIPPED"  # -u
    RECOVERING = "RECOVERING"  # acting on the VMs, then watching them start
    DONE = "DONE"
    ABORTED = "ABORTED"  # the host came back: nothing was touched


St = IncidentState
TRANSITIONS: dict[IncidentState, frozenset[IncidentState]] = {
    St.WAITING: frozenset({St.FENCING, St.ABORTED, St.ISOLATED}),
    # fenced when the heartbeat stops or the policy says; FENCED when the agent stopped its
    # VMs or an operator confirms; ABORTED when the host answers again
    St.ISOLATED: frozenset({St.ISOLATED, St.FENCING, St.FENCED, St.ABORTED}),
    St.FENCING: frozenset({St.FENCED, St.FENCE_FAILED, St.FENCE_SKIPPED}),
    St.FENCE_FAILED: frozenset({St.FENCED, St.FENCE_FAILED, St.FENCE_SKIPPED}),
    St.FENCED: frozenset({St.RECOVERING}),
    St.FENCE_SKIPPED: frozenset({St.RECOVERING}),
    St.RECOVERING: frozenset({St.RECOVERING, St.DONE}),
    St.DONE: frozenset(),
    St.ABORTED: frozenset(),
}
FINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


class IllegalMove(LazarusError):
    pass


def incident_key(error_text: str, host_id: int) -> str:
    return hashlib.sha256(f"{host_id}\0{error_text}".encode()).hexdigest()[:12]


@dataclass
class Incident:
    key: str
    state: IncidentState = IncidentState.WAITING
    started: int = 0
    updated: int = 0
    mode: str = ""
    fence: str = ""
    handled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    vms: dict[int, str] = field(default_factory=dict)  # per VM: where it ended, or why not
    evidence: str = ""  # what proved the host off (or why nothing did), ha/evidence.py
    isolated: int = 0  # when the run found it ISOLATED (epoch s), for --fence-isolated-after

    def advance(self, new: IncidentState) -> None:
        """Move to `new`; IllegalMove when the table does not allow it (staying put in a state
        that is not final is allowed: a step that ends without a move)."""
        if new is self.state and self.state not in FINAL:
            return
        if new not in TRANSITIONS[self.state]:
            raise IllegalMove(f"incident {self.key}: {self.state} -> {new} is not allowed")
        self.state = new

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

        raw = v.get("STATE") or "WAITING"
        return cls(
            key=v.get("KEY") or "",
            state=IncidentState(raw) if raw in IncidentState.__members__ else St.WAITING,
            started=num("STARTED"),
            updated=num("UPDATED"),
            mode=v.get("MODE") or "",
            fence=v.get("FENCE") or "",
            evidence=v.get("EVIDENCE") or "",
            isolated=num("ISOLATED_SINCE"),
            handled=ids("HANDLED"),
            failed=ids("FAILED"),
            vms={int(name[3:]): value for name, value in v.pairs
                 if name.startswith("VM_") and name[3:].isdigit()},
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
                            *((("EVIDENCE", self.evidence[:400]),) if self.evidence else ()),
                            *((("ISOLATED_SINCE", str(self.isolated)),) if self.isolated
                              else ()),
                            ("HANDLED", " ".join(map(str, self.handled))),
                            ("FAILED", " ".join(map(str, self.failed))),
                            *((f"VM_{vm_id}", line[:200])
                              for vm_id, line in sorted(self.vms.items())),
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
