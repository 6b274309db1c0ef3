"""store/url.py: choosing the store from one URL (`lazarus serve --db`, setting DB), and the
PostgreSQL password that never travels in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.postgres import PASSWORD, PASSWORD_ROLE, PgServer
from lazarus.app import config
from lazarus.domain.errors import InternalError
from lazarus.domain.secrets import mask_db_url
from lazarus.store.postgres import PostgresStore
from lazarus.store.sqlite import SqliteStore
from lazarus.store.url import StoreUrlError, kind, open_store, read_password_file, sqlite_path


def test_the_default_is_the_data_directorys_sqlite_file(tmp_path: Path) -> None:
    store = open_store("", data_dir=tmp_path)
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "lazarus.db").is_file()
    finally:
        store.close()
    assert sqlite_path("sqlite:/var/x.db", tmp_path) == Path("/var/x.db")
    assert sqlite_path("sqlite:///var/x.db", tmp_path) == Path("/var/x.db")
    other = open_store(f"sqlite:{tmp_path / 'other.db'}", data_dir=tmp_path / "unused")
    other.close()
    assert (tmp_path / "other.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://lazarus:hunter2@db1/lazarus",
        "postgres://lazarus:@db1:5432/lazarus",
        "postgresql://lazarus@db1/lazarus?sslmode=require&password=hunter2",
        "postgresql://lazarus@db1/lazarus?PASSWORD=hunter2",
    ],
)
def test_a_url_with_a_password_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreUrlError, match="must not contain a password") as caught:
        open_store(url, data_dir=tmp_path)
    assert "hunter2" not in str(caught.value)


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreUrlError, match="unknown store URL 'mysql'"):
        kind("mysql://x@y/z")
    with pytest.raises(StoreUrlError, match="needs a path"):
        open_store("sqlite:", data_dir=tmp_path)
    with pytest.raises(StoreUrlError, match="bad PostgreSQL URL"):
        open_store("postgresql://x@db1:notaport/z", data_dir=tmp_path)
    with pytest.raises(StoreUrlError, match="for PostgreSQL"):
        open_store("", data_dir=tmp_path, password_file=tmp_path / "pw")


def test_password_files_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\nignored\n")
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(StoreUrlError, match="readable by group or others") as caught:
            read_password_file(path)
        assert "s3cret" not in str(caught.value)
    path.chmod(0o600)
    assert read_password_file(path) == "s3cret"
    path.write_text("")
    with pytest.raises(StoreUrlError, match="empty"):
        read_password_file(path)
    with pytest.raises(StoreUrlError, match="cannot read"):
        read_password_file(tmp_path / "missing")


def test_masking_shows_the_place_never_the_credentials() -> None:
    assert mask_db_url("postgresql://ops@db1:5433/lz?sslmode=require&sslkey=/k") == (
        "postgresql://db1:5433/lz"
    )
    assert mask_db_url("postgres://ops:pw@db1/lz") == "postgresql://db1/lz"
    assert mask_db_url("sqlite:/var/lib/lazarus/lazarus.db") == "sqlite:/var/lib/lazarus/lazarus.db"


def test_the_setting_comes_from_the_config_file_the_environment_and_the_flag(
    tmp_path: Path,
) -> None:
    (tmp_path / "lazarus.conf").write_text('DB = "postgresql://a@file/db"\n')
    settings, _ = config.load(tmp_path, env={})
    assert settings.db == "postgresql://a@file/db"
    settings, _ = config.load(tmp_path, env={"LAZARUS_DB": "postgresql://a@env/db"})
    assert settings.db == "postgresql://a@env/db"
    settings, _ = config.load(
        tmp_path,
        env={"LAZARUS_DB_PASSWORD_FILE": "/etc/lazarus/db.pw"},
        overrides={"DB": "sqlite:/x.db"},
    )
    assert (settings.db, settings.db_password_file) == ("sqlite:/x.db", "/etc/lazarus/db.pw")
    settings.db = "postgresql://ops@db1:5432/lz"
    assert settings.to_config()["DB"] == "postgresql://db1:5432/lz"  # one.system.config


def test_the_password_comes_from_the_file_or_libpq(
    pg_server: PgServer, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `secret` role must give its password over TCP (helpers/postgres.py pg_hba)."""
    url = pg_server.url(pg_database, user=PASSWORD_ROLE)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    with pytest.raises(InternalError, match="Cannot open the store") as caught:
        open_store(url, data_dir=tmp_path, password_file=None)
    assert "password" in str(caught.value)
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    store = open_store(url, data_dir=tmp_path, password_file=path)
    try:
        assert isinstance(store, PostgresStore)
        assert store.hosts() == []
    finally:
        store.close()
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_server.port}:*:{PASSWORD_ROLE}:{PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    open_store(url, data_dir=tmp_path).close()


def test_serve_refuses_a_password_in_the_url_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lazarus.cli.main import lazarus

    result = CliRunner().invoke(
        lazarus,
        ["serve", "--port", "0", "--data-dir", str(tmp_path), "--db", "postgresql://a:pw1@h/d"],
    )
    assert result.exit_code != 0
    assert "must not contain a password" in result.output and "pw1" not in result.output
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    pw.chmod(0o644)
    result = CliRunner().invoke(
        lazarus,
        ["serve", "--port", "0", "--data-dir", str(tmp_path), "--db", "postgresql://a@h/d",
         "--db-password-file", str(pw)],
    )  # fmt: skip
    assert result.exit_code != 0 and "chmod 600" in result.output
