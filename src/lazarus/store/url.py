"""Which store to open, from one URL: `open_store()`, for `lazarus serve --db` (setting DB) and
the `lazarus db` commands.

    sqlite:PATH                      a SQLite file (a relative PATH is from the current
                                     directory); "" (the default): <data dir>/lazarus.db
    postgresql://USER@HOST:PORT/DB   PostgreSQL (also postgres://, and libpq's query
                                     parameters such as ?sslmode=require; HOST may be a
                                     %-encoded socket directory)

The PostgreSQL password is never in the URL (a URL with one is refused, so it cannot reach a
command line, a config file or a log): it comes from `password_file` (setting
DB_PASSWORD_FILE: the password on its first line; the file must not be readable by group or
others) or from libpq's own mechanisms (PGPASSFILE or ~/.pgpass, PGPASSWORD). Logs and API
output show the URL through domain/secrets.py `mask_db_url` (scheme, host, port, database).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from lazarus.domain.errors import LazarusError

from .sqlite import SqliteStore

if TYPE_CHECKING:
    from .postgres import PostgresStore

DEFAULT_FILE = "lazarus.db"
_PG_SCHEMES = ("postgresql://", "postgres://")


class StoreUrlError(LazarusError):
    """A store URL or password file that cannot be used (the message says why)."""


def kind(url: str) -> str:
    """"sqlite" or "postgresql" (StoreUrlError for anything else)."""
    if not url or url.startswith("sqlite:"):
        return "sqlite"
    if url.startswith(_PG_SCHEMES):
        return "postgresql"
    raise StoreUrlError(
        f"unknown store URL {url.split(':', 1)[0]!r}: use sqlite:PATH or "
        "postgresql://USER@HOST:PORT/DATABASE"
    )


def sqlite_path(url: str, data_dir: Path) -> Path:
    if not url:
        return data_dir / DEFAULT_FILE
    path = url[len("sqlite:") :]
    if path.startswith("//"):  # sqlite:///abs/path
        path = path[2:]
    if not path:
        raise StoreUrlError("sqlite: needs a path (sqlite:/var/lib/lazarus/lazarus.db)")
    return Path(path).expanduser()


def check_pg_url(url: str) -> None:
    """Refuse a PostgreSQL URL carrying a password (in the user part or as a parameter)."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        raise StoreUrlError(f"bad PostgreSQL URL: {exc}") from None
    params = {k.lower() for k in parse_qs(parts.query, keep_blank_values=True)}
    if has_password or "password" in params:
        raise StoreUrlError(
            "the PostgreSQL URL must not contain a password: put it in a 0600 file "
            "(--db-password-file, DB_PASSWORD_FILE) or use ~/.pgpass / PGPASSFILE / PGPASSWORD"
        )


def read_password_file(path: Path) -> str:
    """The first line of a password file that only its owner can read."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise StoreUrlError(f"password file {path} is not a regular file")
        if mode & 0o077:
            raise StoreUrlError(
                f"password file {path} is readable by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            )
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise StoreUrlError(f"cannot read the password file {path}: {exc.strerror}") from None
    if not lines or not lines[0]:
        raise StoreUrlError(f"password file {path} is empty")
    return lines[0]


def validate(url: str, password_file: Path | None = None) -> None:
    """Check a store URL and password file without opening anything (StoreUrlError): what
    `lazarus serve` does before it starts, so a bad setting is one line, not a traceback."""
    url = url.strip()
    if kind(url) == "sqlite":
        if password_file is not None:
            raise StoreUrlError("a password file is for PostgreSQL, not for a SQLite store")
        if url:
            sqlite_path(url, Path("."))
        return
    check_pg_url(url)
    if password_file is not None:
        read_password_file(password_file)


def open_store(
    url: str,
    *,
    data_dir: Path,
    password_file: Path | None = None,
    statement_timeout_s: float = 5.0,
    connect_timeout_s: float = 5.0,
) -> SqliteStore | PostgresStore:
    """Open (creating and migrating as needed) the store `url` names (module docstring).
    StoreUrlError for a bad URL or password file; InternalError when the database cannot be
    opened. psycopg is imported only for a PostgreSQL URL."""
    url = url.strip()
    validate(url, password_file)
    if kind(url) == "sqlite":
        return SqliteStore.open(sqlite_path(url, data_dir))
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise StoreUrlError(
            f"PostgreSQL needs psycopg (pip install 'lazarus[postgres]'): {exc}"
        ) from None
    conninfo = url
    if password_file is not None:
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(url, password=read_password_file(password_file))
    return PostgresStore.open(
        conninfo, statement_timeout_s=statement_timeout_s, connect_timeout_s=connect_timeout_s
    )
