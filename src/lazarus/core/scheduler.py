"""The scheduler: places PENDING VMs and moves RESCHED ones.

`plan()` is pure: from VMs, hosts and a policy it returns the placements to make, never more
than `max_actions_per_host` per host and `max_actions_per_cycle` in all. Candidates are
PENDING VMs and VMs with RESCHED=1 in ACTIVE/RUNNING, ACTIVE/UNKNOWN or POWEROFF (OpenNebula's
scheduler's rule); higher HA_PRIORITY first, then older VMs. Targets are MONITORED hosts
with enough free CPU and memory after reservations (HOST_SHARE), never a resched VM's current
host, never a host whose cluster has no system datastore.

Policies (OpenNebula's names): packing (fill the fullest host that fits: fewer hosts busy),
striping (the host with fewest VMs: spread failures), load (most free monitored CPU).

`Scheduler.run()` plans and acts every SCHED_INTERVAL and at once when the journal reports a
VM entering PENDING, RESCHED being set, or a host changing state.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lazarus.domain.entities import VM, Event, EventKind, Host, ObjType
from lazarus.domain.errors import ApiError
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.transitions import START_FAILURES
from lazarus.ports.clock import Clock
from lazarus.ports.store import Store

from .journal import Journal
from .lifecycle import Lifecycle
from .restarts import recovering, tried_hosts
from .settings import Settings
from .vm_ha import avoided
from .waits import sleep_or_wake

log = logging.getLogger("lazarus.scheduler")

POLICIES = ("packing", "striping", "load")


@dataclass(frozen=True)
class Placement:
    vm_id: int
    host_id: int
    migrate: bool  # resched: migrate; otherwise deploy
    live: bool = False
    in_place: bool = False  # an UNKNOWN VM whose own host is back: boot it there


@dataclass
class _Room:
    host: Host
    cpu: int
    mem: int
    vms: int
    actions: int = 0


def candidates(vms: Iterable[VM]) -> list[VM]:
    chosen = []
    for vm in vms:
        if vm.state is VmState.PENDING or (vm.resched and (
            vm.state is VmState.POWEROFF
            or (vm.state is VmState.ACTIVE and (
                vm.lcm_state in (LcmState.RUNNING, LcmState.UNKNOWN)
                or vm.lcm_state in START_FAILURES))
        )):
            chosen.append(vm)
    chosen.sort(key=lambda vm: (-vm.ha_priority, vm.id))
    return chosen


def plan(
    vms: Sequence[VM],
    hosts: Sequence[Host],
    policy: str = "packing",
    max_actions_per_host: int = 8,
    max_actions_per_cycle: int = 200,
    live_rescheds: bool = False,
    clusters_with_system_ds: set[int] | None = None,
    skipped: dict[int, str] | None = None,
) -> list[Placement]:
    if policy not in POLICIES:
        raise ValueError(f"unknown scheduler policy {policy!r} (one of {', '.join(POLICIES)})")
    rooms = [
        _Room(h, h.share.total_cpu - h.share.cpu_usage, h.share.total_mem - h.share.mem_usage,
              h.share.running_vms)
        for h in hosts
        if h.state is HostState.MONITORED
        and (clusters_with_system_ds is None or h.cluster_id in clusters_with_system_ds)
    ]
    # A heap of rooms by the policy's key (unique: it ends with the host id). A room's key
    # changes only when it is chosen, so each VM costs a few heap operations, not a scan of
    # every host: 100 VMs on 2,000 hosts is the recovery of one big failed host.
    key = _KEYS[policy]
    heap = [(key(room), room.host.id, room) for room in rooms if max_actions_per_host > 0]
    heapq.heapify(heap)
    monitored = {room.host.id for room in rooms}
    placements: list[Placement] = []
    for vm in candidates(vms):
        if len(placements) >= max_actions_per_cycle or not heap:
            break
        current = vm.host_id if vm.state is not VmState.PENDING else None
        if current in monitored and vm.lcm_state is LcmState.UNKNOWN and recovering(vm):
            # Rescheduled off its failed host, which is back (repaired, after the fence):
            # the VM still holds its capacity there, so booting it there needs no room.
            placements.append(Placement(vm.id, current, False, in_place=True))
            continue
        avoid = tried_hosts(vm) | avoided(vm)
        try:
            cpu, mem = vm.cpu, vm.memory
        except Exception as exc:  # CPU="1e307" once stopped every placement
            if skipped is not None:
                skipped[vm.id] = f"{type(exc).__name__}: {exc}"
            continue
        passed = []  # rooms that do not suit this VM, back on the heap afterwards
        best: _Room | None = None
        while heap:
            entry = heapq.heappop(heap)
            room = entry[2]
            if (room.host.id == current or room.host.id in avoid or room.cpu < cpu
                    or room.mem < mem):
                passed.append(entry)
                continue
            best = room
            break
        for entry in passed:
            heapq.heappush(heap, entry)
        if best is None:
            continue
        best.cpu -= cpu
        best.mem -= mem
        best.vms += 1
        best.actions += 1
        if best.actions < max_actions_per_host:
            heapq.heappush(heap, (key(best), best.host.id, best))
        migrate = vm.state is not VmState.PENDING
        live = migrate and live_rescheds and vm.lcm_state is LcmState.RUNNING
        placements.append(Placement(vm.id, best.host.id, migrate, live))
    return placements


def _packing(room: _Room) -> tuple[int, ...]:
    return (room.cpu, room.mem)  # least free capacity left that still fits


def _striping(room: _Room) -> tuple[int, ...]:
    return (room.vms,)  # fewest VMs


def _load(room: _Room) -> tuple[int, ...]:
    share = room.host.share
    return (-(share.free_cpu - (share.total_cpu - room.cpu)),)  # most free monitored CPU


_KEYS = {"packing": _packing, "striping": _striping, "load": _load}


class Scheduler:
    def __init__(
        self,
        store: Store,
        journal: Journal,
        clock: Clock,
        lifecycle: Lifecycle,
        settings: Settings,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lifecycle = lifecycle
        self.settings = settings
        self._wake = asyncio.Event()
        # Ids of VMs that may need placing: PENDING, or RESCHED set. Every change of either
        # goes through the journal, so after one full scan at start the set stays exact
        # without reading 40,000 VMs every cycle; each cycle re-reads only these ids.
        self._candidates: set[int] | None = None
        self.journal = journal
        self._unplannable: set[int] = set()  # reported once while they stay candidates
        journal.listeners.append(self._on_events)

    def _on_events(self, events: list[Event]) -> None:
        wake = False
        for event in events:
            if event.kind not in (EventKind.STATE, EventKind.FLAG):
                continue
            if event.obj == ObjType.HOST:
                wake = True
            elif event.obj == ObjType.VM and (
                event.state == "PENDING"
                or (event.kind == EventKind.FLAG and event.flag == "RESCHED" and event.value == "1")
            ):
                if self._candidates is not None:
                    self._candidates.add(event.obj_id)
                wake = True
        if wake:
            self._wake.set()

    def _load_candidates(self) -> list[VM]:
        if self._candidates is None:
            vms = self.store.vms(states=[VmState.PENDING, VmState.ACTIVE, VmState.POWEROFF])
            found = candidates(vms)
            self._candidates = {vm.id for vm in found}
            return found
        current = []
        for vm_id in sorted(self._candidates):
            try:
                current.append(self.store.vm(vm_id))
            except ApiError:
                pass
        found = candidates(current)
        self._candidates = {vm.id for vm in found}
        return found

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            self.cycle()
            await sleep_or_wake(self.clock, self.settings.sched_interval, self._wake)

    def cycle(self) -> list[Placement]:
        """Plan once and start every placement; returns what was started."""
        todo = self._load_candidates()
        if not todo:
            return []
        systems = {
            cid for ds in self.store.datastores() if ds.type == 1 for cid in ds.cluster_ids
        }
        skipped: dict[int, str] = {}
        placements = plan(
            todo,
            self.store.hosts(),
            self.settings.sched_policy,
            self.settings.max_actions_per_host,
            self.settings.max_actions_per_cycle,
            bool(self.settings.live_rescheds),
            systems,
            skipped=skipped,
        )
        self._report(skipped, {vm.id for vm in todo})
        started = []
        for p in placements:
            try:
                if p.in_place:
                    self.lifecycle.restart_in_place(p.vm_id)
                elif p.migrate:
                    self.lifecycle.migrate(p.vm_id, p.host_id, live=p.live)
                else:
                    self.lifecycle.deploy(p.vm_id, p.host_id)
                started.append(p)
            except ApiError as exc:  # raced with an operator action: next cycle decides
                log.info("scheduler: vm/%d -> host/%d not done: %s", p.vm_id, p.host_id, exc)
        return started

    def _report(self, skipped: dict[int, str], candidate_ids: set[int]) -> None:
        """A VM plan() could not plan: logged, noted and told in its SCHED_MESSAGE, once."""
        self._unplannable &= candidate_ids
        for vm_id, reason in skipped.items():
            if vm_id in self._unplannable:
                continue
            self._unplannable.add(vm_id)
            text = f"cannot be scheduled ({reason}); fix its template"
            log.warning("scheduler: vm/%d %s", vm_id, text)
            try:
                with self.journal.tx() as t:
                    vm = t.store.vm(vm_id)
                    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(self.clock.now()))
                    vm.user_template.set("SCHED_MESSAGE", f"{stamp} : {text}")
                    t.store.save_vm(vm)
                    t.note(vm, text)
            except ApiError:  # gone meanwhile
                pass
