"""PostgreSQL adapter of the Store port (ports/store.py) and of ports/hooks.py's HookStore: the
cluster's state in a shared database, the equal of store/sqlite.py.

    store = PostgresStore.open("postgresql://lazarus@db1:5432/lazarus")

psycopg 3 is imported here only (the `postgres` extra). The SQL is store/sql.py's and
store/hooks.py's, shared with SQLite (`?` placeholders become `%s` in `_pg_sql`, the one
place); the schema is store/migrations.py's list translated by store/pg_migrations.py; the
JSON bodies (store/codec.py) and rendered short bodies (store/rendered.py) are the same text.

Connections and threads (as sqlite.py):
- One writer connection behind a lock; `transaction()` is one database transaction, so a state
  change and its Event commit together or not at all (the journal's and the hook outbox's
  rule). Nesting one in the same thread raises RuntimeError.
- Reads through the store take a connection from a pool of autocommit reader connections
  (returned after the call). Each read is one statement, and under READ COMMITTED a statement
  sees every transaction committed before it started: a read after a commit returned sees it,
  and readers never wait for the writer (MVCC).

Isolation and locks: several processes (controllers) may share one database. Every write
transaction runs at READ COMMITTED and starts with `SELECT pg_advisory_xact_lock(WRITE_LOCK)`,
a lock held to COMMIT/ROLLBACK, so write transactions are serialized cluster-wide, exactly as
SQLite's BEGIN IMMEDIATE serializes them on one file. Why a lock rather than SERIALIZABLE:
- the core reads and then writes inside a transaction (a host's state, then its new state; the
  leader-epoch check of several controllers reads a meta row, then writes); with writers
  serialized nothing can change between that read and that write, and no transaction ever
  needs to be retried for a serialization failure;
- event ids come from an identity sequence: with writers serialized, ids are handed out in
  commit order, so the hook outbox's cursor (`events(after_id=...)`) never skips an event
  that commits later with a lower id (a sequence alone does not promise that);
- `counters` (object ids from 0, never reused, rolled back with the transaction) and
  `add_hook_record`'s MAX(exec_id) + 1 are then plain read-modify-writes.
Readers take no lock. Migrations run under a session advisory lock of their own
(pg_migrations.MIGRATION_LOCK), so two processes starting at once do not race.
Ids of rolled-back events: SQLite reuses them, a PostgreSQL sequence skips them; the contract
(tests/contract/test_store.py) promises increasing, never reused ids, not consecutive ones.

UNIQUE violations become AllocateError with the same texts as SQLite. A write that a UNIQUE
constraint can refuse (names) runs inside a SAVEPOINT, so after the AllocateError the
transaction is still usable, as on SQLite (PostgreSQL aborts a transaction at its first error
otherwise). After any other store error the transaction is aborted: it rolls back at the end
of its `with` block, and if the caller swallowed the error the COMMIT is refused (an aborted
transaction's COMMIT would silently roll back).

Errors: every psycopg error (a lost connection, a server restart or admin shutdown, a
serialization failure, a full disk (53100), a statement timeout, a read-only transaction,
a text that is not UTF-8 or holds a NUL) becomes InternalError with the STORE_ERROR prefix
(chained), as SQLite's errors do: the core never sees a psycopg exception, and HA callers
retry store failures (domain/errors.py is_store_failure). A COMMIT whose connection broke
mid-way has an unknown outcome; it is reported as a store error like the rest (the core
writes its intent before acting, so it does not act on a write it could not confirm).

Timeouts: every connection sets `statement_timeout` (default 5 s: a stuck database, a lock
held elsewhere, a slow disk cannot hang the monitor: the statement is cancelled, its
transaction rolls back, the caller sees a store error and retries), including the wait for
WRITE_LOCK; `idle_in_transaction_session_timeout` (a controller frozen mid-transaction does
not hold WRITE_LOCK forever); `connect_timeout` and TCP keepalives unless the conninfo sets
them.

Reconnect: a broken connection (server restarted, network cut) is never reused. The writer is
replaced at the next `transaction()`; a BEGIN that fails on a connection that broke while idle
is retried once on a new connection (nothing was sent yet). A broken reader is dropped with
every idle reader (after a restart they are all dead) and the read retried once on a new
connection (reads are idempotent). While the server is down, connection attempts back off
(`reconnect_backoff_s`: first delay, doubling to the maximum), and calls in between fail at
once with the last error, so a controller whose database is gone neither hangs nor spins.
Losing and regaining the database is logged (logger lazarus.store), without the conninfo.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from lazarus.domain.errors import STORE_ERROR, AllocateError, InternalError

from . import migrations, pg_migrations, rendered
from .hooks import HookWrites, no_unique
from .sql import SqlReader, SqlWrites, refuse_nul

log = logging.getLogger("lazarus.store")

_Row = tuple[Any, ...]
_Conn = psycopg.Connection[Any]
WRITE_LOCK = 0x4C415A5752  # "LAZWR": pg_advisory_xact_lock key of every write transaction
_MAX_IDLE_READERS = 16
_IDLE_IN_TX_S = 60
# The one multi-statement round trip that opens a write transaction.
_BEGIN = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})"


@lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """store/sql.py's `?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pg_errors.QueryCanceled):
        what = "statement timeout"
    elif isinstance(exc, pg_errors.DiskFull):
        what = "disk full"
    elif isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        what = "read-only"
    elif isinstance(exc, pg_errors.SerializationFailure):
        what = "serialization failure"
    elif isinstance(exc, psycopg.OperationalError):
        what = "database unavailable"
    else:
        what = type(exc).__name__
    text = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{what}: {text}" if text else what


