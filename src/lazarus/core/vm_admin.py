"""VM management besides the life cycle: one.vm.update, rename, lock/unlock, chown, chmod,
resize (api/methods.py calls these on the controller's loop thread).

Each is one journal transaction: the VM saved with a TEMPLATE (update, resize), RENAMED or
NOTE event, so hooks and the log see it. Who may call them, and whether the VM's lock allows
it, is decided before (api/rights.py); what is checked here depends on the VM's state.

* update: USER_TEMPLATE replaced, or merged (append: attributes of the same name replaced).
  HA and HA_PRIORITY live there, so they change after creation; ft/host_error reads them
  from one.vm.info when it acts.
* lock: levels as OpenNebula (1 use, 2 manage, 3 admin, 4 all); `test` refuses a locked VM.
* resize: CPU, VCPU, MEMORY of a VM that is not running (PENDING, HOLD, POWEROFF, UNDEPLOYED,
  STOPPED), the host's usage recounted (placement.reaccount) when the VM holds a place.
  `enforce` refuses a size the host has no room for.
"""

from __future__ import annotations

from lazarus.domain.entities import VM, EventKind
from lazarus.domain.errors import ActionError, LockedError, RpcApiError
from lazarus.domain.states import VmState
from lazarus.domain.template import Template
from lazarus.domain.transitions import HOLDS_CAPACITY

from . import placement
from .journal import Journal, Tx

RESIZABLE = frozenset(
    {VmState.PENDING, VmState.HOLD, VmState.POWEROFF, VmState.UNDEPLOYED, VmState.STOPPED}
)


class VmAdmin:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def update(self, vm_id: int, template: Template, append: bool) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            if append:
                names = {name for name, _ in template.items}
                kept = [(n, v) for n, v in vm.user_template.items if n not in names]
                vm.user_template = Template(kept + list(template.items))
            else:
                vm.user_template = template
            t.store.save_vm(vm)
            t.note(vm, "user template updated", EventKind.TEMPLATE)
        return vm_id

    def rename(self, vm_id: int, name: str) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            old, vm.name = vm.name, name
            t.store.save_vm(vm)
            t.note(vm, f"renamed from {old}", EventKind.RENAMED)
        return vm_id

    def lock(self, vm_id: int, level: int, test: bool = False) -> int:
        if level not in (1, 2, 3, 4):
            raise RpcApiError(f"Invalid lock level {level}: use 1 (use) to 4 (all).")
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            if test and vm.lock:
                raise LockedError(f"The resource vm is locked. [{vm.id}].", vm.id)
            vm.lock = level
            t.store.save_vm(vm)
            t.note(vm, f"locked (level {level})")
        return vm_id

    def unlock(self, vm_id: int) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            if vm.lock:
                vm.lock = 0
                t.store.save_vm(vm)
                t.note(vm, "unlocked")
        return vm_id

    def chown(
        self, vm_id: int, owner: tuple[int, str] | None, group: tuple[int, str] | None
    ) -> int:
        """New (uid, uname) and/or (gid, gname); None keeps it."""
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            if owner is not None:
                vm.uid, vm.uname = owner
            if group is not None:
                vm.gid, vm.gname = group
            t.store.save_vm(vm)
            t.note(vm, f"owner {vm.uname} ({vm.uid}), group {vm.gname} ({vm.gid})")
        return vm_id

    def chmod(self, vm_id: int, octal: str) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            vm.perms = octal
            t.store.save_vm(vm)
            t.note(vm, f"permissions {octal}")
        return vm_id

    def resize(self, vm_id: int, size: Template, enforce: bool) -> int:
        with self.journal.tx() as t:
            vm = t.store.vm(vm_id)
            if vm.state not in RESIZABLE:
                raise ActionError(f"Resize action is not available for state {vm.state.name}")
            before = (vm.cpu, vm.memory)
            for name in ("CPU", "VCPU", "MEMORY"):
                value = size.get(name)
                if value is not None:
                    vm.template.set(name, value)
            _check_size(vm)
            host_id = vm.host_id if vm.state in HOLDS_CAPACITY else None
            if host_id is not None and enforce:
                _check_room(t, vm, host_id, before)
            t.store.save_vm(vm)
            if host_id is not None:
                placement.reaccount(t.store, host_id)
            t.note(
                vm,
                f"resized to CPU {vm.template.get('CPU')}, MEMORY {vm.template.get('MEMORY')} MiB",
                EventKind.TEMPLATE,
            )
        return vm_id


def _check_size(vm: VM) -> None:
    memory = vm.template.get("MEMORY") or ""
    if not memory.strip().isdigit() or int(memory) <= 0:
        raise ActionError("MEMORY attribute must be a positive integer value (MiB)")
    try:
        if float(vm.template.get("CPU") or "0") <= 0:
            raise ValueError
    except ValueError:
        raise ActionError("CPU attribute must be a positive number") from None
    vcpu = vm.template.get("VCPU")
    if vcpu is not None and (not vcpu.strip().isdigit() or int(vcpu) <= 0):
        raise ActionError("VCPU attribute must be a positive integer value")


def _check_room(t: Tx, vm: VM, host_id: int, before: tuple[int, int]) -> None:
    host = t.store.host(host_id)
    cpu = vm.cpu - before[0]
    mem = vm.memory - before[1]
    if (cpu > 0 or mem > 0) and not host.share.fits(max(cpu, 0), max(mem, 0)):
        raise ActionError(
            f"Cannot resize VM {vm.id}: host {host.id} has not enough capacity for the new size"
        )
