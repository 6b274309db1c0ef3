"""What only the PostgreSQL store has to show (the rest of its contract: test_store.py): the
server restarted, stopped or crashed under it, a stuck database, two processes migrating at
once, and the SQL translation of store/pg_migrations.py.

These restart the session's server (helpers/pg_fixtures.py `pg_server`); other tests in the
worker only see a server that is up again, as each of these leaves it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from helpers.postgres import PgServer
from lazarus.domain.entities import Event, Host
from lazarus.domain.errors import InternalError, is_store_failure
from lazarus.store import pg_migrations
from lazarus.store.migrations import MIGRATIONS
from lazarus.store.postgres import WRITE_LOCK, PostgresStore


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[PgServer]:
    """The session's server, up again after the test whatever the test did to it."""
    try:
        yield pg_server
    finally:
        if not pg_server.running():
            pg_server.start()


@pytest.fixture
def store(pg: PgServer, pg_conninfo: str, clock: FakeMonotonic) -> Iterator[PostgresStore]:
    opened = PostgresStore.open(
        pg_conninfo, statement_timeout_s=0.5, reconnect_backoff_s=(2.0, 8.0), monotonic=clock
    )
    try:
        yield opened
    finally:
        opened.close()


def _add(store: PostgresStore, name: str) -> int:
    with store.transaction() as tx:
        host = tx.add_host(Host(id=-1, name=name))
        tx.record(Event(kind="note", line=f"{name} added", time=1.0))
    return host.id


def _warm_readers(store: PostgresStore, count: int = 4) -> None:
    """Put several connections in the reader pool (concurrent reads)."""
    barrier = threading.Barrier(count)

    def read() -> None:
        barrier.wait(timeout=30)
        store.hosts()

    threads = [threading.Thread(target=read) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


def test_a_server_restart_heals_without_an_error(pg: PgServer, store: PostgresStore) -> None:
    """Every pooled connection and the writer die with the restart; the next read and the
    next transaction find that out and use new connections, and the caller sees no error."""
    _add(store, "before")
    _warm_readers(store)
    pg.restart()
    assert [h.name for h in store.hosts()] == ["before"]
    assert [h.name for h in store.hosts()] == ["before"]  # the other pooled readers: dropped
    assert _add(store, "after") == 1
    assert [e.line for e in store.events()] == ["before added", "after added"]


def test_a_stopped_server_gives_store_errors_then_backs_off_then_heals(
    pg: PgServer, store: PostgresStore, clock: FakeMonotonic, caplog: pytest.LogCaptureFixture
) -> None:
    _add(store, "a")
    pg.stop()
    for call in (store.hosts, lambda: _add(store, "lost")):
        with pytest.raises(InternalError) as caught:
            call()
        assert is_store_failure(caught.value)  # what HA callers retry; never a psycopg error
    assert any("PostgreSQL" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    pg.start()
    # Within the backoff (2 s on the injected clock) no new connection is tried yet.
    with pytest.raises(InternalError):
        store.hosts()
    clock.now += 2.0
    assert [h.name for h in store.hosts()] == ["a"]
    assert _add(store, "b") == 1  # "lost" never took an id: it never reached the database
    assert any("again" in r.getMessage() for r in caplog.records)


def test_a_crash_mid_transaction_rolls_it_back(pg: PgServer, store: PostgresStore) -> None:
    _add(store, "kept")
    with pytest.raises(InternalError) as caught, store.transaction() as tx:
        tx.add_host(Host(id=-1, name="in flight"))
        pg.kill()
        tx.record(Event(kind="note", line="never", time=2.0))
    assert is_store_failure(caught.value)
    pg.start()
    assert [h.name for h in store.hosts()] == ["kept"]
    assert [e.line for e in store.events()] == ["kept added"]


def test_a_writer_elsewhere_holding_the_lock_times_out_not_hangs(
    pg: PgServer, pg_conninfo: str, store: PostgresStore
) -> None:
    """Another session holds the write lock (a stuck controller, an operator's session): a
    transaction waits at most statement_timeout, then fails as a store error; reads go on."""
    _add(store, "a")
    with psycopg.connect(pg_conninfo, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        with pytest.raises(InternalError, match="statement timeout"), store.transaction() as tx:
            tx.add_host(Host(id=-1, name="b"))
        assert [h.name for h in store.hosts()] == ["a"]
        other.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
    assert _add(store, "b") == 1


def test_a_locked_table_times_out_a_read(
    pg: PgServer, pg_conninfo: str, store: PostgresStore
) -> None:
    _add(store, "a")
    with psycopg.connect(pg_conninfo) as other:  # a transaction holding an exclusive lock
        other.execute("LOCK TABLE hosts IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(InternalError, match="statement timeout"):
            store.hosts()
        other.rollback()
    assert [h.name for h in store.hosts()] == ["a"]


def test_two_processes_opening_a_new_database_at_once_migrate_it_once(
    pg: PgServer, pg_conninfo: str
) -> None:
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def open_it() -> None:
        try:
            barrier.wait(timeout=30)
            opened.append(PostgresStore.open(pg_conninfo))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == [] and len(opened) == 3
        versions = [v for v, _, _ in opened[0].schema_versions()]
        assert versions == [m.number for m in MIGRATIONS]
    finally:
        for store in opened:
            store.close()


def test_an_unreachable_server_is_a_clear_error(pg: PgServer) -> None:
    with pytest.raises(InternalError, match="Cannot open the store") as caught:
        PostgresStore.open(f"host=127.0.0.1 port={pg.port} dbname=nosuchdb user=lazarus")
    assert "nosuchdb" in str(caught.value)


def test_translate_keeps_literals_and_maps_types() -> None:
    sql = (
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, x real, n Integer,"
        " s TEXT DEFAULT 'INTEGER REAL instr(');\n"
        "UPDATE t SET n = instr(s, ' ') WHERE ifnull(s, '') <> '';"
    )
    assert pg_migrations.translate(sql) == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
        " x DOUBLE PRECISION, n BIGINT, s TEXT DEFAULT 'INTEGER REAL instr(');\n"
        "UPDATE t SET n = strpos(s, ' ') WHERE coalesce(s, '') <> '';"
    )
    # Every shipped migration translates (the store opens: test_store.py), none overridden.
    assert all(pg_migrations.pg_sql(m) for m in MIGRATIONS)
