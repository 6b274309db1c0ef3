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

VM sync follows oned's rules (on ERROR, RUNNING -> UNKNOWN); a VM whose state changed while a probe
was in flight is left alone (the probe may predate the change). A domain found on a host the
VM is no longer placed on is stale: it is destroyed and undefined, never started.

The monitor is three parts: this module runs the loop and the probe rounds and passes on
what the journal says changed; core/pacer.py decides when each host is probed (due times,
retries, bursts, the alert cadence); core/applier.py writes what a result means (failure
count, ERROR, capacity, the VM sync of domain/transitions.py VM_SYNC, stale domains).
"""


from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from contextlib import aclosing
from typing import Any

from lazarus.domain.entities import Event, EventKind, Host, ObjType
from lazarus.domain.errors import DriverError, InternalError, NoExistsError
from lazarus.domain.states import HostState
from lazarus.ports.clock import Clock
from lazarus.ports.hypervisor import DomainEventReporting, HostProbe, Hypervisor, LossReporting
from lazarus.ports.store import Store

from .applier import Applier
from .journal import Journal
from .lifecycle import Lifecycle
from .pacer import Pacer
from .probing import probe_round
from .settings import Settings

log = logging.getLogger("lazarus.monitor")


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
        self.clock = clock
        self.drivers = drivers
        self.settings = settings
        self.pacer = Pacer(clock, settings)
        self.applier = Applier(
            store, journal, clock, drivers, settings, lifecycle,
            alert=lambda host: self.pacer.alert(host.cluster_id, host.id), spawn=self._spawn,
        )
        self._tasks: set[asyncio.Task[None]] = set()  # rounds and stale-domain cleanups
        # Observers (telemetry/metrics.py): each applied probe (host, ok, seconds) and each
        # completed round. Called on the loop; they must not raise (errors are logged).
        self.probe_listeners: list[Callable[[Host, bool, float], None]] = []
        self.round_listeners: list[Callable[[], None]] = []
        # The monitor keeps each host's record and re-reads it only after the journal said
        # the host changed (state, template, placements): no decode per probe.
        self._cached: dict[int, Host] = {}
        self._stale: set[int] = set()
        self._read_failing = False  # the last re-read of a host record failed (logged once)
        journal.listeners.append(self._on_events)

    @property
    def failures(self) -> dict[int, int]:
        """Failed probes in a row, per host id."""
        return self.pacer.failures

    # ----------------------------------------------------------------------- service
    async def run(self) -> None:
        """Probe every host that is not OFFLINE whenever it is due, until cancelled."""
        self.attach(asyncio.get_running_loop())
        while True:
            try:
                hosts = self.store.hosts()
                break
            except InternalError as exc:  # PostgreSQL away at start: wait for it, one line
                log.error("monitor: cannot read the hosts, the store fails (%s); retrying", exc)
                await self.clock.sleep(1.0)
        for host in hosts:
            if host.state is not HostState.OFFLINE:
                self.wake(host.id)
        try:
            while True:
                self._start_due()
                await self.pacer.sleep()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()

    def wake(self, host_id: int) -> None:
        """Probe this host now (a driver saw its connection drop, or the host changed state);
        a host not monitored yet (new, or back from OFFLINE) joins."""
        self.pacer.wake(host_id)

    def _start_due(self) -> None:
        """Start a round (per driver) for the hosts due now (core/pacer.py says which)."""
        now = self.clock.monotonic()
        rounds: dict[str, list[Host]] = {}
        for host_id in self.pacer.due(self._alive):
            host = self._cached[host_id]
            rounds.setdefault(host.vm_mad, []).append(host)
        for vm_mad, hosts in rounds.items():
            self._spawn(self._round(vm_mad, hosts, now))

    def _alive(self, host_id: int) -> bool:
        """Keep probing this host; False (it is forgotten) when it was deleted, went
        OFFLINE or is no longer tracked."""
        if self._current(host_id) is not None:
            return True
        self._cached.pop(host_id, None)
        self.applier.forget(host_id)
        return False

    def _current(self, host_id: int) -> Host | None:
        """The host's record (cached until the journal says it changed); None: stop probing
        it (deleted, OFFLINE, or no longer tracked)."""
        if not self.pacer.tracked(host_id):
            return None
        host = self._cached.get(host_id)
        if host is None or host_id in self._stale:
            try:
                fresh = self.store.host(host_id)
            except NoExistsError:
                return None
            except InternalError as exc:
                if host is None:  # nothing to probe on: the supervisor restarts the loop
                    raise
                # The store cannot be read (PostgreSQL away): probe on the record we have
                # (nothing can change it while the store is down) and re-read it later.
                if not self._read_failing:
                    log.error("monitor: cannot re-read hosts, the store fails (%s); probing "
                              "on the last records read", exc)  # fmt: skip
                self._read_failing = True
                return None if host.state is HostState.OFFLINE else host
            self._read_failing = False
            host = fresh
            self._cached[host_id] = host
            self.pacer.place(host_id, host.cluster_id)
            self._stale.discard(host_id)
        return None if host.state is HostState.OFFLINE else host

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_events(self, events: list[Event]) -> None:
        """Journal listener: what changed decides whose next probe is applied in full, whose
        record is re-read, and which host is probed at once. Fields only, never the line."""
        for event in events:
            self.applier.last_event = max(self.applier.last_event, event.id)
            if event.obj == ObjType.VM and event.kind in (EventKind.STATE, EventKind.FLAG):
                self.applier.vm_changed(event.obj_id, event.id, event.host_id)
            elif event.obj == ObjType.HOST:
                self.applier.host_changed(event.obj_id)
                self._stale.add(event.obj_id)
                if event.kind != EventKind.STATE:  # created, template updated, a note...
                    if not self.pacer.tracked(event.obj_id):
                        self.wake(event.obj_id)  # a new host
                elif event.state in ("OFFLINE", "INIT", "MONITORED") and not self.pacer.busy(
                    event.obj_id
                ):  # an operator's change; a probe being applied schedules its own next one
                    self.wake(event.obj_id)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen to drivers that report lost connections (from any thread)."""

        def lost(name: str) -> None:
            loop.call_soon_threadsafe(self._connection_lost, name)

        def domain_event(name: str, deploy_id: str, what: str) -> None:
            loop.call_soon_threadsafe(self._domain_event, name, deploy_id, what)

        for driver in {id(d): d for d in self.drivers.values()}.values():
            if isinstance(driver, LossReporting):
                driver.set_loss_listener(lost)
            if isinstance(driver, DomainEventReporting):
                driver.set_domain_listener(domain_event)

    def _domain_event(self, name: str, deploy_id: str, what: str) -> None:
        """A driver saw a domain event (a guest crashed, stopped, paused on an I/O error...):
        probe its host now. The probe decides (core/vm_ha.py acts on what it shows)."""
        try:
            host = self.store.host_by_name(name)
        except InternalError as exc:  # the host is probed on its cadence anyway
            log.error("%s: domain event not handled, the store fails: %s", name, exc)
            return
        if host is None or host.state is HostState.OFFLINE:
            return
        log.debug("%s: domain %s: %s: probing now", host.subject, deploy_id, what)
        self.pacer.recheck(host.id)

    def _connection_lost(self, name: str) -> None:
        try:
            host = self.store.host_by_name(name)
        except InternalError as exc:  # the host is probed on its cadence anyway
            log.error("%s: lost connection not recorded, the store fails: %s", name, exc)
            return
        if host is None or host.state is HostState.OFFLINE:
            return
        if host.state is not HostState.ERROR:
            self._failed(host.id, "connection to the host lost (keepalive)")
        self.wake(host.id)

    # ------------------------------------------------------------------------- probe
    async def _round(self, vm_mad: str, hosts: list[Host], started: float) -> None:
        """Probe hosts due at the same instant, bounded by PROBE_TIMEOUT; each result is
        applied as it comes."""
        cursor = self.applier.last_event  # VM changes after this may be newer than the probe
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
            self._observe_round()
        else:
            self._observe_round()
        finally:
            for host_id in waiting:  # cancelled: the monitor is stopping
                self.pacer.abandon(host_id)

    def _finish(
        self, host: Host, result: HostProbe | Exception, cursor: int, started: float
    ) -> None:
        """Apply one probe's result and say when the host is due next."""
        if not self.pacer.tracked(host.id):
            self.pacer.abandon(host.id)
            return
        try:
            if isinstance(result, HostProbe):
                healthy = self.pacer.failures.get(host.id, 0) == 0
                self.pacer.succeeded(host.id)
                self.applier.observed(host, result, cursor, healthy)
            elif isinstance(result, DriverError | TimeoutError):
                self._failed(host.id, str(result) or type(result).__name__)
            else:  # a driver bug is a failed probe, not a dead monitor
                log.error("%s: probe crashed", host.subject, exc_info=result)
                self._failed(host.id, f"internal error: {result}")
        except InternalError as exc:  # the store fails: the next probe applies in full again
            log.error("%s: probe result not recorded, the store fails: %s", host.subject, exc)
        except Exception:  # a bug here must not stop this host's probes (it stays scheduled)
            log.exception("%s: applying a probe failed", host.subject)
        # only now: the state changes it made woke no one
        self.pacer.finished(host.id, host.cluster_id, started)
        ok = isinstance(result, HostProbe)
        for listener in self.probe_listeners:
            try:
                listener(host, ok, self.clock.monotonic() - started)
            except Exception:
                log.exception("probe listener %r failed", listener)

    def _observe_round(self) -> None:
        for listener in self.round_listeners:
            try:
                listener()
            except Exception:
                log.exception("round listener %r failed", listener)

    def _failed(self, host_id: int, message: str) -> None:
        self.applier.failed(host_id, self.pacer.failed(host_id), message)
