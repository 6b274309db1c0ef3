"""The second signal on the controller's side (core/heartbeats.py) and how ft/host_error
reads it (ha/evidence.py); the heartbeat file format (domain/heartbeat.py)."""

from __future__ import annotations

import pytest

from helpers.core import Harness
from lazarus.core.heartbeats import Heartbeats
from lazarus.domain.heartbeat import Beat, HeartbeatError, decode, file_name
from lazarus.domain.template import Template
from lazarus.ha.evidence import Heartbeat


class Source:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.broken = False

    async def read(self, host: str) -> bytes | None:
        if self.broken:
            raise OSError("stale NFS handle")
        return self.files.get(host)


def _beat(counter: int, boot: int = 7, **kw: object) -> bytes:
    fields: dict[str, object] = {"time": 0.0, "period": 1.0, "watchdog": 17.0}
    fields.update(kw)
    return Beat("node1", boot, counter, **fields).encode()  # type: ignore[arg-type]


def _published(h: Harness, host_id: int) -> dict[str, str]:
    vectors = h.host(host_id).template.vectors("HA_HEARTBEAT")
    return vectors[-1].as_dict() if vectors else {}


def _setup(h: Harness) -> tuple[Heartbeats, Source, int]:
    source = Source()
    hb = Heartbeats(h.store, h.controller.journal, h.clock, h.settings, source)
    return hb, source, h.host_id("node1")


def test_format_round_trip_and_refusals() -> None:
    beat = Beat("node1", 12, 34, 1.5, 1.0, 17.0, True)
    assert decode(beat.encode()) == beat
    for bad in (b"", b"HELLO\n", b"LAZARUS_HEARTBEAT 1\nHOST a\n", b"\xff" * 10,
                b"LAZARUS_HEARTBEAT 1\nHOST a\nBOOT x\nCOUNTER 1\nTIME 1\nPERIOD 1\n",
                b"LAZARUS_HEARTBEAT 1\nHOST a\nBOOT 1\nCOUNTER 1\nTIME 1\nPERIOD 0\n",
                b"x" * 5000):
        with pytest.raises(HeartbeatError):
            decode(bad)
    for name in ("../etc", "a/b", "", ".hidden"):
        with pytest.raises(HeartbeatError):
            file_name(name)


def test_no_file_no_agent_nothing_published() -> None:
    with Harness(hosts=1) as h:
        hb, _, host_id = _setup(h)
        h.run(hb.round())
        assert _published(h, host_id) == {}


def test_advancing_then_stopped_on_the_controllers_clock() -> None:
    with Harness(hosts=1) as h:
        hb, source, host_id = _setup(h)
        t0 = h.clock.now()
        for counter in range(1, 4):
            source.files["node1"] = _beat(counter, time=1.0)  # the host's clock is ignored
            h.run(hb.round())
            h.advance(1)
        assert _published(h, host_id)["STATUS"] == "ADVANCING"
        seen = t0 + 2  # the third beat's arrival, as the controller saw it
        h.advance(3.5)  # 3 periods + a read interval without a change
        h.run(hb.round())
        p = _published(h, host_id)
        assert p["STATUS"] == "STOPPED" and float(p["SEEN"]) == seen
        assert p["ISOLATED"] == "NO" and p["WATCHDOG"] == "17"


def test_a_healthy_host_is_written_only_when_its_status_changes() -> None:
    with Harness(hosts=1) as h:
        hb, source, host_id = _setup(h)
        source.files["node1"] = _beat(1)
        h.run(hb.round())
        first = _published(h, host_id)
        source.files["node1"] = _beat(2)
        h.advance(1)
        h.run(hb.round())
        assert _published(h, host_id) == first  # counter moved, nothing written