def _store_error(exc: BaseException) -> InternalError:
    error = InternalError(f"{STORE_ERROR}{_describe(exc)}")
    error.__cause__ = exc
    return error


def _dead(conn: _Conn) -> bool:
    return conn.closed or conn.broken


def _quietly_close(conn: _Conn | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # a dead connection may fail to close: it is gone anyway
            pass


class _Connector:
    """Opens connections with the session settings, backing off while the server is away."""

    def __init__(
        self,
        conninfo: str,
        *,
        statement_timeout_s: float,
        connect_timeout_s: float,
        backoff: tuple[float, float],
        monotonic: Callable[[], float],
    ) -> None:
        given = conninfo_to_dict(conninfo)
        extra: dict[str, Any] = {"application_name": "lazarus"}
        defaults = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
        }
        extra.update({k: v for k, v in defaults.items() if k not in given})
        self._conninfo = conninfo
        self._extra = extra
        self._settings = (
            f"SET statement_timeout = {max(1, round(statement_timeout_s * 1000))};"
            f" SET idle_in_transaction_session_timeout = {_IDLE_IN_TX_S * 1000}"
        )
        self._first, self._max = backoff
        self._delay = 0.0
        self._retry_at = 0.0
        self._last_error: BaseException | None = None
        self._down = False
        self._now = monotonic
        self._lock = threading.Lock()
        self.target = (
            " ".join(  # for messages: never the password, never the full conninfo
                f"{k}={given[k]}" for k in ("host", "port", "dbname", "user") if given.get(k)
            )
            or "the default PostgreSQL"
        )

    def connect(self, *, read_only: bool = False, session: str = "") -> _Conn:
        with self._lock:
            if self._last_error is not None and self._now() < self._retry_at:
                raise _store_error(self._last_error)
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, **self._extra)
            try:
                settings = self._settings
                if read_only:
                    settings += "; SET default_transaction_read_only = on"
                conn.execute((settings + (f"; {session}" if session else "")).encode())
            except BaseException:
                conn.close()
                raise
        except psycopg.Error as exc:
            with self._lock:
                self._delay = self._first if self._delay == 0 else min(self._delay * 2, self._max)
                self._retry_at = self._now() + self._delay
                self._last_error = exc
                if not self._down:
                    self._down = True
                    log.error(
                        "store: cannot reach PostgreSQL (%s): %s; retrying with backoff",
                        self.target,
                        _describe(exc),
                    )
            raise _store_error(exc) from exc
        with self._lock:
            self._delay = 0.0
            self._last_error = None
            if self._down:
                self._down = False
                log.warning("store: connected to PostgreSQL (%s) again", self.target)
        return conn

    def lost(self, exc: BaseException) -> None:
        with self._lock:
            if not self._down:
                self._down = True
                log.error(
                    "store: lost the connection to PostgreSQL (%s): %s; reconnecting",
                    self.target,
                    _describe(exc),
                )


