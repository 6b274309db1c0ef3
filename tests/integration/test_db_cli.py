"""`lazarus db ...` (cli/db.py) on real stores: migrate, status, check, copy, backup.

In-process (click's CliRunner); the PostgreSQL cases use the throwaway server
(helpers/postgres.py). What `copy` verifies row by row is tested in
tests/contract/test_store_copy.py; the documents a daemon serves before and after a copy, in
tests/integration/test_db_copy.py.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from lazarus.cli.main import lazarus
from lazarus.domain.entities import Host
from lazarus.store.migrations import MIGRATIONS
from lazarus.store.sqlite import SqliteStore


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(lazarus, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_migrate_and_status_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'x' / 'lazarus.db'}"
    code, out = run("db", "migrate", "--db", url, "--data-dir", str(tmp_path / "d"))
    assert code == 0, out
    assert f"schema version {len(MIGRATIONS)}" in out
    code, out = run("db", "status", "--db", url, "--data-dir", str(tmp_path / "d"))
    assert code == 0 and MIGRATIONS[0].name in out and MIGRATIONS[-1].name in out


def test_without_db_the_data_directorys_file_is_used(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = run("db", "migrate", "--data-dir", str(data))
    assert code == 0, out
    assert (data / "lazarus.db").exists()
    assert str(data / "lazarus.db") in out


def test_check_passes_a_healthy_store_and_fails_a_damaged_one(tmp_path: Path) -> None:
    path = tmp_path / "s" / "lazarus.db"
    store = SqliteStore.open(path)
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name="n0"))
        tx.add_host(Host(id=-1, name="n1"))
    store.close()
    args = ("db", "check", "--db", f"sqlite:{path}", "--data-dir", str(tmp_path / "d"))
    code, out = run(*args)
    assert code == 0 and "no problems found" in out
    raw = sqlite3.connect(path)
    raw.execute("UPDATE counters SET next_id = 0 WHERE kind = 'host'")
    raw.commit()
    raw.close()
    code, out = run(*args)
    assert code == 1
    assert "counter 'host' is 0 but hosts holds id 1" in out
    assert "1 problem(s) found" in out


def test_copy_sqlite_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "src" / "lazarus.db"
    store = SqliteStore.open(source)
    with store.transaction() as tx:
        for n in range(3):
            tx.add_host(Host(id=-1, name=f"node{n}"))
    store.close()
    data = tmp_path / "data"
    code, out = run("db", "copy", "--from", f"sqlite:{source}", "--to", pg_url,
                    "--data-dir", str(data))  # fmt: skip
    assert code == 0, out
    assert "verified identical" in out and "hosts       3" in out
    assert "@" not in out.split("to ", 1)[1].split(",")[0]  # the user is not shown
    # copied once: a second copy into the same target is refused, nothing changes
    code, out = run("db", "copy", "--from", f"sqlite:{source}", "--to", pg_url,
                    "--data-dir", str(data))  # fmt: skip
    assert code == 1 and "not empty" in out
    back = tmp_path / "back" / "lazarus.db"
    code, out = run("db", "copy", "--from", pg_url, "--to", f"sqlite:{back}",
                    "--data-dir", str(data))  # fmt: skip
    assert code == 0, out
    copied = SqliteStore.open(back)
    try:
        assert [h.name for h in copied.hosts()] == ["node0", "node1", "node2"]
    finally:
        copied.close()


def test_copy_refuses_while_a_daemon_holds_the_data_directory(tmp_path: Path) -> None:
    from lazarus.app.datadir import DataDirLock

    data = tmp_path / "data"
    lock = DataDirLock(data)
    lock.acquire()
    try:
        code, out = run("db", "copy", "--from", f"sqlite:{tmp_path / 'a.db'}",
                        "--to", f"sqlite:{tmp_path / 'b.db'}", "--data-dir", str(data))  # fmt: skip
    finally:
        lock.release()
    assert code == 1 and "stop it before copying" in out


def test_a_url_with_a_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    code, out = run("db", "check", "--db", "postgresql://u:hunter2@127.0.0.1/x",
                    "--data-dir", str(tmp_path))  # fmt: skip
    assert code == 1
    assert "must not contain a password" in out
    assert "hunter2" not in out


def test_backup_of_sqlite_is_a_0600_consistent_copy(tmp_path: Path) -> None:
    path = tmp_path / "s" / "lazarus.db"
    store = SqliteStore.open(path)
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name="kept"))
    store.close()
    target = tmp_path / "backup.db"
    code, out = run("db", "backup", "--to", str(target), "--db", f"sqlite:{path}",
                    "--data-dir", str(tmp_path / "d"))  # fmt: skip
    assert code == 0, out
    assert os.stat(target).st_mode & 0o777 == 0o600
    restored = SqliteStore.open(target)
    try:
        assert [h.name for h in restored.hosts()] == ["kept"]
    finally:
        restored.close()
    code, out = run("db", "backup", "--to", str(target), "--db", f"sqlite:{path}",
                    "--data-dir", str(tmp_path / "d"))  # fmt: skip
    assert code == 1 and "never overwrites" in out


def test_backup_of_postgresql_points_to_pg_dump(tmp_path: Path, pg_url: str) -> None:
    code, out = run("db", "backup", "--to", str(tmp_path / "b.db"), "--db", pg_url,
                    "--data-dir", str(tmp_path / "d"))  # fmt: skip
    assert code == 1 and "pg_dump" in out


@pytest.mark.parametrize("sub", ["migrate", "status", "check", "copy", "backup"])
def test_every_subcommand_has_help(sub: str) -> None:
    code, out = run("db", sub, "--help")
    assert code == 0 and "Usage" in out
