"""SIGKILL loop: the hook manager killed at 25 points, restarted each time, never loses an
event and never runs a hook twice for one event, except executions that were running when it
died, which are recorded as interrupted (CODE -1) and run again with the same
LAZARUS_HOOK_EXECUTION.

Each run is tests/helpers/hook_worker.py in its own process (real store: a SQLite file, and
a PostgreSQL database (`both_stores`); real HookManager, real hook processes) that records new
host ERROR / VM UNKNOWN events and then SIGKILLs itself at the chosen point; the next run
starts where it died.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path

from helpers.daemon import both_stores
from lazarus.core.hooks import HookManager
from lazarus.core.settings import Settings
from lazarus.domain.template import Template
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.hooks.fake import FakeHookExecutor
from lazarus.store.url import open_store

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "hook_worker.py"
EVENTS_PER_RUN = 4  # 3 host ERROR + 1 VM UNKNOWN: 7 executions per run
KILL_POINTS = [  # (point, n-th time): 24 kills, all reachable within one run
    *(("event", n) for n in (1, 2, 3, 4)),
    *(("dispatch", 1) for _ in range(4)),
    *(("running", n) for n in (1, 2, 3, 5, 7)),
    *(("executed", n) for n in (1, 2, 4, 6)),
    *(("recorded", n) for n in (1, 3, 5, 6, 7)),
    ("running", 1), ("executed", 1),
]
HOOK = """NAME = {name}
TYPE = state
{on}
COMMAND = "count"
ARGUMENTS = "$TEMPLATE"
ARGUMENTS_STDIN = {stdin}
"""


def worker(workdir: Path, url: str, events: int, point: str = "none", nth: int = 1) -> int:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(workdir), str(events), point, str(nth), url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


@both_stores
def test_no_event_lost_none_run_twice_except_interrupted(tmp_path: Path, daemon_db: str) -> None:
    url = daemon_db or f"sqlite:{tmp_path / 'lazarus.db'}"
    runs = tmp_path / "runs.log"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "count").write_text(
        f'#!/bin/sh\necho "$LAZARUS_HOOK_EXECUTION $LAZARUS_HOOK_EVENT" >> {runs}\n'
    )
    (hooks / "count").chmod(0o755)
    store = open_store(url, data_dir=tmp_path)
    manager = HookManager(store, SystemClock(), FakeHookExecutor(), Settings())
    host_on = "RESOURCE = HOST\nSTATE = ERROR"
    for name, on, stdin in (("a", host_on, "yes"), ("b", host_on, "no"),
                            ("v", "RESOURCE = VM\nON = UNKNOWN", "yes")):
        manager.allocate(Template.parse(HOOK.format(name=name, on=on, stdin=stdin)))
    store.close()

    assert len(KILL_POINTS) >= 20
    for point, nth in KILL_POINTS:
        # every planned point is really hit (the loop is not vacuous)
        assert worker(tmp_path, url, EVENTS_PER_RUN, point, nth) == -signal.SIGKILL, (point, nth)
    assert worker(tmp_path, url, 0) == 0  # the last run drains whatever is left

    store = open_store(url, data_dir=tmp_path)
    try:
        events = [e for e in store.events(limit=10_000) if e.kind == "state"]
        expected = {(hook.id, e.id) for e in events for hook in store.hooks()
                    if hook.key == f"{e.obj}/{e.state}/{e.lcm_state if e.obj == 'VM' else ''}"}
        assert len(expected) > 100
        records = store.hook_log()
        success = collections.Counter(
            (r.hook_id, r.event_id) for r in records if r.result.code == 0
        )
        interrupted = collections.Counter(
            (r.hook_id, r.job_id) for r in records if r.interrupted
        )
        assert not store.hook_jobs()
        assert set(success) == expected, "an event was lost or ran for the wrong hook"
        assert all(n == 1 for n in success.values()), "a hook ran twice to completion"
        assert all(r.result.code in (0, -1) for r in records)
        assert interrupted, "no kill landed while a hook was running"

        job_of = {(r.hook_id, r.event_id): r.job_id for r in records if r.result.code == 0}
        starts = collections.Counter(
            line.split()[0] for line in runs.read_text().splitlines()
        )
        for (hook_id, _event), job_id in job_of.items():
            key = f"{hook_id}:{job_id}"
            # one start, plus at most one per interruption (a kill before the command
            # started leaves an interrupted record without a start)
            assert 1 <= starts[key] <= 1 + interrupted[(hook_id, job_id)], key
        assert sum(starts.values()) > len(expected)  # some executions really ran twice
        assert all(r.arguments for r in records)
    finally:
        store.close()