class _Raw:
    """rendered.RawDb over an autocommit connection (store open)."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        cur = self._conn.execute(_pg_sql(sql), params)
        return cur.fetchall() if cur.description else []

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), rows)

    def columns(self, table: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        ).fetchall()
        return {str(r[0]) for r in rows}

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield


class _PgTx(SqlWrites, HookWrites, SqlReader):
    """One write transaction (StoreTx, HookTx); valid only inside its `with` block."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self._open = True
        self.failed = False  # a statement failed: PostgreSQL aborted the transaction

    def _check(self) -> None:
        if not self._open:
            raise RuntimeError("store transaction used after it ended")

    def _execute(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        try:
            return self._conn.execute(_pg_sql(sql), params)
        except (psycopg.Error, UnicodeEncodeError) as exc:
            self.failed = True
            raise _store_error(exc) from exc

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        self._check()
        cur = self._execute(sql, params)
        return cur.fetchall() if cur.description else []

    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        self._check()
        try:
            refuse_nul(params)
        except InternalError:
            self.failed = True
            raise
        if unique is no_unique:
            return self._execute(sql, params).rowcount
        # A UNIQUE violation must leave the transaction usable (as on SQLite): a savepoint.
        try:
            with self._conn.transaction():
                count = self._conn.execute(_pg_sql(sql), params).rowcount
        except pg_errors.UniqueViolation as exc:
            raise AllocateError(unique()) from exc
        except (psycopg.Error, UnicodeEncodeError) as exc:
            self.failed = True
            raise _store_error(exc) from exc
        return count

    def touch_hosts(self, host_ids: Sequence[int], now: float) -> None:
        """The bodies are TEXT holding codec's JSON; they are edited here as JSON, not decoded
        into hosts (the key order, and so every other byte of the body, is kept). Not jsonb:
        jsonb reorders keys and refuses the \\u0000 and lone surrogates bodies may hold."""
        self._check()
        if not host_ids:
            return
        rows = self._all("SELECT id, body FROM hosts WHERE id = ANY(?)", (list(host_ids),))
        stamp = str(int(now))
        updates = []
        for host_id, body in rows:
            data = json.loads(body)
            data["last_monitored"] = now
            data.setdefault("monitoring", {})["TIMESTAMP"] = stamp
            updates.append((json.dumps(data, ensure_ascii=True, separators=(",", ":")), host_id))
        if updates:
            try:
                with self._conn.cursor() as cur:
                    cur.executemany("UPDATE hosts SET body = %s WHERE id = %s", updates)
            except psycopg.Error as exc:
                self.failed = True
                raise _store_error(exc) from exc


    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[_Row]) -> None:
        """Insert rows as they are, ids included (`lazarus db copy`, app/dbtools.py); an
        identity column's sequence is then moved past the largest id, so the next event
        gets the id SQLite would have given it."""
        self._check()
        slots = ", ".join(["%s"] * len(columns))
        try:
            with self._conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({slots})", rows
                )
                if "id" in columns:
                    seq = cur.execute(
                        "SELECT pg_get_serial_sequence(%s, 'id')", (table,)
                    ).fetchone()
                    if seq and seq[0]:
                        cur.execute(
                            f"SELECT setval(%s, (SELECT MAX(id) FROM {table}))", (seq[0],)
                        )
        except psycopg.Error as exc:
            self.failed = True
            raise _store_error(exc) from exc


