"""ft/host_error end to end on the virtual clock: the real core, the real API method table
(in-process client), simulated power switches reached through the fence-agent protocol.

The invariant checked in every test by a sim listener: a VM never runs on two hosts at once,
and never starts on another host while its old host is still powered on (unless -u).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from helpers.core import Harness
from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.local import LocalClient
from lazarus.api.stack import build_dispatcher
from lazarus.domain import xml as docs
from lazarus.domain.entities import User
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.drivers.fence.sim import SimAgentRunner, SimFault
from lazarus.ha.fencers import agent_fencer
from lazarus.ha.host_error import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    HostErrorRun,
    UsageError,
    host_id_from_template,
    parse_args,
)
from lazarus.ha.incident import (
    LOCK_WAIT,
    IllegalMove,
    Incident,
    IncidentState,
    MemoryLock,
    incident_key,
)

S, L = VmState, LcmState
RUNNING = (S.ACTIVE, L.RUNNING)


class Cluster:
    """A harness plus the API stack, fence runner, and the safety oracle."""

    def __init__(self, hosts: int = 3) -> None:
        self.h = Harness(hosts=hosts)
        with self.h.store.transaction() as tx:
            tx.add_user(User(id=-1, name="oneadmin", password_hash=hash_password("pw")))
        dispatcher = build_dispatcher(self.h.controller, Authenticator(self.h.store.user_by_name))
        self.api = LocalClient(dispatcher, "oneadmin:pw")
        self.runner = SimAgentRunner(self.h.sim, self.h.clock)
        self.lock = MemoryLock()
        self.lines: list[str] = []
        self.violations: list[str] = []
        self.h.sim.listener = self._oracle
        for index in range(hosts):
            name = f"node{index + 1}"
            fence = f'FENCE = [ AGENT = "fence_sim", PLUG = "{name}" ]'
            self.h.inv.update_host(self.h.host_id(name), Template.parse(fence), True)
        self.h.monitored()

    def _oracle(self, event: str, host: str, deploy_id: str | None) -> None:
        if deploy_id is None or not deploy_id.startswith("one-"):
            return
        vm_id = int(deploy_id[4:])
        running = self.h.sim.running_hosts(vm_id)
        if len(running) > 1:
            self.violations.append(f"{deploy_id} runs on {running} at {self.h.clock.now()}")

    def fail(self, name: str, how: str = "power") -> None:
        getattr(self.h.sim, {"power": "power_off", "network": "cut_network"}[how])(name)
        host_id = self.h.host_id(name)
        self.h.wait_for(lambda: self.h.host(host_id).state is HostState.ERROR)

    def template(self, name: str) -> str:
        host = self.h.host(self.h.host_id(name))
        return base64.b64encode(docs.host_xml(host).encode()).decode()

    def hook(self, name: str, *flags: str,
             alongside: Coroutine[Any, Any, None] | None = None) -> int:
        _, options = parse_args([self.template(name), *flags])
        run = HostErrorRun(
            api=self.api,
            clock=self.h.clock,
            fencer=agent_fencer(self.runner, self.h.clock),
            lock=self.lock,
            emit=self.lines.append,
            options=options,
            host_id=self.h.host_id(name),
        )
        if alongside is None:
            return self.h.run(run.run())

        async def both() -> int:
            other = asyncio.ensure_future(alongside)
            code = await run.run()
            await other
            return code

        return self.h.run(both())

    def incident(self, name: str) -> Incident | None:
        return Incident.from_template(self.h.host(self.h.host_id(name)).template)


@pytest.fixture
def c() -> Iterator[Cluster]:
    cluster = Cluster()
    yield cluster
    assert cluster.violations == []
    cluster.h.close()


def vms_on(c: Cluster, name: str, count: int, extra: str = "") -> list[int]:
    return [c.h.running_vm(f"{name}-{i}", host=name, extra=extra) for i in range(count)]


def test_migrate_fences_then_moves_every_vm(c: Cluster) -> None:
    ids = vms_on(c, "node1", 3)
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "2") == EXIT_OK
    assert c.h.sim.power_state("node1") == "off"
    c.h.wait_for(lambda: all(c.h.state(i) == RUNNING for i in ids))
    assert all(c.h.vm(i).last.hostname != "node1" for i in ids)  # type: ignore[union-attr]
    assert ("off", "node1") in c.runner.calls and ("status", "node1") in c.runner.calls
    incident = c.incident("node1")
    assert incident is not None and incident.state == "DONE"
    assert sorted(incident.handled) == ids
    assert any("Fencing success" in line for line in c.lines)
    assert all(line.startswith("[") and "][HOST 0][" in line for line in c.lines)


def test_network_cut_host_is_fenced_before_any_vm_starts_elsewhere(c: Cluster) -> None:
    ids = vms_on(c, "node2", 2)
    c.fail("node2", "network")
    assert c.h.sim.running_hosts(ids[0]) == ["node2"]  # still running there: split brain risk
    assert c.hook("node2", "-m", "-p", "0") == EXIT_OK
    c.h.wait_for(lambda: all(c.h.state(i) == RUNNING for i in ids))
    assert all(len(c.h.sim.running_hosts(i)) == 1 for i in ids)
    # the oracle (fixture teardown) proves no instant had two copies


def test_migrate_skips_vms_on_non_shared_datastores(c: Cluster) -> None:
    local = c.api.call("one.datastore.allocate", 'NAME="local"\nTYPE="SYSTEM_DS"\nTM_MAD="ssh"')
    shared_vm = c.h.running_vm("s", host="node1")
    local_vm = c.h.create_vm("l", hold=True)
    c.h.lc.deploy(local_vm, c.h.host_id("node1"), False, local)
    c.h.wait_for(lambda: c.h.state(local_vm) == RUNNING)
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK
    c.h.wait_for(lambda: c.h.state(shared_vm) == RUNNING)
    assert c.h.vm(local_vm).last.hostname == "node1"  # type: ignore[union-attr]
    assert any(f"Skipping VM {local_vm} deployed on non-shared" in line for line in c.lines)


@pytest.mark.parametrize(("force", "poweroff_moves"), [(False, False), (True, True)])
def test_recreate_with_and_without_force(c: Cluster, force: bool, poweroff_moves: bool) -> None:
    running, stopped = vms_on(c, "node1", 2)
    c.h.lc.action("poweroff", stopped)
    c.h.settle()
    c.fail("node1")
    flags = ["-r", "-p", "0"] + (["-f"] if force else [])
    assert c.hook("node1", *flags) == EXIT_OK
    c.h.wait_for(lambda: c.h.state(running) == RUNNING)
    assert c.h.vm(running).last.hostname != "node1"  # type: ignore[union-attr]
    if poweroff_moves:
        c.h.wait_for(lambda: c.h.state(stopped) == RUNNING)
    else:
        assert c.h.state(stopped) == (S.POWEROFF, L.LCM_INIT)


def test_delete_mode(c: Cluster) -> None:
    ids = vms_on(c, "node3", 2)
    c.fail("node3")
    assert c.hook("node3", "-d", "-p", "0") == EXIT_OK
    c.h.settle()
    assert all(c.h.state(i) == (S.DONE, L.LCM_INIT) for i in ids)


def test_host_back_during_wait_touches_nothing(c: Cluster) -> None:
    ids = vms_on(c, "node1", 1)
    c.fail("node1", "network")
    c.h.loop.call_later(1.0, c.h.sim.restore_network, "node1")
    assert c.hook("node1", "-m", "-p", "5") == EXIT_OK
    assert c.runner.calls == []
    assert c.h.sim.power_state("node1") == "on"
    assert any("Host came back" in line for line in c.lines)
    c.h.wait_for(lambda: c.h.state(ids[0]) == RUNNING)
    assert c.h.vm(ids[0]).last.hostname == "node1"  # type: ignore[union-attr]


def test_retry_of_an_aborted_run_touches_nothing(c: Cluster) -> None:
    """An operator retries the execution that ended "host came back": the retry carries the
    old ERROR text, finds the ABORTED incident of the same key, and must not skip the wait
    and the fence straight to recovery (it rescheduled a healthy host's VMs, unfenced)."""
    ids = vms_on(c, "node1", 1)
    c.fail("node1", "network")
    failed_template = c.template("node1")
    c.h.loop.call_later(1.0, c.h.sim.restore_network, "node1")
    assert c.hook("node1", "-m", "-p", "5") == EXIT_OK
    assert c.incident("node1").state == "ABORTED"  # type: ignore[union-attr]
    c.h.wait_for(lambda: c.h.host(c.h.host_id("node1")).state is HostState.MONITORED)
    _, options = parse_args([failed_template, "-m", "-p", "0"])
    run = HostErrorRun(api=c.api, clock=c.h.clock, fencer=agent_fencer(c.runner, c.h.clock),
                       lock=c.lock, emit=c.lines.append, options=options,
                       host_id=c.h.host_id("node1"),
                       error_text=host_id_from_template(failed_template)[1])
    assert c.h.run(run.run()) == EXIT_OK
    c.h.settle()
    assert c.runner.calls == []
    assert not c.h.vm(ids[0]).resched
    assert c.h.state(ids[0]) == RUNNING and c.h.vm(ids[0]).last.hostname == "node1"  # type: ignore[union-attr]


def test_second_run_for_the_same_failure_is_a_no_op(c: Cluster) -> None:
    vms_on(c, "node1", 2)
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK
    calls = len(c.runner.calls)
    c.lines.clear()
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK
    assert len(c.runner.calls) == calls
    assert any("already handled" in line for line in c.lines)


def test_a_run_that_never_gets_the_lock_fails_and_touches_nothing(c: Cluster) -> None:
    """Before: a run finding the lock held exited 0 (SUCCESS) at once. After a controller
    crash the holder was an orphan that died at its next write: nobody fenced, the incident
    stayed FENCING and the hook record said success."""
    vms_on(c, "node1", 1)
    c.fail("node1")
    assert c.lock.acquire(c.h.host_id("node1"))  # another run holds the host, forever
    started = c.h.clock.now()
    assert c.hook("node1", "-m", "-p", "0") == EXIT_ERROR
    assert c.h.clock.now() - started >= LOCK_WAIT  # it waited (virtual time) before giving up
    assert c.runner.calls == []
    assert any("still holds this host's lock" in line and "[E]" in line for line in c.lines)


def test_a_run_waits_for_the_lock_and_takes_over_an_unfinished_incident(c: Cluster) -> None:
    """The holder (an orphan of a crashed controller) lets go after 20 s: the waiting run
    takes the lock, resumes the FENCING incident, fences and recovers the VMs."""
    ids = vms_on(c, "node1", 2)
    c.fail("node1")
    host = c.h.host(c.h.host_id("node1"))
    key = incident_key(host.template.get("ERROR") or "", host.id)
    left = Incident(key, "FENCING", int(c.h.clock.now()), 0, "migrate")
    c.h.inv.update_host(host.id, left.to_template(), True)
    assert c.lock.acquire(host.id)

    async def orphan_dies() -> None:
        await c.h.clock.sleep(20)
        c.lock.release(host.id)

    code = c.hook("node1", "-m", "-p", "0", alongside=orphan_dies())
    assert code == EXIT_OK
    assert ("off", "node1") in c.runner.calls  # fenced once more
    incident = c.incident("node1")
    assert incident is not None and incident.state == "DONE"
    c.h.wait_for(lambda: all(c.h.state(i) == RUNNING for i in ids))


def test_fence_failure_touches_no_vm_until_an_operator_confirms(c: Cluster) -> None:
    ids = vms_on(c, "node1", 2)
    c.fail("node1", "network")
    c.runner.set_fault("node1", SimFault(unreachable=True))
    assert c.hook("node1", "-m", "-p", "0") == EXIT_ERROR
    assert [c.h.state(i) for i in ids] == [(S.ACTIVE, L.UNKNOWN)] * 2
    assert all(not c.h.vm(i).resched for i in ids)
    incident = c.incident("node1")
    assert incident is not None and incident.state == "FENCE_FAILED"
    assert any("lazarus host fenced 0 --confirm" in line for line in c.lines)
    # The operator powers the host off by hand and says so; the retried hook proceeds.
    c.h.sim.power_off("node1")
    c.api.call("lazarus.host.fenced", c.h.host_id("node1"))
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK
    c.h.wait_for(lambda: all(c.h.state(i) == RUNNING for i in ids))
    assert any("confirmed by operator oneadmin" in line for line in c.lines)


def test_lying_fence_device_is_caught_by_nothing_but_the_oracle(c: Cluster) -> None:
    """A BMC that says off but leaves the host running defeats any fencing: the simulator's
    oracle sees the second copy. This documents the limit (peers.md: storage leases help)."""
    ids = vms_on(c, "node1", 1)
    c.fail("node1", "network")
    c.runner.set_fault("node1", SimFault.lying())
    c.hook("node1", "-m", "-p", "0")
    c.h.wait_for(lambda: c.h.state(ids[0]) == RUNNING)
    assert c.violations  # the oracle noticed two copies
    c.violations.clear()


def test_mass_failure_guard(c: Cluster) -> None:
    ids = vms_on(c, "node1", 1)
    c.fail("node1")
    c.fail("node2")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_ERROR
    assert c.runner.calls == []
    assert c.h.state(ids[0]) == (S.ACTIVE, L.UNKNOWN)
    assert any("Mass failure: 2 of 3 hosts" in line for line in c.lines)
    assert any("--ignore-mass-failure" in line for line in c.lines)


def test_ha_no_is_skipped_and_priority_orders_the_work(c: Cluster) -> None:
    low = c.h.running_vm("low", host="node1", extra="HA_PRIORITY = 1")
    high = c.h.running_vm("high", host="node1", extra="HA_PRIORITY = 9")
    off = c.h.running_vm("off", host="node1", extra='HA = "NO"')
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK
    order = [line.split()[-1] for line in c.lines if "] resched " in line]
    assert order == [str(high), str(low)]
    assert any(f"Skipping VM {off}: HA = NO" in line for line in c.lines)
    assert c.h.state(off) == (S.ACTIVE, L.UNKNOWN)


def test_resume_after_a_crash_does_not_fence_twice(c: Cluster) -> None:
    ids = vms_on(c, "node1", 2)
    c.fail("node1")
    c.h.sim.power_off("node1")
    host = c.h.host(c.h.host_id("node1"))
    from lazarus.ha.incident import incident_key

    key = incident_key(host.template.get("ERROR") or "", host.id)
    crashed = Incident(key, "RECOVERING", int(c.h.clock.now()), 0, "migrate", "ok", [ids[0]])
    c.h.lc.action("resched", ids[0])  # the first run had handled this one
    c.h.inv.update_host(host.id, crashed.to_template(), True)
    assert c.hook("node1", "-m", "-p", "2") == EXIT_OK
    assert c.runner.calls == []  # resumed after the fence
    assert any("Resuming incident" in line for line in c.lines)
    c.h.wait_for(lambda: all(c.h.state(i) == RUNNING for i in ids))


def test_no_fencing_warns(c: Cluster) -> None:
    vms_on(c, "node1", 1)
    c.fail("node1")
    assert c.hook("node1", "-r", "-p", "0", "-u") == EXIT_OK
    assert c.runner.calls == []
    assert any("WARNING: Fencing disabled" in line for line in c.lines)
    incident = c.incident("node1")
    assert incident is not None and incident.fence.startswith("SKIPPED")


def test_a_vm_that_cannot_be_handled_gives_exit_1_and_is_recorded(c: Cluster) -> None:
    ok = c.h.running_vm("ok", host="node1")
    broken = c.h.running_vm("broken", host="node1")
    c.h.lc.action("poweroff", broken)
    c.h.settle()
    c.h.sim.fail_next("node1", "cleanup")
    c.h.lc.action("terminate", broken)
    c.h.settle()
    assert c.h.state(broken) == (S.ACTIVE, L.EPILOG_FAILURE)  # resched refuses this state
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_FAILED
    incident = c.incident("node1")
    assert incident is not None and incident.failed == [broken] and ok in incident.handled
    assert incident.state != "DONE"  # a retry will try the failed VM again
    assert any(f"VM {broken}: migrate failed" in line for line in c.lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["x"], "A mode must be supplied"),
        (["x", "-m", "-r"], "only one mode"),
        (["x", "-m", "-p", "two"], "whole number"),
        (["-m"], "missing the base64 HOST"),
        (["x", "-m", "--bogus"], "bogus"),
        (["x", "-m", "--watch", "x"], "--watch needs seconds"),
        (["x", "-m", "--watch", "-1"], "--watch needs seconds"),
        (["x", "-m", "--mass-failure-window", "nan"], "--mass-failure-window needs seconds"),
        (["x", "-m", "--mass-failure-share", "nan"], "share in"),
        (["x", "-m", "--mass-failure-share", "1.5"], "share in"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_args(argv)


def test_options_like_opennebula() -> None:
    b64, options = parse_args(["QUJD", "-r", "-f", "-p", "5", "-u"])
    assert b64 == "QUJD"
    assert (options.mode, options.force, options.pause, options.fencing) == (
        "recreate", True, 5, False)
    assert parse_args(["x", "--migrate", "--pause=0"])[1].pause == 0


def test_mass_failure_override_on_the_host_lets_a_retry_proceed(c: Cluster) -> None:
    ids = vms_on(c, "node1", 1)
    c.fail("node1")
    c.fail("node2")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_ERROR
    assert any("HA_IGNORE_MASS_FAILURE" in line for line in c.lines)
    c.api.call("one.host.update", c.h.host_id("node1"), "HA_IGNORE_MASS_FAILURE = YES", 1)
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK  # the same arguments, as a retry
    c.h.wait_for(lambda: c.h.state(ids[0]) == RUNNING)


def test_a_flapping_host_is_not_fenced_more_than_the_limit_per_hour(c: Cluster) -> None:
    vm = c.h.running_vm("flap", host="node1")
    node1 = c.h.host_id("node1")
    for episode in range(3):
        c.fail("node1")
        assert c.hook("node1", "-m", "-p", "0") == EXIT_OK, episode
        c.h.wait_for(lambda: c.h.state(vm) == RUNNING)
        c.h.sim.power_on("node1")
        c.h.wait_for(lambda: c.h.host(node1).state is HostState.MONITORED)
        c.h.lc.migrate(vm, node1, True)  # back to node1 for the next episode
        c.h.wait_for(lambda: c.h.vm(vm).host_id == node1 and c.h.state(vm) == RUNNING)
        c.h.advance(60)
    fences = len([call for call in c.runner.calls if call == ("off", "node1")])
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_ERROR
    assert len([call for call in c.runner.calls if call == ("off", "node1")]) == fences
    assert c.h.state(vm) == (S.ACTIVE, L.UNKNOWN)  # untouched
    assert any("fenced 3 times in the last hour" in line for line in c.lines)
    c.h.advance(3600)  # an hour later the limit has room again: a retry proceeds
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK
    c.h.wait_for(lambda: c.h.state(vm) == RUNNING)


def test_only_the_failed_hosts_vms_are_read_never_the_whole_pool(c: Cluster) -> None:
    # With 40,000 VMs the pool document is 24 MB; the hook reads the host's VMS list instead.
    ids = vms_on(c, "node1", 2)
    others = vms_on(c, "node2", 3)
    calls: list[tuple[str, tuple[object, ...]]] = []
    inner = c.api.call

    def recording(method: str, *params: object) -> object:
        calls.append((method, params))
        return inner(method, *params)

    c.api.call = recording  # type: ignore[method-assign]
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "1") == EXIT_OK
    c.h.wait_for(lambda: all(c.h.state(i) == RUNNING for i in ids))
    assert not any(method == "one.vmpool.info" for method, _ in calls)
    read = {params[0] for method, params in calls if method == "one.vm.info"}
    assert read == set(ids) and not read & set(others)


def test_the_incident_moves_only_by_its_table() -> None:
    incident = Incident("k", IncidentState.WAITING)
    with pytest.raises(IllegalMove):
        incident.advance(IncidentState.RECOVERING)  # never past the fence
    incident.advance(IncidentState.FENCING)
    incident.advance(IncidentState.FENCE_FAILED)
    incident.advance(IncidentState.FENCE_FAILED)  # a failed retry stays
    incident.advance(IncidentState.FENCED)
    incident.advance(IncidentState.RECOVERING)
    incident.advance(IncidentState.DONE)
    for final in (IncidentState.DONE, IncidentState.ABORTED):
        incident.state = final
        for target in IncidentState:
            with pytest.raises(IllegalMove):
                incident.advance(target)


def test_the_incident_says_where_each_vm_ended(c: Cluster) -> None:
    ids = vms_on(c, "node1", 2)
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_OK
    incident = c.incident("node1")
    assert incident is not None and incident.state == "DONE"
    for vm_id in ids:
        where = c.h.vm(vm_id).last.hostname  # type: ignore[union-attr]
        assert incident.vms[vm_id] == f"RUNNING on {where}" and where != "node1"


def test_a_vm_the_restart_policy_gave_up_is_said_and_exits_1(c: Cluster) -> None:
    (vm_id,) = vms_on(c, "node1", 1)
    for name in ("node2", "node3"):
        c.h.sim.fail_next(name, "deploy", count=10)
    c.fail("node1")
    assert c.hook("node1", "-m", "-p", "0") == EXIT_FAILED
    incident = c.incident("node1")
    assert incident is not None and incident.state == "DONE"
    assert incident.vms[vm_id].startswith("GAVE_UP in ACTIVE/BOOT_FAILURE")
    assert any("restart policy gave up" in line for line in c.lines)
    assert c.h.state(vm_id) == (S.ACTIVE, L.BOOT_FAILURE)
