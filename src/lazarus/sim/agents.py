"""The host agents in the simulator: the real agent loop (lazarus/agent/loop.py) per host,
with the heartbeat as its own channel.

    storage      an in-memory shared datastore: host name -> heartbeat file bytes
    agent writes fail while the host is partitioned from `storage` (partition [host, storage])
    controller   reads fail (UNREADABLE: no evidence) while [controller, storage] is cut
    link         the agent reaches the controller while the host's network is up
    power        the agent runs only while its host has power (it restarts at power on,
                 continuing its counter from its file)
    watchdog     FakeWatchdog: when the agent stops feeding it (it lost both channels for its
                 loss timeout), the host is reset after the device timeout: powered off, and
                 on again `reboot` seconds later
    isolation    `stop`: the agent stops its host's domains (shut off, as virsh destroy)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lazarus.agent.loop import Agent, AgentConfig
from lazarus.domain.heartbeat import Beat, decode
from lazarus.drivers.vmm.sim import SimCluster
from lazarus.drivers.watchdog import FakeWatchdog
from lazarus.ports.clock import Clock

from .scenario import AgentSpec

Cut = Callable[[str, str], bool]  # is this pair of parties partitioned?


class SimStorage:
    def __init__(self, cut: Cut) -> None:
        self.files: dict[str, bytes] = {}
        self.cut = cut

    async def read(self, host: str) -> bytes | None:  # the controller's HeartbeatSource
        if self.cut("controller", "storage"):
            raise OSError("the controller cannot reach the shared storage")
        return self.files.get(host)


class _Sink:
    def __init__(self, storage: SimStorage, host: str) -> None:
        self.storage, self.host = storage, host

    async def write(self, beat: Beat) -> None:
        if self.storage.cut(self.host, "storage"):
            raise OSError("storage unreachable")
        self.storage.files[self.host] = beat.encode()

    async def last(self, host: str) -> Beat | None:
        if self.storage.cut(self.host, "storage"):
            raise OSError("storage unreachable")
        data = self.storage.files.get(host)
        return decode(data) if data is not None else None


class _Link:
    def __init__(self, cluster: SimCluster, host: str) -> None:
        self.cluster, self.host = cluster, host

    async def reachable(self) -> bool:
        return self.cluster.host(self.host).network


class _Vms:
    def __init__(self, cluster: SimCluster, host: str) -> None:
        self.cluster, self.host = cluster, host

    async def stop_all(self) -> int:
        return self.cluster.stop_domains(self.host)


class SimAgents:
    def __init__(self, spec: AgentSpec, cluster: SimCluster, clock: Clock, cut: Cut) -> None:
        self.spec = spec
        self.cluster = cluster
        self.clock = clock
        self.storage = SimStorage(cut)
        self.agents: dict[str, Agent] = {}
        self.resets: list[tuple[str, float]] = []  # (host, monotonic) of watchdog resets
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, hosts: list[str]) -> None:
        loop = asyncio.get_event_loop()
        for name in self.spec.hosts or hosts:
            self._tasks.append(loop.create_task(self._supervise(name)))

    async def _supervise(self, name: str) -> None:
        spec = self.spec
        while True:
            while not self.cluster.host(name).powered:
                await self.clock.sleep(0.25)
            watchdog = (
                FakeWatchdog(self.clock.monotonic, spec.watchdog_timeout) if spec.watchdog else None
            )
            config = AgentConfig(host=name, period=spec.period, loss_timeout=spec.loss_timeout,
                                 isolation_response=spec.isolation_response,
                                 isolation_time=spec.isolation_time)  # fmt: skip
            agent = Agent(
                config,
                self.clock,
                _Sink(self.storage, name),
                _Link(self.cluster, name),
                watchdog,
                _Vms(self.cluster, name),
            )
            self.agents[name] = agent
            task = asyncio.get_event_loop().create_task(agent.run())
            try:
                while self.cluster.host(name).powered:
                    if watchdog is not None and watchdog.check():
                        self.resets.append((name, self.clock.monotonic()))
                        self.cluster.power_off(name)
                        self.clock_call_later(spec.reboot, name)
                        break
                    await self.clock.sleep(0.25)
            finally:
                agent.kill()  # the power went: no clean stop
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def clock_call_later(self, delay: float, name: str) -> None:
        async def power_on() -> None:
            await self.clock.sleep(delay)
            self.cluster.power_on(name)

        self._tasks.append(asyncio.get_event_loop().create_task(power_on()))

    def stop(self) -> list[asyncio.Task[None]]:
        for task in self._tasks:
            task.cancel()
        return self._tasks
