"""The monitor's applier: what a probe's result writes, and the cleanup of stale domains.

Called by core/monitor.py for each result of a probe round, on the controller's loop:

    failed()     one more failed probe: MONITOR_FAILURES and FAILING_SINCE in the host
                 template (the first failure of a streak puts the cluster in alert), and
                 after MONITOR_FAILURES in a row host => ERROR and its RUNNING VMs =>
                 UNKNOWN, in one journal transaction
    observed()   a good probe: nothing at all when nothing changed since the last one (the
                 fast path; the monitoring timestamp is refreshed every PERSIST_INTERVAL,
                 the hosts of one round in one write), else capacity, host => MONITORED and
                 the VM sync (domain/transitions.py VM_SYNC) in one transaction, and the
                 stale domains found are destroyed and undefined (never started)

A VM whose state changed while the probe was in flight is left alone by that probe (the
report may predate the change) and its host gets a full look at its next one. The monitor
passes on what the journal says changed (`vm_changed`, `host_changed`). Store failures are
InternalError: they are logged and raised to the monitor, which keeps probing; a refused
timestamp refresh is logged and dropped (the next one comes PERSIST_INTERVAL later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from lazarus.domain.entities import VM, Host
from lazarus.domain.errors import DriverError, InternalError, NoExistsError
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.transitions import SYNCED_STATES, HostEvent, Seen, apply_host, sync_target
from lazarus.ports.clock import Clock
from lazarus.ports.hypervisor import DomainInfo, DomainState, HostProbe, Hypervisor
from lazarus.ports.store import Store

from .journal import Journal, Tx
from .lifecycle import Lifecycle
from .settings import Settings
from .waits import within

log = logging.getLogger("lazarus.monitor")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Applier:
    def __init__(
        self,
        store: Store,
        journal: Journal,
        clock: Clock,
        drivers: Mapping[str, Hypervisor],
        settings: Settings,
        lifecycle: Lifecycle,
        alert: Callable[[Host], None],
        spawn: Spawn,
    ) -> None:
        self.store = store
        self.journal = journal
        self.clock = clock
        self.drivers = drivers
        self.settings = settings
        self.lifecycle = lifecycle
        self._alert = alert  # the pacer's: a host of this cluster started failing
        self._spawn = spawn  # the monitor's: a task it cancels when it stops
        self.last_event = 0  # VM changes after a round's cursor may be newer than its probe
        self._changed: dict[int, int] = {}  # vm id -> id of its latest state event
        # Fast path: a probe identical to the last applied one, on a host none of whose VMs
        # changed since, writes nothing (at most every PERSIST_INTERVAL the timestamp is
        # refreshed). With 2,000 hosts probed every 5 s this spares 400 writes a second.
        self._signature: dict[int, tuple[object, ...]] = {}
        self._probes: dict[int, HostProbe] = {}  # the last probe, whose signature is kept
        self._vm_host: dict[int, int] = {}
        self._dirty: set[int] = set()  # hosts whose next probe must be applied in full
        self._again: set[int] = set()
        self._persisted: dict[int, float] = {}
        self._touching: list[int] = []  # hosts whose timestamp is refreshed at the next turn
        self._cleaning: set[tuple[int, str]] = set()  # stale domains being removed now

    # -- what the journal said ---------------------------------------------------------------
    def vm_changed(self, vm_id: int, event_id: int, host_id: int) -> None:
        """A VM's state or flag changed; `host_id`: where it is placed now (-1: nowhere)."""
        self._changed[vm_id] = event_id
        was = self._vm_host.get(vm_id)
        if was is not None:
            self._dirty.add(was)  # where it was
        if host_id >= 0:
            self._dirty.add(host_id)  # where it is now (deployed, moved)

    def host_changed(self, host_id: int) -> None:
        self._dirty.add(host_id)

    def forget(self, host_id: int) -> None:
        for table in (self._signature, self._persisted, self._probes):
            table.pop(host_id, None)
        for marks in (self._dirty, self._again):
            marks.discard(host_id)

    # -- failed probes -----------------------------------------------------------------------
    def failed(self, host_id: int, count: int, message: str) -> None:
        """Record the `count`-th failed probe in a row of the host. When the store fails (at
        any point, the transaction's start included) it is logged and nothing is recorded;
        the count is kept, so the next failed probe records the whole streak."""
        try:
            self._record_failure(host_id, count, message)
        except InternalError as exc:
            log.error("host/%d: failed probe %d not recorded, the store fails: %s",
                      host_id, count, exc)

    def _record_failure(self, host_id: int, count: int, message: str) -> None:
        with self.journal.tx() as t:
            try:
                host = t.store.host(host_id)
            except NoExistsError:
                return  # deleted meanwhile
            host.template.set("MONITOR_FAILURES", str(count))
            if count == 1 or host.template.get("FAILING_SINCE") is None:
                # When this streak began, for ft/host_error's mass-failure window
                host.template.set("FAILING_SINCE", f"{self.clock.now():.3f}")
                self._alert(host)
            if count < self.settings.monitor_failures or host.state is HostState.ERROR:
                t.store.save_host(host)
                return
            new = apply_host(host.state, HostEvent.MONITOR_FAIL)
            if new is not HostState.ERROR:
                t.store.save_host(host)  # DISABLED / OFFLINE never enter ERROR
                return
            stamp = datetime.fromtimestamp(self.clock.now(), UTC).strftime("%a %b %d %H:%M:%S %Y")
            host.template.set(
                "ERROR", f"{stamp} : Error monitoring Host {host.name} ({host.id}): {message}"
            )
            t.host_state(host, HostState.ERROR, f"{count} failed probes: {message}")
            for vm in t.store.vms(host_id=host_id, states=[VmState.ACTIVE]):
                if vm.lcm_state is LcmState.RUNNING:
                    vm.resched = False
                    t.vm_state(vm, (VmState.ACTIVE, LcmState.UNKNOWN), f"{host.subject} in ERROR")

    # -- good probes -------------------------------------------------------------------------
    def observed(self, host: Host, probe: HostProbe, cursor: int, healthy: bool) -> None:
        """Apply a good probe (`healthy`: no failure before it): nothing at all when nothing
        changed (fast path)."""
        previous = self._signature.get(host.id)
        if previous is not None and probe is self._probes.get(host.id):
            signature = previous  # the driver handed back the very same probe
        else:
            signature = _signature(probe)
        now = self.clock.monotonic()
        if (
            host.state is HostState.MONITORED
            and healthy
            and host.id not in self._dirty
            and previous == signature
        ):
            self._probes[host.id] = probe  # its signature is the kept one
            if now - self._persisted.get(host.id, -1e18) >= self.settings.persist_interval:
                self._touch(host.id)  # nothing changed: only the monitoring timestamp
                self._persisted[host.id] = now
            return
        stale = self._succeeded(host.id, probe, cursor)
        self._dirty.discard(host.id)  # after: the changes just made here need no second look
        if host.id in self._again:  # a VM changed while the probe ran: look at the next one
            self._again.discard(host.id)
            self._dirty.add(host.id)
        self._signature[host.id] = signature
        self._probes[host.id] = probe
        self._persisted[host.id] = now
        for vm_id, deploy_id in stale:
            self._spawn(self._cleanup_stale(host.id, vm_id, deploy_id))

    def _touch(self, host_id: int) -> None:
        """Refresh the monitoring timestamp of a host whose probe changed nothing; the hosts
        of one round are written together, in one transaction, right after it."""
        if not self._touching:
            asyncio.get_running_loop().call_soon(self.write_touches)
        self._touching.append(host_id)

    def write_touches(self) -> None:
        ids, self._touching = self._touching, []
        try:
            with self.journal.tx() as t:
                t.store.touch_hosts(ids, self.clock.now())
        except InternalError as exc:  # a timestamp only: the next refresh writes it
            log.error("monitoring timestamps of %d host(s) not refreshed, the store fails: %s",
                      len(ids), exc)

    def _succeeded(
        self, host_id: int, probe: HostProbe, cursor: int
    ) -> list[tuple[int, str]]:
        """Apply a good probe; return deploy ids of stale domains to clean up."""
        with self.journal.tx() as t:
            try:
                host = t.store.host(host_id)
            except NoExistsError:
                return []  # deleted meanwhile
            if host.state is HostState.OFFLINE:
                return []
            self._fill_capacity(host, probe)
            new = apply_host(host.state, HostEvent.MONITOR_OK)
            if new is not host.state:
                t.host_state(host, new, "probe ok")
            else:
                t.store.save_host(host)
            return self._sync_vms(t, host, probe.domains, cursor)

    def _fill_capacity(self, host: Host, probe: HostProbe) -> None:
        share = host.share
        reserved_cpu = host.template.get_int("RESERVED_CPU", 0)
        reserved_mem = host.template.get_int("RESERVED_MEM", 0)
        share.max_cpu, share.max_mem = probe.total_cpu, probe.total_mem
        share.total_cpu = max(0, probe.total_cpu - reserved_cpu)
        share.total_mem = max(0, probe.total_mem - reserved_mem)
        share.used_cpu, share.used_mem = probe.used_cpu, probe.used_mem
        share.free_cpu = max(0, probe.total_cpu - probe.used_cpu)
        share.free_mem = max(0, probe.total_mem - probe.used_mem)
        for key, value in probe.info.items():
            host.template.set(key, value)
        host.template.set("TOTALCPU", str(probe.total_cpu))
        host.template.set("TOTALMEMORY", str(probe.total_mem))
        host.template.remove("ERROR")
        host.template.remove("MONITOR_FAILURES")
        host.template.remove("FAILING_SINCE")
        now = self.clock.now()
        host.last_monitored = now
        host.monitoring = {
            "TIMESTAMP": str(int(now)),
            "FREE_CPU": str(share.free_cpu),
            "USED_CPU": str(share.used_cpu),
            "FREE_MEMORY": str(share.free_mem),
            "USED_MEMORY": str(share.used_mem),
        }

    def _sync_vms(
        self, t: Tx, host: Host, domains: tuple[DomainInfo, ...], cursor: int
    ) -> list[tuple[int, str]]:
        seen: dict[int, DomainInfo] = {d.vm_id: d for d in domains if d.vm_id is not None}
        placed = {vm.id: vm for vm in t.store.vms(host_id=host.id) if vm.state in SYNCED_STATES}
        for vm_id in placed:
            self._vm_host[vm_id] = host.id
        for vm in placed.values():
            if self._changed.get(vm.id, 0) > cursor:
                self._again.add(host.id)
                continue  # changed while the probe ran: the probe may be older
            self._sync_one(t, host, vm, seen.get(vm.id))
        stale = []
        for vm_id, dom in seen.items():
            if vm_id not in placed and not self.lifecycle.busy(vm_id):
                stale.append((vm_id, dom.deploy_id))
                running = " (RUNNING!)" if dom.state is DomainState.RUNNING else ""
                t.note(host, f"stale domain {dom.deploy_id}{running}: cleaning up")
        return stale

    def _sync_one(self, t: Tx, host: Host, vm: VM, dom: DomainInfo | None) -> None:
        if dom is not None:
            vm.last_poll = int(self.clock.now())
        seen = Seen.MISSING if dom is None else _SEEN[dom.state]
        missing_unknown = self.settings.missing_vm_state.upper() == "UNKNOWN"
        target = sync_target(seen, vm.state, vm.lcm_state, vm.resched, missing_unknown)
        if target is not None:
            t.vm_state(vm, target, _REASONS[seen].format(host=host.subject))

    # -- stale domains -----------------------------------------------------------------------
    async def _cleanup_stale(self, host_id: int, vm_id: int, deploy_id: str) -> None:
        # Decided after the probe; look again now: the VM may have been deployed or migrated
        # back onto this host meanwhile, and its new domain must not be destroyed.
        try:
            vm = self.store.vm(vm_id)
            placed_here = vm.host_id == host_id and vm.state in SYNCED_STATES
        except NoExistsError:
            placed_here = False
        key = (host_id, deploy_id)
        if placed_here or self.lifecycle.busy(vm_id) or key in self._cleaning:
            return
        self._cleaning.add(key)
        try:
            await self._cleanup(host_id, deploy_id)
        finally:
            self._cleaning.discard(key)

    async def _cleanup(self, host_id: int, deploy_id: str) -> None:
        host = self.store.host(host_id)
        driver = self.drivers.get(host.vm_mad)
        if driver is None:
            return
        try:
            await within(
                driver.cleanup(host, deploy_id), self.settings.cleanup_timeout
            )
            outcome = "removed"
        except (TimeoutError, DriverError) as exc:
            outcome = f"cleanup failed: {exc or 'timeout'}"
        with self.journal.tx() as t:
            t.note(host, f"stale domain {deploy_id}: {outcome}")


_SEEN = {state: Seen(state.value) for state in DomainState}
_REASONS = {
    Seen.RUNNING: "running on {host}",
    Seen.POWEROFF: "shut off on {host}",
    Seen.FAILURE: "failed on {host}",
    Seen.SUSPENDED: "paused on {host}",
    Seen.MISSING: "not found on {host}",
}


def _signature(probe: HostProbe) -> tuple[object, ...]:
    return (
        probe.total_cpu,
        probe.total_mem,
        probe.used_cpu // 100,  # whole cores: small jitter alone is not worth a write
        probe.used_mem // (64 * 1024),
        tuple(sorted((d.deploy_id, d.state.value) for d in probe.domains)),
        tuple(sorted(probe.info.items())),
    )
