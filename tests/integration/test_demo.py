"""`lazarus demo` (what `make demo` runs) on the simulated cluster, on each store: it ends with
every VM of the failed host running elsewhere, exit status 0, and (PostgreSQL) the server it
started for itself is gone after it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_demo_recovers_every_vm(db: str, request: pytest.FixtureRequest) -> None:
    if db == "postgresql":
        request.getfixturevalue("pg_server")  # skips (or fails in CI) without PostgreSQL
    done = subprocess.run(
        [sys.executable, "-m", "lazarus.cli.main", "demo", "--sim", "--db", db],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run elsewhere" in done.stdout
    assert ("PostgreSQL" in done.stdout) is (db == "postgresql")
    if db == "postgresql":  # the demo's own server (its port is in the store URL) is gone
        port = re.search(r"store postgresql://\S+@127\.0\.0\.1:(\d+)/", done.stdout)
        assert port is not None, done.stdout
        left = subprocess.run(["pgrep", "-f", f"postgres .*-p {port.group(1)} "],
                              capture_output=True, text=True)  # fmt: skip
        assert left.stdout.strip() == "", left.stdout