class PostgresStore(SqlReader):
    """The Store port (and HookStore) over PostgreSQL. Build with `open(conninfo)`."""

    def __init__(self, connector: _Connector, writer: _Conn) -> None:
        self._connector = connector
        self._writer: _Conn | None = writer
        self._lock = threading.RLock()
        self._tx_thread: int | None = None
        self._idle: deque[_Conn] = deque()
        self._readers: set[_Conn] = set()
        self._readers_lock = threading.Lock()
        self._refuse = False
        self._closed = False

    @classmethod
    def open(
        cls,
        conninfo: str,
        *,
        schema: Sequence[migrations.Migration] = migrations.MIGRATIONS,
        statement_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        reconnect_backoff_s: tuple[float, float] = (0.25, 4.0),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> PostgresStore:
        """Connect (a libpq conninfo string or postgresql:// URL), apply the migrations the
        database has not seen yet (store/pg_migrations.py) and fill missing rendered bodies.
        `schema` is for tests. InternalError when the database cannot be reached or refused."""
        connector = _Connector(
            conninfo,
            statement_timeout_s=statement_timeout_s,
            connect_timeout_s=connect_timeout_s,
            backoff=reconnect_backoff_s,
            monotonic=monotonic,
        )
        try:
            writer = connector.connect()
        except InternalError as exc:
            raise InternalError(f"Cannot open the store ({connector.target}): {exc}") from exc
        try:
            pg_migrations.apply(writer, schema)
            rendered.refresh(_Raw(writer))
        except psycopg.Error as exc:
            writer.close()
            raise InternalError(
                f"Cannot open the store ({connector.target}): {_describe(exc)}"
            ) from exc
        except BaseException:
            writer.close()
            raise
        return cls(connector, writer)

    # -- reads ----------------------------------------------------------------------------------
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        if self._closed:
            raise InternalError("The store is closed.")
        query = _pg_sql(sql)
        for attempt in (0, 1):
            try:
                conn, pooled = self._idle.pop(), True
            except IndexError:
                conn, pooled = self._add_reader(), False
            try:
                cur = conn.execute(query, params)
                rows = cur.fetchall() if cur.description else []
            except (psycopg.Error, UnicodeEncodeError) as exc:
                if isinstance(exc, psycopg.Error) and _dead(conn):
                    self._connector.lost(exc)
                    self._drop_reader(conn)
                    self._drop_idle_readers()
                    if pooled and attempt == 0:
                        continue  # it died while idle: once more on a new connection
                else:
                    self._return_reader(conn)
                raise _store_error(exc) from exc
            self._return_reader(conn)
            return rows
        raise AssertionError("unreachable")  # pragma: no cover

    def _add_reader(self) -> _Conn:
        conn = self._connector.connect(read_only=True)
        with self._readers_lock:
            self._readers.add(conn)
        return conn

    def _return_reader(self, conn: _Conn) -> None:
        if len(self._idle) < _MAX_IDLE_READERS and not self._closed:
            self._idle.append(conn)
        else:
            self._drop_reader(conn)

    def _drop_reader(self, conn: _Conn) -> None:
        with self._readers_lock:
            self._readers.discard(conn)
        _quietly_close(conn)

    def _drop_idle_readers(self) -> None:
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            self._drop_reader(conn)

    def schema_versions(self) -> list[tuple[int, str, str]]:
        """(version, name, applied_at UTC text) of the applied migrations, for status output."""
        return [
            (int(v), str(n), str(a))
            for v, n, a in self._all(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            )
        ]

    # -- writes ---------------------------------------------------------------------------------
    def _writer_conn(self) -> _Conn:
        """The writer, replaced when it broke (under self._lock)."""
        conn = self._writer
        if conn is None or _dead(conn):
            _quietly_close(conn)
            self._writer = None
            conn = self._connector.connect(session=self._refuse_sql())
            self._writer = conn
        return conn

    def _refuse_sql(self) -> str:
        return f"SET default_transaction_read_only = {'on' if self._refuse else 'off'}"

    def _begin(self) -> _Conn:
        conn = self._writer_conn()
        try:
            conn.execute(_BEGIN.encode())
            return conn
        except psycopg.Error as exc:
            if not _dead(conn):
                self._rollback(conn)
                raise _store_error(exc) from exc
            self._connector.lost(exc)
        conn = self._writer_conn()  # it broke while idle (a restart): once more, nothing sent
        try:
            conn.execute(_BEGIN.encode())
        except psycopg.Error as exc:
            self._rollback(conn)
            raise _store_error(exc) from exc
        return conn

    def _rollback(self, conn: _Conn) -> None:
        if _dead(conn):
            return
        try:
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            self._connector.lost(exc)
            _quietly_close(conn)

    @contextmanager
    def transaction(self) -> Iterator[_PgTx]:
        """A write transaction (READ COMMITTED + WRITE_LOCK, see the module docstring): commits
        on normal exit, rolls back on any exception, which is re-raised."""
        me = threading.get_ident()
        if self._tx_thread == me:
            raise RuntimeError("nested store transaction (use the outer tx)")
        if self._closed:
            raise InternalError("The store is closed.")
        with self._lock:
            if self._closed:
                raise InternalError("The store is closed.")
            self._tx_thread = me
            conn: _Conn | None = None
            try:
                conn = self._begin()
                tx = _PgTx(conn)
                try:
                    yield tx
                finally:
                    tx._open = False
                if tx.failed or conn.info.transaction_status == pq.TransactionStatus.INERROR:
                    raise InternalError(f"{STORE_ERROR}the transaction failed and was rolled back")
                try:
                    conn.execute("COMMIT")
                except psycopg.Error as exc:
                    if _dead(conn):
                        self._connector.lost(exc)
                    raise _store_error(exc) from exc
            except BaseException:
                if conn is not None:
                    self._rollback(conn)
                raise
            finally:
                self._tx_thread = None

    def refuse_writes(self, refuse: bool) -> None:
        """Make every write transaction fail as a read-only database would (the writer's
        default_transaction_read_only: a write raises a store error, nothing lands), or allow
        them again; kept across reconnects. For the simulator's store faults and tests."""
        with self._lock:
            self._refuse = refuse
            conn = self._writer
            if conn is not None and not _dead(conn):
                try:
                    conn.execute(self._refuse_sql().encode())
                except psycopg.Error as exc:
                    raise _store_error(exc) from exc

    def close(self) -> None:
        """Close every connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                readers, self._readers = self._readers, set()
            self._idle.clear()
            for conn in readers:
                _quietly_close(conn)
            _quietly_close(self._writer)
            self._writer = None
