"""core/probing.py: a monitoring round gives the same outcome per host whether the driver
batches (the simulated cluster's probe_many) or is probed one task per host, and a hung host
never holds back the others' results."""

from __future__ import annotations

import asyncio

import pytest

from lazarus.core.probing import probe_round
from lazarus.domain.entities import Host
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor
from lazarus.ports.hypervisor import BatchProbing, HostProbe


class OneByOne:
    """The simulated driver without its batch method: the per-host path."""

    def __init__(self, inner: SimHypervisor) -> None:
        self.inner = inner

    async def probe(self, host: Host) -> HostProbe:
        return await self.inner.probe(host)


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "one-by-one"])
def test_round_outcomes_and_a_hung_host_holds_back_no_one(batch: bool) -> None:
    loop = VirtualEventLoop()
    clock = VirtualClock(loop)
    cluster = SimCluster(clock)
    names = ["ok", "off", "hung", "flaky", "ghost"]
    for name in names[:4]:
        cluster.add_host(name)
    cluster.power_off("off")
    cluster.hang("hung")
    cluster.fail_next("flaky", "probe")
    driver = SimHypervisor(cluster)
    assert isinstance(driver, BatchProbing)
    hosts = [Host(id=i, name=name) for i, name in enumerate(names)]
    seen: list[tuple[str, str, float]] = []

    async def one_round() -> None:
        target = driver if batch else OneByOne(driver)
        try:
            async with asyncio.timeout(5.0):
                async for host, result in probe_round(target, hosts):  # type: ignore[arg-type]
                    seen.append((host.name, type(result).__name__, loop.time()))
        except TimeoutError:
            pass

    loop.run_until_complete(one_round())
    loop.run_until_complete(asyncio.sleep(0))  # let cancelled probes finish
    loop.close()
    outcome = {name: kind for name, kind, _ in seen}
    assert outcome == {
        "ok": "HostProbe",
        "off": "TemporaryDriverError",
        "flaky": "TemporaryDriverError",
        "ghost": "TemporaryDriverError",
    }  # "hung" never answered: the caller counts it as timed out
    first = seen[0]
    assert first[0] in ("ok", "flaky") and first[2] <= cluster.probe_delay + 1e-9
