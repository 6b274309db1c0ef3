"""LibvirtHypervisor against test-only libvirtd daemons that die, hang and come back (root).

Real time, a few seconds in all: keepalive is what bounds a call to a hung host, and it runs
on libvirt's own event loop thread. Bounds are asserted with asyncio.wait_for (a call must
finish, with the right error, before its deadline), never by measuring durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.libvirtd import Libvirtd, require_libvirtd
from lazarus.domain.entities import Host
from lazarus.domain.errors import TemporaryDriverError
from lazarus.domain.template import Template
from lazarus.ports.hypervisor import VmSpec

pytestmark = pytest.mark.root

INTERVAL, COUNT = 1, 2
KEEPALIVE_BOUND = INTERVAL * (COUNT + 1) + 2.0  # keepalive gives up after ~3 s, plus slack


def host_for(daemon: Libvirtd) -> Host:
    template = Template()
    template.set("LIBVIRT_URI", daemon.uri)
    return Host(id=0, name="hv1", vm_mad="kvm", template=template)


async def until_disconnected(hv: object, uri: str) -> None:
    from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

    assert isinstance(hv, LibvirtHypervisor)
    while hv.is_connected(uri):
        await asyncio.sleep(0.02)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Libvirtd]:
    require_libvirtd()
    with Libvirtd(tmp_path / "hv1") as daemon:
        yield daemon


def test_killed_daemon_fails_fast_and_a_restart_is_picked_up(daemon: Libvirtd) -> None:
    from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

    hv, host = LibvirtHypervisor(INTERVAL, COUNT), host_for(daemon)

    async def main() -> None:
        await asyncio.wait_for(hv.probe(host), 5)
        assert hv.is_connected(daemon.uri)
        daemon.kill()
        await asyncio.wait_for(until_disconnected(hv, daemon.uri), 2)  # close callback
        with pytest.raises(TemporaryDriverError, match="Connection refused"):
            await asyncio.wait_for(hv.probe(host), 2)
        daemon.start()
        probe = await asyncio.wait_for(hv.probe(host), 5)
        assert probe.total_cpu > 0

    try:
        asyncio.run(main())
    finally:
        hv.close()


def test_hung_daemon_times_out_keepalive_drops_it_and_it_recovers(daemon: Libvirtd) -> None:
    from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

    hv, host = LibvirtHypervisor(INTERVAL, COUNT), host_for(daemon)
    spec = VmSpec(vm_id=1, name="one-1", vcpu=1, cpu=100, memory_kib=64 * 1024)

    async def main() -> None:
        await asyncio.wait_for(hv.deploy(host, spec), 5)
        await asyncio.wait_for(hv.probe(host), 5)  # the probes' own connection is open
        daemon.stop()
        with pytest.raises(TimeoutError):  # the caller's own deadline
            await asyncio.wait_for(hv.probe(host), 0.5)
        # The call left waiting is ended by keepalive, not by the caller: the connection is
        # dropped. (A probe waiting for that call would not get its failure: only answers are
        # shared; it asks again, and reconnecting to the hung host hangs, below.)
        await asyncio.wait_for(until_disconnected(hv, daemon.uri), KEEPALIVE_BOUND)
        with pytest.raises(TimeoutError):  # reconnecting to a hung host hangs as well
            await asyncio.wait_for(hv.probe(host), 0.5)
        daemon.cont()
        probe = await asyncio.wait_for(hv.probe(host), 5)
        assert "one-1" in {d.deploy_id for d in probe.domains}  # the keeper kept the state

    try:
        asyncio.run(main())
    finally:
        daemon.cont()
        hv.close()
