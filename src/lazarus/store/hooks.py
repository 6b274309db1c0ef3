"""Hook storage of the SQLite store: hooks, queued executions (the outbox work) and the log.

`SCHEMA` is migration 2 (store/migrations.py). `HookQueries` and `HookWrites` are mixed into
the SQLite reader and transaction classes (store/sqlite.py), so the same store object and
the same transaction serve the Store port and ports/hooks.py's HookStore: a dispatch writes
its jobs and moves the cursor (meta) in one transaction, a finished execution stores its
record and deletes its job in one transaction.

Tables:
    hooks      (id, name UNIQUE, body JSON {type, template, lock, lock_time, since_event})
    hook_jobs  (id, hook_id, event_id, status, body JSON); UNIQUE (hook_id, event_id) for
               event jobs (a partial index: retries have event_id -1)
    hook_log   (hook_id, exec_id, timestamp, rc, body JSON), PRIMARY KEY (hook_id, exec_id),
               as OpenNebula's hook_log(hkid, exeid, timestamp, rc, body)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from lazarus.domain.errors import NoExistsError
from lazarus.domain.hooks import ExecutionRecord, ExecutionResult, Hook, HookJob
from lazarus.domain.template import Template

_Row = tuple[Any, ...]

SCHEMA = """
CREATE TABLE hooks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE hook_jobs (
    id INTEGER PRIMARY KEY,
    hook_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX hook_jobs_event ON hook_jobs (hook_id, event_id) WHERE event_id >= 0;
CREATE INDEX hook_jobs_status ON hook_jobs (status, id);
CREATE TABLE hook_log (
    hook_id INTEGER NOT NULL,
    exec_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    rc INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (hook_id, exec_id)
);
CREATE INDEX hook_log_timestamp ON hook_log (timestamp);
"""


# -- codec ----------------------------------------------------------------------------------


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True)


def encode_hook(hook: Hook) -> str:
    return _dumps(
        {
            "type": hook.type,
            "template": hook.template.to_json(),
            "lock": hook.lock,
            "lock_time": hook.lock_time,
            "since_event": hook.since_event,
        }
    )


def decode_hook(hook_id: int, name: str, body: str) -> Hook:
    data = json.loads(body)
    return Hook(
        id=hook_id,
        name=name,
        type=str(data["type"]),
        template=Template.from_json(data["template"]),
        lock=int(data.get("lock", 0)),
        lock_time=int(data.get("lock_time", 0)),
        since_event=int(data.get("since_event", 0)),
    )


def _b(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_record(record: ExecutionRecord) -> str:
    r = record.result
    return _dumps(
        {
            "arguments": record.arguments,
            "command": r.command,
            "stdout": _b(r.stdout),
            "stderr": _b(r.stderr),
            "remote_host": record.remote_host,
            "retry": record.retry,
            "job_id": record.job_id,
            "event_id": record.event_id,
        }
    )


def decode_record(
    hook_id: int, exec_id: int, timestamp: int, rc: int, body: str
) -> ExecutionRecord:
    d = json.loads(body)
    result = ExecutionResult(
        command=str(d["command"]),
        stdout=base64.b64decode(d["stdout"]),
        stderr=base64.b64decode(d["stderr"]),
        code=rc,
    )
    return ExecutionRecord(
        hook_id=hook_id,
        execution_id=exec_id,
        timestamp=timestamp,
        arguments=str(d["arguments"]),
        result=result,
        remote_host=str(d.get("remote_host", "")),
        retry=bool(d.get("retry", False)),
        job_id=int(d.get("job_id", -1)),
        event_id=int(d.get("event_id", -1)),
    )


def encode_job(job: HookJob) -> str:
    return _dumps(
        {
            "arguments": job.arguments,
            "remote_host": job.remote_host,
            "retry": job.retry,
            "attempt": job.attempt,
            "created": job.created,
        }
    )


def decode_job(job_id: int, hook_id: int, event_id: int, status: str, body: str) -> HookJob:
    d = json.loads(body)
    return HookJob(
        id=job_id,
        hook_id=hook_id,
        event_id=event_id,
        arguments=str(d["arguments"]),
        remote_host=str(d.get("remote_host", "")),
        retry=bool(d.get("retry", False)),
        status=status,
        attempt=int(d.get("attempt", 0)),
        created=float(d.get("created", 0.0)),
    )


_RECORD_COLUMNS = "hook_id, exec_id, timestamp, rc, body"


def no_unique() -> str:
    """The AllocateError text of a write no UNIQUE constraint can refuse."""
    return "Store constraint violated."


# -- queries --------------------------------------------------------------------------------


class HookQueries:
    """The HookReader queries; `_all` is the host class's query runner."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        raise NotImplementedError

    def hook(self, hook_id: int) -> Hook:
        rows = self._all("SELECT id, name, body FROM hooks WHERE id = ?", (hook_id,))
        if not rows:
            raise NoExistsError(f"Error getting hook [{hook_id}].", hook_id)
        return decode_hook(*rows[0])

    def hooks(self) -> list[Hook]:
        rows = self._all("SELECT id, name, body FROM hooks ORDER BY id")
        return [decode_hook(*row) for row in rows]

    def hook_records(self, hook_id: int) -> list[ExecutionRecord]:
        rows = self._all(
            f"SELECT {_RECORD_COLUMNS} FROM hook_log WHERE hook_id = ? ORDER BY exec_id",
            (hook_id,),
        )
        return [decode_record(*row) for row in rows]

    def hook_record(self, hook_id: int, execution_id: int) -> ExecutionRecord:
        rows = self._all(
            f"SELECT {_RECORD_COLUMNS} FROM hook_log WHERE hook_id = ? AND exec_id = ?",
            (hook_id, execution_id),
        )
        if not rows:
            raise NoExistsError(
                f"Error getting execution record [{execution_id}] of hook [{hook_id}].", hook_id
            )
        return decode_record(*rows[0])

    def hook_log(
        self, min_ts: int = -1, max_ts: int = -1, hook_id: int = -1, rc: int = 0
    ) -> list[ExecutionRecord]:
        clauses: list[str] = []
        params: list[int] = []
        if min_ts >= 0:
            clauses.append("timestamp > ?")
            params.append(min_ts)
        if max_ts >= 0:
            clauses.append("timestamp < ?")
            params.append(max_ts)
        if hook_id >= 0:
            clauses.append("hook_id = ?")
            params.append(hook_id)
        if rc == 1:
            clauses.append("rc = 0")
        elif rc == -1:
            clauses.append("rc <> 0")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._all(
            f"SELECT {_RECORD_COLUMNS} FROM hook_log{where} ORDER BY hook_id DESC, exec_id",
            params,
        )
        return [decode_record(*row) for row in rows]

    def hook_jobs(self, status: str | None = None) -> list[HookJob]:
        sql = "SELECT id, hook_id, event_id, status, body FROM hook_jobs"
        params: list[str] = []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        return [decode_job(*row) for row in self._all(sql + " ORDER BY id", params)]

    def last_event_id(self) -> int:
        rows = self._all("SELECT MAX(id) FROM events")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0


class HookWrites:
    """The HookTx writes; `_all`, `_write`, `_next_id` are the transaction's."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        raise NotImplementedError

    def _next_id(self, kind: str) -> int:
        raise NotImplementedError

    def _name_taken(self, name: str) -> Callable[[], str]:
        def message() -> str:
            rows = self._all("SELECT id FROM hooks WHERE name = ?", (name,))
            return f"NAME is already taken by HOOK {rows[0][0] if rows else '?'}."

        return message

    def add_hook(self, hook: Hook) -> Hook:
        hook_id = self._next_id("hook")
        self._write(
            "INSERT INTO hooks (id, name, body) VALUES (?, ?, ?)",
            (hook_id, hook.name, encode_hook(hook)),
            self._name_taken(hook.name),
        )
        hook.id = hook_id
        return hook

    def save_hook(self, hook: Hook) -> None:
        changed = self._write(
            "UPDATE hooks SET name = ?, body = ? WHERE id = ?",
            (hook.name, encode_hook(hook), hook.id),
            self._name_taken(hook.name),
        )
        if not changed:
            raise NoExistsError(f"Error getting hook [{hook.id}].", hook.id)

    def delete_hook(self, hook_id: int) -> None:
        if not self._write("DELETE FROM hooks WHERE id = ?", (hook_id,), no_unique):
            raise NoExistsError(f"Error getting hook [{hook_id}].", hook_id)
        self._write("DELETE FROM hook_log WHERE hook_id = ?", (hook_id,), no_unique)
        self._write("DELETE FROM hook_jobs WHERE hook_id = ?", (hook_id,), no_unique)

    def add_hook_job(self, job: HookJob) -> HookJob:
        job_id = self._next_id("hook_job")
        self._write(
            "INSERT INTO hook_jobs (id, hook_id, event_id, status, body) VALUES (?, ?, ?, ?, ?)",
            (job_id, job.hook_id, job.event_id, job.status, encode_job(job)),
            lambda: f"Hook {job.hook_id} already has an execution for event {job.event_id}.",
        )
        job.id = job_id
        return job

    def save_hook_job(self, job: HookJob) -> None:
        self._write(
            "UPDATE hook_jobs SET status = ?, body = ? WHERE id = ?",
            (job.status, encode_job(job), job.id),
            no_unique,
        )

    def delete_hook_job(self, job_id: int) -> None:
        self._write("DELETE FROM hook_jobs WHERE id = ?", (job_id,), no_unique)

    def add_hook_record(self, record: ExecutionRecord, retention: int) -> ExecutionRecord:
        rows = self._all(
            "SELECT COALESCE(MAX(exec_id), -1) + 1 FROM hook_log WHERE hook_id = ?",
            (record.hook_id,),
        )
        record.execution_id = int(rows[0][0])
        self._write(
            f"INSERT INTO hook_log ({_RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (
                record.hook_id,
                record.execution_id,
                record.timestamp,
                record.result.code,
                encode_record(record),
            ),
            no_unique,
        )
        if retention > 0:
            self._write(
                "DELETE FROM hook_log WHERE hook_id = ? AND exec_id <= ?",
                (record.hook_id, record.execution_id - retention),
                no_unique,
            )
        return record


    def prune_events(self, up_to_id: int, obj: str | None = None) -> int:
        where, params = ("id <= ?", (up_to_id,)) if obj is None else (
            "id <= ? AND obj = ?", (up_to_id, obj))
        before = self._all(f"SELECT COUNT(*) FROM events WHERE {where}", params)
        self._write(f"DELETE FROM events WHERE {where}", params, no_unique)
        return int(before[0][0])

