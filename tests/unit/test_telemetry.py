"""telemetry/: the recovery tracker, incident steps, the event feed and the metrics' gauges.

Pure tests on made-up events and hosts (no daemon, no sleeps); the end-to-end scrape during a
simulated failure is tests/integration/test_metrics.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lazarus.domain.entities import Event, EventKind, Host, ObjType
from lazarus.domain.states import HostState, VmState
from lazarus.domain.template import Template
from lazarus.ha.incident import Incident, IncidentState
from lazarus.telemetry.events import EventFeed, event_record
from lazarus.telemetry.incidents import IncidentWatch, fence_agent, fence_took
from lazarus.telemetry.metrics import Metrics
from lazarus.telemetry.recovery import RecoveryTracker
from lazarus.telemetry.routes import sse


def test_recovery_counts_from_the_first_failed_probe() -> None:
    r = RecoveryTracker()
    r.probe(1, True, 5.0)
    r.probe(1, False, 10.0)
    r.probe(1, False, 12.0)  # the streak's first failure stays the fault
    r.host_error(1, [7, 8], 14.0)
    assert r.vm_running(7, 40.0) == 30.0
    assert r.vm_running(7, 41.0) is None  # counted once
    r.vm_done(8)
    assert r.vm_running(8, 50.0) is None


def test_recovery_without_a_failed_probe_counts_from_error_and_drops_on_return() -> None:
    r = RecoveryTracker()
    r.host_error(2, [3, 4], 100.0)
    r.host_back(2, [3])  # VM 3 never left the host: not a recovery
    assert r.vm_running(3, 120.0) is None
    assert r.vm_running(4, 130.0) == 30.0
    r.probe(2, False, 200.0)
    r.probe(2, True, 201.0)  # a blip: the next ERROR counts from its own failure
    r.host_error(2, [5], 300.0)
    assert r.vm_running(5, 301.0) == 1.0


def _host(incident: Incident | None, host_id: int = 3) -> Host:
    template = incident.to_template() if incident else Template()
    return Host(id=host_id, name=f"node{host_id}", template=template)


def test_incident_steps_fence_duration_and_outcome() -> None:
    w = IncidentWatch()
    inc = Incident(key="k1")
    step = w.seen(_host(inc), 10.0)
    assert step is not None and step.state is IncidentState.WAITING and step.previous is None
    assert w.seen(_host(inc), 11.0) is None  # the same record again
    inc.state = IncidentState.FENCING
    assert w.seen(_host(inc), 20.0) is not None
    inc.state, inc.fence = IncidentState.FENCE_FAILED, "fence_ipmilan level 1: no answer"
    step = w.seen(_host(inc), 26.5)
    assert step is not None
    assert (step.fence_agent, step.fence_result, step.fence_seconds) == (
        "fence_ipmilan", "failed", 6.5)
    assert step.outcome == "fence_failed"
    inc.state = IncidentState.FENCED
    inc.fence = ("fence_host host node3: fenced, power proven off by level 2 (fence_redfish x)"
                 " in 1.25s")
    step = w.seen(_host(inc), 90.0)
    assert step is not None and (step.fence_agent, step.fence_seconds) == ("fence_redfish", 1.25)
    assert w.open_count() == 1
    inc.state = IncidentState.RECOVERING
    w.seen(_host(inc), 91.0)
    inc.state, inc.failed = IncidentState.DONE, [9]
    step = w.seen(_host(inc), 95.0)
    assert step is not None and step.outcome == "partial"
    assert w.open_count() == 0


def test_primed_records_are_not_counted_again() -> None:
    w = IncidentWatch()
    done = Incident(key="old", state=IncidentState.DONE)
    w.prime([_host(done)])
    assert w.seen(_host(done), 1.0) is None
    assert w.seen(_host(None), 1.0) is None


def test_fence_text_parsing() -> None:
    assert fence_agent("fence_host host n: fenced ... (fence_sim n) in 0.5s") == "fence_sim"
    assert fence_agent("myscript: off") == "myscript"
    assert fence_agent("") == "unknown"
    assert fence_took("... in 0.57s, 2 agent runs") == 0.57
    assert fence_took("failed") is None


def _event(**kw: Any) -> Event:
    base: dict[str, Any] = {"kind": EventKind.STATE, "line": "x", "time": 1.0, "id": 1}
    base.update(kw)
    return Event(**base)


def test_event_records_carry_the_typed_fields_but_never_the_body(tmp_path: Path) -> None:
    record = event_record(_event(obj=ObjType.HOST, obj_id=3, state="ERROR", body="<HOST/>"))
    assert record["kind"] == "state" and record["obj"] == "HOST" and record["state"] == "ERROR"
    assert "body" not in record
    path = tmp_path / "d" / "events.jsonl"
    feed = EventFeed(path, max_subscribers=1)
    sub = feed.subscribe()
    feed.publish(record)
    feed.close()
    assert list(sub.lines(keepalive=0.01)) == [json.dumps(record, separators=(",", ":"))]
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == record


def test_a_slow_subscriber_loses_lines_and_is_told() -> None:
    feed = EventFeed()
    sub = feed.subscribe()
    for i in range(sub.queue.maxsize + 3):
        feed.publish({"i": i})
    assert sub.lost == 3
    lines = sub.lines(keepalive=0.01)
    assert json.loads(next(lines)) == {"type": "lost", "count": 3}
    assert json.loads(next(lines)) == {"i": 0}


def test_the_feed_caps_its_subscribers() -> None:
    feed = EventFeed(max_subscribers=1)
    feed.subscribe()
    try:
        feed.subscribe()
    except Exception as exc:
        assert "at most 1" in str(exc)
    else:
        raise AssertionError("a second subscriber was taken")


def test_sse_frames() -> None:
    frames = list(sse(iter(['{"a":1}', ""])))
    assert frames == [b": lazarus event stream\n\n", b'data: {"a":1}\n\n', b": keepalive\n\n"]


class FakeStore:
    def __init__(self, hosts: list[Host]) -> None:
        self._hosts = hosts

    def hosts(self) -> list[Host]:
        return self._hosts

    def host(self, host_id: int) -> Host:
        return next(h for h in self._hosts if h.id == host_id)

    def vms(self, **kw: Any) -> list[Any]:
        return []

    def vm_short_bodies(self, **kw: Any) -> list[str]:
        return self.bodies

    bodies: list[str] = []


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_probe_round_age_grows_when_the_monitor_stops() -> None:
    """The gauge the "HA is blind" alert (share/monitoring/lazarus-rules.yml) reads."""
    now = [1000.0]
    host = Host(id=0, name="n0", state=HostState.MONITORED)
    m = Metrics(FakeStore([host]), now=lambda: now[0])  # type: ignore[arg-type]
    m.round_done()
    now[0] += 5
    assert _value(m, "lazarus_probe_round_age_seconds") == 5.0
    m.round_done()
    now[0] += 300  # no round completed since: the monitor is stopped
    assert _value(m, "lazarus_probe_round_age_seconds") == 300.0
    assert _value(m, "lazarus_hosts", state="MONITORED") == 1


def test_metrics_count_a_recovery_and_an_incident_from_journal_events() -> None:
    host = Host(id=3, name="node3", state=HostState.ERROR, vms=[7])
    m = Metrics(FakeStore([host]), now=lambda: 0.0)  # type: ignore[arg-type]
    m.probe(3, "node3", False, 0.2)
    m.on_events([_event(obj=ObjType.HOST, obj_id=3, state="ERROR", time=10.0)])
    inc = Incident(key="k", state=IncidentState.DONE)
    host.template = inc.to_template()
    m.on_events([
        _event(kind=EventKind.TEMPLATE, obj=ObjType.HOST, obj_id=3, time=30.0),
        _event(obj=ObjType.VM, obj_id=7, state=VmState.ACTIVE.name, lcm_state="RUNNING",
               time=40.0),
    ])
    assert _value(m, "lazarus_vm_recovery_seconds_count") == 1
    assert _value(m, "lazarus_vm_recovery_seconds_sum") == 40.0  # from the failed probe at 0
    assert _value(m, "lazarus_incidents_total", outcome="done") == 1
    assert _value(m, "lazarus_probe_failures_total", host="node3") == 1
    m.api_call("one.vm.info", 0.001)
    m.hook_done("host_error", 1, 2.0)
    assert _value(m, "lazarus_api_call_duration_seconds_count", method="one.vm.info") == 1
    assert _value(m, "lazarus_hook_duration_seconds_count", hook="host_error",
                  result="failure") == 1
    assert b"lazarus_vm_recovery_seconds_bucket" in m.exposition()


def test_the_incident_timeline_marks_each_vm() -> None:
    from lazarus.web import timeline

    def ev(t: float, obj: str, oid: int, state: str, lcm: str = "", host: int = -1) -> dict:
        return {"type": "event", "time": t, "kind": "state", "obj": obj, "obj_id": oid,
                "state": state, "lcm_state": lcm, "host_id": host}

    def inc(t: float, state: str, handled: list[int]) -> dict:
        return {"type": "incident", "time": t, "host_id": 3, "key": "k", "state": state,
                "handled": handled, "failed": []}

    records = [
        ev(1.0, "HOST", 3, "ERROR"),  # an earlier episode: replaced by the next ERROR
        ev(10.0, "HOST", 3, "ERROR"),
        ev(10.5, "VM", 7, "ACTIVE", "UNKNOWN", host=3),
        inc(11.0, "WAITING", []),
        inc(14.0, "FENCED", []),
        ev(14.5, "VM", 7, "ACTIVE", "PROLOG_MIGRATE_UNKNOWN", host=4),
        inc(14.6, "RECOVERING", [7]),
        ev(16.0, "VM", 7, "ACTIVE", "RUNNING", host=4),
        ev(16.0, "VM", 8, "ACTIVE", "RUNNING", host=5),  # not this incident's
    ]
    tl = timeline.build(records, 3, "k")
    assert tl.t0 == 10.0
    assert tl.host == {"detected": 10.0, "hook": 11.0, "fenced": 14.0}
    assert tl.vms == {7: {"placed": 14.5, "running": 16.0}}
    svg = timeline.svg(tl, {7: "web<1>"})
    assert svg.count("mark-running") == 1 and "web&lt;1&gt;" in svg
    assert "No events" in timeline.svg(timeline.build([], 3, "k"), {})


def test_vms_by_state_from_the_short_bodies() -> None:
    from lazarus.domain import xml as docs
    from lazarus.domain.entities import VM
    from lazarus.domain.states import LcmState

    vms = [VM(id=1, name="a"), VM(id=2, name="b", state=VmState.ACTIVE,
                                  lcm_state=LcmState.RUNNING), VM(id=3, name="c")]
    store = FakeStore([])
    store.bodies = [docs.vm_short_xml(vm) for vm in vms]
    m = Metrics(store, now=lambda: 0.0)  # type: ignore[arg-type]
    assert _value(m, "lazarus_vms", state="PENDING") == 2
    assert _value(m, "lazarus_vms", state="ACTIVE") == 1
    assert _value(m, "lazarus_scheduler_pending_vms") == 2
