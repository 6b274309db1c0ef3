"""Domain events of the libvirt driver against a test-only libvirtd (root).

The driver opens its events connection after a good probe; a domain stopped behind its back
(here by another client, as a qemu dying is reported) reaches the listener; when the
daemon restarts the events connection is noticed gone (close callback) and the next good
probe opens it again, after which events arrive again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.libvirtd import Libvirtd, require_libvirtd
from lazarus.domain.entities import Host
from lazarus.domain.states import HostState
from lazarus.domain.template import Template

pytestmark = pytest.mark.root

DOMAIN = (
    "<domain type='test'><name>one-7</name><memory>65536</memory>"
    "<os><type arch='x86_64'>hvm</type></os></domain>"
)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Libvirtd]:
    require_libvirtd()
    started = Libvirtd(tmp_path / "hv1").start()
    try:
        yield started
    finally:
        started.close()


async def _until(predicate, what: str, deadline: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > deadline:
            raise AssertionError(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.02)


def test_events_reach_the_listener_and_the_connection_comes_back(daemon: Libvirtd) -> None:
    from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

    driver = LibvirtHypervisor(keepalive_interval=1, keepalive_count=2)
    host = Host(id=0, name="hv1", state=HostState.MONITORED, im_mad="kvm", vm_mad="kvm",
                template=Template.parse(f'LIBVIRT_URI = "{daemon.uri}"'))
    seen: list[tuple[str, str, str]] = []
    driver.set_domain_listener(lambda *event: seen.append(event))

    def crash_behind_our_back() -> None:
        dom = daemon.keeper.defineXML(DOMAIN)
        dom.create()
        dom.destroy()

    async def scenario() -> None:
        await driver.probe(host)
        await _until(lambda: driver.events_connected(daemon.uri), "events connection open")
        await asyncio.to_thread(crash_behind_our_back)
        await _until(lambda: ("hv1", "one-7", "stopped") in seen, "stopped event")
        await asyncio.to_thread(daemon.restart)
        await _until(lambda: not driver.events_connected(daemon.uri), "loss noticed")
        seen.clear()
        for _ in range(50):  # the monitor probes again; a probe may still fail at first
            try:
                await driver.probe(host)
                break
            except Exception:
                await asyncio.sleep(0.1)
        await _until(lambda: driver.events_connected(daemon.uri), "events connection back")
        await asyncio.to_thread(crash_behind_our_back)
        await _until(lambda: ("hv1", "one-7", "stopped") in seen, "stopped event again")

    try:
        asyncio.run(scenario())
    finally:
        driver.close()
