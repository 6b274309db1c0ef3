"""VM management (core/vm_admin.py through api/methods.py): one.vm.update, rename, lock and
unlock, chown, chmod, resize; and ft/host_error run with the HA role's token, honouring locks
and HA / HA_PRIORITY changed after creation."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers.core import Harness
from helpers.xsd import validate
from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.local import LocalClient
from lazarus.api.roles import ensure_roles, issue_ha_token
from lazarus.api.stack import build_dispatcher
from lazarus.domain import xml as docs
from lazarus.domain.entities import User
from lazarus.domain.errors import ActionError, ErrorCode, LockedError
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.drivers.fence.sim import SimAgentRunner
from lazarus.ha.fencers import agent_fencer
from lazarus.ha.host_error import EXIT_OK, HostErrorRun, parse_args
from lazarus.ha.incident import Incident, MemoryLock

RUNNING = (VmState.ACTIVE, LcmState.RUNNING)


class World:
    """A started controller, oneadmin's client and the HA role's client (its token)."""

    def __init__(self) -> None:
        self.h = Harness(hosts=3)
        with self.h.store.transaction() as tx:
            tx.add_user(User(id=-1, name="oneadmin", password_hash=hash_password("pw")))
        ensure_roles(self.h.store)
        ha_session = issue_ha_token(self.h.store)

        def run(fn: Callable[[], Any]) -> Any:
            """On the loop already (ft/host_error's calls): call; else run it on the loop."""
            if self.h.loop.is_running():
                return fn()

            async def on_loop() -> Any:
                return fn()

            return self.h.run(on_loop())

        dispatcher = build_dispatcher(
            self.h.controller, Authenticator(self.h.store.user_by_name, self.h.clock.now), run=run
        )
        self.admin = LocalClient(dispatcher, "oneadmin:pw")
        self.ha = LocalClient(dispatcher, ha_session)
        self.dispatcher = dispatcher
        self.lines: list[str] = []
        self.runner = SimAgentRunner(self.h.sim, self.h.clock)
        for index in range(3):
            name = f"node{index + 1}"
            fence = f'FENCE = [ AGENT = "fence_sim", PLUG = "{name}" ]'
            self.h.inv.update_host(self.h.host_id(name), Template.parse(fence), True)
        self.h.monitored()

    def fail(self, name: str) -> None:
        self.h.sim.power_off(name)
        host_id = self.h.host_id(name)
        self.h.wait_for(lambda: self.h.host(host_id).state is HostState.ERROR)

    def host_error(self, name: str, *flags: str) -> int:
        host = self.h.host(self.h.host_id(name))
        template = base64.b64encode(docs.host_xml(host).encode()).decode()
        _, options = parse_args([template, *flags])
        run = HostErrorRun(
            api=self.ha,
            clock=self.h.clock,
            fencer=agent_fencer(self.runner, self.h.clock),
            lock=MemoryLock(),
            emit=self.lines.append,
            options=options,
            host_id=host.id,
        )
        return self.h.run(run.run())


@pytest.fixture
def w() -> Iterator[World]:
    world = World()
    yield world
    world.h.close()


def test_host_error_with_the_ha_token_recovers_and_skips_locked_and_ha_no_vms(w: World) -> None:
    keep = w.h.running_vm("keep", host="node1")
    locked = w.h.running_vm("locked", host="node1")
    late_no = w.h.running_vm("late-no", host="node1")
    w.admin.call("one.vm.lock", locked, 1)
    w.admin.call("one.vm.update", late_no, 'HA = "NO"', 1)  # changed after creation
    w.fail("node1")
    assert w.host_error("node1", "-m", "-p", "0") == EXIT_OK
    w.h.wait_for(lambda: w.h.state(keep) == RUNNING)
    assert w.h.vm(keep).last.hostname != "node1"  # type: ignore[union-attr]
    assert w.h.state(locked) == (VmState.ACTIVE, LcmState.UNKNOWN)
    assert w.h.state(late_no) == (VmState.ACTIVE, LcmState.UNKNOWN)
    assert any(f"Skipping VM {locked}: locked (level 1)" in line for line in w.lines)
    incident = Incident.from_template(w.h.host(w.h.host_id("node1")).template)
    assert incident is not None and incident.state == "DONE"


def test_ha_priority_changed_after_creation_orders_the_work(w: World) -> None:
    first = w.h.running_vm("first", host="node1", extra="HA_PRIORITY = 9")
    second = w.h.running_vm("second", host="node1", extra="HA_PRIORITY = 1")
    w.admin.call("one.vm.update", second, "HA_PRIORITY = 20", 1)
    w.fail("node1")
    assert w.host_error("node1", "-m", "-p", "0") == EXIT_OK
    order = [line.split()[-1] for line in w.lines if "] resched " in line]
    assert order == [str(second), str(first)]


def test_update_replaces_or_merges_the_user_template(w: World) -> None:
    vm_id = w.h.create_vm("u", extra='HA_PRIORITY = 3\nOWNER_NOTE = "a"', hold=True)
    w.admin.call("one.vm.update", vm_id, 'OWNER_NOTE = "b"\nEXTRA = "1"', 1)
    user = w.h.vm(vm_id).user_template
    assert user.get("HA_PRIORITY") == "3" and user.get("OWNER_NOTE") == "b"
    w.admin.call("one.vm.update", vm_id, 'ONLY = "this"', 0)
    assert [n for n, _ in w.h.vm(vm_id).user_template.items] == ["ONLY"]
    validate("vm.xsd", w.admin.call("one.vm.info", vm_id))
    for bad in ('HA = "maybe"', "HA_PRIORITY = x", "NOT VALID ["):
        with pytest.raises(Exception) as exc:
            w.admin.call("one.vm.update", vm_id, bad, 1)
        assert getattr(exc.value, "code", None) == ErrorCode.INTERNAL or "0x2000" in str(exc.value)


def test_rename_chown_chmod(w: World) -> None:
    vm_id = w.h.create_vm("r", hold=True)
    w.admin.call("one.vm.rename", vm_id, "renamed")
    assert w.h.vm(vm_id).name == "renamed"
    with pytest.raises(ActionError):
        w.admin.call("one.vm.rename", vm_id, "bad\nname")
    uid = w.admin.call("one.user.allocate", "dora", "pw", "core", [])
    w.admin.call("one.vm.chown", vm_id, uid, -1)
    vm = w.h.vm(vm_id)
    assert (vm.uid, vm.uname, vm.gid) == (uid, "dora", 0)
    w.admin.call("one.vm.chown", vm_id, -1, 1)
    assert (w.h.vm(vm_id).gid, w.h.vm(vm_id).gname) == (1, "users")
    w.admin.call("one.vm.chmod", vm_id, -1, -1, -1, 1, 1, -1, -1, -1, -1)
    assert w.h.vm(vm_id).perms == "660"
    document = w.admin.call("one.vm.info", vm_id)
    assert "<GROUP_U>1</GROUP_U><GROUP_M>1</GROUP_M>" in document
    validate("vm.xsd", document)
    with pytest.raises(Exception, match="Permissions"):
        w.admin.call("one.vm.chmod", vm_id, 2, -1, -1, -1, -1, -1, -1, -1, -1)
    for method, args in (
        ("one.vm.chown", (vm_id, 99, -1)),
        ("one.vm.chown", (vm_id, -1, 99)),
        ("one.vm.rename", (99, "x")),
        ("one.vm.lock", (99, 1)),
    ):
        result = w.dispatcher.call(method, ["oneadmin:pw", *args])
        assert result[2] == ErrorCode.NO_EXISTS, (method, result)


def test_lock_levels_refuse_what_they_cover(w: World) -> None:
    vm_id = w.h.running_vm("l", host="node2")

    def code(method: str, *args: object) -> int:
        return int(w.dispatcher.call(method, ["oneadmin:pw", *args])[2])

    w.admin.call("one.vm.lock", vm_id, 3)  # admin: only ADMIN operations
    assert code("one.vm.action", "resched", vm_id) == ErrorCode.LOCKED
    assert code("one.vm.migrate", vm_id, w.h.host_id("node3"), False) == ErrorCode.LOCKED
    assert code("one.vm.rename", vm_id, "still-manageable") == 0
    with pytest.raises(LockedError):
        w.admin.call("one.vm.lock", vm_id, 1, True)  # test: already locked
    w.admin.call("one.vm.lock", vm_id, 2)  # manage: MANAGE and ADMIN
    assert code("one.vm.rename", vm_id, "no") == ErrorCode.LOCKED
    assert code("one.vm.action", "poweroff", vm_id) == ErrorCode.LOCKED
    w.admin.call("one.vm.lock", vm_id, 4)  # all
    assert code("one.vm.update", vm_id, 'X = "1"', 1) == ErrorCode.LOCKED
    assert "<LOCK><LOCKED>4</LOCKED>" in w.admin.call("one.vm.info", vm_id)  # info is free
    assert code("one.vm.lock", vm_id, 9) == ErrorCode.RPC_API
    w.admin.call("one.vm.unlock", vm_id)
    assert code("one.vm.rename", vm_id, "free") == 0
    assert "<LOCK>" not in w.admin.call("one.vm.info", vm_id)


def test_resize_recounts_the_hosts_capacity(w: World) -> None:
    vm_id = w.h.running_vm("big", host="node1")
    host_id = w.h.host_id("node1")
    with pytest.raises(ActionError, match="not available for state ACTIVE"):
        w.admin.call("one.vm.resize", vm_id, 'MEMORY = "256"', False)
    w.admin.call("one.vm.action", "poweroff", vm_id)
    w.h.wait_for(lambda: w.h.vm(vm_id).state is VmState.POWEROFF)
    before = w.h.host(host_id).share.mem_usage
    grown = w.h.vm(vm_id).memory + 1024 * 1024  # + 1 GiB (KiB)
    w.admin.call("one.vm.resize", vm_id, f'MEMORY = "{grown // 1024}"\nCPU = "2"', False)
    share = w.h.host(host_id).share
    assert share.mem_usage == before + 1024 * 1024 and share.cpu_usage == 200
    assert w.h.vm(vm_id).template.get("CPU") == "2"
    with pytest.raises(ActionError, match="not enough capacity"):
        w.admin.call("one.vm.resize", vm_id, 'MEMORY = "60000"', True)
    with pytest.raises(ActionError, match="MEMORY"):
        w.admin.call("one.vm.resize", vm_id, 'MEMORY = "0"', False)
    with pytest.raises(ActionError, match="needs CPU"):
        w.admin.call("one.vm.resize", vm_id, 'NAME = "x"', False)
    assert w.h.host(host_id).share.mem_usage == before + 1024 * 1024
