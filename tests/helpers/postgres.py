"""The throwaway PostgreSQL server of the tests: lazarus.app.pgserver's, with a role that must
give its password over TCP (`PASSWORD_ROLE`, `PASSWORD`) for the password-file tests.

    server = PgServer.create()                # fsync off: a test server never outlives the run
    conninfo = server.create_database("t1")   # "host=127.0.0.1 port=... dbname=t1 user=lazarus"
    conninfo = server.create_schema("s1")     # faster: a schema of database lazarus
    server.url("t1")                          # "postgresql://lazarus@127.0.0.1:PORT/t1"

The pytest fixtures (`pg_server`: one per session and xdist worker; `pg_conninfo`,
`pg_url`: a fresh database per test) are in helpers/pg_fixtures.py, loaded by tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

from lazarus.app import pgserver
from lazarus.app.pgserver import PG_BIN, USER, missing_binaries

PASSWORD_ROLE = "secret"
PASSWORD = "s3cret-for-tests"

__all__ = ["PASSWORD", "PASSWORD_ROLE", "PG_BIN", "USER", "PgServer", "missing_binaries"]


class PgServer(pgserver.PgServer):
    @classmethod
    def create(cls, base: Path | None = None, **_: object) -> PgServer:  # type: ignore[override]
        server = super().create(base, password_roles={PASSWORD_ROLE: PASSWORD})
        assert isinstance(server, PgServer)
        return server

    def create_database(self, name: str | None = None, owner: str | None = PASSWORD_ROLE) -> str:
        return super().create_database(name, owner)
