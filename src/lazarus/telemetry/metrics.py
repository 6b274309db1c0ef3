"""Prometheus metrics of the controller, with the official client (prometheus_client).

`Metrics` owns a private CollectorRegistry (no process-global state: tests build several).
Fed by:
* `on_events` (a journal listener, the loop thread): host ERROR / back, VM RUNNING / DONE for
  the recovery histogram (recovery.py); host TEMPLATE updates for the incident steps
  (incidents.py): incidents by outcome, fence duration by agent and result; every event and
  incident step also goes to the event feed (events.py) when one is given;
* `probe` / `round_done` (the monitor's observation points): probe latency, failed probes, the
  time of the last completed probe round;
* `hook_done` (the timed hook executor, hooks.py here): hook executions by result, duration;
* `api_call` (the dispatcher's timer): API latency by method;
and, read at each scrape from the store (`StoreReader`, safe from any thread): hosts by state,
VMs by state, VMs pending placement (the scheduler's queue), open incidents, seconds since the
last completed probe round ("is HA blind").
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lazarus.domain.entities import Event, EventKind, ObjType
from lazarus.domain.states import HostState, VmState
from lazarus.ports.store import StoreReader

from .events import EventFeed, event_record, step_record
from .incidents import IncidentWatch
from .recovery import RecoveryTracker

log = logging.getLogger("lazarus.telemetry")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECOVERY_BUCKETS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200)
FENCE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120)
HOOK_BUCKETS = (0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)
API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


_STATE = re.compile(r"<STATE>([0-9]+)</STATE>")


def vm_states(bodies: list[str]) -> Tally[str]:
    """VMs by STATE name from the kept short bodies (the first STATE element of a VM body is
    the VM's: domain/xml/vm.py vm_short_xml): no decode of 10,000 VMs per scrape."""
    tally: Tally[str] = Tally()
    for body in bodies:
        found = _STATE.search(body)
        if found is not None:
            try:
                tally[VmState(int(found.group(1))).name] += 1
            except ValueError:
                tally["UNKNOWN_STATE"] += 1
    return tally


class _StateCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self._m
        try:
            hosts = m.store.hosts()
            by_vm_state = vm_states(m.store.vm_short_bodies())
            pending = by_vm_state.get(VmState.PENDING.name, 0)
        except Exception as exc:  # a scrape never fails the controller; it says so
            log.error("metrics: the store could not be read: %s", exc)
            up = GaugeMetricFamily("lazarus_store_up", "Whether the store answered this scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("lazarus_store_up", "Whether the store answered this scrape")
        up.add_metric([], 1)
        yield up
        states = GaugeMetricFamily(
            "lazarus_host_state", "1 for the state each host is in", labels=["host", "state"]
        )
        counts = GaugeMetricFamily("lazarus_hosts", "Hosts by state", labels=["state"])
        fence = GaugeMetricFamily(
            "lazarus_host_fence_configured", "Whether the host has a FENCE attribute",
            labels=["host"],
        )
        tally = Tally(h.state.name for h in hosts)
        for host in hosts:
            states.add_metric([host.name, host.state.name], 1)
            fence.add_metric([host.name], 1 if host.template.vectors("FENCE") else 0)
        for state in (HostState.INIT, HostState.MONITORED, HostState.ERROR,
                      HostState.DISABLED, HostState.OFFLINE):
            counts.add_metric([state.name], tally.get(state.name, 0))
        yield states
        yield counts
        yield fence
        vms = GaugeMetricFamily("lazarus_vms", "VMs by state (DONE not counted)",
                                labels=["state"])
        for name, n in sorted(by_vm_state.items()):
            vms.add_metric([name], n)
        yield vms
        queue = GaugeMetricFamily("lazarus_scheduler_pending_vms",
                                  "VMs waiting for the scheduler to place them")
        queue.add_metric([], pending)
        yield queue
        open_incidents = GaugeMetricFamily("lazarus_incidents_open",
                                           "HA incidents not yet DONE or ABORTED")
        open_incidents.add_metric([], m.incidents.open_count())
        yield open_incidents
        age = GaugeMetricFamily(
            "lazarus_probe_round_age_seconds",
            "Seconds since the monitor last completed a probe round (since start if none)",
        )
        age.add_metric([], max(0.0, m.now() - m.last_round))
        yield age


class Metrics:
    def __init__(
        self,
        store: StoreReader,
        now: Callable[[], float] = time.time,
        feed: EventFeed | None = None,
    ) -> None:
        self.store = store
        self.now = now
        self.feed = feed
        self.last_round = now()
        self.recovery = RecoveryTracker()
        self.incidents = IncidentWatch()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.probe_seconds = Histogram(
            "lazarus_probe_duration_seconds", "Host probe latency", ["result"],
            buckets=PROBE_BUCKETS, registry=r,
        )
        self.probe_failures = Counter(
            "lazarus_probe_failures", "Failed host probes", ["host"], registry=r
        )
        self.recovery_seconds = Histogram(
            "lazarus_vm_recovery_seconds",
            "Per VM: seconds from its host's fault (first failed probe) to RUNNING again",
            buckets=RECOVERY_BUCKETS, registry=r,
        )
        self.incidents_total = Counter(
            "lazarus_incidents", "HA incidents that ended, by outcome", ["outcome"], registry=r
        )
        self.fence_seconds = Histogram(
            "lazarus_fence_duration_seconds", "Fences by agent and result",
            ["agent", "result"], buckets=FENCE_BUCKETS, registry=r,
        )
        self.hook_seconds = Histogram(
            "lazarus_hook_duration_seconds", "Hook executions by hook and result",
            ["hook", "result"], buckets=HOOK_BUCKETS, registry=r,
        )
        self.api_seconds = Histogram(
            "lazarus_api_call_duration_seconds", "XML-RPC calls by method (parse to render)",
            ["method"], buckets=API_BUCKETS, registry=r,
        )
        r.register(_StateCollector(self))

    def prime(self) -> None:
        """At start: incident records that already exist are not counted again."""
        self.incidents.prime(self.store.hosts())

    # -- observation points ---------------------------------------------------------------
    def probe(self, host_id: int, host: str, ok: bool, seconds: float) -> None:
        self.probe_seconds.labels("ok" if ok else "failed").observe(max(0.0, seconds))
        if not ok:
            self.probe_failures.labels(host).inc()
        self.recovery.probe(host_id, ok, self.now())

    def round_done(self) -> None:
        self.last_round = self.now()

    def hook_done(self, hook: str, code: int, seconds: float) -> None:
        result = "success" if code == 0 else "failure"
        self.hook_seconds.labels(hook, result).observe(max(0.0, seconds))

    def api_call(self, method: str, seconds: float) -> None:
        self.api_seconds.labels(method[:64]).observe(max(0.0, seconds))

    # -- the journal ------------------------------------------------------------------------
    def on_events(self, events: list[Event]) -> None:
        for event in events:
            try:
                self._event(event)
            except Exception:  # a metrics bug must not hide the next events
                log.exception("metrics: event %d not counted", event.id)

    def _event(self, event: Event) -> None:
        if self.feed is not None:
            self.feed.publish(event_record(event))
        if event.obj == ObjType.HOST:
            if event.kind == EventKind.STATE and event.state == HostState.ERROR.name:
                host = self.store.host(event.obj_id)
                self.recovery.host_error(host.id, list(host.vms), event.time)
            elif event.kind == EventKind.STATE and event.state == HostState.MONITORED.name:
                on_it = [vm.id for vm in self.store.vms(host_id=event.obj_id,
                                                        states=[VmState.ACTIVE])]
                self.recovery.host_back(event.obj_id, on_it)
            elif event.kind == EventKind.TEMPLATE:
                self._incident(event)
        elif event.obj == ObjType.VM and event.kind == EventKind.STATE:
            if event.state == VmState.ACTIVE.name and event.lcm_state == "RUNNING":
                seconds = self.recovery.vm_running(event.obj_id, event.time)
                if seconds is not None:
                    self.recovery_seconds.observe(seconds)
            elif event.state == VmState.DONE.name:
                self.recovery.vm_done(event.obj_id)

    def _incident(self, event: Event) -> None:
        host = self.store.host(event.obj_id)
        step = self.incidents.seen(host, event.time)
        if step is None:
            return
        if step.outcome:
            self.incidents_total.labels(step.outcome).inc()
        if step.fence_result:
            seconds = step.fence_seconds
            hist = self.fence_seconds.labels(step.fence_agent, step.fence_result)
            hist.observe(0.0 if seconds is None else seconds)
        if self.feed is not None:
            self.feed.publish(step_record(step, event.time))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
