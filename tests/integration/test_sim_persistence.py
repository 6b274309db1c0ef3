"""The daemon's simulated machines outlive the controller, as real hosts do: a SIGKILLed and
restarted daemon finds its simulated hosts, their power and network switches, and the VMs
still running on them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers.daemon import Daemon, running_daemon
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.vmm.sim import SimCluster


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    yield from running_daemon(tmp_path)


def wait(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_sim_state_survives_a_daemon_crash(daemon: Daemon) -> None:
    with daemon.client() as api:
        for name in ("p1", "p2"):
            api.call("one.host.allocate", name, "sim", "sim", -1)
        vm_id = api.call("one.vm.allocate", 'NAME = "keep"\nCPU = 1\nMEMORY = 256')
        wait("VM running", lambda: api.call("lazarus.sim.running", vm_id) != "")
        where = api.call("lazarus.sim.running", vm_id)
        other, other_id = ("p2", 1) if where == "p1" else ("p1", 0)
        api.call("lazarus.sim.network", other, "cut")

    daemon.restart(crash=True)
    with daemon.client() as api:
        assert api.call("lazarus.sim.running", vm_id) == where  # still running there
        assert api.call("lazarus.sim.power", where, "status") == "on"
        wait("the cut-off host in ERROR",
             lambda: "<STATE>3</STATE>" in api.call("one.host.info", other_id))
        time.sleep(1.5)  # monitoring cycles pass: the VM stays RUNNING, not POWEROFF
        assert "<LCM_STATE>3</LCM_STATE>" in api.call("one.vm.info", vm_id)


def test_snapshot_round_trip() -> None:
    clock = SystemClock()
    one = SimCluster(clock)
    one.add_host("a", 400, 1 << 20)
    one.add_host("b")
    one.cut_network("b")
    snapshot = one.snapshot()
    two = SimCluster(clock)
    two.restore(snapshot)
    assert two.snapshot() == snapshot
    assert not two.reachable("b") and two.reachable("a")
    with pytest.raises(ValueError, match="empty"):
        two.restore(snapshot)
