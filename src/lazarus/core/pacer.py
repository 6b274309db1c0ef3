"""The monitor's pacer: when each host is probed next. No store, no driver: ids and times.

One heap of (due time, host id) for every monitored host. The monitor (core/monitor.py) asks
`due()` for the hosts due now, probes them, and reports each result with `failed()` /
`succeeded()` then `finished()`, which times the host's next probe from its own probe:

    healthy:  one probe at a time, the next MONITORING_INTERVAL_HOST after this one started
              (MONITOR_ALERT_INTERVAL while the host's cluster is in alert)
    failing:  a new probe every RETRY_INTERVAL without waiting for the previous one (a probe
              of a dead host may hang until its timeout), at most MONITOR_FAILURES at once
    ERROR:    the same for RETRY_BURST further failures (what ft/host_error's -p counts),
              then every MONITORING_INTERVAL_HOST

`alert()`: a host started failing, so every other host of its cluster is probed within
MONITOR_ALERT_INTERVAL and then at that cadence for MONITOR_ALERT_WINDOW, so that a loss
spreading over a cluster is seen as one. `sleep()` waits until the earliest due time, or
less when an earlier one is scheduled meanwhile.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable

from lazarus.ports.clock import Clock

from .settings import Settings
from .waits import sleep_or_wake


class Pacer:
    def __init__(self, clock: Clock, settings: Settings) -> None:
        self.clock = clock
        self.settings = settings
        self.failures: dict[int, int] = {}  # host id -> failed probes in a row
        self._tracked: set[int] = set()
        self._due: list[tuple[float, int]] = []
        self._next: dict[int, float] = {}  # host id -> its live entry in _due
        self._inflight: dict[int, int] = {}  # host id -> probes running now
        self._cluster: dict[int, int] = {}  # host id -> cluster id, as last read
        self._alert_until: dict[int, float] = {}  # cluster id -> end of its alert (monotonic)
        self._recheck: set[int] = set()  # hosts to probe again as soon as theirs ends
        self._wake = asyncio.Event()
        self._asleep_until = -math.inf

    # -- membership ----------------------------------------------------------------------
    def tracked(self, host_id: int) -> bool:
        return host_id in self._tracked

    def busy(self, host_id: int) -> bool:
        """A probe of this host is running now."""
        return bool(self._inflight.get(host_id))

    def wake(self, host_id: int) -> None:
        """Probe this host now; a host not tracked yet joins."""
        self._tracked.add(host_id)
        self.schedule(host_id, self.clock.monotonic())

    def recheck(self, host_id: int) -> None:
        """Probe this host now, and if a probe of it is in flight (it may predate what made
        us ask: a domain event), once more as soon as that one ends."""
        if self.busy(host_id):
            self._recheck.add(host_id)
        self.wake(host_id)

    def place(self, host_id: int, cluster_id: int) -> None:
        """The host's cluster, as its record says (for `alert`)."""
        self._cluster[host_id] = cluster_id

    def forget(self, host_id: int) -> None:
        """Stop probing the host (deleted, OFFLINE); a later `wake` brings it back."""
        self._tracked.discard(host_id)
        self._recheck.discard(host_id)
        self.failures.pop(host_id, None)
        self._cluster.pop(host_id, None)

    # -- timing --------------------------------------------------------------------------
    def schedule(self, host_id: int, when: float) -> None:
        """Make the host due at `when` at the latest."""
        if self._next.get(host_id, math.inf) <= when:
            return
        self._next[host_id] = when
        heapq.heappush(self._due, (when, host_id))
        if when < self._asleep_until:
            self._wake.set()

    def due(self, alive: Callable[[int], bool]) -> list[int]:
        """The hosts to probe now, each counted as one probe in flight. `alive(host_id)`
        False: the host is not to be probed any more (it is forgotten)."""
        now = self.clock.monotonic()
        start: list[int] = []
        while self._due and self._due[0][0] <= now:
            when, host_id = heapq.heappop(self._due)
            if self._next.get(host_id) != when:
                continue  # superseded by an earlier entry
            del self._next[host_id]
            if not alive(host_id):
                self.forget(host_id)
                continue
            running = self._inflight.get(host_id, 0)
            if self.failures.get(host_id, 0) > 0:
                self.schedule(host_id, now + self.retry(host_id))
                if running >= self.settings.monitor_failures:
                    continue
            elif running:
                continue
            self._inflight[host_id] = running + 1
            start.append(host_id)
        return start

    def failed(self, host_id: int) -> int:
        """One more failed probe (or lost-connection report) in a row; the new count."""
        count = self.failures.get(host_id, 0) + 1
        self.failures[host_id] = count
        return count

    def succeeded(self, host_id: int) -> None:
        self.failures[host_id] = 0

    def abandon(self, host_id: int) -> None:
        """A probe ended without a result (the monitor is stopping)."""
        self._inflight[host_id] -= 1

    def finished(self, host_id: int, cluster_id: int, started: float) -> None:
        """A probe of a host of `cluster_id` that started at `started` has been applied:
        when the host is due next."""
        self._inflight[host_id] -= 1
        if host_id in self._recheck and not self._inflight[host_id]:
            self._recheck.discard(host_id)
            self.schedule(host_id, self.clock.monotonic())
        if self.failures.get(host_id, 0) == 0:
            interval = self.settings.monitoring_interval_host
            if self._alert_until.get(cluster_id, -math.inf) > started:
                interval = min(interval, self.settings.monitor_alert_interval)
            self.schedule(host_id, started + interval)
        else:
            self.schedule(host_id, max(started + self.retry(host_id), self.clock.monotonic()))

    def retry(self, host_id: int) -> float:
        """Re-probe delay of a failing host: RETRY_INTERVAL through detection and the first
        RETRY_BURST probes in ERROR (what ft/host_error's -p counts), then the interval."""
        s = self.settings
        if self.failures.get(host_id, 0) < s.monitor_failures + s.retry_burst:
            return s.retry_interval
        return max(s.retry_interval, s.monitoring_interval_host)

    def alert(self, cluster_id: int, failing: int) -> None:
        """A host of this cluster started failing: probe its peers every
        MONITOR_ALERT_INTERVAL for MONITOR_ALERT_WINDOW, so that a loss spreading over the
        cluster is seen as one, within about a second of each host's cut."""
        now = self.clock.monotonic()
        self._alert_until[cluster_id] = now + self.settings.monitor_alert_window
        soon = now + self.settings.monitor_alert_interval
        for host_id in self._tracked:
            if host_id != failing and self._cluster.get(host_id) == cluster_id:
                self.schedule(host_id, soon)

    async def sleep(self) -> None:
        """Until the earliest due time (at most MONITORING_INTERVAL_HOST), or until a host is
        scheduled before it."""
        self._wake.clear()
        now = self.clock.monotonic()
        until = self._due[0][0] if self._due else now + self.settings.monitoring_interval_host
        if until > now:
            self._asleep_until = until
            await sleep_or_wake(self.clock, until - now, self._wake)
            self._asleep_until = -math.inf
