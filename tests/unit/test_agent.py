"""The host agent's loop (lazarus/agent/loop.py) on a virtual clock: beats, the watchdog,
the self-fence and the isolation response."""

from __future__ import annotations

import asyncio

import pytest

from lazarus.agent.loop import Agent, AgentConfig
from lazarus.domain.heartbeat import Beat, decode
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.watchdog import FakeWatchdog


class Sink:
    def __init__(self) -> None:
        self.beats: list[Beat] = []
        self.up = True
        self.previous: Beat | None = None

    async def write(self, beat: Beat) -> None:
        if not self.up:
            raise OSError("storage gone")
        self.beats.append(decode(beat.encode()))

    async def last(self, host: str) -> Beat | None:
        return self.previous


class Link:
    def __init__(self) -> None:
        self.up = True

    async def reachable(self) -> bool:
        return self.up


class Vms:
    def __init__(self) -> None:
        self.stops = 0

    async def stop_all(self) -> int:
        self.stops += 1
        return 2


def _run(seconds: float, agent: Agent, loop: VirtualEventLoop,
         during: list[tuple[float, object]] | None = None) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(agent.run())
        clock = agent.clock
        start = clock.monotonic()
        for at, action in during or []:
            await clock.sleep(max(0.0, start + at - clock.monotonic()))
            action()  # type: ignore[operator]
        await clock.sleep(max(0.0, start + seconds - clock.monotonic()))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _agent(**kw: object) -> tuple[Agent, Sink, Link, FakeWatchdog, Vms, VirtualEventLoop]:
    loop = VirtualEventLoop()
    clock = VirtualClock(loop)
    sink, link, vms = Sink(), Link(), Vms()
    wd = FakeWatchdog(clock.monotonic, 10.0)
    config = AgentConfig(host="node1", **kw)  # type: ignore[arg-type]
    return Agent(config, clock, sink, link, wd, vms), sink, link, wd, vms, loop


def test_beats_count_up_once_a_period_and_advertise_the_safe_time() -> None:
    agent, sink, _, wd, _, loop = _agent()
    _run(10, agent, loop)
    counters = [b.counter for b in sink.beats]
    assert counters == list(range(1, len(counters) + 1)) and len(counters) == 11
    assert {b.watchdog for b in sink.beats[:-1]} == {5 + 2 + 10}
    assert wd.feeds == 10 and not wd.armed  # a clean stop disarms it
    assert sink.beats[-1].watchdog == 0  # and says so in a last beat


def test_counter_continues_after_a_restart() -> None:
    agent, sink, _, _, _, loop = _agent()
    sink.previous = Beat("node1", 1, 41, 0.0, 1.0, 0.0)
    _run(2.5, agent, loop)
    assert sink.beats[0].counter == 42


def test_one_channel_left_keeps_feeding() -> None:
    agent, sink, link, wd, _, loop = _agent()
    _run(30, agent, loop, [(2, lambda: setattr(sink, "up", False))])
    assert not agent.state.self_fencing and wd.feeds == 30
    agent, sink, link, wd, _, loop = _agent()
    _run(30, agent, loop, [(2, lambda: setattr(link, "up", False))])
    assert not agent.state.self_fencing and wd.feeds == 30


def test_losing_both_channels_stops_feeding_for_good() -> None:
    agent, sink, link, wd, _, loop = _agent()

    def cut() -> None:
        sink.up = link.up = False

    def heal() -> None:
        sink.up = link.up = True

    _run(30, agent, loop, [(3, cut), (20, heal)])
    assert agent.state.self_fencing
    fed_until = wd.last_feed
    assert fed_until < 3 + 5 + 1  # stopped within the loss timeout and a period
    assert wd.check()  # the device would have reset the host
    assert wd.armed  # a self-fencing agent does not disarm it on exit


def test_isolation_response_stops_the_vms_once_and_says_so() -> None:
    agent, sink, link, _, vms, loop = _agent(isolation_response="stop", isolation_time=10)
    _run(30, agent, loop, [(2, lambda: setattr(link, "up", False))])
    assert vms.stops == 1
    stopped = [b for b in sink.beats if b.vms_stopped]
    assert stopped and stopped[0].time - sink.beats[0].time >= 11  # cut at 2, + 10 s
    assert sink.beats[-1].vms_stopped


def test_no_isolation_response_by_default() -> None:
    agent, sink, link, _, vms, loop = _agent()
    _run(30, agent, loop, [(2, lambda: setattr(link, "up", False))])
    assert vms.stops == 0 and not any(b.vms_stopped for b in sink.beats)


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        AgentConfig(host="n", period=0)
    with pytest.raises(ValueError):
        AgentConfig(host="n", isolation_response="reboot")
    with pytest.raises(ValueError):
        AgentConfig(host="n", period=5, loss_timeout=1)
