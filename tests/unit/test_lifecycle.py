"""VM life cycle through the real core on a virtual clock with the simulated driver."""

from __future__ import annotations

import pytest

from helpers.core import Harness
from lazarus.core.controller import Controller
from lazarus.domain.errors import ActionError, AllocateError, NoExistsError
from lazarus.domain.states import HistoryAction, LcmState, RecoverOp, VmState
from lazarus.domain.template import Template
from lazarus.drivers.vmm.sim import SimHypervisor
from lazarus.store.sqlite import SqliteStore

S, L = VmState, LcmState
RUNNING = (S.ACTIVE, L.RUNNING)


@pytest.fixture
def h() -> Harness:
    harness = Harness(hosts=3)
    harness.monitored()
    yield harness
    harness.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('NAME="x"\nCPU=1', "MEMORY"),
        ('CPU=1\nMEMORY=-5', "MEMORY"),
        ('MEMORY=64', "CPU"),
        ('MEMORY=64\nCPU=zero', "CPU"),
        ('MEMORY=64\nCPU=1\nVCPU=0', "VCPU"),
    ],
)
def test_allocate_refuses_bad_templates(h: Harness, text: str, message: str) -> None:
    with pytest.raises(AllocateError, match=message):
        h.lc.allocate(Template.parse(text))
    assert h.store.vms(include_done=True) == []


def test_allocate_splits_template_and_names_the_vm(h: Harness) -> None:
    vm_id = h.lc.allocate(Template.parse("CPU=0.5\nMEMORY=256\nHA_PRIORITY=7\nOWNER_NOTE=x"))
    vm = h.vm(vm_id)
    assert vm.name == f"one-{vm_id}"
    assert vm.template.get("CPU") == "0.5" and vm.template.get("VMID") == str(vm_id)
    assert vm.user_template.get("HA_PRIORITY") == "7" and vm.ha_priority == 7
    assert vm.cpu == 50 and vm.memory == 256 * 1024


def test_deploy_runs_and_accounts_capacity(h: Harness) -> None:
    vm_id = h.running_vm(host="node2")
    vm = h.vm(vm_id)
    host = h.host(h.host_id("node2"))
    assert vm.deploy_id == f"one-{vm_id}" and vm.last is not None and vm.last.hostname == "node2"
    assert host.vms == [vm_id] and host.share.cpu_usage == 100
    assert host.share.mem_usage == 512 * 1024 and host.share.running_vms == 1
    assert h.sim.running_hosts(vm_id) == ["node2"]


def test_terminate_releases_everything(h: Harness) -> None:
    vm_id = h.running_vm(host="node1")
    h.lc.action("terminate", vm_id)
    h.settle()
    vm = h.vm(vm_id)
    assert (vm.state, vm.lcm_state) == (S.DONE, L.LCM_INIT) and vm.etime > 0
    assert vm.last is not None and vm.last.etime > 0 and vm.last.action is HistoryAction.TERMINATE
    assert h.host(h.host_id("node1")).share.cpu_usage == 0
    assert h.sim.running_hosts(vm_id) == []
    assert h.sim.domains("node1") == []


def test_poweroff_resume_suspend_resume(h: Harness) -> None:
    vm_id = h.running_vm(host="node1")
    h.lc.action("poweroff-hard", vm_id)
    h.settle()
    assert h.state(vm_id) == (S.POWEROFF, L.LCM_INIT)
    assert h.host(h.host_id("node1")).share.cpu_usage == 100  # POWEROFF keeps its capacity
    h.lc.action("resume", vm_id)
    h.settle()
    assert h.state(vm_id) == RUNNING
    h.lc.action("suspend", vm_id)
    h.settle()
    assert h.state(vm_id) == (S.SUSPENDED, L.LCM_INIT)
    h.lc.action("resume", vm_id)
    h.settle()
    assert h.state(vm_id) == RUNNING and h.sim.running_hosts(vm_id) == ["node1"]