def test_failing_host_with_advancing_heartbeat_is_isolated_and_noted() -> None:
    with Harness(hosts=1) as h:
        hb, source, host_id = _setup(h)
        source.files["node1"] = _beat(1)
        h.run(hb.round())
        h.sim.cut_network("node1")
        h.wait_for(lambda: "MONITOR_FAILURES" in h.host(host_id).template)
        for counter in range(2, 5):
            source.files["node1"] = _beat(counter)
            h.run(hb.round())
            assert _published(h, host_id)["COUNTER"] == str(counter)  # every advance
            h.advance(1)
        p = _published(h, host_id)
        assert p["ISOLATED"] == "YES" and p["STATUS"] == "ADVANCING"
        lines = [e.line for e in h.store.events(0, 100000) if "ISOLATED" in e.line]
        assert lines and "heartbeat advances" in lines[0]


def test_unreadable_storage_is_no_evidence() -> None:
    with Harness(hosts=1) as h:
        hb, source, host_id = _setup(h)
        source.files["node1"] = _beat(1)
        h.run(hb.round())
        source.broken = True
        h.advance(10)
        h.run(hb.round())
        assert _published(h, host_id)["STATUS"] == "UNREADABLE"
        beat = Heartbeat.of(h.host(host_id).template)
        assert beat is not None and not beat.proves_dead(h.clock.now() + 1000)


def test_a_new_controller_keeps_the_seen_time_of_an_unchanged_beat() -> None:
    with Harness(hosts=1) as h:
        hb, source, host_id = _setup(h)
        source.files["node1"] = _beat(5)
        h.run(hb.round())
        seen = _published(h, host_id)["SEEN"]
        h.advance(10)
        again = Heartbeats(h.store, h.controller.journal, h.clock, h.settings, source)
        h.run(again.round())
        p = _published(h, host_id)
        assert p["SEEN"] == seen and p["STATUS"] == "STOPPED"
        source.files["node1"] = _beat(5, boot=8)  # a restarted agent: counts as an advance
        h.run(again.round())
        assert _published(h, host_id)["STATUS"] == "ADVANCING"


def _template(status: str, seen: float, watchdog: float, failing_since: float = 0.0,
              vms: str = "RUNNING") -> Template:
    text = (f'HA_HEARTBEAT = [ STATUS = "{status}", COUNTER = "9", SEEN = "{seen}", '
            f'PERIOD = "1", WATCHDOG = "{watchdog}", VMS = "{vms}" ]')
    if failing_since:
        text += f'\nFAILING_SINCE = "{failing_since}"'
    return Template.parse(text)


def test_evidence_stopped_longer_than_the_safe_time_proves_death_only_with_a_watchdog() -> None:
    assert Heartbeat.of(Template()) is None
    with_wd = Heartbeat.of(_template("STOPPED", 100.0, 17))
    assert with_wd is not None
    assert not with_wd.proves_dead(117.0) and with_wd.proves_dead(117.5)
    without = Heartbeat.of(_template("STOPPED", 100.0, 0))
    assert without is not None and not without.proves_dead(10_000.0)
    advancing = Heartbeat.of(_template("ADVANCING", 100.0, 17))
    assert advancing is not None and not advancing.proves_dead(10_000.0)


def test_evidence_counts_from_the_first_failed_probe_when_that_is_later() -> None:
    beat = Heartbeat.of(_template("STOPPED", 148.0, 17, failing_since=150.0))
    assert beat is not None
    assert beat.stopped_for(160.0) == 10.0 and not beat.proves_dead(160.0)
    assert beat.proves_dead(167.5)


def test_a_heartbeat_that_stopped_before_the_failure_proves_nothing() -> None:
    """An agent stopped (or crashed) long before the host was lost: its old WATCHDOG bound
    says nothing about this failure (the device may have been disarmed)."""
    beat = Heartbeat.of(_template("STOPPED", 100.0, 17, failing_since=150.0))
    assert beat is not None and not beat.alive_at_failure()
    assert not beat.proves_dead(10_000.0)
