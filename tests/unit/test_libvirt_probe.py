"""The libvirt driver shares one in-flight probe between the monitor's overlapping re-probes.

No libvirt needed: the driver's blocking call (`_call`) is replaced by a future the test
resolves, so the order of events is exact and nothing sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lazarus.domain.entities import Host
from lazarus.domain.errors import TemporaryDriverError
from lazarus.domain.template import Template
from lazarus.drivers.vmm.libvirt import LibvirtHypervisor
from lazarus.ports.hypervisor import HostProbe


def host(name: str = "hv1") -> Host:
    template = Template()
    template.set("LIBVIRT_URI", f"qemu+tcp://{name}/system")
    return Host(id=0, name=name, template=template)


class Calls:
    """Stands in for LibvirtHypervisor._call: each call waits for the test to answer it."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[HostProbe]] = []

    async def __call__(self, _host: Host, what: str, _fn: Any, **_kw: Any) -> HostProbe:
        assert what == "probe"
        future: asyncio.Future[HostProbe] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return await future


def driver_with(calls: Calls) -> LibvirtHypervisor:
    driver = LibvirtHypervisor()
    driver._call = calls  # type: ignore[method-assign,assignment]
    return driver


ANSWER = HostProbe(total_cpu=200, total_mem=1024)


async def settle() -> None:
    """Let every ready task run (a probe starts its call one loop turn after being asked)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_late_answer_counts_for_the_probes_that_waited_for_it() -> None:
    async def scenario() -> None:
        calls = Calls()
        driver = driver_with(calls)
        first = asyncio.ensure_future(driver.probe(host()))
        await settle()
        # the first probe gives up (the monitor's PROBE_TIMEOUT), the re-probe comes at once
        first.cancel()
        second = asyncio.ensure_future(driver.probe(host()))
        third = asyncio.ensure_future(driver.probe(host()))
        await settle()
        assert len(calls.pending) == 1  # one call to the host, not three queued ones
        calls.pending[0].set_result(ANSWER)
        assert await second is ANSWER
        assert await third is ANSWER
        assert first.cancelled()
        # the next probe asks the host again
        fourth = asyncio.ensure_future(driver.probe(host()))
        await settle()
        assert len(calls.pending) == 2
        calls.pending[1].set_result(ANSWER)
        assert await fourth is ANSWER

    asyncio.run(scenario())


def test_a_failed_call_fails_every_probe_waiting_for_it_and_hosts_stay_apart() -> None:
    async def scenario() -> None:
        calls = Calls()
        driver = driver_with(calls)
        a1 = asyncio.ensure_future(driver.probe(host("hv1")))
        a2 = asyncio.ensure_future(driver.probe(host("hv1")))
        b = asyncio.ensure_future(driver.probe(host("hv2")))
        await settle()
        assert len(calls.pending) == 2  # one per host
        calls.pending[0].set_exception(TemporaryDriverError("connection lost"))
        calls.pending[1].set_result(ANSWER)
        for waiter in (a1, a2):
            try:
                await waiter
            except TemporaryDriverError as exc:
                assert "connection lost" in str(exc)
            else:
                raise AssertionError("a failed call must fail its waiters")
        assert await b is ANSWER

    asyncio.run(scenario())
