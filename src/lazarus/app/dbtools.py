"""`lazarus db check` and `lazarus db copy`: integrity of a store, and moving an installation
from one store to another (SQLite <-> PostgreSQL) without changing a single document.

Both work on the stores' rows, not on decoded objects, through two small adapter methods that
both stores have: `store.query(sql, params)` (a read) and, inside a write transaction,
`tx.bulk_insert(table, columns, rows)`.

Copy. The target must be empty (a freshly migrated store: no row in any table) and at the same
schema version as the source; both are opened by `open_store`, which migrates them. Every
table in `TABLES` is read from the source in key order and written to the target in ONE
transaction, so a copy that fails half-way leaves the target empty. Ids are kept as they are
(counters included, so the next id allocated on the target is the one the source would have
allocated), and events keep their ids, which is what the hook outbox's cursor (meta
`hooks.cursor`) points at. After the commit the copy reads every table back from the target
and compares it row by row with what it read from the source: `copy` succeeds only when they
are identical, which makes every document the API serves identical too (the API renders only
from these rows). The source is never written. Stop the daemon first: a copy of a store that
is being written is a copy of some moment, and the daemon's data-directory lock (one
`lazarus serve` per data directory) is what `copy` takes to make sure.

Check. Reads the store and reports what would make the controller misbehave:
- ids: each kind's counter is above every id of that kind (an id is never reused);
- the hook outbox: the cursor is not past the newest event, every job and execution record
  belongs to an existing hook, no job is left `running` (an interrupted one is a finding only
  while no controller runs: the hook manager marks it at start), event ids are increasing;
- VMs: the host of a VM in a state that holds a host exists;
- incident records (HA_INCIDENT in a host's template): a known state, HANDLED/FAILED ids of
  existing VMs, and a final state (DONE/ABORTED) only when nothing is left unhandled.
`check` never writes. Exit status 0 when there is nothing to report, 1 otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lazarus.domain.hooks import PENDING, RUNNING
from lazarus.domain.secrets import mask_db_url
from lazarus.domain.states import VmState
from lazarus.domain.template import Template
from lazarus.ha.incident import FINAL, IncidentState

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: str  # ORDER BY of a deterministic read

    where: str = ""  # rows the copy leaves out: the store's own, written by the store itself

    @property
    def select(self) -> str:
        where = f" WHERE {self.where}" if self.where else ""
        return f"SELECT {', '.join(self.columns)} FROM {self.name}{where} ORDER BY {self.key}"

    @property
    def count(self) -> str:
        where = f" WHERE {self.where}" if self.where else ""
        return f"SELECT COUNT(*) FROM {self.name}{where}"


# Every table of the current schema but schema_migrations (tests/unit/test_dbtools.py holds
# this list to the SQLite schema, so a migration that adds a table or a column must add it here).
TABLES: tuple[Table, ...] = (
    Table("counters", ("kind", "next_id"), "kind"),
    # "store.*" keys belong to the store that holds them (e.g. the fingerprint of the renderer
    # of its cached bodies, store/rendered.py): each store writes its own when it opens.
    Table("meta", ("key", "value"), "key", "key NOT LIKE 'store.%'"),
    Table("users", ("id", "name", "body"), "id"),
    Table("clusters", ("id", "name", "body"), "id"),
    Table("datastores", ("id", "name", "body"), "id"),
    Table("hosts", ("id", "name", "state", "body"), "id"),
    Table("vms", ("id", "state", "lcm_state", "host_id", "owner", "body", "short_xml"), "id"),
    Table(
        "events",
        (
            "id",
            "time",
            "kind",
            "obj",
            "obj_id",
            "state",
            "lcm_state",
            "line",
            "body",
            "flag",
            "value",
            "method",
        ),
        "id",
    ),
    Table("hooks", ("id", "name", "body"), "id"),
    Table("hook_jobs", ("id", "hook_id", "event_id", "status", "body"), "id"),
    Table("hook_log", ("hook_id", "exec_id", "timestamp", "rc", "body"), "hook_id, exec_id"),
)


class RawTx(Protocol):
    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None: ...


class RawStore(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def schema_versions(self) -> list[tuple[int, str, str]]: ...

    def transaction(self) -> Any: ...


class CopyError(Exception):
    """The copy was refused or did not verify; nothing was committed, or (verification) the
    target holds a copy that differs and must not be used."""


def _normal(value: Any) -> Any:
    """Values as both stores return them: PostgreSQL's BIGINT/DOUBLE come back as int/float,
    SQLite's as int/float too; only a float that is integral may come back as either."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def read_tables(store: RawStore) -> dict[str, list[Row]]:
    return {
        t.name: [tuple(_normal(v) for v in row) for row in store.query(t.select)] for t in TABLES
    }


