"""One monitoring round: probe a group of hosts and hand back each result as it is ready.

The monitor starts a round for the hosts that are due at the same instant. Each host gets a
task of its own (libvirt), except those a batching driver answers together
(ports.hypervisor.BatchProbing: the simulated cluster answers a round after one shared delay
and hands back the hosts it cannot answer plainly), so a hung host never holds back the
others' results. The monitor bounds a round with PROBE_TIMEOUT and closes it; whoever is not
answered by then timed out. Any exception a driver raises is a result (a failed probe), never
a crash of the round.
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
    ready: asyncio.Queue[ProbeResult] = asyncio.Queue()
    tasks: list[asyncio.Future[None]] = []

    async def alone(host: Host) -> None:
        try:
            ready.put_nowait((host, await driver.probe(host)))
        except Exception as exc:
            ready.put_nowait((host, exc))

    async def batch(batcher: BatchProbing) -> None:
        answered: set[int] = set()
        try:
            async with aclosing(batcher.probe_many(hosts)) as results:
                async for host, result in results:
                    answered.add(host.id)
                    if result is None:
                        tasks.append(asyncio.ensure_future(alone(host)))
                    else:
                        ready.put_nowait((host, result))
        except Exception as exc:  # a batch that breaks fails the hosts it did not answer
            for host in hosts:
                if host.id not in answered:
                    ready.put_nowait((host, exc))

    if isinstance(driver, BatchProbing):
        tasks.append(asyncio.ensure_future(batch(driver)))
    else:
        tasks.extend(asyncio.ensure_future(alone(host)) for host in hosts)
    try:
        for _ in hosts:
            yield await ready.get()
    finally:
        for task in tasks:
            task.cancel()
