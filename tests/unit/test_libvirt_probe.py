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


def test_a_failed_call_is_one_failure_the_others_ask_again_and_hosts_stay_apart() -> None:
    """A dead host's failed call must not count once per probe that waited for it (that made
    a 4.5 s network blip look like 3 + 5 failures and got the host fenced)."""

    async def scenario() -> None:
        calls = Calls()
        driver = driver_with(calls)
        a1 = asyncio.ensure_future(driver.probe(host("hv1")))
        a2 = asyncio.ensure_future(driver.probe(host("hv1")))
        b = asyncio.ensure_future(driver.probe(host("hv2")))
        await settle()
        assert len(calls.pending) == 2  # one call per host
        calls.pending[0].set_exception(TemporaryDriverError("connection lost"))
        calls.pending[1].set_result(ANSWER)
        await settle()
        assert a1.done() and not a2.done()  # only the probe that made the call fails
        assert isinstance(a1.exception(), TemporaryDriverError)
        assert len(calls.pending) == 3  # the other one asked the host again
        calls.pending[2].set_exception(TemporaryDriverError("cannot reach hv1"))
        await settle()
        assert isinstance(a2.exception(), TemporaryDriverError)
        assert "cannot reach" in str(a2.exception())
        assert await b is ANSWER

    asyncio.run(scenario())
