"""VM HA (core/vm_ha.py) on the virtual clock: crashed guests on healthy hosts are restarted
in place, then relocated, then given up; never against host-level HA or an operator."""

from __future__ import annotations

import pytest

from helpers.core import Harness
from lazarus.core.settings import Settings
from lazarus.core.vm_ha import record
from lazarus.domain.states import HostState, LcmState, VmState

S, L = VmState, LcmState
RUNNING = (S.ACTIVE, L.RUNNING)
UNKNOWN = (S.ACTIVE, L.UNKNOWN)


@pytest.fixture
def h() -> Harness:
    harness = Harness(hosts=3, settings=Settings(monitoring_interval_host=60))
    harness.monitored()
    yield harness
    harness.close()


def rec(h: Harness, vm: int) -> dict[str, str]:
    vector = record(h.vm(vm))
    return dict(vector.pairs) if vector is not None else {}


def crash_and_wait(h: Harness, vm: int, kind: str = "crashed") -> float:
    """Crash the VM where it runs; wait until it runs again (or is given up)."""
    host = h.vm(vm).last.hostname
    h.sim.crash_vm(f"one-{vm}", host, kind=kind)
    h.wait_for(lambda: h.state(vm) != RUNNING)
    return h.wait_for(
        lambda: h.state(vm) == RUNNING or rec(h, vm).get("STATE") == "GAVE_UP", timeout=60
    )


def test_a_crash_is_seen_through_the_event_not_the_next_probe(h: Harness) -> None:
    """Probes every 60 s: the domain event wakes the host, the guest runs again in about a
    second of virtual time (probe + deploy delay), in place."""
    vm = h.running_vm(host="node1")
    start = h.clock.monotonic()
    crash_and_wait(h, vm)
    assert h.clock.monotonic() - start < 5
    assert h.state(vm) == RUNNING and h.vm(vm).last.hostname == "node1"
    r = rec(h, vm)
    assert r["STATE"] == "RUNNING" and r["HOST_RESTARTS"] == "1" and len(r["RESTARTS"].split()) == 1
    assert h.sim.running_hosts(vm) == ["node1"]
    assert h.host(h.host_id("node1")).state is HostState.MONITORED


@pytest.mark.parametrize("kind", ["panicked", "watchdog"])
def test_panic_and_watchdog_are_crashes(h: Harness, kind: str) -> None:
    vm = h.running_vm(host="node2")
    crash_and_wait(h, vm, kind)
    assert h.state(vm) == RUNNING
    assert kind in rec(h, vm)["REASON"]


def test_four_crashes_restart_twice_relocate_then_give_up(h: Harness) -> None:
    vm = h.running_vm(host="node1")
    hosts = []
    for _ in range(3):
        crash_and_wait(h, vm)
        assert h.state(vm) == RUNNING
        hosts.append(h.vm(vm).last.hostname)
    assert hosts[:2] == ["node1", "node1"] and hosts[2] != "node1"
    assert rec(h, vm)["RELOCATIONS"] == "1"
    assert h.sim.running_hosts(vm) == [hosts[2]]
    assert not h.sim.domains("node1")  # the crashed domain was undefined before the move
    crash_and_wait(h, vm)
    r = rec(h, vm)
    assert r["STATE"] == "GAVE_UP" and h.state(vm) == UNKNOWN
    assert len(r["RESTARTS"].split()) == 3
    assert h.sim.running_hosts(vm) == []
    notes = [e.line for e in h.store.events(0, 100000) if e.obj_id == vm and "VM HA" in e.line]
    assert len([n for n in notes if "; restart " in n]) == 3 and "gave up" in notes[-1]


def test_the_budget_window_slides(h: Harness) -> None:
    vm = h.running_vm(host="node1", extra='VM_HA_MAX_RESTARTS = 1\nVM_HA_WINDOW = 100')
    crash_and_wait(h, vm)
    assert h.state(vm) == RUNNING
    h.advance(101)
    crash_and_wait(h, vm)
    assert h.state(vm) == RUNNING  # the first restart is out of the window


def test_guest_shutdown_is_poweroff_never_restarted(h: Harness) -> None:
    vm = h.running_vm(host="node1")
    h.sim.crash_vm(f"one-{vm}", "node1", kind="shutdown")
    h.wait_for(lambda: h.state(vm) == (S.POWEROFF, L.LCM_INIT))
    h.advance(30)
    assert h.state(vm) == (S.POWEROFF, L.LCM_INIT) and rec(h, vm) == {}


def test_vm_ha_no_leaves_it_unknown(h: Harness) -> None:
    vm = h.running_vm(host="node1", extra='VM_HA = "NO"')
    h.sim.crash_vm(f"one-{vm}", "node1")
    h.wait_for(lambda: h.state(vm) == UNKNOWN)
    h.advance(30)
    assert h.state(vm) == UNKNOWN


def test_opt_in_when_the_setting_is_off() -> None:
    with Harness(hosts=2, settings=Settings(vm_ha="NO")) as h:
        h.monitored()
        off = h.running_vm("off", host="node1")
        on = h.running_vm("on", host="node1", extra='VM_HA = "YES"')
        h.sim.crash_vm(f"one-{off}", "node1")
        h.sim.crash_vm(f"one-{on}", "node1")
        h.wait_for(lambda: h.state(off) == UNKNOWN and h.state(on) == RUNNING
                   and rec(h, on).get("STATE") == "RUNNING")  # fmt: skip
        assert rec(h, off) == {}


