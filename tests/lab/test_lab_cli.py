"""`lazarus lab` command errors that need no root: clear messages, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lazarus.cli.lab import lab


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lazarus.cli.lab.os.geteuid", lambda: 1000)


@pytest.mark.parametrize(
    "args",
    [["status"], ["up", "--hosts", "2"], ["down"], ["fail", "hv1", "--power"], ["power-on", "hv1"]],
    ids=["status", "up", "down", "fail", "power-on"],
)
def test_every_command_says_it_needs_root(not_root: None, args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(lab, [*args, "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "must run as root" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_check_names_what_is_missing(not_root: None) -> None:
    result = CliRunner().invoke(lab, ["check", "--quick"])
    assert result.exit_code == 1
    assert "must run as root" in result.output


def test_fail_needs_a_mode(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab, ["fail", "hv1", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--power, --network or --hang" in result.output


def test_a_lab_dir_under_a_host_private_path_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab, ["status", "--dir", "/var/tmp/lab"])
    if result.output.startswith("Error: the lab cannot run here"):
        pytest.skip("not root")
    assert result.exit_code == 1
    assert "mount privately" in result.output


def test_every_command_documents_an_example() -> None:
    for name, command in lab.commands.items():
        assert command.help and "Example: lazarus lab" in command.help, name
