"""The host agent's loop (`lazarus agent`; docs/ha.md, "The second signal").

Every PERIOD seconds:

1. write the heartbeat (domain/heartbeat.py: counter + 1, atomically) to the shared system
   datastore, bounded by WRITE_TIMEOUT; a write that fails or hangs is a lost storage tick;
2. ask whether the controller's API endpoint answers (ControllerLink), bounded by the link;
3. isolation response (`stop`): once the controller has been unreachable for ISOLATION_TIME
   while the storage works, stop every local VM (LocalVms) and say so in the heartbeat
   (VMS STOPPED), as vSphere's "power off" response; the controller may then restart them
   elsewhere without a fence. `none` (the default) leaves them running;
4. watchdog: feed it while the agent had the controller OR the storage within LOSS_TIMEOUT.
   When it has lost both for that long it stops feeding (self-fence, as SBD and Proxmox do):
   the device resets the host within its timeout. The agent advertises the bound in its
   beat: WATCHDOG = LOSS_TIMEOUT + 2 x PERIOD + the device timeout. A host whose beat has not
   advanced for that long, counted from when the controller also lost it, is reset.

A clean stop (cancellation) disarms the watchdog, unless the agent is self-fencing, and
writes a last beat with WATCHDOG 0 (no watchdog guards the host any more).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from lazarus.domain.heartbeat import Beat
from lazarus.ports.clock import Clock
from lazarus.ports.heartbeat import BeatSink, ControllerLink, LocalVms, Watchdog

log = logging.getLogger("lazarus.agent")

RESPONSES = ("none", "stop")


@dataclass(frozen=True)
class AgentConfig:
    host: str
    period: float = 1.0
    write_timeout: float = 2.0
    loss_timeout: float = 5.0
    isolation_response: str = "none"  # none | stop
    isolation_time: float = 10.0

    def __post_init__(self) -> None:
        if not 0.1 <= self.period <= 60:
            raise ValueError(f"period must be 0.1-60 s, not {self.period!r}")
        if self.isolation_response not in RESPONSES:
            raise ValueError(f"isolation response must be one of {RESPONSES}")
        if self.loss_timeout < self.period:
            raise ValueError("loss timeout must be at least one period")


@dataclass
class AgentState:
    counter: int = 0
    last_storage: float = float("-inf")  # monotonic instants of the last success
    last_controller: float = float("-inf")
    vms_stopped: bool = False
    self_fencing: bool = False
    killed: bool = False  # dies as by SIGKILL or a power cut: no disarm, no last beat
    feeds: int = 0
    log: list[str] = field(default_factory=list)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        clock: Clock,
        sink: BeatSink,
        link: ControllerLink,
        watchdog: Watchdog | None = None,
        vms: LocalVms | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sink = sink
        self.link = link
        self.watchdog = watchdog
        self.vms = vms
        self.boot = int(clock.now() * 1000)
        self.state = AgentState()
        self._started = clock.monotonic()

    @property
    def safe_time(self) -> float:
        """Seconds after its last beat by which this host is reset when it lost both
        channels (0: no watchdog, no such bound)."""
        if self.watchdog is None:
            return 0.0
        return self.config.loss_timeout + 2 * self.config.period + self.watchdog.timeout

    def note(self, message: str) -> None:
        self.state.log.append(message)
        log.warning("agent %s: %s", self.config.host, message)

    async def run(self) -> None:
        last: Beat | None = None
        try:
            async with asyncio.timeout(self.config.write_timeout):
                last = await self.sink.last(self.config.host)
        except Exception:  # unreadable: a new BOOT makes the beat count as advanced anyway
            last = None
        self.state.counter = last.counter if last is not None else 0
        # The agent counts its start as contact: a host just booted is not self-fenced at once
        self.state.last_storage = self.state.last_controller = self.clock.monotonic()
        try:
            while True:
                began = self.clock.monotonic()
                await self.tick()
                await self.clock.sleep(
                    max(0.0, self.config.period - (self.clock.monotonic() - began))
                )
        finally:
            if self.watchdog is not None and not self.state.self_fencing and not self.state.killed:
                self.watchdog.disarm()
                await self._last_words()

    def kill(self) -> None:
        """The next cancellation is a death (the simulator's power cut), not a clean stop."""
        self.state.killed = True

    async def _last_words(self) -> None:
        """A clean stop: say in one last beat that no watchdog guards this host any more
        (best effort; the controller also ignores a beat that stopped before the failure)."""
        cfg, st = self.config, self.state
        beat = Beat(cfg.host, self.boot, st.counter + 1, self.clock.now(), cfg.period, 0.0,
                    st.vms_stopped)  # fmt: skip
        try:
            async with asyncio.timeout(cfg.write_timeout):
                await asyncio.shield(self.sink.write(beat))
        except (Exception, asyncio.CancelledError):
            pass

    async def tick(self) -> None:
        cfg, st = self.config, self.state
        st.counter += 1
        beat = Beat(cfg.host, self.boot, st.counter, self.clock.now(), cfg.period,
                    self.safe_time, st.vms_stopped)  # fmt: skip
        if await self._bounded(self.sink.write(beat), cfg.write_timeout):
            st.last_storage = self.clock.monotonic()
        if await self._bounded(self.link.reachable(), cfg.write_timeout, want=True):
            st.last_controller = self.clock.monotonic()
            st.vms_stopped = False  # reachable again: a later isolation is a new one
        now = self.clock.monotonic()
        await self._isolation_response(now)
        lost = now - max(st.last_storage, st.last_controller)
        if self.watchdog is None:
            return
        if lost < cfg.loss_timeout:
            if st.self_fencing:
                return  # never resume: the reset is under way (the device may be past due)
            self.watchdog.feed()
            st.feeds += 1
        elif not st.self_fencing:
            st.self_fencing = True
            self.note(
                f"lost the controller and the storage for {lost:.1f} s: self-fence, "
                f"the watchdog resets this host within {self.watchdog.timeout:g} s"
            )

    async def _isolation_response(self, now: float) -> None:
        cfg, st = self.config, self.state
        if cfg.isolation_response != "stop" or st.vms_stopped or self.vms is None:
            return
        cut = now - st.last_controller
        if cut < cfg.isolation_time or now - st.last_storage >= cfg.loss_timeout:
            return  # not isolated long enough, or the storage is gone too (nothing to tell)
        try:
            stopped = await self.vms.stop_all()
        except Exception as exc:
            self.note(f"isolation response failed: {exc}")
            return
        st.vms_stopped = True
        self.note(f"isolated from the controller for {cut:.1f} s: stopped {stopped} VM(s)")
        # say so at once, not a period later
        st.counter += 1
        beat = Beat(cfg.host, self.boot, st.counter, self.clock.now(), cfg.period,
                    self.safe_time, True)  # fmt: skip
        if await self._bounded(self.sink.write(beat), cfg.write_timeout):
            st.last_storage = self.clock.monotonic()

    async def _bounded(self, work: object, timeout: float, want: bool | None = None) -> bool:
        """Run an awaitable within `timeout`: True when it finished (and returned `want`)."""
        try:
            async with asyncio.timeout(timeout):
                result = await work  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        return want is None or result is want
