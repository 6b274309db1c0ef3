"""Host monitoring against test-only libvirtd daemons (root): failure detection checks.

Three hosts are three test-driver libvirtd processes (tests/helpers/libvirtd.py), reached by
the real LibvirtHypervisor (VM_MAD "kvm", LIBVIRT_URI = the daemon's test+tcp URI,
LIBVIRT_DOMAIN_TYPE test). The Controller runs on a real asyncio loop with the real clock
(libvirt calls run in threads) and short settings. Checked:
- no false ERROR while every daemon lives (sampled every 50 ms over several cycles);
- kill -9 of a daemon: the host is ERROR and its RUNNING VMs UNKNOWN within
  MONITORING_INTERVAL_HOST x MONITOR_FAILURES + PROBE_TIMEOUT (measured with the monotonic
  clock, with a generous margin: it is a bound on our own settings, not a timing guess);
  after resched the VMs run on another host (PROLOG_MIGRATE_UNKNOWN -> BOOT: a deploy on the
  target, which the test driver can do) and the dead host is never contacted for them (a
  recording driver proxy);
- SIGSTOP (a hung host): ERROR within the same bound, the other hosts stay MONITORED.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.core import Recording
from helpers.libvirtd import Libvirtd, require_libvirtd
from lazarus.core.controller import Controller
from lazarus.core.settings import Settings
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.drivers.clock import SystemClock
from lazarus.store.sqlite import SqliteStore

pytestmark = pytest.mark.root

SETTINGS = dict(monitoring_interval_host=0.5, retry_interval=0.2, probe_timeout=1.0,
                monitor_failures=3, sched_interval=0.2)
BOUND = 0.5 * 3 + 1.0  # interval x failures + probe timeout
MARGIN = 3.0  # generous: thread scheduling on a loaded 2-core machine
ACTIONS = ("deploy", "shutdown", "cleanup", "migrate", "suspend", "resume")


class Recorder(Recording):
    """helpers.core.Recording over the libvirt driver, passing lost-connection reports on."""

    def set_loss_listener(self, listener: Callable[[str], None] | None) -> None:
        self.inner.set_loss_listener(listener)  # type: ignore[attr-defined]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Libvirtd]]:
    require_libvirtd()
    started: list[Libvirtd] = []
    try:
        for index in range(3):
            started.append(Libvirtd(tmp_path / f"hv{index + 1}").start())
        yield started
    finally:
        for daemon in started:
            daemon.close()


class Cluster:
    def __init__(self, daemons: list[Libvirtd]) -> None:
        from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

        self.daemons = daemons
        self.libvirt = LibvirtHypervisor(keepalive_interval=1, keepalive_count=2)
        self.driver = Recorder(self.libvirt)  # type: ignore[arg-type]
        self.store = SqliteStore.memory()
        self.controller = Controller(self.store, SystemClock(), {"kvm": self.driver},
                                     Settings(**SETTINGS))  # type: ignore[arg-type]
        self.hosts: dict[str, int] = {}

    async def start(self) -> None:
        inventory = self.controller.inventory
        for index, daemon in enumerate(self.daemons):
            name = f"hv{index + 1}"
            host_id = inventory.allocate_host(name, "kvm", "kvm")
            inventory.update_host(host_id, Template.parse(
                f'LIBVIRT_URI = "{daemon.uri}"\nLIBVIRT_DOMAIN_TYPE = "test"'), True)
            self.hosts[name] = host_id
        await self.controller.start()
        await until("every host MONITORED", lambda: all(
            self.host_state(h) is HostState.MONITORED for h in self.hosts.values()))

    async def stop(self) -> None:
        for daemon in self.daemons:
            daemon.cont()  # a hung daemon would hold driver threads until keepalive
        await self.controller.stop()
        await asyncio.to_thread(self.libvirt.close)
        self.store.close()

    def host_state(self, host_id: int) -> HostState:
        return self.store.host(host_id).state

    def vm_state(self, vm_id: int) -> tuple[VmState, LcmState]:
        vm = self.store.vm(vm_id)
        return vm.state, vm.lcm_state

    def vm_host(self, vm_id: int) -> int | None:
        return self.store.vm(vm_id).host_id

    async def running_vm(self, name: str, host: str) -> int:
        lifecycle = self.controller.lifecycle
        vm_id = lifecycle.allocate(Template.parse(f'NAME = "{name}"\nCPU = 1\nMEMORY = 64'),
                                   True)
        lifecycle.deploy(vm_id, self.hosts[host])
        await until(f"VM {vm_id} RUNNING on {host}", lambda: self.vm_state(vm_id) == (
            VmState.ACTIVE, LcmState.RUNNING))
        return vm_id


async def until(what: str, predicate: Callable[[], bool], deadline: float = 30.0) -> float:
    """Poll every 50 ms; the seconds it took (AssertionError after `deadline`)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def sample_hosts(cluster: Cluster, names: list[str], seconds: float) -> list[str]:
    """Host states every 50 ms for `seconds`: every state other than MONITORED seen."""
    bad = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name in names:
            state = cluster.host_state(cluster.hosts[name])
            if state is not HostState.MONITORED:
                bad.append(f"{name} {state.name}")
        await asyncio.sleep(0.05)
    return bad


