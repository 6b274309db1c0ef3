"""OpenNebula's names of the HA hooks (ft/host_error.rb, ft/fence_host.sh) run Lazarus'
programs, and the log says so (drivers/hooks/subprocess.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lazarus.drivers.hooks.subprocess import DEFAULT_HOOKS_DIR, SubprocessHookExecutor
from lazarus.ports.hooks import HookRequest


def test_opennebulas_error_hook_name_runs_ours(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    executor = SubprocessHookExecutor(hooks_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="lazarus.hooks"):
        assert executor.resolve("ft/host_error.rb") == str(tmp_path / "ft/host_error")
        assert executor.resolve("ft/fence_host.sh") == str(tmp_path / "ft/fence_host")
    assert "ft/host_error.rb is OpenNebula's name: running Lazarus' ft/host_error" in caplog.text
    request = HookRequest(
        hook_id=0, command="ft/host_error.rb", arguments="", stdin=True, remote_host="node1"
    )
    assert executor.argv(request)[-1].endswith("/ft/host_error")
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "host_error.rb").write_text("#!/bin/sh\n")  # an operator's own file
    assert executor.resolve("ft/host_error.rb") == str(tmp_path / "ft/host_error.rb")
    assert executor.resolve("other.rb") == str(tmp_path / "other.rb")


def test_the_shipped_hooks_directory_has_the_programs_the_names_resolve_to() -> None:
    executor = SubprocessHookExecutor()
    assert Path(executor.resolve("ft/host_error.rb")) == Path(DEFAULT_HOOKS_DIR) / "ft/host_error"
    assert Path(executor.resolve("ft/host_error.rb")).exists()
