"""A real `lazarus serve` daemon for end-to-end tests, always cleaned up.

    from helpers.daemon import running_daemon

    @pytest.fixture
    def daemon(tmp_path): yield from running_daemon(tmp_path)

    def test_x(daemon): daemon.client().call("one.hostpool.info"); daemon.cli("host", "list")

`Daemon` is lazarus.app.serve_process.ServeProcess with fast settings: `python -m
lazarus.cli.main serve --port 0` on the given data directory; the free port is the one the
daemon reports on stdout ("Lazarus controller listening on URL", then "oneadmin credentials:
PATH ..."), so tests never race for a port.
`kill()` (SIGKILL, like a crash) and `start()` again restart it on the same data directory
(the URL may change: it is read anew). `stop()` sends SIGTERM and waits; `close()` always
ends the process and is what the fixture calls in its `finally`.

Settings for fast tests come through LAZARUS_<NAME> variables (e.g. a 1 s monitoring
interval); pass `settings={...}` to override them, `db=URL` for another store than the data
directory's SQLite file. Tests that run on both stores take the `daemon_db` fixture and the
`both_stores` mark (below; the fixture is registered in tests/conftest.py).
`wait_for(what, probe)` polls a daemon-side condition with a bound, for the tests that talk to
one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from lazarus.app.serve_process import ServeError, ServeProcess

READY_TIMEOUT = 30.0

# Fast cadence so tests see hosts MONITORED and VMs placed within a second or two.
FAST_SETTINGS = {
    "MONITORING_INTERVAL_HOST": "1",
    "RETRY_INTERVAL": "0.5",
    "PROBE_TIMEOUT": "1",
    "SCHED_INTERVAL": "0.5",
}


DaemonError = ServeError


class Daemon(ServeProcess):
    """`lazarus serve` for a test: the fast settings unless told, its stderr next to the data
    directory (which a test may remove); `db`: the store URL (setting DB; "" is the data
    directory's SQLite file)."""

    def __init__(
        self, data_dir: Path, settings: Mapping[str, str] | None = None, db: str = ""
    ) -> None:
        settings = dict(FAST_SETTINGS if settings is None else settings)
        if db:
            settings["DB"] = db
        self.db = db
        super().__init__(
            data_dir,
            settings,
            log_path=data_dir.parent / f"{data_dir.name}.daemon.log",
            ready_timeout=READY_TIMEOUT,
        )


def running_daemon(workdir: Path, settings: Mapping[str, str] | None = None, db: str = ""
                   ) -> Iterator[Daemon]:
    """For fixtures: a started daemon with its data in `workdir/data`, closed afterwards."""
    daemon = Daemon(workdir / "data", settings, db)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def daemon_db(request: pytest.FixtureRequest) -> str:
    """The store URL a daemon test runs on: "" (SQLite in the data directory) unless the test
    is parametrized by `both_stores`, which runs it once more on a fresh PostgreSQL database
    (helpers/pg_fixtures.py `pg_url`)."""
    kind = getattr(request, "param", "sqlite")
    return str(request.getfixturevalue("pg_url")) if kind == "postgresql" else ""


# Run a test on both stores: it takes the `daemon_db` fixture and passes it on as the URL.
both_stores = pytest.mark.parametrize("daemon_db", ["sqlite", "postgresql"], indirect=True)


def wait_for(what: str, probe: Callable[[], Any], deadline: float = 40.0) -> Any:
    """Poll `probe` until it returns something truthy and return that; fail, naming `what`
    and the last value, after `deadline` seconds (a bound against hangs, not a measurement)."""
    end = time.monotonic() + deadline
    value = probe()
    while not value:
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.05)
        value = probe()
    return value
