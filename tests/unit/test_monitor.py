"""Host monitoring rules on the virtual clock (oned's host transitions and VM sync)."""

from __future__ import annotations

import pytest

from helpers.core import Harness
from lazarus.core.settings import Settings
from lazarus.domain.states import HostState, LcmState, VmState

S, L, H = VmState, LcmState, HostState
RUNNING = (S.ACTIVE, L.RUNNING)


@pytest.fixture
def h() -> Harness:
    harness = Harness(hosts=3)
    harness.monitored()
    yield harness
    harness.close()


def host_state(h: Harness, name: str) -> HostState:
    return h.host(h.host_id(name)).state


def test_hosts_become_monitored_with_capacity(h: Harness) -> None:
    host = h.host(h.host_id("node1"))
    assert host.state is H.MONITORED
    assert host.share.total_cpu == 800 and host.share.total_mem == 8 * 1024 * 1024
    assert host.template.get("TOTALCPU") == "800"
    assert int(host.monitoring["TIMESTAMP"]) <= int(h.clock.now())
    assert host.last_monitored > 0


def test_reserved_capacity_is_honoured(h: Harness) -> None:
    h.inv.update_host(h.host_id("node1"), _tpl("RESERVED_CPU = 200"), True)
    h.advance(6)
    assert h.host(h.host_id("node1")).share.total_cpu == 600


def test_power_off_gives_error_within_the_bound_and_only_running_vms_go_unknown(
    h: Harness,
) -> None:
    running = h.running_vm("a", host="node1")
    stopped = h.running_vm("b", host="node1")
    h.lc.action("poweroff", stopped)
    h.settle()
    h.sim.power_off("node1")
    took = h.wait_for(lambda: host_state(h, "node1") is H.ERROR)
    s = h.settings
    bound = (
        s.monitoring_interval_host
        + s.probe_timeout
        + max(s.probe_timeout, s.retry_interval)
        + (s.monitor_failures - 2) * s.retry_interval
    )
    assert took <= bound
    assert h.state(running) == (S.ACTIVE, L.UNKNOWN)
    assert h.state(stopped) == (S.POWEROFF, L.LCM_INIT)  # only RUNNING VMs go UNKNOWN
    host = h.host(h.host_id("node1"))
    error = host.template.get("ERROR") or ""
    assert "Error monitoring Host node1" in error
    lines = [e.line for e in h.store.events(kind="state") if e.obj == "HOST"]
    assert sum("=> ERROR" in line for line in lines) == 1  # logged once


def test_hung_host_is_detected_by_probe_timeouts(h: Harness) -> None:
    h.sim.hang("node2")
    h.wait_for(lambda: host_state(h, "node2") is H.ERROR)
    assert host_state(h, "node1") is H.MONITORED  # the others were not held up


def test_no_false_error_for_fewer_failures_than_the_threshold(h: Harness) -> None:
    for _ in range(h.settings.monitor_failures - 1):
        h.sim.fail_next("node1", "probe")
    h.advance(30)
    assert host_state(h, "node1") is H.MONITORED
    states = [e.state for e in h.store.events(kind="state") if e.obj == "HOST"]
    assert "ERROR" not in states


def test_short_blip_is_ridden_out() -> None:
    with Harness(hosts=2) as h:
        h.monitored()
        vm = h.running_vm(host="node1")
        h.sim.cut_network("node1")
        h.advance(h.settings.retry_interval)  # shorter than the detection window
        h.sim.restore_network("node1")
        h.advance(30)
        assert host_state(h, "node1") is H.MONITORED and h.state(vm) == RUNNING


def test_error_host_comes_back_and_vms_resync(h: Harness) -> None:
    vm = h.running_vm(host="node1")
    h.sim.cut_network("node1")  # split brain case: the VM keeps running there
    h.wait_for(lambda: h.state(vm) == (S.ACTIVE, L.UNKNOWN))
    assert h.sim.running_hosts(vm) == ["node1"]
    h.sim.restore_network("node1")
    h.wait_for(lambda: host_state(h, "node1") is H.MONITORED)
    h.wait_for(lambda: h.state(vm) == RUNNING)  # RUNNING reported for UNKNOWN -> RUNNING
    assert h.host(h.host_id("node1")).template.get("ERROR") is None


def test_disabled_host_never_enters_error_and_offline_is_not_probed(h: Harness) -> None:
    h.inv.set_status(h.host_id("node1"), 1)
    h.inv.set_status(h.host_id("node2"), 2)
    h.sim.power_off("node1")
    h.advance(10)
    h.driver.calls.clear()
    h.advance(30)
    assert host_state(h, "node1") is H.DISABLED
    assert host_state(h, "node2") is H.OFFLINE
    assert h.driver.on("node2") == []
    assert h.driver.on("node1", "probe")  # DISABLED is still monitored


