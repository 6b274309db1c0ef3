"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temporary directory.

    server = PgServer.create()          # initdb (as the `postgres` OS user when root), start
    conninfo = server.create_database("t1")   # "host=127.0.0.1 port=... dbname=t1 user=lazarus"
    conninfo = server.create_schema("s1")     # faster: a schema of database lazarus
    server.url("t1")                    # "postgresql://lazarus@127.0.0.1:PORT/t1"
    server.restart(); server.stop(); server.start(); server.kill()
    server.destroy()                    # stop (immediate) and remove the directory

It listens on loopback on a free port and on a unix socket in its directory; every local
and loopback connection is trusted (tests only), except the role `secret`, which must give its
password (`PASSWORD_ROLE`, `PASSWORD`) over TCP, for the password-file tests. fsync is off
(this cluster never outlives the test session, nor an OS crash); synchronous_commit stays on, so
a commit survives `kill()` (a crash of the server) as in production.

The pytest fixtures (`pg_server`: one per session and xdist worker; `pg_conninfo`,
`pg_url`: a fresh database per test) are in tests/pg_fixtures.py, loaded by tests/conftest.py.
Binaries: /usr/lib/postgresql/15/bin (Debian's postgresql-15), or $LAZARUS_PG_BIN.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("LAZARUS_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "lazarus"
PASSWORD_ROLE = "secret"
PASSWORD = "s3cret-for-tests"


def missing_binaries() -> list[str]:
    return [name for name in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / name).is_file()]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.data = base / "data"
        self.socket_dir = base
        self.port = port
        self.log = base / "server.log"
        self._as_postgres = os.geteuid() == 0
        self._dbs = 0
        self._made: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------------
    @classmethod
    def create(cls) -> PgServer:
        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"PostgreSQL binaries missing in {PG_BIN}: {', '.join(missing)}")
        base = Path(tempfile.mkdtemp(prefix="lazarus-pg-"))
        server = cls(base, _free_port())
        try:
            if server._as_postgres:
                pw = pwd.getpwnam("postgres")
                os.chown(base, pw.pw_uid, pw.pw_gid)
            server._pg(
                "initdb", "-D", str(server.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                "--no-locale", "--no-sync",
            )  # fmt: skip
            (server.data / "pg_hba.conf").write_text(
                f"local all all trust\n"
                f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
                f"host all all 127.0.0.1/32 trust\n"
            )
            server.start()
            server.sql(
                "postgres",
                f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'",
            )
        except BaseException:
            server.destroy()
            raise
        return server

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._as_postgres:
            kwargs = {"user": "postgres", "group": "postgres", "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload,no-any-return]
            [str(PG_BIN / tool), *args],
            capture_output=True, text=True, check=check, timeout=120, cwd=self.base, **kwargs,
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base}"
            " -c fsync=off -c full_page_writes=off"
            " -c shared_buffers=16MB -c max_connections=60 -c max_wal_size=64MB"
        )
        self._pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l",
                 str(self.log), "-o", options)  # fmt: skip

    def stop(self) -> None:
        self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data))

    def restart(self) -> None:
        """pg_ctl restart -m fast, as stop + start (restart forgets the log file, and the
        new postmaster would then hold our output pipe open)."""
        self.stop()
        self.start()

    def running(self) -> bool:
        return self._pg("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and its children (a crash); `start()` recovers."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        children = _children(pid)
        for victim in (pid, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in (pid, *children)) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The postmaster is not our child: nobody may reap it here (a container's init), and
        # its zombie would pass postgres's "is the process of the lock file alive?" checks.
        for lock in (self.data / "postmaster.pid", self.base / f".s.PGSQL.{self.port}.lock"):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def destroy(self) -> None:
        """Stop (immediately) and remove the directory. Idempotent; never raises."""
        if self.data.exists() and self.postmaster_pid() is not None:
            result = self._pg("pg_ctl", "stop", "-w", "-t", "30", "-m", "immediate", "-D",
                              str(self.data), check=False)  # fmt: skip
            if result.returncode != 0:
                self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases --------------------------------------------------------------------------------
    def conninfo(self, dbname: str, user: str = USER) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def url(self, dbname: str, user: str = USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def sql(self, dbname: str, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo(dbname), autocommit=True) as conn:
            conn.execute(statement.encode())

    def next_name(self) -> str:
        self._dbs += 1
        return f"t{os.getpid()}_{self._dbs}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its conninfo."""
        name = name or self.next_name()
        self.sql("postgres", f"CREATE DATABASE {name}")
        self.sql("postgres", f"ALTER DATABASE {name} OWNER TO {PASSWORD_ROLE}")
        return self.conninfo(name)

    def create_schema(self, name: str | None = None, dbname: str = "lazarus") -> str:
        """A new empty schema in `dbname` (created once), as the conninfo of a database whose
        search_path is that schema: as good as a fresh database for one test, 1 ms instead of
        ~0.4 s. (Advisory locks are per database: stores of two such schemas share them.)"""
        if dbname not in self._made:
            self.sql("postgres", f"CREATE DATABASE {dbname}")
            self._made.add(dbname)
        name = name or self.next_name()
        self.sql(dbname, f"CREATE SCHEMA {name}")
        return f"{self.conninfo(dbname)} options='-c search_path={name}'"

    def drop_schema(self, name: str, dbname: str = "lazarus") -> None:
        with contextlib.suppress(Exception):
            self.sql(dbname, f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.sql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (the postmaster is not our child: pg_ctl's) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
