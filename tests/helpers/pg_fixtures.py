"""Pytest fixtures of the throwaway PostgreSQL server (helpers/postgres.py); tests/conftest.py
imports them, so every test can ask for them:

- `pg_server`: one PgServer per test session (so one per xdist worker), started on first use
  and always destroyed at the session's end (fixture teardown, and atexit if that never ran).
  Skips with the reason when the binaries are missing, unless LAZARUS_REQUIRE_PG=1 (.ci/run),
  where that is a failure.
- `pg_conninfo`: a fresh empty schema per test (a libpq conninfo whose search_path is it),
  dropped after: what the contract tests use (1 ms instead of ~0.4 s for a database).
- `pg_database`, `pg_url`: a fresh database per test (its name; its postgresql:// URL, what
  `lazarus serve --db` takes), dropped after.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator

import pytest

from helpers.postgres import PG_BIN, PgServer, missing_binaries


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("LAZARUS_REQUIRE_PG") == "1":
        pytest.fail(f"{reason} (LAZARUS_REQUIRE_PG=1)")
    pytest.skip(f"{reason}: install postgresql-15 (scripts/debian-packages.txt) to run it")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    missing = missing_binaries()
    if missing:
        _skip_or_fail(f"PostgreSQL binaries missing in {PG_BIN}: {', '.join(missing)}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip_or_fail("psycopg is not installed (the `postgres` extra)")
    server = PgServer.create()
    atexit.register(server.destroy)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """The name of a fresh database, dropped after the test."""
    pg_server.create_database(name := pg_server.next_name())
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def pg_conninfo(pg_server: PgServer) -> Iterator[str]:
    """The conninfo of a fresh, empty place to keep a store: a new schema (PgServer.create_schema),
    dropped after the test."""
    name = pg_server.next_name()
    conninfo = pg_server.create_schema(name)
    try:
        yield conninfo
    finally:
        pg_server.drop_schema(name)


@pytest.fixture
def pg_url(pg_server: PgServer, pg_database: str) -> str:
    return pg_server.url(pg_database)
