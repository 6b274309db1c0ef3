"""What the machine running the tests offers, and skips with a reason when it does not.

    from helpers.env import require_root, require_xsd

- `require_root(*binaries)`: skip unless root with every binary on PATH (tests marked `root`;
  CI runs as root after `make test` installed the Debian packages).
- `XSD_DIR`, `require_xsd(name)`: OpenNebula's XML schemas, from $LAZARUS_XSD_DIR or the shared
  reference next to the clone (../shared/reference/opennebula-xsd). They are not part of the
  repository: a test that validates against them skips, saying so, in a clone without them;
  where they are (CI, the team's machines) it runs. With LAZARUS_REQUIRE_XSD=1 (.ci/run) a
  missing schema fails the test instead, so CI cannot lose the checks by a moved directory.

Test modules import these (never `from conftest import ...`: which module `conftest` means
depends on which conftest.py pytest loaded last, once any subdirectory has its own).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
XSD_DIR = Path(
    os.environ.get("LAZARUS_XSD_DIR", REPO.parent / "shared" / "reference" / "opennebula-xsd")
)
IS_ROOT = os.geteuid() == 0


def require_root(*binaries: str) -> None:
    """Skip the calling test unless we are root and every binary is on PATH."""
    if not IS_ROOT:
        pytest.skip("needs root")
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing binaries: {', '.join(missing)} (run `make setup` as root)")


def require_xsd(name: str) -> Path:
    """The path of OpenNebula's schema `name`; skips the calling test when it is not there."""
    path = XSD_DIR / name
    if not path.is_file():
        if os.environ.get("LAZARUS_REQUIRE_XSD") == "1":
            pytest.fail(f"OpenNebula's XSD {path} is missing (LAZARUS_REQUIRE_XSD=1)")
        pytest.skip(f"OpenNebula's XSD {name} is not in {XSD_DIR} (the shared reference is "
                    "not next to this clone; set LAZARUS_XSD_DIR to run the schema checks)")
    return path
