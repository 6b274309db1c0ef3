"""SQLite adapter of the Store port (ports/store.py): the embedded default, one file in the
data directory.

Built by the composition roots (app/, sim/) and by tests; everything else sees only the port.

    store = SqliteStore.open(data_dir / "lazarus.db")   # file 0600, WAL, synchronous=NORMAL
    store = SqliteStore.memory()                        # tests: no file, same contract

Threads. The controller core writes from its asyncio thread; the XML-RPC server reads from many
threads at once (one.vm.info at >1,000 calls/s).
- Writes: one writer connection behind a lock; `transaction()` is BEGIN IMMEDIATE ... COMMIT
  (ROLLBACK on any exception), so writes are serialized and a state change and its Event land
  together or not at all. Reads through the `tx` object see the transaction's own writes.
  Nesting a transaction in the same thread is a programming error and raises RuntimeError.
- Reads through the store: a pool of read-only connections (taken per call, returned after),
  so readers never wait for the writer in WAL mode and each query is its own consistent
  snapshot. A pool rather than thread-local connections because the XML-RPC server may start a
  thread per request, and per-thread connections would pile up. A read that starts after a
  commit returned (in any thread) sees that commit.
- `memory()` keeps a single connection (an in-memory database cannot be shared between
  connections with WAL semantics), so there reads wait while another thread's transaction is
  open, and a read through the store inside the same thread's transaction sees its uncommitted
  writes. Inside a transaction, read through `tx`: that behaves the same on both.

Schema: store/migrations.py (numbered, recorded in `schema_migrations`). Each object is a row
of the columns the queries filter on plus a JSON body (store/codec.py); a VM row also keeps its
rendered short XML body (store/rendered.py), which one.vmpool.info concatenates. Ids come from the
`counters` table (start at 0 per kind, never reused, rolled back with the transaction).
Unknown ids raise NoExistsError with OpenNebula's text; other sqlite3 errors become
InternalError (chained), so nothing above sees a sqlite3 exception.

PostgreSQL (store/postgres.py, not built yet) would need: psycopg (the `postgres` extra) in that
module only; a pool of reader connections (one statement is a snapshot under READ COMMITTED,
as here) and one writer connection behind the same kind of lock; its own migrations list with
the same numbers and names, differing only where types do (`events.id BIGINT GENERATED ALWAYS
AS IDENTITY` for AUTOINCREMENT, DOUBLE PRECISION for REAL, JSONB for body if useful); `%s`
placeholders instead of `?`; UniqueViolation instead of IntegrityError; and with several
controllers, writes only from the elected leader. The counters upsert (`ON CONFLICT ... DO
UPDATE ... RETURNING`), the meta upsert and every query here are already valid PostgreSQL.
The contract suite (tests/contract/test_store.py) takes one more factory.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lazarus.domain.entities import VM, Cluster, Datastore, Event, Host, User
from lazarus.domain.errors import STORE_ERROR, AllocateError, InternalError, NoExistsError
from lazarus.domain.states import VmState

from . import codec, migrations, rendered
from .auth import AuthQueries, AuthWrites
from .hooks import HookQueries, HookWrites
from .monitoring import MonitoringQueries, MonitoringWrites
from .templates import TemplateQueries, TemplateWrites

_Row = tuple[Any, ...]
_MAX_IDLE_READERS = 32
_BUSY_TIMEOUT_S = 10.0
_DONE = int(VmState.DONE)
_EVENT_COLUMNS = "id, " + codec.EVENT_COLUMNS
_EVENT_INSERT = codec.EVENT_COLUMNS
_EVENT_SLOTS = ", ".join("?" * len(codec.EVENT_COLUMNS.split(", ")))


def _run(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[_Row]:
    try:
        return conn.execute(sql, params).fetchall()
    except (sqlite3.Error, UnicodeEncodeError) as exc:  # the latter: a lone surrogate in a str
        raise InternalError(f"{STORE_ERROR}{exc}") from exc


def _missing(what: str, obj_id: int) -> NoExistsError:
    return NoExistsError(f"Error getting {what} [{obj_id}].", obj_id)


def _vm_query(
    columns: str,
    states: Iterable[VmState] | None,
    host_id: int | None,
    include_done: bool,
    owner: int | None,
    start: int,
    end: int,
    limit: int | None,
) -> tuple[str, list[int]] | None:
    """(sql, params) selecting `columns` of the VMs the filters pick (see StoreReader.vms),
    ordered by id; None when nothing can match."""
    clauses: list[str] = []
    params: list[int] = []
    if states is None:
        if not include_done:
            clauses.append(f"state <> {_DONE}")
    else:
        wanted = {int(s) for s in states}
        if include_done:
            wanted.add(_DONE)
        if not wanted:
            return None
        clauses.append(f"state IN ({', '.join('?' * len(wanted))})")
        params.extend(sorted(wanted))
    if host_id is not None:
        clauses.append("host_id = ?")
        params.append(host_id)
    if owner is not None:
        clauses.append("owner = ?")
        params.append(owner)
    if start >= 0:
        clauses.append("id >= ?")
        params.append(start)
    if end >= 0:
        clauses.append("id <= ?")
        params.append(end)
    sql = f"SELECT {columns} FROM vms"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY id"
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


class _Reader(HookQueries, AuthQueries, MonitoringQueries, TemplateQueries):
    """The StoreReader queries, over whatever connection `_all` uses."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        raise NotImplementedError

    def _body(self, table: str, what: str, obj_id: int) -> str:
        rows = self._all(f"SELECT body FROM {table} WHERE id = ?", (obj_id,))
        if not rows:
            raise _missing(what, obj_id)
        return str(rows[0][0])

    def host(self, host_id: int) -> Host:
        return codec.decode_host(host_id, self._body("hosts", "host", host_id))

    def host_by_name(self, name: str) -> Host | None:
        rows = self._all("SELECT id, body FROM hosts WHERE name = ?", (name,))
        return codec.decode_host(rows[0][0], rows[0][1]) if rows else None

    def hosts(self) -> list[Host]:
        decode = codec.decode_host
        return [decode(i, b) for i, b in self._all("SELECT id, body FROM hosts ORDER BY id")]

    def vm(self, vm_id: int) -> VM:
        return codec.decode_vm(vm_id, self._body("vms", "virtual machine", vm_id))

    def vms(
        self,
        *,
        states: Iterable[VmState] | None = None,
        host_id: int | None = None,
        include_done: bool = False,
        owner: int | None = None,
        start: int = -1,
        end: int = -1,
        limit: int | None = None,
    ) -> list[VM]:
        """VMs ordered by id. The states returned are `states` (all but DONE when None), plus
        DONE when `include_done`; the other filters narrow that (see the port)."""
        query = _vm_query("id, body", states, host_id, include_done, owner, start, end, limit)
        if query is None:
            return []
        decode = codec.decode_vm
        return [decode(i, b) for i, b in self._all(*query)]

    def vm_short_bodies(
        self,
        *,
        states: Iterable[VmState] | None = None,
        host_id: int | None = None,
        include_done: bool = False,
        owner: int | None = None,
        start: int = -1,
        end: int = -1,
        limit: int | None = None,
    ) -> list[str]:
        """The cached short bodies (store/rendered.py) of the VMs `vms()` would return, in the
        same order, without decoding them. A row without one (not expected: `open` fills
        them) is rendered from its JSON body, read only for that row."""
        query = _vm_query(
            "id, short_xml, CASE WHEN short_xml IS NULL THEN body END",
            states, host_id, include_done, owner, start, end, limit,
        )  # fmt: skip
        if query is None:
            return []
        rows = self._all(*query)
        bodies = [short for _, short, _ in rows]
        if None in bodies:
            return [
                short if short is not None else rendered.short_xml(codec.decode_vm(i, body))
                for i, short, body in rows
            ]
        return bodies

    def datastore(self, ds_id: int) -> Datastore:
        return codec.decode_datastore(ds_id, self._body("datastores", "datastore", ds_id))

    def datastores(self) -> list[Datastore]:
        rows = self._all("SELECT id, body FROM datastores ORDER BY id")
        return [codec.decode_datastore(i, b) for i, b in rows]

    def cluster(self, cluster_id: int) -> Cluster:
        return codec.decode_cluster(cluster_id, self._body("clusters", "cluster", cluster_id))

    def clusters(self) -> list[Cluster]:
        rows = self._all("SELECT id, body FROM clusters ORDER BY id")
        return [codec.decode_cluster(i, b) for i, b in rows]

    def user_by_name(self, name: str) -> User | None:
        rows = self._all("SELECT id, body FROM users WHERE name = ?", (name,))
        return codec.decode_user(rows[0][0], rows[0][1]) if rows else None

    def get_meta(self, key: str) -> str | None:
        rows = self._all("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def events(self, after_id: int = 0, limit: int = 1000, kind: str | None = None) -> list[Event]:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ?"
        params: list[Any] = [after_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [codec.decode_event(row) for row in self._all(sql, params)]


class _SqliteTx(HookWrites, AuthWrites, MonitoringWrites, TemplateWrites, _Reader):
    """One write transaction (StoreTx); valid only inside its `with` block."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._open = True

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        if not self._open:
            # Guards against a tx kept past its `with`: its writes would autocommit one by one.
            raise RuntimeError("store transaction used after it ended")
        return _run(self._conn, sql, params)

    def _next_id(self, kind: str) -> int:
        rows = self._all(
            "INSERT INTO counters (kind, next_id) VALUES (?, 1) "
            "ON CONFLICT (kind) DO UPDATE SET next_id = counters.next_id + 1 "
            "RETURNING next_id - 1",
            (kind,),
        )
        return int(rows[0][0])

    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        """Run an INSERT/UPDATE/DELETE; a UNIQUE violation becomes AllocateError(unique())."""
        if not self._open:
            raise RuntimeError("store transaction used after it ended")
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            raise AllocateError(unique()) from exc
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise InternalError(f"{STORE_ERROR}{exc}") from exc

    def _taken(self, table: str, kind: str, name: str) -> Callable[[], str]:
        def message() -> str:
            rows = self._all(f"SELECT id FROM {table} WHERE name = ?", (name,))
            owner = rows[0][0] if rows else "?"
            return f"NAME is already taken by {kind} {owner}."

        return message

    def _no_unique(self) -> str:
        return "Store constraint violated."

    # -- hosts ------------------------------------------------------------------------------
    def add_host(self, host: Host) -> Host:
        host_id = self._next_id("host")
        self._write(
            "INSERT INTO hosts (id, name, state, body) VALUES (?, ?, ?, ?)",
            (host_id, host.name, int(host.state), codec.encode_host(host)),
            self._taken("hosts", "HOST", host.name),
        )
        host.id = host_id
        return host

    def touch_hosts(self, host_ids: Sequence[int], now: float) -> None:
        if not self._open:
            raise RuntimeError("store transaction used after it ended")
        try:  # SQLite's JSON functions: the body is neither decoded nor re-encoded here
            self._conn.executemany(
                "UPDATE hosts SET body = json_set(body, '$.last_monitored', ?,"
                " '$.monitoring.TIMESTAMP', ?) WHERE id = ?",
                [(now, str(int(now)), host_id) for host_id in host_ids],
            )
        except sqlite3.Error as exc:
            raise InternalError(f"{STORE_ERROR}{exc}") from exc

    def save_host(self, host: Host) -> None:
        changed = self._write(
            "UPDATE hosts SET name = ?, state = ?, body = ? WHERE id = ?",
            (host.name, int(host.state), codec.encode_host(host), host.id),
            self._taken("hosts", "HOST", host.name),
        )
        if not changed:
            raise _missing("host", host.id)

    def delete_host(self, host_id: int) -> None:
        if not self._write("DELETE FROM hosts WHERE id = ?", (host_id,), self._no_unique):
            raise _missing("host", host_id)

    # -- VMs --------------------------------------------------------------------------------
    def _vm_row(self, vm: VM) -> tuple[int, int, int | None, int, str, str]:
        """The columns of a VM row; the short body is rendered here, so it is written in the
        same statement as the JSON body and can never disagree with it."""
        return (
            int(vm.state),
            int(vm.lcm_state),
            vm.host_id,
            vm.uid,
            codec.encode_vm(vm),
            rendered.short_xml(vm),
        )

    def add_vm(self, vm: VM) -> VM:
        vm_id = self._next_id("vm")
        old_id, vm.id = vm.id, vm_id  # the short body shows the id
        try:
            self._write(
                "INSERT INTO vms (state, lcm_state, host_id, owner, body, short_xml, id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*self._vm_row(vm), vm_id),
                self._no_unique,
            )
        except BaseException:
            vm.id = old_id
            raise
        return vm

    def save_vm(self, vm: VM) -> None:
        changed = self._write(
            "UPDATE vms SET state = ?, lcm_state = ?, host_id = ?, owner = ?, body = ?, "
            "short_xml = ? WHERE id = ?",
            (*self._vm_row(vm), vm.id),
            self._no_unique,
        )
        if not changed:
            raise _missing("virtual machine", vm.id)

    def delete_vm(self, vm_id: int) -> None:
        if not self._write("DELETE FROM vms WHERE id = ?", (vm_id,), self._no_unique):
            raise _missing("virtual machine", vm_id)

    # -- datastores, clusters, users ----------------------------------------------------------
    def add_datastore(self, ds: Datastore) -> Datastore:
        ds_id = self._next_id("datastore")
        self._write(
            "INSERT INTO datastores (id, name, body) VALUES (?, ?, ?)",
            (ds_id, ds.name, codec.encode_datastore(ds)),
            self._no_unique,
        )
        ds.id = ds_id
        return ds

    def save_datastore(self, ds: Datastore) -> None:
        changed = self._write(
            "UPDATE datastores SET name = ?, body = ? WHERE id = ?",
            (ds.name, codec.encode_datastore(ds), ds.id),
            self._no_unique,
        )
        if not changed:
            raise _missing("datastore", ds.id)

    def add_cluster(self, cluster: Cluster) -> Cluster:
        cluster_id = self._next_id("cluster")
        self._write(
            "INSERT INTO clusters (id, name, body) VALUES (?, ?, ?)",
            (cluster_id, cluster.name, codec.encode_cluster(cluster)),
            self._taken("clusters", "CLUSTER", cluster.name),
        )
        cluster.id = cluster_id
        return cluster

    def save_cluster(self, cluster: Cluster) -> None:
        changed = self._write(
            "UPDATE clusters SET name = ?, body = ? WHERE id = ?",
            (cluster.name, codec.encode_cluster(cluster), cluster.id),
            self._taken("clusters", "CLUSTER", cluster.name),
        )
        if not changed:
            raise _missing("cluster", cluster.id)

    def add_user(self, user: User) -> User:
        user_id = self._next_id("user")
        self._write(
            "INSERT INTO users (id, name, body) VALUES (?, ?, ?)",
            (user_id, user.name, codec.encode_user(user)),
            self._taken("users", "USER", user.name),
        )
        user.id = user_id
        return user

    def save_user(self, user: User) -> None:
        changed = self._write(
            "UPDATE users SET name = ?, body = ? WHERE id = ?",
            (user.name, codec.encode_user(user), user.id),
            self._taken("users", "USER", user.name),
        )
        if not changed:
            raise _missing("user", user.id)

    # -- meta, events ---------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
            self._no_unique,
        )

    def record(self, event: Event) -> int:
        rows = self._all(
            f"INSERT INTO events ({_EVENT_INSERT}) VALUES ({_EVENT_SLOTS}) RETURNING id",
            codec.encode_event(event),
        )
        event.id = int(rows[0][0])
        return event.id


def _connect(target: str, *, uri: bool = False, read_only: bool = False) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            target,
            uri=uri,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # pooled; the pool/lock guarantees one user at a time
            timeout=_BUSY_TIMEOUT_S,
            cached_statements=256,
        )
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise InternalError(f"Cannot open the store {target}: {exc}") from exc
    return conn


class SqliteStore(_Reader):
    """The Store port over SQLite. Build with `open(path)` or `memory()`."""

    def __init__(self, writer: sqlite3.Connection, reader: Callable[[], sqlite3.Connection] | None):
        self._writer = writer
        self._new_reader = reader  # None: reads share the writer under the lock (memory)
        self._lock = threading.RLock()
        self._tx_thread: int | None = None
        self._idle: deque[sqlite3.Connection] = deque()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(
        cls, path: Path, *, schema: Sequence[migrations.Migration] = migrations.MIGRATIONS
    ) -> SqliteStore:
        """Open (creating it and its directory if needed) the store file at `path`, mode 0600,
        and apply the migrations it has not seen yet. `schema` is for tests."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Create the file ourselves so it is never world-readable (it holds password hashes);
        # SQLite gives the -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        target = str(path)
        writer = _connect(target)
        try:
            mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise InternalError(f"Cannot switch the store {target} to WAL (got {mode}).")
            migrations.apply(writer, schema)
            rendered.refresh(writer)
        except sqlite3.Error as exc:
            writer.close()
            raise InternalError(f"Cannot open the store {target}: {exc}") from exc
        except BaseException:
            writer.close()
            raise
        return cls(writer, lambda: _connect(target, read_only=True))

    @classmethod
    def memory(
        cls, *, schema: Sequence[migrations.Migration] = migrations.MIGRATIONS
    ) -> SqliteStore:
        """A private in-memory store (tests). One connection: see the module docstring."""
        writer = _connect(":memory:")
        try:
            migrations.apply(writer, schema)
            rendered.refresh(writer)
        except sqlite3.Error as exc:
            writer.close()
            raise InternalError(f"Cannot create the in-memory store: {exc}") from exc
        return cls(writer, None)

    # -- reads ----------------------------------------------------------------------------------
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        if self._closed:
            raise InternalError("The store is closed.")
        if self._new_reader is None:
            with self._lock:
                return _run(self._writer, sql, params)
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._add_reader()
        try:
            return _run(conn, sql, params)
        finally:
            if len(self._idle) < _MAX_IDLE_READERS and not self._closed:
                self._idle.append(conn)
            else:
                self._drop_reader(conn)

    def _add_reader(self) -> sqlite3.Connection:
        assert self._new_reader is not None
        conn = self._new_reader()
        with self._readers_lock:
            self._readers.append(conn)
        return conn

    def _drop_reader(self, conn: sqlite3.Connection) -> None:
        with self._readers_lock:
            if conn in self._readers:
                self._readers.remove(conn)
        conn.close()

    def schema_versions(self) -> list[tuple[int, str, str]]:
        """(version, name, applied_at UTC text) of the applied migrations, for status output."""
        return [
            (int(v), str(n), str(a))
            for v, n, a in self._all(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            )
        ]

    # -- writes ---------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[_SqliteTx]:
        """A write transaction (BEGIN IMMEDIATE): commits on normal exit, rolls back on any
        exception, which is re-raised."""
        me = threading.get_ident()
        if self._tx_thread == me:
            raise RuntimeError("nested store transaction (use the outer tx)")
        if self._closed:
            raise InternalError("The store is closed.")
        with self._lock:
            self._tx_thread = me
            tx = _SqliteTx(self._writer)
            try:
                _run(self._writer, "BEGIN IMMEDIATE", ())
                try:
                    yield tx
                finally:
                    tx._open = False
                _run(self._writer, "COMMIT", ())
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise
            finally:
                self._tx_thread = None

    def refuse_writes(self, refuse: bool) -> None:
        """Make every write fail as a full disk or a read-only file would (SQLite's own
        query_only switch: a write raises, the store is untouched), or allow them again. For
        the simulator's store faults and tests; nothing in the controller calls it."""
        with self._lock:
            self._writer.execute(f"PRAGMA query_only = {'ON' if refuse else 'OFF'}")

    def close(self) -> None:
        """Close every connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                readers, self._readers = self._readers, []
            self._idle.clear()
            for conn in readers:
                conn.close()
            self._writer.close()