def test_stop_then_resume_goes_back_to_pending_and_runs_again(h: Harness) -> None:
    vm_id = h.running_vm(host="node1")
    h.lc.action("stop", vm_id)
    h.settle()
    assert h.state(vm_id) == (S.STOPPED, L.LCM_INIT)
    assert h.host(h.host_id("node1")).share.cpu_usage == 0  # STOPPED releases capacity
    h.lc.action("resume", vm_id)
    h.wait_for(lambda: h.state(vm_id) == RUNNING)


def test_hold_release_and_scheduler(h: Harness) -> None:
    vm_id = h.create_vm(hold=True)
    h.advance(10)
    assert h.state(vm_id) == (S.HOLD, L.LCM_INIT)
    h.lc.action("release", vm_id)
    h.wait_for(lambda: h.state(vm_id) == RUNNING)


def test_refused_action_changes_nothing(h: Harness) -> None:
    vm_id = h.create_vm(hold=True)
    events = len(h.store.events(kind="state"))
    with pytest.raises(ActionError, match="not available for state HOLD"):
        h.lc.action("suspend", vm_id)
    assert h.state(vm_id) == (S.HOLD, L.LCM_INIT)
    assert len(h.store.events(kind="state")) == events
    with pytest.raises(NoExistsError, match=r"Error getting virtual machine \[999\]"):
        h.lc.action("suspend", 999)


def test_deploy_failure_then_recover_retry(h: Harness) -> None:
    vm_id = h.create_vm(hold=True)
    h.sim.fail_next("node1", "deploy")
    h.lc.deploy(vm_id, h.host_id("node1"))
    h.settle()
    assert h.state(vm_id) == (S.ACTIVE, L.BOOT_FAILURE)
    h.lc.recover(vm_id, int(RecoverOp.RETRY))
    h.settle()
    assert h.state(vm_id) == RUNNING


def test_live_migrate_moves_capacity(h: Harness) -> None:
    vm_id = h.running_vm(host="node1")
    h.lc.migrate(vm_id, h.host_id("node2"), live=True)
    h.settle()
    assert h.state(vm_id) == RUNNING and h.sim.running_hosts(vm_id) == ["node2"]
    assert h.host(h.host_id("node1")).vms == [] and h.host(h.host_id("node2")).vms == [vm_id]
    assert [r.hostname for r in h.vm(vm_id).history] == ["node1", "node2"]


def test_failed_live_migration_stays_on_the_source(h: Harness) -> None:
    vm_id = h.running_vm(host="node1")
    h.sim.fail_next("node1", "migrate")
    h.lc.migrate(vm_id, h.host_id("node2"), live=True)
    h.settle()
    assert h.state(vm_id) == RUNNING and h.vm(vm_id).host_id == h.host_id("node1")
    assert h.host(h.host_id("node2")).vms == [] and h.host(h.host_id("node1")).vms == [vm_id]


def test_migrate_refuses_same_host_and_dead_targets(h: Harness) -> None:
    vm_id = h.running_vm(host="node1")
    with pytest.raises(ActionError, match="already placed"):
        h.lc.migrate(vm_id, h.host_id("node1"))
    h.sim.power_off("node3")
    h.wait_for(lambda: h.host(h.host_id("node3")).state.name == "ERROR")
    with pytest.raises(ActionError, match="ERROR"):
        h.lc.migrate(vm_id, h.host_id("node3"))


def _unknown_vm(h: Harness) -> int:
    vm_id = h.running_vm(host="node1")
    h.sim.power_off("node1")
    h.wait_for(lambda: h.state(vm_id) == (S.ACTIVE, L.UNKNOWN))
    h.driver.calls.clear()
    return vm_id


def test_recover_delete_on_dead_host_never_contacts_it(h: Harness) -> None:
    vm_id = _unknown_vm(h)
    h.lc.recover(vm_id, int(RecoverOp.DELETE))
    h.settle()
    assert h.state(vm_id) == (S.DONE, L.LCM_INIT)
    assert h.driver.on("node1", "cleanup", "shutdown", "deploy") == []
    assert h.host(h.host_id("node1")).share.cpu_usage == 0


