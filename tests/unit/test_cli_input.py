"""The CLI reads bounded input (cli/context.py read_template): a template on stdin or in a file
larger than the API accepts is refused with a clear error before anything is sent."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from lazarus.api.validation import MAX_TEMPLATE_CHARS
from lazarus.cli.context import CliError, read_template


class Endless(io.StringIO):
    """stdin that never ends (e.g. `yes | lazarus vm create`)."""

    def isatty(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> str:
        if size is None or size < 0:
            raise AssertionError("unbounded read of stdin")
        return "x" * size


def test_stdin_is_read_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", Endless())
    with pytest.raises(CliError, match="larger than"):
        read_template("-")


def test_small_stdin_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('NAME="v"\n'))
    assert read_template("-") == 'NAME="v"\n'


def test_big_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("x" * (MAX_TEMPLATE_CHARS + 1))
    with pytest.raises(CliError, match="larger than"):
        read_template(str(path))