def test_enable_returns_to_monitored(h: Harness) -> None:
    h.inv.set_status(h.host_id("node2"), 1)
    h.inv.set_status(h.host_id("node2"), 0)
    assert host_state(h, "node2") is H.MONITORED  # DISABLED with capacity -> MONITORED


def test_offline_clears_capacity(h: Harness) -> None:
    h.inv.set_status(h.host_id("node3"), 2)
    host = h.host(h.host_id("node3"))
    assert host.share.total_cpu == 0 and host.template.get("TOTALCPU") is None


@pytest.mark.parametrize(("setting", "expected"), [("POWEROFF", (S.POWEROFF, L.LCM_INIT)),
                                                    ("UNKNOWN", (S.ACTIVE, L.UNKNOWN))])
def test_vm_missing_from_hypervisor(setting: str, expected: tuple[VmState, LcmState]) -> None:
    with Harness(hosts=2, settings=Settings(missing_vm_state=setting)) as h:
        h.monitored()
        vm = h.running_vm(host="node1")
        h.sim.crash_vm(f"one-{vm}", gone=True)
        h.wait_for(lambda: h.state(vm) == expected)


def test_crashed_vm_goes_unknown(h: Harness) -> None:
    vm = h.running_vm(host="node1")
    h.sim.crash_vm(f"one-{vm}")
    h.wait_for(lambda: h.state(vm) == (S.ACTIVE, L.UNKNOWN))


def test_returned_host_stale_domains_are_removed_never_started(h: Harness) -> None:
    vm = h.running_vm(host="node1")
    h.sim.power_off("node1")
    h.wait_for(lambda: h.state(vm) == (S.ACTIVE, L.UNKNOWN))
    h.lc.action("resched", vm)
    h.wait_for(lambda: h.state(vm) == RUNNING)
    h.sim.power_on("node1")  # comes back with the old definition, shut off
    h.wait_for(lambda: host_state(h, "node1") is H.MONITORED)
    h.wait_for(lambda: h.sim.domains("node1") == [])
    assert h.sim.running_hosts(vm) != ["node1"] and len(h.sim.running_hosts(vm)) == 1
    assert h.vm(vm).last is not None and h.vm(vm).last.hostname != "node1"


def test_failure_count_is_published_for_host_error(h: Harness) -> None:
    h.sim.power_off("node3")
    h.wait_for(lambda: host_state(h, "node3") is H.ERROR)
    first = h.host(h.host_id("node3")).template.get_int("MONITOR_FAILURES", 0)
    h.advance(h.settings.monitoring_interval_host * 2 + 1)
    assert h.host(h.host_id("node3")).template.get_int("MONITOR_FAILURES", 0) > first


def _tpl(text: str):  # type: ignore[no-untyped-def]
    from lazarus.domain.template import Template

    return Template.parse(text)


def test_unchanged_host_still_gets_its_monitoring_timestamp_refreshed(h: Harness) -> None:
    node1 = h.host_id("node1")
    first = int(h.host(node1).monitoring["TIMESTAMP"])
    writes = len(h.store.events())
    h.advance(h.settings.persist_interval + 2 * h.settings.monitoring_interval_host)
    later = h.host(node1)
    assert int(later.monitoring["TIMESTAMP"]) > first
    assert later.state is H.MONITORED
    assert len(h.store.events()) == writes  # refreshing the timestamp is not an event


def test_a_host_dead_for_long_is_probed_every_interval_after_the_retry_burst(h: Harness) -> None:
    s = h.settings
    h.sim.power_off("node1")
    h.wait_for(lambda: host_state(h, "node1") is H.ERROR)
    node1 = h.host_id("node1")
    h.wait_for(  # the fast re-probes that ft/host_error's -p counts
        lambda: h.host(node1).template.get_int("MONITOR_FAILURES", 0)
        >= s.monitor_failures + s.retry_burst
    )
    h.advance(s.probe_timeout)  # the last fast probes finish
    before = len(h.driver.on("node1", "probe"))
    h.advance(10 * s.monitoring_interval_host)
    slow = len(h.driver.on("node1", "probe")) - before
    assert 9 <= slow <= 11  # one per interval, not two a second
    h.sim.power_on("node1")
    took = h.wait_for(lambda: host_state(h, "node1") is H.MONITORED)
    assert took <= s.monitoring_interval_host + s.probe_timeout


