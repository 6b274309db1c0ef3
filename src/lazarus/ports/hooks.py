"""Hook ports: running a hook command, and the storage of hooks, queued executions and logs.

`HookExecutor` runs one command and reports what happened; it never raises (a command that
cannot start is code 255 "Internal error ..."; a timeout is code 255 "Timeout executing ...").
Adapters: drivers/hooks/subprocess.py (local processes, REMOTE over ssh) and
drivers/hooks/fake.py (tests, simulator).

`HookStore` is the part of the store the hook manager needs on top of the Store port: the
SQLite and PostgreSQL adapters implement both (store/hooks.py). It is separate so the Store
port stays as it is; `core/hooks.py` checks at runtime that the store it is given implements it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lazarus.domain.entities import Event
from lazarus.domain.hooks import ExecutionRecord, ExecutionResult, Hook, HookJob


@dataclass(frozen=True)
class HookRequest:
    """One command to run, with the hook's settings at the moment it starts."""

    hook_id: int
    command: str  # COMMAND as configured: relative (hooks directory) or absolute
    arguments: str  # after $TEMPLATE/$API substitution
    stdin: bool = False  # arguments on stdin instead of the command line
    remote_host: str = ""  # non-empty: run over SSH there
    timeout: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # LAZARUS_HOOK_* for this execution


class HookExecutor(Protocol):
    async def run(self, request: HookRequest) -> ExecutionResult:
        """Run the command to completion (or timeout); never raises DriverError."""
        ...


class HookReader(Protocol):
    def hook(self, hook_id: int) -> Hook:
        """NoExistsError "Error getting hook [id]." when unknown."""
        ...

    def hooks(self) -> list[Hook]: ...

    def hook_records(self, hook_id: int) -> list[ExecutionRecord]:
        """The kept records of one hook, by EXECUTION_ID."""
        ...

    def hook_record(self, hook_id: int, execution_id: int) -> ExecutionRecord: ...

    def hook_log(
        self, min_ts: int = -1, max_ts: int = -1, hook_id: int = -1, rc: int = 0
    ) -> list[ExecutionRecord]:
        """one.hooklog.info's filter, as oned's: timestamp > min_ts, timestamp < max_ts, the hook
        (each ignored when < 0); rc 1 only successes, -1 only failures, 0 all. Ordered by hook id
        DESC, then exec id."""
        ...

    def hook_jobs(self, status: str | None = None) -> list[HookJob]:
        """Queued executions by id (oldest first), optionally of one status."""
        ...

    def last_event_id(self) -> int:
        """The id of the newest event (0 when there is none)."""
        ...

    def get_meta(self, key: str) -> str | None: ...

    def events(
        self, after_id: int = 0, limit: int = 1000, kind: str | None = None
    ) -> list[Event]: ...


class HookTx(HookReader, Protocol):
    def add_hook(self, hook: Hook) -> Hook:
        """Fills hook.id; a taken NAME is AllocateError."""
        ...

    def save_hook(self, hook: Hook) -> None: ...

    def delete_hook(self, hook_id: int) -> None:
        """Deletes the hook, its log and its queued executions."""
        ...

    def add_hook_job(self, job: HookJob) -> HookJob:
        """Fills job.id. A second job for the same (hook, event) is refused (AllocateError)."""
        ...

    def save_hook_job(self, job: HookJob) -> None: ...

    def delete_hook_job(self, job_id: int) -> None: ...

    def add_hook_record(self, record: ExecutionRecord, retention: int) -> ExecutionRecord:
        """Stores a record with the hook's next EXECUTION_ID (max + 1, from 0) and drops the
        records beyond `retention` (those with id <= new id - retention)."""
        ...

    def set_meta(self, key: str, value: str) -> None: ...

    def record(self, event: Event) -> int: ...

    def prune_events(self, up_to_id: int, obj: str | None = None) -> int:
        """Delete the events with id <= up_to_id (of object `obj` only, if given); how many."""
        ...


@runtime_checkable
class HookStore(HookReader, Protocol):
    def transaction(self) -> AbstractContextManager[HookTx]: ...
