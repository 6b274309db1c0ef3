"""Shared test helpers.

- `vrun(coro)`: run a coroutine on a fresh virtual-time loop (no real sleeps).
- Tests marked `root` need root and Debian packages; they skip with a printed reason when
  those are missing, and CI (root, after `make test` installed them) runs them.
- XSD_DIR: OpenNebula's schemas, from $LAZARUS_XSD_DIR or ../shared/reference/opennebula-xsd.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lazarus.drivers.clock import run_virtual

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