def test_a_store_refusing_writes_is_one_line_per_probe_not_a_traceback(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk fails the write (or the COMMIT), not the read: each probe of each host
    logged a 40-line traceback ("applying a probe failed"), 350 KB a minute for two hosts,
    on a disk that is full. Now one line naming the store failure; ERROR once writes work."""
    h.sim.power_off("node1")
    h.store._writer.execute("PRAGMA query_only = ON")  # every write fails, as on a full disk
    h.advance(60)
    assert host_state(h, "node1") is H.MONITORED
    h.store._writer.execute("PRAGMA query_only = OFF")
    monitor = [r for r in caplog.records if r.name == "lazarus.monitor" and r.levelname == "ERROR"]
    assert monitor and all(r.exc_info is None for r in monitor), monitor[0].getMessage()
    assert any("not recorded, the store fails" in r.getMessage() for r in monitor)
    h.advance(h.settings.monitoring_interval_host + h.settings.probe_timeout + 1)
    assert host_state(h, "node1") is H.ERROR


def test_a_host_that_dies_while_the_store_fails_goes_error_once_writes_work(
    h: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store failures while a host dies are logged (before: the failed read of the host was
    swallowed by a bare `except Exception: return`), and the failures counted meanwhile
    still lead to ERROR once the store works again."""
    from lazarus.domain.errors import InternalError
    from lazarus.store.sqlite import _SqliteTx

    def broken(self: object, host_id: int) -> object:
        raise InternalError("Store error: disk I/O error")

    h.sim.power_off("node1")
    with monkeypatch.context() as patch:
        patch.setattr(_SqliteTx, "host", broken)
        h.advance(60)
        assert host_state(h, "node1") is H.MONITORED
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("node1" in m or "host/0" in m for m in messages if "disk I/O error" in m)
    h.advance(h.settings.monitoring_interval_host + h.settings.probe_timeout + 1)
    assert host_state(h, "node1") is H.ERROR


def test_a_refused_timestamp_refresh_is_logged_and_the_monitor_keeps_going(
    h: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_write_touches runs as a loop callback: a store that refuses the write must not stop
    the monitor (before: the InternalError escaped the callback)."""
    from lazarus.domain.errors import InternalError
    from lazarus.store.sqlite import _SqliteTx

    def refused(self: object, ids: object, when: float) -> None:
        raise InternalError("Store error: database or disk is full")

    node1 = h.host_id("node1")
    with monkeypatch.context() as patch:
        patch.setattr(_SqliteTx, "touch_hosts", refused)
        h.advance(h.settings.persist_interval + 2 * h.settings.monitoring_interval_host)
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("not refreshed" in m and "disk is full" in m for m in messages)
    first = int(h.host(node1).monitoring["TIMESTAMP"])
    h.advance(h.settings.persist_interval + 2 * h.settings.monitoring_interval_host)
    assert int(h.host(node1).monitoring["TIMESTAMP"]) > first  # refreshed again
    h.sim.power_off("node1")
    h.wait_for(lambda: host_state(h, "node1") is H.ERROR)  # and still detecting


def test_a_failed_probe_the_store_cannot_save_is_logged(
    h: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lazarus.domain.errors import InternalError
    from lazarus.store.sqlite import _SqliteTx

    def refused(self: object, host: object) -> None:
        raise InternalError("Store error: disk I/O error")

    h.sim.power_off("node1")
    with monkeypatch.context() as patch:
        patch.setattr(_SqliteTx, "save_host", refused)
        h.advance(h.settings.monitoring_interval_host + h.settings.probe_timeout + 1)
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("host/0" in m and "not recorded" in m and "disk I/O" in m for m in messages)
    h.wait_for(lambda: host_state(h, "node1") is H.ERROR)


def test_a_lost_connection_the_store_cannot_record_is_logged_not_raised(
    h: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keepalive loss runs as a loop callback; when the store refuses the transaction itself
    (PostgreSQL: the write lock not granted within the statement timeout; SQLite: still
    busy), the InternalError escaped it (asyncio logged "Exception in callback"). Now it is
    logged as not recorded, and the failure is recorded once the store works."""
    from contextlib import contextmanager

    from lazarus.domain.errors import InternalError
    from lazarus.store.sqlite import SqliteStore

    @contextmanager
    def refused(self: object) -> object:
        raise InternalError("Store error: statement timeout: canceling statement")
        yield  # pragma: no cover

    monitor = h.controller.monitor

    async def lose() -> None:
        monitor._connection_lost("node1")

    with monkeypatch.context() as patch:
        patch.setattr(SqliteStore, "transaction", refused)
        h.run(lose())
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("not recorded" in m and "statement timeout" in m for m in messages), messages
    assert host_state(h, "node1") is H.MONITORED
