"""Test-wide settings and fixtures. Helpers that tests import live in tests/helpers/
(`helpers.env`: require_root, require_xsd; `helpers.core`: Harness, vrun; ...).

- Hypothesis runs without deadlines and derandomized (same examples every run).
- Logging is re-enabled after every test.
- PostgreSQL: `pg_server`, `pg_database`, `pg_conninfo`, `pg_url` (helpers/pg_fixtures.py).
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, settings

from helpers.daemon import daemon_db
from helpers.pg_fixtures import pg_conninfo, pg_database, pg_server, pg_url

# fixtures defined in helpers/: pg_fixtures.py, daemon.py
__all__ = ["daemon_db", "pg_conninfo", "pg_database", "pg_server", "pg_url"]

# Property tests judge results, never speed: on a loaded 2-core CI box an example can take
# longer than hypothesis' default 200 ms deadline, which would fail a correct run.
settings.register_profile(
    "lazarus", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("lazarus")


@pytest.fixture(autouse=True)
def _logging_enabled() -> object:
    """`lazarus sim run/fuzz` silence logging process-wide (logging.disable), which is right
    for the command but leaks into later tests when a test runs it in-process (CliRunner):
    tests asserting on log records then saw none, depending on test order."""
    yield
    logging.disable(logging.NOTSET)
