"""PostgreSQL failing under a running `lazarus serve` (simulated hosts, the shipped error hook,
fence_sim): the controller says so, changes nothing it cannot write, and carries on.

1. The server stopped for a while, then started: API calls get a store error (at once, not a
   hang), the daemon logs the loss and the return, and the API works again after it
   reconnected (with backoff), with nothing lost.
2. Then a stuck database: another session holds the store's write lock (as a hung second
   controller or an operator's forgotten transaction would), so every write transaction waits
   DB_STATEMENT_TIMEOUT, fails as a store error and is retried; reads still work. node1 is
   cut off meanwhile: the monitor sees it fail but cannot record ERROR, so there is no ERROR
   event, hence no hook job, no hook process, no fence, no deploy (each needs its intent
   committed first: core/journal.py, core/hooks.py). Proven from outside: no execution record,
   node1 still powered on, the VMs still running there only.
3. The lock released (the database is back): the failure is recorded, ft/host_error fences
   node1 and recreates the VMs on node2, end to end; the split-brain watch saw nothing wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
import pytest
import test_ha_daemon as ha
from test_ha_daemon import MONITORED, Cluster, Watch, placed

from helpers.daemon import wait_for
from helpers.postgres import PgServer
from lazarus.domain.errors import ApiError, InternalError
from lazarus.store.postgres import WRITE_LOCK

# Every write the stuck database refuses holds the controller's loop for the statement
# timeout (store calls are synchronous, SQLite's busy wait does the same): a probe in flight
# meanwhile would time out as if its host failed. PROBE_TIMEOUT well above it keeps node2's
# probes good, so only node1 (really cut off) fails. docs/architecture.md "Two stores".
SETTINGS = {"DB_STATEMENT_TIMEOUT": "1", "PROBE_TIMEOUT": "5"}
make_cluster = ha.make_cluster  # the fixture, shared


def log_text(cluster: Cluster) -> str:
    return cluster.daemon.log_path.read_text(errors="replace")


@pytest.mark.parametrize("daemon_db", ["postgresql"], indirect=True)
def test_postgresql_stopped_then_stuck_under_a_running_controller(
    make_cluster: Callable[..., Cluster], daemon_db: str, pg_server: PgServer
) -> None:
    c = make_cluster(SETTINGS)
    victim, vms, [other] = placed(c, 2)
    c.create_hook("$TEMPLATE -r -p 0")
    assert "postgresql://127.0.0.1:" in log_text(c)  # the store it uses, masked
    assert "lazarus@" not in log_text(c)

    # 1. stopped, then started
    try:
        pg_server.stop()
        with pytest.raises(InternalError, match="Store error"):
            c.call("one.vm.info", vms[0])
        wait_for("the loss logged", lambda: "PostgreSQL" in log_text(c))
    finally:
        pg_server.start()
    wait_for("the API working again", lambda: _answers(c, vms[0]))
    assert c.host_state(victim) == MONITORED and c.running_on(vms, victim)
    wait_for("the return logged", lambda: "connected to PostgreSQL" in log_text(c))

    # 2. stuck: the write lock held elsewhere
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    conninfo = _conninfo(daemon_db)
    stuck = (
        rf"host/{victim}: failed probe \d+ not recorded, the store fails: Store error: statement"
    )
    with psycopg.connect(conninfo, autocommit=True) as blocker:
        blocker.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))
        c.call("lazarus.sim.network", "node1", "cut")  # reads and the sim need no write
        wait_for(
            "failed probes of node1 the store could not record, retried",
            lambda: len(re.findall(stuck, log_text(c))) >= 3,
        )
        assert c.host_state(victim) == MONITORED  # ERROR was never committed
        assert c.records() == [] and c.incident(victim) == {}  # no hook ran
        assert c.power("node1") == "on"  # no fence
        assert all(c.truth(v) == ["node1"] for v in vms)  # no deploy elsewhere
        blocker.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))

    # 3. back: the failure handled end to end
    [record] = c.wait_records(1)
    wait_for("the VMs RUNNING on node2", lambda: c.running_on(vms, other))
    watch.stop()
    watch.check()
    assert record["code"] == "0", record
    assert c.power("node1") == "off" and c.incident(victim)["STATE"] == "DONE"
    assert all(c.truth(v) == ["node2"] for v in vms)


def _answers(c: Cluster, vm_id: int) -> bool:
    try:
        c.call("one.vm.info", vm_id)
    except ApiError:
        return False
    return True


def _conninfo(url: str) -> str:
    return url  # libpq takes the URL as it is


@pytest.mark.parametrize("daemon_db", ["postgresql"], indirect=True)
def test_the_store_url_never_shows_in_api_output(
    make_cluster: Callable[..., Cluster], daemon_db: str
) -> None:
    c = make_cluster()
    config = str(c.call("one.system.config"))
    assert "lazarus@" not in config and daemon_db not in config
    log = log_text(c)
    assert daemon_db not in log and "postgresql://127.0.0.1:" in log
