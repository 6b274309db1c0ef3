"""Log and run files are created 0600 whatever the umask (docs/security.md, "Logs")."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lazarus.app import host_error
from lazarus.drivers.files import open_private, write_private
from lazarus.drivers.hooks.lifeline import GroupRecords


@pytest.fixture
def wide_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_are_0600_and_a_wider_old_file_is_narrowed(tmp_path: Path,
                                                                  wide_umask: None) -> None:
    with open_private(tmp_path / "new.log") as log:
        log.write("a\n")
    write_private(tmp_path / "whole", "x")
    old = tmp_path / "old.log"
    old.write_text("before\n")
    old.chmod(0o644)
    with open_private(old) as log:
        log.write("after\n")
    assert mode(tmp_path / "new.log") == mode(tmp_path / "whole") == mode(old) == 0o600
    assert old.read_text() == "before\nafter\n"  # appended, not truncated


def test_host_error_log_is_created_0600(tmp_path: Path, wide_umask: None,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: host_error.log was created with the umask (0644 here)."""
    monkeypatch.setenv("LAZARUS_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.delenv("LAZARUS_PARENT_PID", raising=False)
    assert host_error.main(["--pause", "x"]) == host_error.EXIT_ERROR
    log = tmp_path / "log" / "host_error.log"
    assert mode(log) == 0o600 and "[host_error][E]" in log.read_text()


def test_host_error_goes_on_when_its_log_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk (here /dev/full) made every log line raise OSError: host_error crashed
    with a traceback instead of going on with its lines on stdout."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "host_error.log").symlink_to("/dev/full")
    monkeypatch.setenv("LAZARUS_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.delenv("LAZARUS_PARENT_PID", raising=False)
    before = stat.S_IMODE(os.stat("/dev/full").st_mode)
    assert host_error.main(["--pause", "x"]) == host_error.EXIT_ERROR
    out = capsys.readouterr()
    assert "[host_error][E]" in out.out and "cannot write host_error.log" in out.err
    assert stat.S_IMODE(os.stat("/dev/full").st_mode) == before  # only regular files narrowed


def test_hook_group_records_are_0600(tmp_path: Path, wide_umask: None) -> None:
    # a group whose leader is alive (this process' own group leader may be gone: a shell
    # that started the run and exited, and then nothing is recorded)
    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        records = GroupRecords(tmp_path / "run")
        records.add(leader.pid)
        [path] = list((tmp_path / "run").iterdir())
        assert mode(path) == 0o600
    finally:
        leader.kill()
        leader.wait()
