"""Probes never queue behind operations on the same host (regression: a burst of 30 deploys
onto one lab host held its only libvirt connection, the probes timed out three times, and
host_error fenced a healthy host)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.libvirtd import Libvirtd, require_libvirtd
from lazarus.domain.entities import Host
from lazarus.domain.template import Template
from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

pytestmark = pytest.mark.root


def test_a_probe_is_not_held_up_by_a_slow_operation(tmp_path: Path) -> None:
    require_libvirtd()
    with Libvirtd(tmp_path / "hv1") as daemon:
        host = Host(id=0, name="hv1", vm_mad="kvm",
                    template=Template([("LIBVIRT_URI", daemon.uri)]))
        driver = LibvirtHypervisor()
        release = threading.Event()

        def slow(conn: Any) -> None:  # an operation that holds its connection for a while
            conn.getHostname()
            release.wait(10)

        async def scenario() -> float:
            operation = asyncio.ensure_future(
                driver._call(host, "slow-op", slow, domain="one-7")
            )
            await asyncio.sleep(0.2)  # the operation is in flight on its lane
            start = time.monotonic()
            probe = await asyncio.wait_for(driver.probe(host), 5)
            took = time.monotonic() - start
            release.set()
            await operation
            assert probe.total_cpu > 0
            return took

        try:
            took = asyncio.run(scenario())
        finally:
            release.set()
            driver.close()
        assert took < 2.0  # without lanes the probe would wait for the operation (10 s)