def copy(source: RawStore, target: RawStore) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; returns rows per table. Raises
    CopyError when refused (schema versions differ, target not empty) or when the read-back
    differs."""
    src_schema = [(v, n) for v, n, _ in source.schema_versions()]
    dst_schema = [(v, n) for v, n, _ in target.schema_versions()]
    if src_schema != dst_schema:
        raise CopyError(
            f"schema versions differ: source {src_schema[-1:] or 'none'}, target "
            f"{dst_schema[-1:] or 'none'}; open both with this Lazarus first (lazarus db migrate)"
        )
    busy = [t.name for t in TABLES if target.query(t.count)[0][0]]
    if busy:
        raise CopyError(f"the target is not empty (rows in: {', '.join(busy)}); copy only "
                        "into a new, empty store")  # fmt: skip
    rows = read_tables(source)
    with target.transaction() as tx:
        for table in TABLES:
            if rows[table.name]:
                tx.bulk_insert(table.name, table.columns, rows[table.name])
    back = read_tables(target)
    for table in TABLES:
        if back[table.name] != rows[table.name]:
            differ = sum(
                1 for a, b in zip(back[table.name], rows[table.name], strict=False) if a != b
            )
            raise CopyError(
                f"verification failed: table {table.name} differs after the copy "
                f"({len(rows[table.name])} rows read, {len(back[table.name])} written back, "
                f"{differ} differ); do not use the target"
            )
    return {name: len(r) for name, r in rows.items()}


# -- check ------------------------------------------------------------------------------------

_KIND_TABLES = {"host": "hosts", "vm": "vms", "datastore": "datastores", "cluster": "clusters",
                "user": "users", "hook": "hooks", "hook_job": "hook_jobs"}  # fmt: skip
_HOLDS_HOST = {int(VmState.ACTIVE), int(VmState.SUSPENDED), int(VmState.POWEROFF),
               int(VmState.UNDEPLOYED), int(VmState.STOPPED)}  # fmt: skip
_CURSOR = "hooks.cursor"


def check(store: RawStore) -> list[str]:
    """What is wrong with the store, one line each; [] when nothing is."""
    found: list[str] = []
    counters = {str(k): int(n) for k, n in store.query("SELECT kind, next_id FROM counters")}
    for kind, table in _KIND_TABLES.items():
        top = store.query(f"SELECT MAX(id) FROM {table}")[0][0]
        if top is None:
            continue
        if kind not in counters:
            found.append(f"ids: {table} has rows but no counter '{kind}'")
        elif counters[kind] <= int(top):
            found.append(
                f"ids: counter '{kind}' is {counters[kind]} but {table} holds id {top}: "
                "the next allocation would reuse an id"
            )
    newest = store.query("SELECT MAX(id) FROM events")[0][0]
    newest = int(newest) if newest is not None else 0
    cursor_rows = store.query("SELECT value FROM meta WHERE key = ?", (_CURSOR,))
    if cursor_rows:
        raw = str(cursor_rows[0][0])
        if not raw.lstrip("-").isdigit():
            found.append(f"outbox: cursor {raw!r} is not a number")
        elif int(raw) > newest and newest:
            found.append(f"outbox: cursor {raw} is past the newest event {newest}")
    hooks = {int(r[0]) for r in store.query("SELECT id FROM hooks")}
    for job_id, hook_id, status in store.query("SELECT id, hook_id, status FROM hook_jobs"):
        if int(hook_id) not in hooks:
            found.append(f"outbox: job {job_id} belongs to hook {hook_id}, which does not exist")
        if status not in (PENDING, RUNNING):
            found.append(f"outbox: job {job_id} has an unknown status {status!r}")
    for (hook_id,) in store.query("SELECT DISTINCT hook_id FROM hook_log"):
        if int(hook_id) not in hooks:
            found.append(f"hook log: records of hook {hook_id}, which does not exist")
    hosts = {int(i): str(n) for i, n in store.query("SELECT id, name FROM hosts")}
    vm_ids = {int(r[0]) for r in store.query("SELECT id FROM vms")}
    for vm_id, state, host_id in store.query("SELECT id, state, host_id FROM vms"):
        if host_id is not None and int(state) in _HOLDS_HOST and int(host_id) not in hosts:
            found.append(f"vm {vm_id}: its host {host_id} does not exist")
    for host_id, body in store.query("SELECT id, body FROM hosts ORDER BY id"):
        found.extend(_check_incidents(int(host_id), str(body), vm_ids))
    return found


def _check_incidents(host_id: int, body: str, vm_ids: set[int]) -> list[str]:
    try:
        template = Template.from_json(json.loads(body)["template"])
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        return [f"host {host_id}: its template cannot be read ({exc})"]
    found: list[str] = []
    for n, vector in enumerate(template.vectors("HA_INCIDENT")):
        where = f"host {host_id} incident {vector.get('KEY') or n}"
        state = vector.get("STATE") or ""
        if state not in IncidentState.__members__:
            found.append(f"{where}: unknown state {state!r}")
            continue
        handled = (vector.get("HANDLED") or "").split()
        failed = (vector.get("FAILED") or "").split()
        for raw in handled + failed:
            if not raw.isdigit():
                found.append(f"{where}: VM id {raw!r} is not a number")
            elif int(raw) not in vm_ids:
                found.append(f"{where}: VM {raw} does not exist")
        if IncidentState(state) in FINAL:
            pending = [
                name[3:] for name, value in vector.pairs
                if name.startswith("VM_") and value.startswith("PENDING")
            ]  # fmt: skip
            if pending:
                found.append(f"{where}: {state} with VMs still pending: {' '.join(pending)}")
    return found


# -- opening, backup --------------------------------------------------------------------------


def open_url(
    url: str | None, settings: Any, data_dir: Path, password_file: Path | None
) -> tuple[Any, str]:
    """(store, URL as shown: no secret) for `lazarus db`: `url`, else the daemon's own
    setting (DB, DB_PASSWORD_FILE), else the data directory's SQLite file. The store is
    migrated on open."""
    from lazarus.store import open_store

    chosen = url if url is not None else (getattr(settings, "db", "") or "")
    if url is None and password_file is None:
        configured = getattr(settings, "db_password_file", "") or ""
        password_file = Path(configured) if configured else None
    store = open_store(chosen, data_dir=data_dir, password_file=password_file)
    shown = mask_db_url(chosen) if chosen else f"sqlite:{data_dir / 'lazarus.db'}"
    return store, shown


def backup(store: Any, path: Any) -> None:
    """SQLite's online backup into a new file; PostgreSQL has pg_dump for that."""
    backup_to = getattr(store, "backup_to", None)
    if backup_to is None:
        raise CopyError("this store has no online backup of its own: use pg_dump "
                        "(docs/operations.md, 'Backup and restore')")  # fmt: skip
    backup_to(path)
