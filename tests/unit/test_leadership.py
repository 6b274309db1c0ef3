"""cluster/leadership.py: campaign, renew, hand-over, and a leader that cannot renew stops
acting before its lease can expire. On the in-memory coordination service in virtual time
(drivers/coord/memory.py passes the same contract as etcd: tests/contract/)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lazarus.cluster.leadership import Elector, LeaseTiming
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.coord.memory import MemoryCoordinationService
from lazarus.ports.coordination import Term

KEY = "lazarus/leader"


class Cluster:
    def __init__(self, loop: VirtualEventLoop, names: str = "ab",
                 timing: LeaseTiming | None = None) -> None:
        self.clock = VirtualClock(loop)
        self.service = MemoryCoordinationService(self.clock)
        self.log: list[tuple[float, str, str, int]] = []  # (t, name, elected/deposed, epoch)
        self.electors = {n: self._elector(n, timing) for n in names}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def _elector(self, name: str, timing: LeaseTiming | None) -> Elector:
        async def elected(term: Term) -> None:
            self.log.append((self.clock.monotonic(), name, "elected", term.epoch))

        async def deposed(term: Term, why: str) -> None:
            self.log.append((self.clock.monotonic(), name, "deposed", term.epoch))

        return Elector(self.service.client(name), self.clock, KEY, name, timing,
                       on_elected=elected, on_deposed=deposed)

    def start(self, *names: str) -> None:
        for n in names or tuple(self.electors):
            self.tasks[n] = asyncio.get_running_loop().create_task(self.electors[n].run())

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def leaders(self) -> list[str]:
        return [n for n, e in self.electors.items() if e.acting()]


def vrun(fn: Any) -> Any:
    loop = VirtualEventLoop()
    try:
        return loop.run_until_complete(fn(loop))
    finally:
        loop.close()


def test_one_leader_the_other_follows_and_says_who_leads() -> None:
    async def go(loop: VirtualEventLoop) -> None:
        c = Cluster(loop)
        c.start("a")
        await asyncio.sleep(0.1)
        c.start("b")
        await asyncio.sleep(30)
        assert c.leaders() == ["a"]
        assert [e[1:3] for e in c.log] == [("a", "elected")]
        assert c.electors["b"].status.startswith("follower; leader a (epoch 1)")
        await c.stop()

    vrun(go)


def test_a_clean_stop_hands_over_at_once() -> None:
    async def go(loop: VirtualEventLoop) -> None:
        c = Cluster(loop)
        c.start("a")
        await asyncio.sleep(0.1)
        c.start("b")
        await asyncio.sleep(5)
        c.tasks["a"].cancel()  # resigns in its finally
        stopped = c.clock.monotonic()
        await asyncio.sleep(5)
        elected = [e for e in c.log if e[1:3] == ("b", "elected")]
        assert elected and elected[0][0] - stopped <= c.electors["b"].timing.campaign_every
        assert elected[0][3] > 1
        await c.stop()

    vrun(go)


@pytest.mark.parametrize("cut_at", [5.0, 5.1, 5.25, 5.4, 5.49])
def test_a_leader_cut_off_stops_acting_before_anybody_else_is_elected(cut_at: float) -> None:
    """The partition (or a kill: the lease simply stops being renewed) at several phases of
    the renew cycle: the old leader's deadline is always before the new leader's election,
    and the new one acts within ttl + campaign_every of the cut."""

    async def go(loop: VirtualEventLoop) -> None:
        c = Cluster(loop)
        t = c.electors["a"].timing
        c.start("a")
        await asyncio.sleep(0.1)
        c.start("b")
        await asyncio.sleep(cut_at - 0.1)
        c.service.cut("a")
        cut = c.clock.monotonic()
        await asyncio.sleep(10)
        (deposed,) = [e for e in c.log if e[1:3] == ("a", "deposed")]
        (elected,) = [e for e in c.log if e[1:3] == ("b", "elected")]
        assert deposed[0] < elected[0], c.log
        assert elected[0] - deposed[0] >= t.margin
        assert elected[0] - cut <= t.ttl + t.campaign_every
        assert elected[3] > deposed[3]
        assert c.leaders() == ["b"]
        await c.stop()

    vrun(go)


def test_acting_is_false_past_the_deadline_even_when_the_loop_does_not_run() -> None:
    """A frozen process: its loop runs no more, but acting() reads the clock."""

    async def go(loop: VirtualEventLoop) -> None:
        c = Cluster(loop, "a")
        e = c.electors["a"]
        await e.step()  # elected, deadline = now + ttl - margin
        assert e.acting()
        await asyncio.sleep(e.timing.ttl - e.timing.margin)  # no step: nothing renews
        assert not e.acting()
        await e.step()  # resumed: the renew has no time left and it stands down
        assert e.term is None and c.log[-1][2] == "deposed"

    vrun(go)


def test_a_renew_that_finds_the_lease_gone_deposes_at_once() -> None:
    async def go(loop: VirtualEventLoop) -> None:
        c = Cluster(loop, "a")
        e = c.electors["a"]
        await e.step()
        assert e.term is not None
        c.service._revoke(e.term.lease)
        await e.step()
        assert e.term is None and "gone" in e.status

    vrun(go)


def test_a_slow_service_is_given_no_more_than_the_deadline() -> None:
    """Each call takes longer than the call timeout: the leader deposes itself on time."""

    async def go(loop: VirtualEventLoop) -> None:
        c = Cluster(loop, "a")
        e = c.electors["a"]
        await e.step()
        elected = c.clock.monotonic()
        c.service.latency = 10.0
        task = loop.create_task(e.run())
        await asyncio.sleep(5)
        (deposed,) = [x for x in c.log if x[2] == "deposed"]
        assert deposed[0] <= elected + e.timing.ttl - e.timing.margin
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    vrun(go)


@pytest.mark.parametrize("kwargs", [
    {"ttl": 0}, {"margin": 2.0}, {"renew_every": 1.2, "call_timeout": 0.5},
])
def test_lease_timing_refuses_settings_that_cannot_work(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LeaseTiming(**kwargs)


def test_a_take_over_that_fails_gives_the_term_up_and_campaigns_again() -> None:
    """Fuzz seed 124002: the store refused the new leader's epoch claim; the exception ended
    the elector's loop, every standby's in turn, and nobody led again."""

    async def go(loop: VirtualEventLoop) -> None:
        clock = VirtualClock(loop)
        service = MemoryCoordinationService(clock)
        store_down = [True]
        elected: list[int] = []

        async def take_over(term: Term) -> None:
            if store_down[0]:
                raise RuntimeError("Store error: database is read-only")
            elected.append(term.epoch)

        async def deposed(term: Term, why: str) -> None:
            pass

        e = Elector(service.client("a"), clock, KEY, "a", on_elected=take_over,
                    on_deposed=deposed)
        task = loop.create_task(e.run())
        await asyncio.sleep(1)
        assert not e.acting() and service.holder(KEY) is None  # given up, not held
        store_down[0] = False
        await asyncio.sleep(e.timing.ttl + 1)
        assert e.acting() and elected and elected[0] > 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    vrun(go)