def test_recover_recreate_returns_to_pending_and_runs_elsewhere(h: Harness) -> None:
    vm_id = _unknown_vm(h)
    h.lc.recover(vm_id, int(RecoverOp.DELETE_RECREATE))
    h.wait_for(lambda: h.state(vm_id) == RUNNING)
    assert h.sim.running_hosts(vm_id) in (["node2"], ["node3"])
    assert h.driver.on("node1", "cleanup", "shutdown", "deploy") == []


def test_recover_success_on_unknown_is_running_without_driver(h: Harness) -> None:
    vm_id = _unknown_vm(h)
    h.lc.recover(vm_id, int(RecoverOp.SUCCESS))
    assert h.state(vm_id) == RUNNING
    assert [c for c in h.driver.calls if c[0] != "probe"] == []


def test_recover_delete_db_forgets_the_vm(h: Harness) -> None:
    vm_id = _unknown_vm(h)
    h.lc.recover(vm_id, int(RecoverOp.DELETE_DB))
    with pytest.raises(NoExistsError):
        h.vm(vm_id)
    assert h.host(h.host_id("node1")).vms == []


def test_recreate_done_vm_is_refused(h: Harness) -> None:
    vm_id = h.create_vm(hold=True)
    h.lc.action("terminate", vm_id)
    with pytest.raises(ActionError, match="already in DONE"):
        h.lc.recover(vm_id, int(RecoverOp.DELETE_RECREATE))
    with pytest.raises(ActionError, match="Wrong recovery operation code"):
        h.lc.recover(vm_id, 9)


def test_resched_of_unknown_vm_moves_it_without_touching_the_dead_host(h: Harness) -> None:
    vm_id = _unknown_vm(h)
    h.lc.action("resched", vm_id)
    h.wait_for(lambda: h.state(vm_id) == RUNNING)
    vm = h.vm(vm_id)
    assert vm.last is not None and vm.last.hostname != "node1"
    assert LcmState.PROLOG_MIGRATE_UNKNOWN in {
        LcmState[e.lcm_state]
        for e in h.store.events(kind="state")
        if e.obj == "VM" and e.obj_id == vm_id
    }
    assert h.driver.on("node1", "cleanup", "shutdown", "migrate", "deploy") == []
    assert h.host(h.host_id("node1")).share.cpu_usage == 0


def test_restart_resumes_a_vm_left_in_boot() -> None:
    """A controller that dies while a VM is in BOOT finishes the boot after restart."""
    store = SqliteStore.memory()
    first = Harness(hosts=2, store=store)
    first.monitored()
    vm_id = first.create_vm(hold=True)
    first.sim.hang("node1")  # the deploy call will never return
    first.lc.deploy(vm_id, first.host_id("node1"))
    first.advance(0.5)
    assert first.state(vm_id) == (S.ACTIVE, L.BOOT)
    first.close()  # the controller is gone; the store keeps BOOT
    second = Harness(hosts=0, store=store, start=False)
    second.sim.add_host("node1")
    second.sim.add_host("node2")
    second.controller = Controller(store, second.clock, {"sim": SimHypervisor(second.sim)})
    second.run(second.controller.start())
    second.started = True
    second.wait_for(lambda: second.state(vm_id) == RUNNING)
    assert second.sim.running_hosts(vm_id) == ["node1"]
    second.close()


def test_a_failing_journal_listener_does_not_fail_the_committed_change(h: Harness) -> None:
    def broken(events: object) -> None:
        raise RuntimeError("listener bug")

    h.controller.journal.listeners.append(broken)
    vm_id = h.create_vm(hold=True)  # would raise if the listener's error escaped
    assert h.state(vm_id) == (S.HOLD, L.LCM_INIT)
