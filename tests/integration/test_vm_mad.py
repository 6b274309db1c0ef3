"""The VM_MAD setting: the daemon loads only the VMM drivers it names, and serves the
simulated cluster's methods (`lazarus.sim.*`, app/sim_api.py) only with the sim driver.

A daemon without it answers them as OpenNebula's oned answers any method it does not have:
the XML-RPC fault -506 "Method '...' not defined" (api/xmlrpc.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.daemon import FAST_SETTINGS, Daemon
from lazarus.api.client import RpcFaultError
from lazarus.domain.errors import NoExistsError

SIM_CALLS = [
    ("lazarus.sim.power", ("node1", "status")),
    ("lazarus.sim.network", ("node1", "cut")),
    ("lazarus.sim.hang", ("node1", True)),
    ("lazarus.sim.running", (0,)),
]


def test_without_the_sim_driver_the_sim_methods_are_not_defined(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data", {**FAST_SETTINGS, "VM_MAD": "kvm"}) as daemon:
        daemon.start()
        with daemon.client() as client:
            for method, params in SIM_CALLS:
                with pytest.raises(RpcFaultError, match=rf"Method '{method}' not defined") as e:
                    client.call(method, *params)
                assert e.value.fault_code == -506
            assert client.call("one.hostpool.info").startswith("<HOST_POOL")  # the rest is served


def test_with_the_sim_driver_the_sim_methods_are_served(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data", {**FAST_SETTINGS, "VM_MAD": "sim"}) as daemon:
        daemon.start()
        with daemon.client() as client, pytest.raises(NoExistsError, match=r"host \[node1\]"):
            client.call("lazarus.sim.power", "node1", "status")
