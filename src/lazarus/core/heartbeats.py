"""The second signal: the hosts' storage heartbeats, as the controller sees them.

Every HEARTBEAT_INTERVAL (1 s) this loop reads each host's heartbeat file through the
`HeartbeatSource` port (the shared system datastore the controller sees; drivers/heartbeat.py)
and publishes what it means in the host's template, where ft/host_error (ha/evidence.py)
and operators read it:

    HA_HEARTBEAT = [ STATUS = "ADVANCING", ISOLATED = "YES", BOOT = "...", COUNTER = "42",
                     SEEN = "1795906062.120", PERIOD = "1", WATCHDOG = "17", VMS = "RUNNING" ]

* SEEN is *this controller's* clock when BOOT/COUNTER last changed: the host's clock never
  counts. STATUS is ADVANCING while SEEN is at most HEARTBEAT_MISSED periods (+ one read
  interval) old, STOPPED after that, UNREADABLE when the controller cannot read the storage
  (no evidence either way).
* ISOLATED = YES: the host's probes fail (MONITOR_FAILURES, or ERROR) while its heartbeat
  advances: a beat arrived after the first failed probe (FAILING_SINCE). The host keeps
  OpenNebula's state (ERROR, 3); this attribute says it is alive.
* A healthy host's record is written only when STATUS, ISOLATED, VMS, PERIOD or WATCHDOG
  change; a failing host's also at every advance (ft/host_error needs SEEN and COUNTER).
* After a controller restart SEEN is taken from the record when BOOT/COUNTER are unchanged,
  else the first read counts as an advance (the conservative side: never older than known).

Hosts without a heartbeat file have no agent: nothing is published. The loop is narrow: it
reads the host records, writes only HA_HEARTBEAT (and a journal note when a host becomes or
stops being ISOLATED), and never changes a host's or a VM's state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from lazarus.domain.entities import Host
from lazarus.domain.errors import InternalError, NoExistsError
from lazarus.domain.heartbeat import Beat, HeartbeatError, decode
from lazarus.domain.states import HostState
from lazarus.domain.template import Vector
from lazarus.ports.clock import Clock
from lazarus.ports.heartbeat import HeartbeatSource
from lazarus.ports.store import Store

from .journal import Journal
from .settings import Settings

log = logging.getLogger("lazarus.heartbeats")

ATTRIBUTE = "HA_HEARTBEAT"
_QUIET_KEYS = ("STATUS", "ISOLATED", "VMS", "PERIOD", "WATCHDOG")


@dataclass
class _Track:
    key: tuple[int, int]
    seen: float  # controller epoch seconds of the last advance
    beat: Beat


class Heartbeats:
    def __init__(
        self,
        store: Store,
        journal: Journal,
        clock: Clock,
        settings: Settings,
        source: HeartbeatSource,
    ) -> None:
        self.store = store
        self.journal = journal
        self.clock = clock
        self.settings = settings
        self.source = source
        self._tracks: dict[int, _Track] = {}

    async def run(self) -> None:
        while True:
            await self.round()
            await self.clock.sleep(self.settings.heartbeat_interval)

    async def round(self) -> None:
        try:
            hosts = [h for h in self.store.hosts() if h.state is not HostState.OFFLINE]
        except InternalError as exc:
            log.error("heartbeats not read, the store fails: %s", exc)
            return
        reads = await asyncio.gather(*(self._read(h.name) for h in hosts))
        for host, read in zip(hosts, reads, strict=True):
            try:
                self._apply(host, read)
            except InternalError as exc:
                log.error("%s: heartbeat not recorded, the store fails: %s", host.subject, exc)

    async def _read(self, name: str) -> bytes | Exception | None:
        try:
            async with asyncio.timeout(self.settings.heartbeat_interval * 2):
                return await self.source.read(name)
        except (OSError, TimeoutError) as exc:
            return exc

    def _apply(self, listed: Host, read: bytes | Exception | None) -> None:
        """Publish what this read means; a write transaction only when something changes
        (decided on the listed record, then again on the fresh one inside the transaction)."""
        now = self.clock.now()
        if self._decide(listed, read, now) is None:
            return
        with self.journal.tx() as t:
            try:
                host = t.store.host(listed.id)
            except NoExistsError:
                self._tracks.pop(listed.id, None)
                return
            decided = self._decide(host, read, now)
            if decided is None:
                return
            vector, note = decided
            host.template.set(ATTRIBUTE, vector)
            t.store.save_host(host)
            if note:
                t.note(host, note)

    def _decide(
        self, host: Host, read: bytes | Exception | None, now: float
    ) -> tuple[Vector, str] | None:
        """The HA_HEARTBEAT vector to write and the journal note (or ''); None: no write."""
        track = self._tracks.get(host.id)
        old = _published(host)
        status = "UNREADABLE" if isinstance(read, Exception) else ""
        if isinstance(read, bytes):
            try:
                beat = decode(read)
            except HeartbeatError as exc:
                log.warning("%s: heartbeat file ignored: %s", host.subject, exc)
            else:
                track = self._track(host.id, track, beat, old, now)
        if track is None:
            return None  # no agent on this host (or never a readable beat)
        beat = track.beat
        stale = self.settings.heartbeat_missed * beat.period + self.settings.heartbeat_interval
        if not status:
            status = "ADVANCING" if now - track.seen <= stale else "STOPPED"
        failing = host.state is HostState.ERROR or "MONITOR_FAILURES" in host.template
        # alive after it stopped answering: a beat seen after the first failed probe (a
        # dead host's last beats, seen before its first failed probe, do not count)
        since = host.template.get_float("FAILING_SINCE", 0.0)
        isolated = failing and status == "ADVANCING" and track.seen > since
        new = Vector([
            ("STATUS", status),
            ("ISOLATED", "YES" if isolated else "NO"),
            ("BOOT", str(beat.boot)),
            ("COUNTER", str(beat.counter)),
            ("SEEN", f"{track.seen:.3f}"),
            ("PERIOD", f"{beat.period:g}"),
            ("WATCHDOG", f"{beat.watchdog:g}"),
            ("VMS", "STOPPED" if beat.vms_stopped else "RUNNING"),
        ])  # fmt: skip
        if old is not None and (old.pairs == new.pairs or (
            not failing and all(old.get(k) == new.get(k) for k in _QUIET_KEYS)
        )):  # fmt: skip
            return None
        was = old is not None and old.get("ISOLATED") == "YES"
        note = ""
        if isolated and not was:
            note = (
                f"ISOLATED: probes fail but its heartbeat advances (counter "
                f"{beat.counter}); its VMs are not recovered while it does"
            )
        elif was and not isolated:
            note = (
                f"no longer ISOLATED: heartbeat {status}, "
                f"{'probes fail' if failing else 'probes answer'}"
            )
        return new, note

    def _track(
        self, host_id: int, track: _Track | None, beat: Beat, old: Vector | None, now: float
    ) -> _Track:
        key = beat.key()
        if track is None:
            seen = now
            if old is not None and (old.get("BOOT"), old.get("COUNTER")) == (
                str(beat.boot),
                str(beat.counter),
            ):
                try:
                    seen = min(now, float(old.get("SEEN") or now))
                except ValueError:
                    seen = now
            track = _Track(key, seen, beat)
        elif key != track.key:
            track = _Track(key, now, beat)
        else:
            track.beat = beat
        self._tracks[host_id] = track
        return track


def _published(host: Host) -> Vector | None:
    vectors = host.template.vectors(ATTRIBUTE)
    return vectors[-1] if vectors else None
