"""Monitoring records of the SQLite store (migration 6, "monitoring records"): a bounded
history of host and VM monitoring samples, as oned's host_monitoring and vm_monitoring
tables (hid / vmid, time, body).

The body is the sample's rendered <MONITORING> element (domain/xml), written once and served
as it is by one.host.monitoring, one.vm.monitoring and the pool variants. Mixed into the
SQLite reader and transaction classes (as store/hooks.py is); portable SQL: INTEGER and TEXT
columns, `ON CONFLICT DO NOTHING` (SQLite >= 3.24 and PostgreSQL), no AUTOINCREMENT.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_Row = tuple[Any, ...]

SCHEMA = """
CREATE TABLE host_monitoring (
    host_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (host_id, timestamp)
);
CREATE INDEX host_monitoring_time ON host_monitoring (timestamp);
CREATE TABLE vm_monitoring (
    vm_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (vm_id, timestamp)
);
CREATE INDEX vm_monitoring_time ON vm_monitoring (timestamp);
"""

_TABLES = {"host": ("host_monitoring", "host_id"), "vm": ("vm_monitoring", "vm_id")}


class MonitoringQueries:
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        raise NotImplementedError

    def monitoring_records(
        self, kind: str, obj_id: int | None = None, since: int = -1
    ) -> list[tuple[int, int, str]]:
        """(object id, timestamp, body) of `kind` "host" or "vm", by object then time;
        `obj_id` None: every object's; `since` >= 0: only records at or after that time."""
        table, column = _TABLES[kind]
        clauses: list[str] = []
        params: list[int] = []
        if obj_id is not None:
            clauses.append(f"{column} = ?")
            params.append(obj_id)
        if since >= 0:
            clauses.append("timestamp >= ?")
            params.append(since)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._all(
            f"SELECT {column}, timestamp, body FROM {table}{where} ORDER BY {column}, timestamp",
            params,
        )
        return [(int(i), int(t), str(b)) for i, t, b in rows]

    def last_monitoring_records(self, kind: str) -> list[tuple[int, int, str]]:
        """The newest record of each object of `kind`."""
        table, column = _TABLES[kind]
        rows = self._all(
            f"SELECT m.{column}, m.timestamp, m.body FROM {table} m JOIN "
            f"(SELECT {column} AS oid, MAX(timestamp) AS ts FROM {table} GROUP BY {column}) l "
            f"ON m.{column} = l.oid AND m.timestamp = l.ts ORDER BY m.{column}"
        )
        return [(int(i), int(t), str(b)) for i, t, b in rows]


class MonitoringWrites:
    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        raise NotImplementedError

    def add_monitoring_records(self, kind: str, records: Sequence[tuple[int, int, str]]) -> None:
        """Store (object id, timestamp, body) samples; one already stored is kept."""
        table, column = _TABLES[kind]
        for record in records:
            self._write(
                f"INSERT INTO {table} ({column}, timestamp, body) VALUES (?, ?, ?) "
                f"ON CONFLICT ({column}, timestamp) DO NOTHING",
                record,
                _no_unique,
            )

    def prune_monitoring_records(self, kind: str, before: int) -> int:
        """Delete the records of `kind` older than `before` (Unix time); returns how many."""
        table, _ = _TABLES[kind]
        return self._write(f"DELETE FROM {table} WHERE timestamp < ?", (before,), _no_unique)

    def delete_monitoring_records(self, kind: str, obj_id: int) -> None:
        table, column = _TABLES[kind]
        self._write(f"DELETE FROM {table} WHERE {column} = ?", (obj_id,), _no_unique)


def _no_unique() -> str:
    return "Store constraint violated."