def run(daemons: list[Libvirtd], body: Callable[[Cluster], Awaitable[Any]]) -> None:
    async def main() -> None:
        cluster = Cluster(daemons)
        try:
            await cluster.start()
            await body(cluster)
        finally:
            await cluster.stop()

    asyncio.run(main())


def test_killed_host_goes_error_and_its_vms_move_without_contacting_it(
    daemons: list[Libvirtd],
) -> None:
    async def body(c: Cluster) -> None:
        vms = [await c.running_vm("a", "hv1"), await c.running_vm("b", "hv1")]
        other = await c.running_vm("c", "hv2")
        # no false ERROR while every daemon lives: several monitoring cycles
        assert await sample_hosts(c, ["hv1", "hv2", "hv3"], 4 * 0.5) == []

        mark = len(c.driver.calls)
        killed = time.monotonic()
        daemons[0].kill()
        await until("hv1 ERROR and its VMs UNKNOWN", lambda: (
            c.host_state(c.hosts["hv1"]) is HostState.ERROR
            and all(c.vm_state(v) == (VmState.ACTIVE, LcmState.UNKNOWN) for v in vms)))
        took = time.monotonic() - killed
        assert took <= BOUND + MARGIN, f"detected after {took:.2f} s (bound {BOUND} s)"
        assert c.vm_state(other) == (VmState.ACTIVE, LcmState.RUNNING)
        assert c.host_state(c.hosts["hv2"]) is HostState.MONITORED

        for vm in vms:
            c.controller.lifecycle.action("resched", vm)
        await until("the VMs RUNNING elsewhere", lambda: all(
            c.vm_state(v) == (VmState.ACTIVE, LcmState.RUNNING)
            and c.vm_host(v) != c.hosts["hv1"] for v in vms))
        after = c.driver.calls[mark:]
        assert [call for call in after if call[1] == "hv1" and call[0] in ACTIONS] == []
        assert all(call[0] == "probe" for call in after if call[1] == "hv1")
        targets = {c.vm_host(v) for v in vms}
        assert targets <= {c.hosts["hv2"], c.hosts["hv3"]}
        assert len([call for call in after if call[0] == "deploy"]) == len(vms)
        # the targets' libvirtd really runs them (ground truth, not our own state)
        names = set()
        for daemon in daemons[1:]:
            names |= {dom.name() for dom in daemon.keeper.listAllDomains() if dom.isActive()}
        assert {f"one-{v}" for v in vms} <= names

    run(daemons, body)


def test_hung_host_goes_error_and_the_others_stay_monitored(daemons: list[Libvirtd]) -> None:
    async def body(c: Cluster) -> None:
        vm = await c.running_vm("a", "hv3")
        assert await sample_hosts(c, ["hv1", "hv2", "hv3"], 4 * 0.5) == []

        hung = time.monotonic()
        daemons[2].stop()
        sampler = asyncio.create_task(sample_hosts(c, ["hv1", "hv2"], BOUND + MARGIN))
        await until("hv3 ERROR and its VM UNKNOWN", lambda: (
            c.host_state(c.hosts["hv3"]) is HostState.ERROR
            and c.vm_state(vm) == (VmState.ACTIVE, LcmState.UNKNOWN)))
        took = time.monotonic() - hung
        assert took <= BOUND + MARGIN, f"detected after {took:.2f} s (bound {BOUND} s)"
        assert await sampler == []  # a hung host never delays or fails the others

    run(daemons, body)