def test_operator_action_wins_over_a_pending_restart(h: Harness) -> None:
    vm = h.running_vm(host="node1", extra="VM_HA_RESTART_DELAY = 10")
    h.sim.crash_vm(f"one-{vm}", "node1")
    h.wait_for(lambda: rec(h, vm).get("STATE") == "RESTART")
    h.lc.action("poweroff-hard", vm)
    h.wait_for(lambda: h.state(vm) == (S.POWEROFF, L.LCM_INIT))
    h.advance(20)
    assert h.state(vm) == (S.POWEROFF, L.LCM_INIT)
    assert rec(h, vm)["STATE"] == "CANCELLED"
    assert h.sim.running_hosts(vm) == []


def test_no_restart_while_the_host_is_failing() -> None:
    """The crash is seen, the restart is due later; meanwhile the host stops answering: the
    VM is host-level HA's (nothing restarted, no second copy)."""
    with Harness(hosts=3) as h:
        h.monitored()
        vm = h.running_vm(host="node1", extra="VM_HA_RESTART_DELAY = 20")
        h.sim.crash_vm(f"one-{vm}", "node1")
        h.wait_for(lambda: rec(h, vm).get("STATE") == "RESTART")
        h.sim.cut_network("node1")
        h.wait_for(lambda: h.host(h.host_id("node1")).state is HostState.ERROR)
        h.wait_for(lambda: rec(h, vm).get("WAITING") == "YES", timeout=30)
        h.advance(30)
        assert h.sim.running_hosts(vm) == [] and h.state(vm) == UNKNOWN
        assert not h.driver.on("node1", "deploy", "shutdown")[1:]  # nothing tried there
        h.sim.restore_network("node1")  # it comes back, the VM still there: restarted
        h.wait_for(lambda: h.state(vm) == RUNNING, timeout=30)
        assert h.sim.running_hosts(vm) == ["node1"] and "WAITING" not in rec(h, vm)


def test_host_level_ha_taking_the_vm_cancels_the_restart() -> None:
    with Harness(hosts=3) as h:
        h.monitored()
        vm = h.running_vm(host="node1", extra="VM_HA_RESTART_DELAY = 20")
        h.sim.crash_vm(f"one-{vm}", "node1")
        h.wait_for(lambda: rec(h, vm).get("STATE") == "RESTART")
        h.sim.power_off("node1")
        h.wait_for(lambda: h.host(h.host_id("node1")).state is HostState.ERROR)
        h.lc.action("resched", vm)  # what ft/host_error -m does after the fence
        h.wait_for(lambda: h.state(vm) == RUNNING, timeout=60)  # placed elsewhere
        assert h.sim.running_hosts(vm) != ["node1"] and len(h.sim.running_hosts(vm)) == 1
        h.advance(30)  # the restart's time has passed: nothing more happens
        assert len(h.sim.running_hosts(vm)) == 1 and rec(h, vm)["HOST"] != "node1"
        assert not [e for e in h.store.events(0, 10000)
                    if e.obj_id == vm and e.lcm_state == "BOOT_UNKNOWN"]


def test_failed_restart_boot_is_decided_again(h: Harness) -> None:
    vm = h.running_vm(host="node1")
    h.sim.fail_next("node1", "deploy", permanent=True)
    crash_and_wait(h, vm)
    assert h.state(vm) == RUNNING
    assert len(rec(h, vm)["RESTARTS"].split()) == 2


def test_io_error_pause_is_resumed_when_storage_answers(h: Harness) -> None:
    vm = h.running_vm(host="node1")
    h.sim.fail_storage("node1")
    h.wait_for(lambda: h.state(vm) == (S.SUSPENDED, L.LCM_INIT))
    assert rec(h, vm)["STATE"] == "IO_PAUSED"
    h.advance(40)  # resume attempts while the storage still fails: paused again each time
    assert h.state(vm) == (S.SUSPENDED, L.LCM_INIT)
    assert int(rec(h, vm)["IO_ATTEMPTS"]) >= 2
    h.sim.restore_storage("node1")
    h.wait_for(lambda: h.state(vm) == RUNNING, timeout=400)
    assert h.sim.running_hosts(vm) == ["node1"]


def test_io_error_restart_policy(h: Harness) -> None:
    vm = h.running_vm(host="node1", extra='VM_HA_IO_ERROR = "RESTART"')
    h.sim.fail_storage("node1")
    h.wait_for(lambda: h.state(vm) == (S.SUSPENDED, L.LCM_INIT))
    h.sim.restore_storage("node1")
    h.wait_for(lambda: h.state(vm) == RUNNING)
    assert rec(h, vm)["HOST_RESTARTS"] == "1"


def test_io_error_none_stays_suspended(h: Harness) -> None:
    vm = h.running_vm(host="node1", extra='VM_HA_IO_ERROR = "NONE"')
    h.sim.fail_storage("node1")
    h.wait_for(lambda: h.state(vm) == (S.SUSPENDED, L.LCM_INIT))
    h.sim.restore_storage("node1")
    h.advance(60)
    assert h.state(vm) == (S.SUSPENDED, L.LCM_INIT)


def test_a_due_restart_survives_a_controller_restart() -> None:
    with Harness(hosts=2) as h:
        h.monitored()
        vm = h.running_vm(host="node1", extra="VM_HA_RESTART_DELAY = 30")
        h.sim.crash_vm(f"one-{vm}", "node1")
        h.wait_for(lambda: rec(h, vm).get("STATE") == "RESTART")
        h.run(h.controller.stop())
        from lazarus.core.controller import Controller

        h.controller = Controller(h.store, h.clock, {"sim": h.driver}, h.settings)
        h.run(h.controller.start())
        h.wait_for(lambda: h.state(vm) == RUNNING, timeout=60)
