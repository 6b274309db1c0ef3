"""VM life cycle: the API actions, and the driver steps that follow them.

API methods (allocate, action, deploy, migrate, recover) check the state tables, change state
in one journal transaction and return at once, like OpenNebula's dispatch manager. A VM left
in a transient LCM state (PROLOG, BOOT, SHUTDOWN, ...) is then *driven*: one task per VM
looks the state up in `VM_STEPS`, performs that step's driver operation, and applies success
or failure, until the VM is stable. A step's result is applied only if the VM is still in the
state the step started from (an operator's `recover` may have moved it meanwhile).

After a restart `resume()` drives every VM found in a transient state again; driver
operations are idempotent, so an interrupted deploy or cleanup completes instead of repeating.

Safety: no driver call ever goes to a host in ERROR or OFFLINE for cleanup (it is dead or
fenced: the stale definition is removed when the host comes back), and PROLOG_MIGRATE_UNKNOWN
never touches the source host.

Callers: the API handlers (on the controller's loop thread), the scheduler, HA recovery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

from lazarus.domain import xml as docs
from lazarus.domain.entities import VM
from lazarus.domain.errors import (
    ActionError,
    AllocateError,
    NoExistsError,
)
from lazarus.domain.states import HistoryAction, HostState, LcmState, RecoverOp, VmState
from lazarus.domain.template import Template
from lazarus.domain.transitions import (
    HOLDS_CAPACITY,
    RUNNING,
    START_FAILURES,
    UNKNOWN,
    VM_STEPS,
    Op,
    Pair,
    apply_action,
    apply_migrate,
    recover_target,
)
from lazarus.ports.clock import Clock
from lazarus.ports.hypervisor import Hypervisor
from lazarus.ports.store import Store

from .driver_ops import Outcome, perform
from .journal import Journal, Tx
from .placement import (
    close_history,
    open_history,
    previous_host_id,
    reaccount,
    system_datastore,
)
from .restarts import RestartPolicy
from .settings import Settings
from .vm_ha import VmHa

log = logging.getLogger("lazarus.lifecycle")

ACTION_HISTORY = {
    "terminate": HistoryAction.TERMINATE,
    "terminate-hard": HistoryAction.TERMINATE_HARD,
    "poweroff": HistoryAction.POWEROFF,
    "poweroff-hard": HistoryAction.POWEROFF_HARD,
    "undeploy": HistoryAction.UNDEPLOY,
    "undeploy-hard": HistoryAction.UNDEPLOY_HARD,
    "suspend": HistoryAction.SUSPEND,
    "resume": HistoryAction.RESUME,
    "stop": HistoryAction.STOP,
    "hold": HistoryAction.HOLD,
    "release": HistoryAction.RELEASE,
    "reboot": HistoryAction.REBOOT,
    "reboot-hard": HistoryAction.REBOOT_HARD,
    "resched": HistoryAction.RESCHED,
    "unresched": HistoryAction.UNRESCHED,
}
_UNPLACED = {VmState.PENDING, VmState.HOLD, VmState.INIT, VmState.CLONING, VmState.DONE}


class Lifecycle:
    def __init__(
        self,
        store: Store,
        journal: Journal,
        clock: Clock,
        drivers: Mapping[str, Hypervisor],
        settings: Settings,
    ) -> None:
        self.store = store
        self.journal = journal
        self.clock = clock
        self.drivers = drivers
        self.settings = settings
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.restarts = RestartPolicy(self)
        self.vm_ha = VmHa(self)  # crashed guests on healthy hosts (core/vm_ha.py)

    # ------------------------------------------------------------------------------ API
    def allocate(
        self,
        template: Template,
        hold: bool = False,
        uid: int = 0,
        owner: tuple[int, str, str] = (0, "oneadmin", "oneadmin"),
    ) -> int:
        """A new VM of user `uid`; `owner` is (gid, uname, gname) of that user."""
        memory = template.get("MEMORY")
        if memory is None or not memory.strip().isdigit() or int(memory) <= 0:
            raise AllocateError("MEMORY attribute must be a positive integer value (MiB)")
        cpu = template.get("CPU")
        try:
            if cpu is None or float(cpu) <= 0:
                raise ValueError
        except ValueError:
            raise AllocateError("CPU attribute must be a positive number") from None
        vcpu = template.get("VCPU")
        if vcpu is not None and (not vcpu.strip().isdigit() or int(vcpu) <= 0):
            raise AllocateError("VCPU attribute must be a positive integer value")
        name = template.get("NAME")
        body = template.copy()
        body.remove("NAME")
        system, user = docs.split_vm_template(body)  # TEMPLATE as vm.xsd allows, the rest USER
        state = VmState.HOLD if hold else VmState.PENDING
        now = self.clock.now()
        with self.journal.tx() as t:
            vm = t.store.add_vm(
                VM(id=-1, name="", state=VmState.INIT, template=system, user_template=user)
            )
            vm.name = name or f"one-{vm.id}"
            vm.template.set("VMID", str(vm.id))
            vm.stime = int(now)
            vm.uid = uid
            vm.gid, vm.uname, vm.gname = owner
            t.vm_state(vm, (state, LcmState.LCM_INIT), "allocated")
        return vm.id

    def action(self, name: str, vm_id: int) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            target = apply_action(name, vm.state, vm.lcm_state)
            if name in ("resched", "unresched"):
                vm.resched = name == "resched"
                if vm.resched and self._off_failed_host(t, vm):
                    self.restarts.begin(t, vm, "rescheduled off a failed host")
                t.vm_flag(vm, "RESCHED", int(vm.resched), f"{name} requested")
                return vm_id
            if name.startswith("reboot"):
                t.note(vm, f"{name} requested")
                self._spawn(vm_id, self._reboot(vm_id, hard=name.endswith("-hard")))
                return vm_id
            if vm.last is not None and name in ACTION_HISTORY:
                vm.last.action = ACTION_HISTORY[name]
            self._enter(t, vm, target, f"{name} requested")
        self.kick(vm_id)
        return vm_id

    def deploy(self, vm_id: int, host_id: int, enforce: bool = False, ds_id: int = -1) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            target = apply_action("deploy", vm.state, vm.lcm_state)
            host = t.store.host(host_id)
            if host.state in (HostState.ERROR, HostState.OFFLINE):
                raise ActionError(
                    f"Host {host.id} ({host.name}) is {host.state.name}: cannot deploy there"
                )
            if enforce and not host.share.fits(vm.cpu, vm.memory):
                raise ActionError(f"Host {host.id} does not have enough capacity for VM {vm.id}")
            ds = system_datastore(t.store, vm, host, ds_id)
            open_history(vm, host, ds, self.clock.now(), HistoryAction.DEPLOY)
            vm.resched = False
            self._enter(t, vm, target, f"deploy on {host.subject}")
            _recount(t, vm)
        self.kick(vm_id)
        return vm_id

    def migrate(
        self,
        vm_id: int,
        host_id: int,
        live: bool = False,
        enforce: bool = False,
        ds_id: int = -1,
    ) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            target = apply_migrate(vm.state, vm.lcm_state, live)
            host = t.store.host(host_id)
            source_id = vm.host_id
            if source_id == host.id:
                raise ActionError(f"VM {vm.id} is already placed on host {host.id}")
            if vm.lcm_state in START_FAILURES and not self._off_failed_host(t, vm):
                raise ActionError(
                    f"VM {vm.id} failed to start on a host that is up: use recover --retry, "
                    "or recover --delete-recreate to place it again"
                )
            if host.state in (HostState.ERROR, HostState.OFFLINE):
                raise ActionError(
                    f"Host {host.id} ({host.name}) is {host.state.name}: cannot migrate there"
                )
            if enforce and not host.share.fits(vm.cpu, vm.memory):
                raise ActionError(f"Host {host.id} does not have enough capacity for VM {vm.id}")
            ds = system_datastore(t.store, vm, host, ds_id if ds_id >= 0 else self._ds_of(vm))
            kind = HistoryAction.LIVE_MIGRATE if live else HistoryAction.MIGRATE
            if vm.resched:
                kind = HistoryAction.RESCHED
            open_history(vm, host, ds, self.clock.now(), kind)
            vm.resched = False
            self._enter(t, vm, target, f"migrate to {host.subject}")
            _recount(t, vm)
        self.kick(vm_id)
        return vm_id

    def restart_in_place(self, vm_id: int) -> int:
        """Boot a rescheduled UNKNOWN VM on its own host, which is back (the scheduler)."""
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            target = apply_action("resume", vm.state, vm.lcm_state)
            vm.resched = False
            self._enter(t, vm, target, "rescheduled; its host is back: booting it there")
        self.kick(vm_id)
        return vm_id

    def recover(self, vm_id: int, op: int) -> int:
        try:
            rop = RecoverOp(op)
        except ValueError:
            raise ActionError("Wrong recovery operation code") from None
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            reason = f"recover {rop.name.lower().replace('_', '-')}"
            if rop is RecoverOp.DELETE:
                self._recover_delete(t, vm, reason)
            elif rop is RecoverOp.DELETE_RECREATE:
                if self._off_failed_host(t, vm):
                    self.restarts.begin(t, vm, "recreated off a failed host")
                self._recover_recreate(t, vm, reason)
            elif rop is RecoverOp.DELETE_DB:
                host_id = vm.host_id
                self._enter(t, vm, (VmState.DONE, LcmState.LCM_INIT), reason)
                t.store.delete_vm(vm.id)
                if host_id is not None:
                    reaccount(t.store, host_id)
                return vm_id
            else:
                target = recover_target(rop, vm.state, vm.lcm_state)
                if target is not None:
                    self._enter(t, vm, target, reason)
        self.kick(vm_id)
        return vm_id

    @staticmethod
    def _off_failed_host(t: Tx, vm: VM) -> bool:
        """The VM is placed on a host in ERROR or OFFLINE (so moving it is a recovery)."""
        if vm.host_id is None or vm.state not in HOLDS_CAPACITY:
            return False
        try:
            host = t.store.host(vm.host_id)
        except NoExistsError:
            return False
        return host.state in (HostState.ERROR, HostState.OFFLINE)

    def _recover_delete(self, t: Tx, vm: VM, reason: str) -> None:
        if vm.state is VmState.DONE:
            return
        if vm.state in (VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED):
            self._enter(t, vm, (VmState.ACTIVE, LcmState.CLEANUP_DELETE), reason)
        else:
            self._enter(t, vm, (VmState.DONE, LcmState.LCM_INIT), reason)

    def _recover_recreate(self, t: Tx, vm: VM, reason: str) -> None:
        if vm.state is VmState.DONE:
            raise ActionError("Cannot delete-recreate a VM already in DONE state")
        if vm.state in (VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED):
            self._enter(t, vm, (VmState.ACTIVE, LcmState.CLEANUP_RESUBMIT), reason)
        elif vm.state in (VmState.STOPPED, VmState.UNDEPLOYED, VmState.HOLD):
            self._enter(t, vm, (VmState.PENDING, LcmState.LCM_INIT), reason)

    # ------------------------------------------------------------------------ driving
    def kick(self, vm_id: int) -> None:
        """Make sure a VM in a transient state is being driven (no-op otherwise)."""
        task = self._tasks.get(vm_id)
        if task is not None and not task.done():
            return
        self._spawn(vm_id, self._drive(vm_id))

    def busy(self, vm_id: int) -> bool:
        """A driver operation for this VM is in flight (e.g. a live migration)."""
        task = self._tasks.get(vm_id)
        return task is not None and not task.done()

    def resume(self) -> int:
        """Drive every VM left in a transient state (after a restart). Returns how many."""
        transient = [
            vm.id
            for vm in self.store.vms(states=[VmState.ACTIVE])
            if vm.lcm_state in VM_STEPS
        ]
        for vm_id in transient:
            self.kick(vm_id)
        return len(transient) + self.restarts.resume() + self.vm_ha.resume()

    async def idle(self) -> None:
        """Wait until no VM is being driven (tests and the simulator use it)."""
        while True:
            pending = [t for t in self._tasks.values() if not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    def abort(self) -> list[asyncio.Task[None]]:
        """Cancel every driver task and restart timer without waiting, as a crash ends them;
        Controller.abort awaits what this returns."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        return [*tasks, *self.restarts.abort(), *self.vm_ha.abort()]

    async def close(self) -> None:
        await self.restarts.close()
        await self.vm_ha.close()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    def _spawn(self, vm_id: int, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks[vm_id] = task
        task.add_done_callback(lambda done: self._reap(vm_id, done))

    def _reap(self, vm_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(vm_id) is task:
            del self._tasks[vm_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("vm/%d: driver task failed", vm_id, exc_info=task.exception())

    async def _drive(self, vm_id: int) -> None:
        while True:
            try:
                vm = self.store.vm(vm_id)
            except NoExistsError:
                return
            if vm.state is not VmState.ACTIVE or vm.lcm_state not in VM_STEPS:
                return
            started_in = vm.lcm_state
            step = VM_STEPS[started_in]
            outcome = await self._perform(step.op, vm)
            with self.journal.tx() as t:
                current = t.store.vm(vm_id)
                if (current.state, current.lcm_state) != (VmState.ACTIVE, started_in):
                    continue  # moved meanwhile (e.g. recover): its new state decides
                if outcome.deploy_id is not None:
                    current.deploy_id = outcome.deploy_id
                if outcome.ok:
                    self._enter(t, current, step.success, outcome.detail)
                else:
                    self._fail(t, current, step.failure, outcome.detail)

    def _fail(self, t: Tx, vm: VM, target: Pair, detail: str) -> None:
        if target == RUNNING and vm.prev_lcm_state is LcmState.UNKNOWN:
            target = UNKNOWN  # a refused shutdown of an UNKNOWN VM leaves it UNKNOWN
        if vm.lcm_state is LcmState.BOOT_UNKNOWN:  # before: the state change carries it
            self.vm_ha.restart_failed(t, vm, detail)
        abandoned = None
        if vm.lcm_state is LcmState.MIGRATE:  # the VM stays where it was
            abandoned = vm.history.pop()
            if vm.last is not None:
                vm.last.etime = 0
        self._enter(t, vm, target, f"failed: {detail}")
        if abandoned is not None:  # back on its source host
            reaccount(t.store, abandoned.hid)
            _recount(t, vm)
        if vm.state is VmState.ACTIVE and vm.lcm_state in START_FAILURES:
            self.restarts.failed(t, vm, detail)

    def _enter(self, t: Tx, vm: VM, target: Pair, reason: str) -> None:
        """Apply `target` with its side effects on placement and capacity.

        The host's capacity is recomputed when the VM starts or stops holding capacity there;
        a step that keeps it (PROLOG -> BOOT -> RUNNING) changes nothing to count. Callers
        that move the VM's placement (open or drop a history record) recount both hosts."""
        state = target[0]
        now = self.clock.now()
        host_id = vm.host_id
        held = vm.state in HOLDS_CAPACITY
        if state in (VmState.DONE, VmState.PENDING, VmState.STOPPED, VmState.UNDEPLOYED):
            close_history(vm, now)
            if state in (VmState.DONE, VmState.PENDING):
                vm.deploy_id = ""
                vm.resched = False
            if state is VmState.DONE:
                vm.etime = int(now)
        if state is VmState.ACTIVE and target[1] is LcmState.RUNNING and vm.last is not None:
            vm.last.rstime = vm.last.rstime or int(now)
            self.restarts.started(vm)
            self.vm_ha.started(vm)
        if not t.vm_state(vm, target, reason):
            t.store.save_vm(vm)
        if host_id is not None and held != (state in HOLDS_CAPACITY):
            reaccount(t.store, host_id)

    enter = _enter  # for the restart policy (core/restarts.py)

    async def _reboot(self, vm_id: int, hard: bool) -> None:
        vm = self.store.vm(vm_id)
        outcome = await self._perform(Op.SHUTDOWN, vm, hard=hard)
        if outcome.ok:
            outcome = await self._perform(Op.DEPLOY, vm)
        with self.journal.tx() as t:
            t.note(vm, f"reboot {'ok' if outcome.ok else 'failed: ' + outcome.detail}")

    # ------------------------------------------------------------------ driver operations
    def _ds_of(self, vm: VM) -> int:
        return vm.last.ds_id if vm.last is not None else -1

    async def _perform(self, op: Op, vm: VM, hard: bool | None = None) -> Outcome:
        return await perform(op, vm, self.store, self.drivers, self.settings, hard)

    perform = _perform


def _recount(t: Tx, vm: VM) -> None:
    """After the VM's placement moved: recount the host it is on and the one it left."""
    for host_id in {vm.host_id, previous_host_id(vm)}:
        if host_id is not None:
            reaccount(t.store, host_id)
