"""`lazarus db ...`: the controller's database, offline (no daemon needed, none may be writing).

    lazarus db migrate [--db URL]            create the schema, or bring it to this version
    lazarus db status  [--db URL]            the applied migrations
    lazarus db check   [--db URL]            integrity: ids, the hook outbox, incident records
    lazarus db copy --from URL --to URL      move an installation between stores, verified
    lazarus db backup --to FILE [--db URL]   an online copy of a SQLite store (PostgreSQL:
                                             pg_dump, docs/operations.md)

A URL is `sqlite:PATH` or `postgresql://user@host:port/dbname` (the password from
--db-password-file, a 0600 file, or libpq's own PGPASSFILE / ~/.pgpass; never in the URL).
Without --db: the daemon's own setting (DB in lazarus.conf, $LAZARUS_DB), else the data
directory's lazarus.db. What each check and the copy do: app/dbtools.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lazarus.domain.errors import LazarusError

from .output import CliError

_DB_HELP = "Store URL: sqlite:PATH or postgresql://user@host/db [default: the daemon's]."
_PW_HELP = "File (mode 0600) holding the PostgreSQL password [default: libpq's]."
_DIR_HELP = "The daemon's data directory [default: $LAZARUS_DATA_DIR or the usual one]."


def _open(url: str | None, data_dir: Path | None, password_file: Path | None
          ) -> tuple[Any, str]:  # fmt: skip
    """(store, its URL with any secret masked)."""
    from lazarus.app import config, dbtools

    try:
        settings, data = config.load(data_dir, None)
        return dbtools.open_url(url, settings, data, password_file)
    except (config.ConfigError, dbtools.CopyError) as exc:
        raise CliError(str(exc)) from exc
    except Exception as exc:  # the store's own errors: one line, never a traceback
        raise CliError(f"cannot open the store: {exc}") from exc


def _options(func: Any) -> Any:
    func = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                        default=None, help=_DIR_HELP)(func)  # fmt: skip
    func = click.option("--db-password-file", "password_file",
                        type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help=_PW_HELP)(func)  # fmt: skip
    return click.option("--db", "url", metavar="URL", default=None, help=_DB_HELP)(func)


@click.group("db")
def db() -> None:
    """The controller's database: schema, integrity, moving between SQLite and PostgreSQL.

    Run these while no `lazarus serve` writes the store (copy and check read a moment of it).

    \b
    Example: lazarus db copy --from sqlite:/var/lib/lazarus/lazarus.db \\
                 --to postgresql://lazarus@db1/lazarus --db-password-file /etc/lazarus/pgpass
    """


@db.command()
@_options
def migrate(url: str | None, password_file: Path | None, data_dir: Path | None) -> None:
    """Create the schema, or apply the migrations this version adds (refuses a newer one).

    \b
    Example: lazarus db migrate --db postgresql://lazarus@db1/lazarus"""
    store, shown = _open(url, data_dir, password_file)
    try:
        versions = store.schema_versions()
    finally:
        store.close()
    click.echo(f"{shown}: schema version {versions[-1][0]} ({versions[-1][1]})")


@db.command()
@_options
def status(url: str | None, password_file: Path | None, data_dir: Path | None) -> None:
    """The applied migrations, oldest first.

    \b
    Example: lazarus db status --data-dir /var/lib/lazarus"""
    store, shown = _open(url, data_dir, password_file)
    try:
        versions = store.schema_versions()
    finally:
        store.close()
    click.echo(shown)
    for version, name, applied in versions:
        click.echo(f"  {version:3d}  {name:<24}  {applied}")


@db.command()
@_options
def check(url: str | None, password_file: Path | None, data_dir: Path | None) -> None:
    """Report damage: reused ids, a lost outbox cursor, orphaned hook jobs, bad incidents.

    Exit status 0 when nothing is wrong, 1 otherwise (one line per finding).

    \b
    Example: lazarus db check --db sqlite:/var/lib/lazarus/lazarus.db"""
    from lazarus.app import dbtools

    store, shown = _open(url, data_dir, password_file)
    try:
        found = dbtools.check(store)
    except LazarusError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    for line in found:
        click.echo(line)
    if found:
        raise CliError(f"{shown}: {len(found)} problem(s) found")
    click.echo(f"{shown}: no problems found")


@db.command()
@click.option("--from", "source_url", metavar="URL", required=True, help="The store to read.")
@click.option(
    "--to",
    "target_url",
    metavar="URL",
    required=True,
    help="A new, empty store (created and migrated if needed).",
)
@click.option(
    "--from-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=_PW_HELP,
)
@click.option(
    "--to-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=_PW_HELP,
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=_DIR_HELP + " Its lock is taken: no daemon may run on it meanwhile.",
)
def copy(source_url: str, target_url: str, from_password_file: Path | None,
         to_password_file: Path | None, data_dir: Path | None) -> None:  # fmt: skip
    """Copy every row (ids, counters, events, hooks and their log) into an empty store, in
    one transaction, then read the target back and compare it with the source.

    \b
    Example: lazarus db copy --from sqlite:/var/lib/lazarus/lazarus.db \\
                 --to postgresql://lazarus@db1/lazarus"""
    from lazarus.app import config, datadir, dbtools

    try:
        _, data = config.load(data_dir, None)
    except config.ConfigError as exc:
        raise CliError(str(exc)) from exc
    lock = datadir.DataDirLock(data)
    try:
        lock.acquire()
    except datadir.DataDirBusy as exc:
        raise CliError(f"{exc}: stop it before copying its store") from exc
    try:
        source, shown_from = _open(source_url, data_dir, from_password_file)
        try:
            target, shown_to = _open(target_url, data_dir, to_password_file)
            try:
                counts = dbtools.copy(source, target)
            except (dbtools.CopyError, LazarusError) as exc:
                raise CliError(str(exc)) from exc
            finally:
                target.close()
        finally:
            source.close()
    finally:
        lock.release()
    total = sum(counts.values())
    click.echo(f"copied {total} rows from {shown_from} to {shown_to}, verified identical:")
    for name, n in counts.items():
        click.echo(f"  {name:<11} {n}")


@db.command()
@click.option(
    "--to",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The backup file to write (must not exist).",
)
@_options
def backup(path: Path, url: str | None, password_file: Path | None,
           data_dir: Path | None) -> None:  # fmt: skip
    """An online, consistent copy of a SQLite store (safe while the daemon runs). For
    PostgreSQL use pg_dump (docs/operations.md).

    \b
    Example: lazarus db backup --to /backup/lazarus-2026-12-02.db"""
    from lazarus.app import dbtools

    store, shown = _open(url, data_dir, password_file)
    try:
        dbtools.backup(store, path)
    except (dbtools.CopyError, LazarusError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"backed up {shown} to {path} (mode 0600)")
