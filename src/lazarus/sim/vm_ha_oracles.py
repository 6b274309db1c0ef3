"""The simulator's VM HA oracles (core/vm_ha.py), checked on every journal event:

    vm_ha_budget    a VM restarted by VM HA more than VM_HA_MAX_RESTARTS times within
                    VM_HA_WINDOW seconds (its own attributes, else the settings)
    vm_ha_host      a VM HA restart or relocation while the VM's host was in ERROR, or
                    failing (MONITOR_FAILURES), in the store: that VM is host-level HA's
    vm_ha_operator  a VM HA restart after an operator stopped the VM (poweroff, terminate,
                    undeploy, stop, suspend through the API), unless it ran again since

"Never two copies" is the split_brain oracle's (sim/oracles.py), which sees every start.
A restart is a VM state event into BOOT_UNKNOWN, or into PENDING (a relocation), while the
VM's VM_HA record says RESTARTING or RELOCATING.
"""

from __future__ import annotations

from collections.abc import Callable

from lazarus.core.vm_ha import record
from lazarus.domain.entities import Event, EventKind, ObjType
from lazarus.domain.errors import NoExistsError
from lazarus.domain.states import HostState

from . import scenario as sc
from .world import World

_STOPS = ("poweroff", "poweroff-hard", "terminate", "terminate-hard", "undeploy",
          "undeploy-hard", "stop", "suspend")


class VmHaOracles:
    def __init__(self, world: World, flag: Callable[[str, str], None]) -> None:
        self.world = world
        self.flag = flag
        self.restarts: dict[int, list[float]] = {}  # vm id -> when VM HA restarted it
        self.stopped: dict[int, float] = {}  # vm id -> an operator's stop, not run since
        world.observers.journal.append(self.on_journal)
        world.observers.faults.append(self.on_fault)

    def on_fault(self, e: sc.Event) -> None:
        if e.action != "api" or e.method != "one.vm.action" or len(e.params) < 2:
            return
        action, target = e.params[0], e.params[1]
        if action in _STOPS and isinstance(target, str) and target.startswith("vm:"):
            try:
                self.stopped[self.world.vm_id(target[3:])] = self.world.clock.monotonic()
            except sc.ScenarioError:
                return

    def on_journal(self, events: list[Event]) -> None:
        for event in events:
            if event.kind != EventKind.STATE or event.obj != ObjType.VM:
                continue
            if event.lcm_state == "RUNNING":
                self.stopped.pop(event.obj_id, None)
                continue
            if event.lcm_state != "BOOT_UNKNOWN" and event.state != "PENDING":
                continue
            try:
                vm = self.world.store.vm(event.obj_id)
            except NoExistsError:
                continue
            rec = record(vm)
            if rec is None or rec.get("STATE") not in ("RESTARTING", "RELOCATING"):
                continue
            self._restart(vm.id, rec.get("HOST_ID") or "", vm)

    def _restart(self, vm_id: int, host_id: str, vm: object) -> None:
        now = self.world.clock.monotonic()
        settings = self.world.settings
        user = getattr(vm, "user_template")  # noqa: B009 (a VM)
        budget = _number(user.get("VM_HA_MAX_RESTARTS"), settings.vm_ha_max_restarts)
        window = _number(user.get("VM_HA_WINDOW"), settings.vm_ha_window)
        times = [t for t in self.restarts.get(vm_id, []) if now - t < window] + [now]
        self.restarts[vm_id] = times
        if len(times) > budget:
            self.flag("vm_ha_budget", f"vm {vm_id} restarted {len(times)} times within "
                                      f"{window:g} s (at most {budget:g})")
        if vm_id in self.stopped:
            self.flag("vm_ha_operator", f"vm {vm_id} restarted by VM HA after an operator "
                                        "stopped it")
        if host_id.isdigit():
            try:
                host = self.world.store.host(int(host_id))
            except NoExistsError:
                return
            if host.state is HostState.ERROR or host.template.get("MONITOR_FAILURES"):
                self.flag("vm_ha_host", f"vm {vm_id} restarted by VM HA while its host "
                                        f"{host.name} is {host.state.name} or failing")


def _number(raw: str | None, default: float) -> float:
    try:
        return float(raw) if raw else default
    except ValueError:
        return default
