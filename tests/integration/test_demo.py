"""`lazarus demo` (what `make demo` runs) on the simulated cluster, on each store: it ends with
every VM of the failed host running elsewhere, exit status 0, and leaves no process or
PostgreSQL server behind."""

from __future__ import annotations

import subprocess
import sys

import pytest


def running_servers() -> set[str]:
    found = subprocess.run(["pgrep", "-f", "lazarus-pg-.*postgres|postgres -D /tmp/lazarus-pg-"],
                           capture_output=True, text=True)  # fmt: skip
    return set(found.stdout.split())


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_demo_recovers_every_vm(db: str, request: pytest.FixtureRequest) -> None:
    if db == "postgresql":
        request.getfixturevalue("pg_server")  # skips (or fails in CI) without PostgreSQL
    before = running_servers()
    done = subprocess.run(
        [sys.executable, "-m", "lazarus.cli.main", "demo", "--sim", "--db", db],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run elsewhere" in done.stdout
    assert ("PostgreSQL" in done.stdout) is (db == "postgresql")
    assert running_servers() <= before  # the demo's own server is gone
