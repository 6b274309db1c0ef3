"""The monitor's pacer on its own: due times, retries, bursts and the alert cadence, with a
hand-moved clock and no store, driver or loop (core/pacer.py)."""

from __future__ import annotations

import asyncio

import pytest

from lazarus.core.pacer import Pacer
from lazarus.core.settings import Settings
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop


class Hands:
    """A Clock whose time moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return 1_767_225_600.0 + self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - not used here
        raise AssertionError("the pacer's decisions never sleep")


S = Settings()  # I = 5, r = 0.5, N = 3, burst 20, alert 1 s for 6 s


@pytest.fixture
def clock() -> Hands:
    return Hands()


@pytest.fixture
def pacer(clock: Hands) -> Pacer:
    return Pacer(clock, S)


def always(_: int) -> bool:
    return True


def probe(pacer: Pacer, clock: Hands, host: int, ok: bool, cluster: int = 0) -> None:
    """One probe of `host` that started now and whose result is applied now."""
    started = clock.t
    if ok:
        pacer.succeeded(host)
    else:
        pacer.failed(host)
    pacer.finished(host, cluster, started)


def test_a_woken_host_is_due_at_once_and_counted_in_flight(pacer: Pacer) -> None:
    pacer.wake(1)
    assert pacer.tracked(1) and not pacer.busy(1)
    assert pacer.due(always) == [1]
    assert pacer.busy(1)
    assert pacer.due(always) == []  # not due again until the probe ends


def test_recheck_during_a_probe_probes_again_right_after_it(
    pacer: Pacer, clock: Hands
) -> None:
    """A domain event while the host's probe runs (the probe may predate the event): one
    more probe as soon as that one ends, not an interval later."""
    pacer.wake(1)
    assert pacer.due(always) == [1]
    pacer.recheck(1)
    assert pacer.due(always) == []  # still one probe at a time
    clock.t += 0.3
    pacer.succeeded(1)
    pacer.finished(1, 0, started=100.0)
    assert pacer.due(always) == [1]  # at once
    clock.t += 0.2
    pacer.succeeded(1)
    pacer.finished(1, 0, started=100.3)
    assert pacer.due(always) == []  # back to the interval
    clock.t = 100.3 + S.monitoring_interval_host
    assert pacer.due(always) == [1]


def test_recheck_of_an_idle_host_is_a_wake(pacer: Pacer) -> None:
    pacer.wake(1)
    pacer.due(always)
    pacer.succeeded(1)
    pacer.finished(1, 0, started=100.0)
    pacer.recheck(1)
    assert pacer.due(always) == [1]


def test_healthy_hosts_are_due_an_interval_after_their_probe_started(
    pacer: Pacer, clock: Hands
) -> None:
    pacer.wake(1)
    pacer.due(always)
    clock.t += 1.2  # the probe took 1.2 s
    pacer.succeeded(1)
    pacer.finished(1, 0, started=100.0)
    clock.t = 100.0 + S.monitoring_interval_host - 0.01
    assert pacer.due(always) == []
    clock.t = 100.0 + S.monitoring_interval_host
    assert pacer.due(always) == [1]


def test_a_failing_host_is_reprobed_every_retry_interval_without_waiting(
    pacer: Pacer, clock: Hands
) -> None:
    pacer.wake(1)
    pacer.due(always)
    pacer.failed(1)
    pacer.finished(1, 0, started=100.0)
    starts = []
    for _ in range(10):  # the probes now hang: none of them ends
        clock.t += S.retry_interval
        starts += [clock.t] * len(pacer.due(always))
    # every retry interval while fewer than MONITOR_FAILURES are in flight, then none
    assert starts == [100.5, 101.0, 101.5]


def test_error_hosts_back_off_to_the_interval_after_the_burst(pacer: Pacer) -> None:
    for _ in range(S.monitor_failures + S.retry_burst - 1):
        pacer.failed(1)
    assert pacer.retry(1) == S.retry_interval
    pacer.failed(1)
    assert pacer.retry(1) == S.monitoring_interval_host
    pacer.succeeded(1)
    assert pacer.retry(1) == S.retry_interval


def test_a_late_failure_is_retried_at_once(pacer: Pacer, clock: Hands) -> None:
    pacer.wake(1)
    pacer.due(always)
    clock.t += S.probe_timeout  # timed out, longer than the retry interval
    pacer.failed(1)
    pacer.finished(1, 0, started=100.0)
    assert pacer.due(always) == [1]


def test_alert_probes_the_cluster_peers_within_the_alert_interval_for_the_window(
    pacer: Pacer, clock: Hands
) -> None:
    for host, cluster in ((1, 0), (2, 0), (3, 7)):
        pacer.wake(host)
        pacer.place(host, cluster)
    assert sorted(pacer.due(always)) == [1, 2, 3]
    for host, cluster in ((1, 0), (2, 0), (3, 7)):
        probe(pacer, clock, host, ok=True, cluster=cluster)
    pacer.alert(0, failing=1)  # host 1 started failing
    clock.t += S.monitor_alert_interval
    assert pacer.due(always) == [2]  # its peer, not itself, not the other cluster
    probe(pacer, clock, 2, ok=True)
    clock.t += S.monitor_alert_interval
    assert pacer.due(always) == [2]  # still in alert: the alert cadence
    probe(pacer, clock, 2, ok=True)
    clock.t = 100.0 + S.monitor_alert_window + 0.5  # the window has passed
    assert 2 in pacer.due(always)  # (1 and 3 are due on their own interval by now)
    probe(pacer, clock, 2, ok=True)
    clock.t += S.monitor_alert_interval
    assert 2 not in pacer.due(always)  # back to the interval
    clock.t += S.monitoring_interval_host
    assert 2 in pacer.due(always)


def test_hosts_that_are_not_alive_are_forgotten_until_woken(pacer: Pacer) -> None:
    pacer.wake(1)
    pacer.failed(1)
    assert pacer.due(lambda host: False) == []
    assert not pacer.tracked(1) and pacer.failures.get(1) is None
    pacer.wake(1)
    assert pacer.due(always) == [1]


def test_an_earlier_schedule_supersedes_a_later_one(pacer: Pacer, clock: Hands) -> None:
    pacer.wake(1)
    pacer.due(always)
    pacer.succeeded(1)
    pacer.finished(1, 0, started=100.0)  # due at 105
    pacer.schedule(1, 102.0)
    pacer.schedule(1, 104.0)  # later than the live entry: ignored
    clock.t = 102.0
    assert pacer.due(always) == [1]
    pacer.succeeded(1)
    pacer.finished(1, 0, started=102.0)
    clock.t = 105.0  # the superseded entry is dropped, not a second probe
    assert pacer.due(always) == []


def test_sleep_wakes_early_for_an_earlier_due_time() -> None:
    loop = VirtualEventLoop()
    try:
        clock = VirtualClock(loop)
        pacer = Pacer(clock, S)

        async def scenario() -> float:
            pacer.wake(1)
            pacer.due(always)
            pacer.succeeded(1)
            pacer.finished(1, 0, started=clock.monotonic())  # due in 5 s
            start = clock.monotonic()
            loop.call_later(1.0, pacer.wake, 2)  # a lost-connection report after 1 s
            await pacer.sleep()
            return clock.monotonic() - start

        assert loop.run_until_complete(scenario()) == pytest.approx(1.0)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
