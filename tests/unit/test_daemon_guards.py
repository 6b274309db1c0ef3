"""The daemon's start-up guards (app/credentials.py, app/datadir.py): the oneadmin credentials
are made consistent when the one_auth file is lost, and one data directory serves one daemon."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lazarus.api.auth import read_auth_file, split_session, verify_password
from lazarus.app.credentials import ensure_admin
from lazarus.app.datadir import DataDirBusy, DataDirLock
from lazarus.store.sqlite import SqliteStore


def test_first_start_generates_credentials(tmp_path: Path) -> None:
    store = SqliteStore.memory()
    path, generated = ensure_admin(store, tmp_path / "one_auth")
    assert generated
    name, password = split_session(read_auth_file(path))
    user = store.user_by_name(name)
    assert user is not None and verify_password(password, user.password_hash)


def test_lost_auth_file_gets_a_new_password_and_its_hash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a new password was written to the file but the old hash kept, so nothing
    could authenticate any more."""
    store = SqliteStore.memory()
    auth_file = tmp_path / "one_auth"
    ensure_admin(store, auth_file)
    old = read_auth_file(auth_file)
    auth_file.unlink()
    with caplog.at_level(logging.WARNING):
        _, generated = ensure_admin(store, auth_file)
    assert generated
    session = read_auth_file(auth_file)
    assert session != old
    name, password = split_session(session)
    user = store.user_by_name(name)
    assert user is not None and verify_password(password, user.password_hash)
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    text = caplog.text
    assert "missing" in text and str(auth_file) in text
    assert password not in text and user.password_hash not in text


def test_existing_file_and_user_are_kept(tmp_path: Path) -> None:
    store = SqliteStore.memory()
    auth_file = tmp_path / "one_auth"
    ensure_admin(store, auth_file)
    session = read_auth_file(auth_file)
    _, generated = ensure_admin(store, auth_file)
    assert not generated and read_auth_file(auth_file) == session


def test_file_not_matching_the_stored_hash_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore.memory()
    auth_file = tmp_path / "one_auth"
    ensure_admin(store, auth_file)
    auth_file.write_text("oneadmin:edited-by-hand\n")
    with caplog.at_level(logging.ERROR):
        ensure_admin(store, auth_file)
    assert "does not match" in caplog.text and "edited-by-hand" not in caplog.text


def test_failed_store_write_leaves_no_new_file(tmp_path: Path) -> None:
    store = SqliteStore.memory()
    auth_file = tmp_path / "one_auth"
    ensure_admin(store, auth_file)
    auth_file.unlink()
    user = store.user_by_name("oneadmin")
    assert user is not None

    class Broken(Exception):
        pass

    original = store.transaction

    @contextmanager
    def failing() -> Iterator[object]:  # the commit fails after the body ran
        with original() as tx:
            yield tx
            raise Broken("disk full")

    store.transaction = failing  # type: ignore[method-assign]
    with pytest.raises(Broken):
        ensure_admin(store, auth_file)
    store.transaction = original  # type: ignore[method-assign]
    assert not auth_file.exists()
    after = store.user_by_name("oneadmin")
    assert after is not None and after.password_hash == user.password_hash


def test_one_data_directory_one_daemon(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire()
    second = DataDirLock(tmp_path)
    with pytest.raises(DataDirBusy) as info:
        second.acquire()
    message = str(info.value)
    assert str(tmp_path) in message and "another lazarus serve" in message
    assert str(os.getpid()) in message
    first.release()
    second.acquire()  # free again once the first is gone
    second.release()
