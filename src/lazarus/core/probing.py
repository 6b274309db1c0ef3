"""One monitoring round: probe a group of hosts and hand back each result as it is ready.

The monitor starts a round for the hosts that are due at the same instant. Drivers that batch
(ports.hypervisor.BatchProbing: the simulated cluster) answer a round in one call; the others
(libvirt) get one task per host, so a hung host never holds back the others' results. The
monitor bounds a round with PROBE_TIMEOUT and closes it; whoever is not answered by then timed
out. Any exception a driver raises is a result (a failed probe), never a crash of the round.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from lazarus.domain.entities import Host
from lazarus.ports.hypervisor import BatchProbing, Hypervisor, ProbeResult


async def probe_round(
    driver: Hypervisor, hosts: Sequence[Host]
) -> AsyncGenerator[ProbeResult, None]:
    if isinstance(driver, BatchProbing):
        async with aclosing(driver.probe_many(hosts)) as batch:
            async for item in batch:
                yield item
        return
    if len(hosts) == 1:  # the usual case with real hosts: no extra task, no queue
        host = hosts[0]
        try:
            probe = await driver.probe(host)
        except Exception as exc:
            yield host, exc
            return
        yield host, probe
        return
    ready: asyncio.Queue[ProbeResult] = asyncio.Queue()

    async def one(host: Host) -> None:
        try:
            ready.put_nowait((host, await driver.probe(host)))
        except Exception as exc:
            ready.put_nowait((host, exc))

    tasks = [asyncio.ensure_future(one(host)) for host in hosts]
    try:
        for _ in tasks:
            yield await ready.get()
    finally:
        for task in tasks:
            task.cancel()
