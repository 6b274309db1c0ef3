"""Host monitoring: probes, ERROR detection, VM state sync, stale-domain cleanup.

One pacer keeps when each host is next due (a heap) and starts a round for the hosts due at
the same instant (core/probing.py: a batch call where the driver offers one, else a task per
host). Results are applied as they come and each host's next probe is timed from its own
result, so a slow or hung host never delays the others:

    healthy:  probe every MONITORING_INTERVAL_HOST (default 5 s)
    failing:  re-probe every RETRY_INTERVAL (default 0.5 s); after MONITOR_FAILURES (3)
              consecutive failures the host goes to ERROR and its RUNNING VMs to UNKNOWN
    ERROR:    keep re-probing every RETRY_INTERVAL (ft/host_error counts these cycles) for
              RETRY_BURST (20) more probes, then every MONITORING_INTERVAL_HOST; one good
              probe brings it back to MONITORED

Every probe is bounded by PROBE_TIMEOUT. While a host is failing, probes start every
RETRY_INTERVAL without waiting for the previous one (a probe of a dead host may hang until its
timeout). A driver that learns of a lost connection (libvirt close callback / keepalive; the
simulated driver after its keepalive delay) reports it: that counts as one failed observation
and the host is probed at once. Worst-case time from a host's death to ERROR, without such a
report, when its probes hang until the timeout (derived and measured in docs/monitoring.md):

    interval + probe_timeout + max(probe_timeout, retry_interval)
             + (MONITOR_FAILURES - 2) * retry_interval

DISABLED hosts are monitored but never enter ERROR; OFFLINE hosts are not probed (reference
3.2). The consecutive failure count is published in the host template as MONITOR_FAILURES so
that ft/host_error can count monitoring cycles through the API alone.

VM sync follows OpenNebula's rules (reference 3.4); a VM whose state changed while a probe
was in flight is left alone (the probe may predate the change). A domain found on a host the
VM is no longer placed on is stale: it is destroyed and undefined, never started.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Coroutine, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from lazarus.domain.entities import VM, Event, EventKind, Host, ObjType
from lazarus.domain.errors import DriverError, NoExistsError
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.transitions import HostEvent, apply_host
from lazarus.ports.clock import Clock
from lazarus.ports.hypervisor import (
    DomainInfo,
    DomainState,
    HostProbe,
    Hypervisor,
    LossReporting,
)
from lazarus.ports.store import Store

from .journal import Journal, Tx
from .lifecycle import Lifecycle
from .probing import probe_round
from .settings import Settings
from .waits import sleep_or_wake, within

log = logging.getLogger("lazarus.monitor")

L = LcmState
_BOOTING = {L.BOOT, L.BOOT_UNKNOWN, L.BOOT_POWEROFF, L.BOOT_SUSPENDED, L.BOOT_STOPPED,
            L.BOOT_UNDEPLOY, L.BOOT_MIGRATE}
_SHUTTING = {L.SHUTDOWN, L.SHUTDOWN_POWEROFF, L.SHUTDOWN_UNDEPLOY}


class Monitor:
    def __init__(
        self,
        store: Store,
        journal: Journal,
        clock: Clock,
        drivers: Mapping[str, Hypervisor],
        settings: Settings,
        lifecycle: Lifecycle,
    ) -> None:
        self.store = store
        self.journal = journal
        self.clock = clock
        self.drivers = drivers
        self.settings = settings
        self.lifecycle = lifecycle
        self.failures: dict[int, int] = {}
        # The pacer: one heap of (due time, host id) for every monitored host, one task that
        # sleeps until the earliest and starts a round for the hosts due then.
        self._tracked: set[int] = set()
        self._due: list[tuple[float, int]] = []
        self._next: dict[int, float] = {}  # host id -> its live entry in _due
        self._inflight: dict[int, int] = {}  # host id -> probes running now
        self._pacer = asyncio.Event()
        self._asleep_until = -math.inf
        self._tasks: set[asyncio.Task[None]] = set()  # rounds and stale-domain cleanups
        self._changed: dict[int, int] = {}  # vm id -> id of its latest state event
        self._last_event = 0
        # Fast path: a probe identical to the last applied one, on a host none of whose VMs
        # changed since, writes nothing (at most every PERSIST_INTERVAL the timestamp is
        # refreshed). With 2,000 hosts probed every 5 s this spares 400 writes a second.
        self._signature: dict[int, tuple[object, ...]] = {}
        self._vm_host: dict[int, int] = {}
        self._dirty: set[int] = set()  # hosts whose next probe must be applied in full
        self._again: set[int] = set()
        self._persisted: dict[int, float] = {}
        self._touching: list[int] = []  # hosts whose timestamp is refreshed at the next turn
        # The pacer keeps each host's record and re-reads it only after the journal said the
        # host changed (state, template, placements): no decode per probe.
        self._cached: dict[int, Host] = {}
        self._stale: set[int] = set()
        self._cleaning: set[tuple[int, str]] = set()  # stale domains being removed now
        self._probes: dict[int, HostProbe] = {}  # the last probe, whose signature is kept
        self._alert_until: dict[int, float] = {}  # cluster id -> end of its alert (monotonic)
        journal.listeners.append(self._on_events)

    # ----------------------------------------------------------------------- service
    async def run(self) -> None:
        """Probe every host that is not OFFLINE whenever it is due, until cancelled."""
        self.attach(asyncio.get_running_loop())
        for host in self.store.hosts():
            if host.state is not HostState.OFFLINE:
                self.wake(host.id)
        try:
            while True:
                self._pacer.clear()
                self._start_due()
                now = self.clock.monotonic()
                idle = now + self.settings.monitoring_interval_host
                until = self._due[0][0] if self._due else idle
                if until > now:
                    self._asleep_until = until
                    await sleep_or_wake(self.clock, until - now, self._pacer)
                    self._asleep_until = -math.inf
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()

    def wake(self, host_id: int) -> None:
        """Probe this host now (a driver saw its connection drop, or the host changed state);
        a host not monitored yet (new, or back from OFFLINE) joins."""
        self._tracked.add(host_id)
        self._schedule(host_id, self.clock.monotonic())

    def _schedule(self, host_id: int, when: float) -> None:
        """Make the host due at `when` at the latest."""
        if self._next.get(host_id, math.inf) <= when:
            return
        self._next[host_id] = when
        heapq.heappush(self._due, (when, host_id))
        if when < self._asleep_until:
            self._pacer.set()

    def _start_due(self) -> None:
        """Start a round (per driver) for the hosts due now.

        healthy:  one probe at a time; its end makes the host due again an interval after it
                  started.
        failing:  a new probe every RETRY_INTERVAL without waiting for the previous one (a
                  probe of a dead host may hang until its timeout), at most MONITOR_FAILURES
                  at once, so N failures take about N retry intervals."""
        now = self.clock.monotonic()
        rounds: dict[str, list[Host]] = {}
        while self._due and self._due[0][0] <= now:
            when, host_id = heapq.heappop(self._due)
            if self._next.get(host_id) != when:
                continue  # superseded by an earlier entry
            del self._next[host_id]
            host = self._current(host_id)
            if host is None:
                self._forget(host_id)
                continue
            running = self._inflight.get(host_id, 0)
            if self.failures.get(host_id, 0) > 0:
                self._schedule(host_id, now + self._retry(host_id))
                if running >= self.settings.monitor_failures:
                    continue
            elif running:
                continue
            self._inflight[host_id] = running + 1
            rounds.setdefault(host.vm_mad, []).append(host)
        for vm_mad, hosts in rounds.items():
            self._spawn(self._round(vm_mad, hosts, now))

    def _current(self, host_id: int) -> Host | None:
        """The host's record (cached until the journal says it changed); None: stop probing
        it (deleted, OFFLINE, or no longer tracked)."""
        if host_id not in self._tracked:
            return None
        host = self._cached.get(host_id)
        if host is None or host_id in self._stale:
            try:
                host = self.store.host(host_id)
            except NoExistsError:
                return None
            self._cached[host_id] = host
            self._stale.discard(host_id)
        return None if host.state is HostState.OFFLINE else host

    def _forget(self, host_id: int) -> None:
        self._tracked.discard(host_id)
        for table in (self.failures, self._cached, self._signature, self._persisted,
                      self._probes):
            table.pop(host_id, None)
        for marks in (self._dirty, self._again):
            marks.discard(host_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            self._last_event = max(self._last_event, event.id)
            if event.obj == ObjType.VM and event.kind in (EventKind.STATE, EventKind.FLAG):
                self._changed[event.obj_id] = event.id
                host_id = self._vm_host.get(event.obj_id)
                if host_id is not None:
                    self._dirty.add(host_id)  # where it was
                if event.host_id >= 0:
                    self._dirty.add(event.host_id)  # where it is now (deployed, moved)
            elif event.obj == ObjType.HOST and event.kind == EventKind.STATE:
                self._dirty.add(event.obj_id)
                self._stale.add(event.obj_id)
                if event.state in ("OFFLINE", "INIT", "MONITORED") and not self._inflight.get(
                    event.obj_id
                ):  # an operator's change; a probe being applied schedules its own next one
                    self.wake(event.obj_id)
            elif event.obj == ObjType.HOST:  # created, template updated, renamed, a note...
                self._dirty.add(event.obj_id)
                self._stale.add(event.obj_id)
                if event.obj_id not in self._tracked:
                    self.wake(event.obj_id)  # a new host

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen to drivers that report lost connections (from any thread)."""

        def lost(name: str) -> None:
            loop.call_soon_threadsafe(self._connection_lost, name)

        for driver in {id(d): d for d in self.drivers.values()}.values():
            if isinstance(driver, LossReporting):
                driver.set_loss_listener(lost)

    def _connection_lost(self, name: str) -> None:
        host = self.store.host_by_name(name)
        if host is None or host.state is HostState.OFFLINE:
            return
        if host.state is not HostState.ERROR:
            self._failed(host.id, "connection to the host lost (keepalive)")
        self.wake(host.id)

    # ------------------------------------------------------------------------- probe
    async def _round(self, vm_mad: str, hosts: list[Host], started: float) -> None:
        """Probe hosts due at the same instant, bounded by PROBE_TIMEOUT; each result is
        applied as it comes."""
        cursor = self._last_event  # VM changes after this may be newer than the probe
        waiting = {host.id: host for host in hosts}
        driver = self.drivers.get(vm_mad)
        try:
            if driver is None:
                missing = DriverError(f"no driver for VM_MAD {vm_mad!r}")
                for host in hosts:
                    self._finish(waiting.pop(host.id), missing, cursor, started)
                return
            async with asyncio.timeout(self.settings.probe_timeout):
                async with aclosing(probe_round(driver, hosts)) as results:
                    async for host, result in results:
                        if waiting.pop(host.id, None) is not None:
                            self._finish(host, result, cursor, started)
        except TimeoutError:
            late = TimeoutError(f"probe timed out after {self.settings.probe_timeout:g} s")
            for host in list(waiting.values()):
                self._finish(waiting.pop(host.id), late, cursor, started)
        finally:
            for host_id in waiting:  # cancelled: the monitor is stopping
                self._inflight[host_id] -= 1

    def _finish(
        self, host: Host, result: HostProbe | Exception, cursor: int, started: float
    ) -> None:
        """Apply one probe's result and say when the host is due next."""
        if host.id not in self._tracked:
            self._inflight[host.id] -= 1
            return
        try:
            if isinstance(result, HostProbe):
                self._observe(host, result, cursor)
            elif isinstance(result, DriverError | TimeoutError):
                self._failed(host.id, str(result) or type(result).__name__)
            else:  # a driver bug is a failed probe, not a dead monitor
                log.error("%s: probe crashed", host.subject, exc_info=result)
                self._failed(host.id, f"internal error: {result}")
        except Exception:
            log.exception("%s: applying a probe failed", host.subject)
        self._inflight[host.id] -= 1  # only now: the state changes it made wake no one
        if self.failures.get(host.id, 0) == 0:
            interval = self.settings.monitoring_interval_host
            if self._alert_until.get(host.cluster_id, -math.inf) > started:
                interval = min(interval, self.settings.monitor_alert_interval)
            self._schedule(host.id, started + interval)
        else:
            self._schedule(host.id, max(started + self._retry(host.id), self.clock.monotonic()))

    def _retry(self, host_id: int) -> float:
        """Re-probe delay of a failing host: RETRY_INTERVAL through detection and the first
        RETRY_BURST probes in ERROR (what ft/host_error's -p counts), then the interval."""
        s = self.settings
        if self.failures.get(host_id, 0) < s.monitor_failures + s.retry_burst:
            return s.retry_interval
        return max(s.retry_interval, s.monitoring_interval_host)

    def _observe(self, host: Host, probe: HostProbe, cursor: int) -> None:
        """Apply a good probe: nothing at all when nothing changed (fast path)."""
        previous = self._signature.get(host.id)
        if previous is not None and probe is self._probes.get(host.id):
            signature = previous  # the driver handed back the very same probe
        else:
            signature = _signature(probe)
        now = self.clock.monotonic()
        if (
            host.state is HostState.MONITORED
            and self.failures.get(host.id, 0) == 0
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

    def _failed(self, host_id: int, message: str) -> None:
        count = self.failures.get(host_id, 0) + 1
        self.failures[host_id] = count
        with self.journal.tx() as t:
            try:
                host = t.store.host(host_id)
            except NoExistsError:
                return  # deleted meanwhile
            except Exception as exc:  # the store fails: say so; the count is kept for later
                log.error("host/%d: failed probe %d not recorded, the store fails: %s",
                          host_id, count, exc)
                return
            host.template.set("MONITOR_FAILURES", str(count))
            if count == 1 or host.template.get("FAILING_SINCE") is None:
                # When this streak began, for ft/host_error's mass-failure window
                host.template.set("FAILING_SINCE", str(int(self.clock.now())))
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

    def _alert(self, failing: Host) -> None:
        """A host of this cluster started failing: probe its peers every
        MONITOR_ALERT_INTERVAL for MONITOR_ALERT_WINDOW, so that a loss spreading over the
        cluster is seen as one, within about a second of each host's cut."""
        now = self.clock.monotonic()
        cluster = failing.cluster_id
        self._alert_until[cluster] = now + self.settings.monitor_alert_window
        soon = now + self.settings.monitor_alert_interval
        for host_id in self._tracked:
            host = self._cached.get(host_id)
            if host_id != failing.id and host is not None and host.cluster_id == cluster:
                self._schedule(host_id, soon)

    def _touch(self, host_id: int) -> None:
        """Refresh the monitoring timestamp of a host whose probe changed nothing; the hosts
        of one round are written together, in one transaction, right after it."""
        if not self._touching:
            asyncio.get_running_loop().call_soon(self._write_touches)
        self._touching.append(host_id)

    def _write_touches(self) -> None:
        ids, self._touching = self._touching, []
        with self.journal.tx() as t:
            t.store.touch_hosts(ids, self.clock.now())

    def _succeeded(
        self, host_id: int, probe: HostProbe, cursor: int
    ) -> list[tuple[int, str]]:
        """Apply a good probe; return deploy ids of stale domains to clean up."""
        self.failures[host_id] = 0
        stale: list[tuple[int, str]] = []
        with self.journal.tx() as t:
            try:
                host = t.store.host(host_id)
            except NoExistsError:
                return []  # deleted meanwhile
            except Exception as exc:
                log.error("host/%d: good probe not recorded, the store fails: %s", host_id, exc)
                return []
            if host.state is HostState.OFFLINE:
                return []
            self._fill_capacity(host, probe)
            new = apply_host(host.state, HostEvent.MONITOR_OK)
            if new is not host.state:
                t.host_state(host, new, "probe ok")
            else:
                t.store.save_host(host)
            stale = self._sync_vms(t, host, probe.domains, cursor)
        return stale

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
        placed = {
            vm.id: vm
            for vm in t.store.vms(host_id=host.id)
            if vm.state in (VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED)
        }
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
        state, lcm = vm.state, vm.lcm_state
        active = state is VmState.ACTIVE
        # An UNKNOWN VM rescheduled off this host (HA recovery, still waiting for room) is
        # not given up to POWEROFF when the host returns without it: the scheduler boots it.
        awaiting = active and lcm is L.UNKNOWN and vm.resched
        if dom is None:
            if active and lcm in (L.RUNNING, L.UNKNOWN) and not awaiting:
                missing = (
                    (VmState.ACTIVE, L.UNKNOWN)
                    if self.settings.missing_vm_state.upper() == "UNKNOWN"
                    else (VmState.POWEROFF, L.LCM_INIT)
                )
                t.vm_state(vm, missing, f"not found on {host.subject}")
            return
        vm.last_poll = int(self.clock.now())
        if dom.state is DomainState.RUNNING:
            if (active and (lcm is L.UNKNOWN or lcm in _BOOTING)) or state in (
                VmState.POWEROFF,
                VmState.SUSPENDED,
            ):
                t.vm_state(vm, (VmState.ACTIVE, L.RUNNING), f"running on {host.subject}")
        elif dom.state is DomainState.POWEROFF:
            if active and (lcm in (L.RUNNING, L.UNKNOWN) or lcm in _SHUTTING) and not awaiting:
                t.vm_state(vm, (VmState.POWEROFF, L.LCM_INIT), f"shut off on {host.subject}")
        elif dom.state is DomainState.FAILURE:
            if active and lcm is L.RUNNING:
                t.vm_state(vm, (VmState.ACTIVE, L.UNKNOWN), f"failed on {host.subject}")
        elif dom.state is DomainState.SUSPENDED and active and lcm is L.RUNNING:
            t.vm_state(vm, (VmState.SUSPENDED, L.LCM_INIT), f"paused on {host.subject}")

    async def _cleanup_stale(self, host_id: int, vm_id: int, deploy_id: str) -> None:
        # Decided after the probe; look again now: the VM may have been deployed or migrated
        # back onto this host meanwhile, and its new domain must not be destroyed.
        try:
            vm = self.store.vm(vm_id)
            placed_here = vm.host_id == host_id and vm.state in (
                VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED
            )
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


def _signature(probe: HostProbe) -> tuple[object, ...]:
    return (
        probe.total_cpu,
        probe.total_mem,
        probe.used_cpu // 100,  # whole cores: small jitter alone is not worth a write
        probe.used_mem // (64 * 1024),
        tuple(sorted((d.deploy_id, d.state.value) for d in probe.domains)),
        tuple(sorted(probe.info.items())),
    )
