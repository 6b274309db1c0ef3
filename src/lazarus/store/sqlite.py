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
Unknown ids raise NoExistsError with OpenNebula's text; a UNIQUE violation AllocateError; other
sqlite3 errors become InternalError with the STORE_ERROR prefix (chained), so nothing above
sees a sqlite3 exception. Names holding a NUL are refused the same way (store/sql.py
refuse_nul: PostgreSQL's text cannot hold one, and both stores keep one contract).

The queries and writes are store/sql.py's, shared with store/postgres.py (PostgreSQL), which
keeps the same rows, bodies, ids and error texts; the contract suite (tests/contract/
test_store.py) runs against both. A transaction in which a store error was raised does not
commit even if the caller swallowed the error (rolled back, InternalError), as on PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lazarus.domain.errors import STORE_ERROR, AllocateError, InternalError

from . import migrations, rendered
from .hooks import HookWrites
from .sql import SqlReader, SqlWrites, refuse_nul

_Row = tuple[Any, ...]
_MAX_IDLE_READERS = 32
_BUSY_TIMEOUT_S = 10.0


def _run(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[_Row]:
    try:
        return conn.execute(sql, params).fetchall()
    except (sqlite3.Error, UnicodeEncodeError) as exc:  # the latter: a lone surrogate in a str
        raise InternalError(f"{STORE_ERROR}{exc}") from exc


class _SqliteTx(SqlWrites, HookWrites, SqlReader):
    """One write transaction (StoreTx); valid only inside its `with` block."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._open = True
        self.failed = False  # a store error happened: the transaction must not commit

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        if not self._open:
            # Guards against a tx kept past its `with`: its writes would autocommit one by one.
            raise RuntimeError("store transaction used after it ended")
        try:
            return _run(self._conn, sql, params)
        except InternalError:
            self.failed = True
            raise

    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        """Run an INSERT/UPDATE/DELETE; a UNIQUE violation becomes AllocateError(unique())."""
        if not self._open:
            raise RuntimeError("store transaction used after it ended")
        try:
            refuse_nul(params)
        except InternalError:
            self.failed = True
            raise
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            raise AllocateError(unique()) from exc
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            self.failed = True
            raise InternalError(f"{STORE_ERROR}{exc}") from exc

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
            self.failed = True
            raise InternalError(f"{STORE_ERROR}{exc}") from exc


    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[_Row]) -> None:
        """Insert rows as they are, ids included (`lazarus db copy`, app/dbtools.py). An
        AUTOINCREMENT table's sequence follows the largest id inserted by itself."""
        if not self._open:
            raise RuntimeError("store transaction used after it ended")
        slots = ", ".join("?" * len(columns))
        try:
            self._conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({slots})", rows
            )
        except sqlite3.Error as exc:
            raise InternalError(f"{STORE_ERROR}{exc}") from exc


class _Raw:
    """rendered.RawDb over the writer connection (autocommit mode)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        return self._conn.execute(sql, params).fetchall()

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise


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


class SqliteStore(SqlReader):
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
            rendered.refresh(_Raw(writer))
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
            rendered.refresh(_Raw(writer))
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
        exception, which is re-raised. A transaction in which a store error (InternalError)
        was raised and swallowed does not commit: it rolls back and raises InternalError (the
        contract; on PostgreSQL such a transaction is aborted by the server anyway)."""
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
                if tx.failed:  # the caller swallowed a store error: never commit half of it
                    raise InternalError(f"{STORE_ERROR}the transaction failed and was rolled back")
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

    def backup_to(self, path: Path) -> None:
        """An online, consistent copy of the whole database into a new file `path` (mode
        0600), through SQLite's backup API: safe while the daemon writes (`lazarus db
        backup`). Refuses an existing file."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise InternalError(f"{path} exists; a backup never overwrites a file") from exc
        os.close(fd)
        try:
            dest = sqlite3.connect(str(path))
            try:
                if self._new_reader is None:  # memory: the one connection, under the lock
                    with self._lock:
                        self._writer.backup(dest)
                else:  # a reader of its own: one WAL snapshot, writers never wait for it
                    source = self._new_reader()
                    try:
                        source.backup(dest)
                    finally:
                        source.close()
            finally:
                dest.close()
        except sqlite3.Error as exc:
            path.unlink(missing_ok=True)
            raise InternalError(f"{STORE_ERROR}{exc}") from exc

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
