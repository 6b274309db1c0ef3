"""Shared test helpers.

- `vrun(coro)`: run a coroutine on a fresh virtual-time loop (no real sleeps).
- Tests marked `root` need root and Debian packages; they skip with a printed reason when
  those are missing, and CI (root, after `make test` installed them) runs them.
- Hypothesis runs without deadlines and derandomized (same examples every run).
- XSD_DIR: OpenNebula's schemas, from $LAZARUS_XSD_DIR or ../shared/reference/opennebula-xsd.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from lazarus.drivers.clock import run_virtual

# Property tests judge results, never speed: on a loaded 2-core CI box an example can take
# longer than hypothesis' default 200 ms deadline, which would fail a correct run.
settings.register_profile(
    "lazarus", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("lazarus")

REPO = Path(__file__).resolve().parents[1]
XSD_DIR = Path(
    os.environ.get("LAZARUS_XSD_DIR", REPO.parent / "shared" / "reference" / "opennebula-xsd")
)
IS_ROOT = os.geteuid() == 0

vrun = run_virtual


def require_root(*binaries: str) -> None:
    """Skip the calling test unless we are root and every binary is on PATH."""
    if not IS_ROOT:
        pytest.skip("needs root")
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing binaries: {', '.join(missing)} (run `make setup` as root)")


@pytest.fixture(autouse=True)
def _logging_enabled() -> object:
    """`lazarus sim run/fuzz` silence logging process-wide (logging.disable), which is right
    for the command but leaks into later tests when a test runs it in-process (CliRunner):
    tests asserting on log records then saw none, depending on test order."""
    yield
    logging.disable(logging.NOTSET)
