"""SimCluster / SimHypervisor behaviour beyond the shared contract: the fault switches.

All in virtual time (helpers.core.vrun): waiting costs nothing and elapsed virtual seconds are
asserted exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.core import vrun
from lazarus.domain.entities import Host
from lazarus.domain.errors import PermanentDriverError, TemporaryDriverError
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor
from lazarus.ports.hypervisor import DomainState, VmSpec

T = TypeVar("T")
HV1, HV2 = Host(id=0, name="hv1"), Host(id=1, name="hv2")


def spec(vm_id: int, memory_kib: int = 1024 * 1024) -> VmSpec:
    return VmSpec(vm_id=vm_id, name=f"one-{vm_id}", vcpu=1, cpu=100, memory_kib=memory_kib)


Scenario = Callable[[SimCluster, SimHypervisor, VirtualClock], Awaitable[T]]


def sim(scenario: Scenario[T], events: list[tuple[str, str, str | None]] | None = None) -> T:
    """Run a scenario on a fresh virtual loop with hosts hv1 and hv2."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        clock = VirtualClock(loop)
        listener = None if events is None else (lambda *event: events.append(event))
        cluster = SimCluster(clock, listener=listener)
        cluster.add_host("hv1")
        cluster.add_host("hv2")
        return await scenario(cluster, SimHypervisor(cluster), clock)

    result: T = vrun(main())
    return result


def states(cluster: SimCluster, host: str) -> dict[str, DomainState]:
    return {d.deploy_id: d.state for d in cluster.domains(host)}


def test_calls_cost_their_configured_virtual_time() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        start = clock.monotonic()
        await hv.deploy(HV1, spec(1))
        assert clock.monotonic() - start == pytest.approx(cluster.deploy_delay)
        start = clock.monotonic()
        await hv.probe(HV1)
        assert clock.monotonic() - start == pytest.approx(cluster.probe_delay)

    sim(scenario)


def test_power_off_stops_every_domain_and_probes_fail() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        await hv.deploy(HV1, spec(1))
        await hv.deploy(HV1, spec(2))
        assert cluster.running_hosts(1) == ["hv1"]
        cluster.power_off("hv1")
        assert cluster.power_state("hv1") == "off"
        assert cluster.running_hosts(1) == cluster.running_hosts(2) == []
        start = clock.monotonic()
        with pytest.raises(TemporaryDriverError):
            await hv.probe(HV1)
        assert clock.monotonic() - start == pytest.approx(cluster.unreachable_delay)

    sim(scenario)


def test_power_on_shows_stale_poweroff_definitions_that_never_restart_alone() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        await hv.deploy(HV1, spec(1))
        cluster.power_off("hv1")
        cluster.power_on("hv1")
        await clock.sleep(600)
        probe = await hv.probe(HV1)
        assert [(d.deploy_id, d.state) for d in probe.domains] == [
            ("one-1", DomainState.POWEROFF)
        ]
        assert probe.used_mem == probe.used_cpu == 0
        assert cluster.running_hosts(1) == []
        await hv.deploy(HV1, spec(1))  # the core restarting it is what brings it back
        assert cluster.running_hosts(1) == ["hv1"]

    sim(scenario)


def test_cut_network_keeps_domains_running_split_brain_is_visible() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        await hv.deploy(HV1, spec(1))
        cluster.cut_network("hv1")
        with pytest.raises(TemporaryDriverError):
            await hv.probe(HV1)
        with pytest.raises(TemporaryDriverError):
            await hv.cleanup(HV1, "one-1")
        assert states(cluster, "hv1") == {"one-1": DomainState.RUNNING}
        await hv.deploy(HV2, spec(1))  # recovering without fencing first...
        assert cluster.running_hosts(1) == ["hv1", "hv2"]  # ...is the split brain
        cluster.restore_network("hv1")
        probe = await hv.probe(HV1)
        assert [d.state for d in probe.domains] == [DomainState.RUNNING]

    sim(scenario)


def test_hung_host_blocks_until_timeout_and_answers_after_unhang() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        await hv.deploy(HV1, spec(1))
        cluster.hang("hv1")
        start = clock.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(hv.probe(HV1), timeout=5)
        assert clock.monotonic() - start == pytest.approx(5)
        assert cluster.host("hv1").waiters == []  # the cancelled call left nothing behind
        pending = asyncio.ensure_future(hv.probe(HV1))
        await clock.sleep(100)
        assert not pending.done()
        cluster.unhang("hv1")
        assert [d.deploy_id for d in (await pending).domains] == ["one-1"]

    sim(scenario)


def test_power_off_fails_calls_stuck_on_a_hung_host() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        cluster.hang("hv1")
        pending = asyncio.ensure_future(hv.probe(HV1))
        await clock.sleep(1)
        cluster.power_off("hv1")
        with pytest.raises(TemporaryDriverError):
            await pending

    sim(scenario)


def test_power_off_during_deploy_fails_the_call_and_leaves_nothing_running() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        pending = asyncio.ensure_future(hv.deploy(HV1, spec(1)))
        await clock.sleep(cluster.deploy_delay / 2)
        cluster.power_off("hv1")
        with pytest.raises(TemporaryDriverError):
            await pending
        assert cluster.running_hosts(1) == []

    sim(scenario)


@pytest.mark.parametrize("permanent", [False, True], ids=["temporary", "permanent"])
def test_fail_next_fails_exactly_one_call(permanent: bool) -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        cluster.fail_next("hv1", "deploy", permanent=permanent)
        error = PermanentDriverError if permanent else TemporaryDriverError
        with pytest.raises(error, match="injected deploy failure"):
            await hv.deploy(HV1, spec(1))
        await hv.probe(HV1)  # other ops are not affected
        assert await hv.deploy(HV1, spec(1)) == "one-1"

    sim(scenario)


def test_fail_next_rejects_unknown_ops() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        with pytest.raises(ValueError):
            cluster.fail_next("hv1", "reboot")

    sim(scenario)


def test_crash_vm_to_failure_or_gone() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        await hv.deploy(HV1, spec(1))
        await hv.deploy(HV1, spec(2))
        cluster.crash_vm("one-1")
        cluster.crash_vm("one-2", "hv1", gone=True)
        assert states(cluster, "hv1") == {"one-1": DomainState.FAILURE}
        assert cluster.running_hosts(1) == []
        assert (await hv.probe(HV1)).used_mem == 0

    sim(scenario)


def test_deploy_refuses_memory_the_host_does_not_have() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        cluster.set_capacity("hv1", cpu=200, memory_kib=3 * 1024 * 1024)
        await hv.deploy(HV1, spec(1, memory_kib=2 * 1024 * 1024))
        with pytest.raises(PermanentDriverError, match="cannot allocate"):
            await hv.deploy(HV1, spec(2, memory_kib=2 * 1024 * 1024))
        probe = await hv.probe(HV1)
        assert (probe.total_cpu, probe.total_mem) == (200, 3 * 1024 * 1024)

    sim(scenario)


def test_migrate_moves_a_running_domain_live() -> None:
    events: list[tuple[str, str, str | None]] = []

    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        await hv.deploy(HV1, spec(1))
        assert await hv.migrate(HV1, HV2, "one-1", spec(1)) == "one-1"
        assert states(cluster, "hv1") == {}
        assert states(cluster, "hv2") == {"one-1": DomainState.RUNNING}
        assert cluster.running_hosts(1) == ["hv2"]

    sim(scenario, events)
    assert events[-2:] == [("migrated_out", "hv1", "one-1"), ("migrated_in", "hv2", "one-1")]


def test_migrate_refusals() -> None:
    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        with pytest.raises(PermanentDriverError):
            await hv.migrate(HV1, HV2, "one-1", spec(1))  # no such domain
        await hv.deploy(HV1, spec(1))
        await hv.suspend(HV1, "one-1")
        with pytest.raises(PermanentDriverError, match="not running"):
            await hv.migrate(HV1, HV2, "one-1", spec(1))
        await hv.resume(HV1, "one-1")
        cluster.set_capacity("hv2", cpu=800, memory_kib=1024)
        with pytest.raises(PermanentDriverError, match="memory"):
            await hv.migrate(HV1, HV2, "one-1", spec(1))
        cluster.set_capacity("hv2", cpu=800, memory_kib=8 * 1024 * 1024)
        cluster.cut_network("hv1")
        with pytest.raises(TemporaryDriverError):  # live migration needs the source
            await hv.migrate(HV1, HV2, "one-1", spec(1))
        assert cluster.running_hosts(1) == ["hv1"]

    sim(scenario)


def test_listener_sees_every_ground_truth_change() -> None:
    events: list[tuple[str, str, str | None]] = []

    async def scenario(cluster: SimCluster, hv: SimHypervisor, clock: VirtualClock) -> None:
        await hv.deploy(HV1, spec(1))
        await hv.deploy(HV1, spec(1))  # idempotent: no change, no event
        await hv.shutdown(HV1, "one-1", hard=True)
        await hv.deploy(HV1, spec(1))
        cluster.power_off("hv1")
        cluster.power_on("hv1")
        await hv.cleanup(HV1, "one-1")

    sim(scenario, events)
    assert events == [
        ("host_added", "hv1", None),
        ("host_added", "hv2", None),
        ("defined", "hv1", "one-1"),
        ("started", "hv1", "one-1"),
        ("stopped", "hv1", "one-1"),
        ("started", "hv1", "one-1"),
        ("stopped", "hv1", "one-1"),
        ("power_off", "hv1", None),
        ("power_on", "hv1", None),
        ("undefined", "hv1", "one-1"),
    ]


def check_accounting(cluster: SimCluster) -> None:
    """The O(1) counters and the running index agree with a full recount."""
    running: dict[int, set[str]] = {}
    for host in cluster.hosts.values():
        doms = host.domains.values()
        live = [d for d in doms if d.state is DomainState.RUNNING]
        held = [d for d in doms if d.state in (DomainState.RUNNING, DomainState.SUSPENDED)]
        assert host.used_cpu == sum(d.cpu for d in live)
        assert host.used_mem == sum(d.memory_kib for d in held)
        for dom in live:
            assert dom.vm_id is not None
            running.setdefault(dom.vm_id, set()).add(host.name)
    for vm_id in range(4):
        assert cluster.running_hosts(vm_id) == sorted(running.get(vm_id, ()))


async def apply(
    cluster: SimCluster, hv: SimHypervisor, op: str, host: Host, other: Host, vm_id: int
) -> None:
    """One random step: a fault switch, or a driver call whose driver errors are expected."""
    deploy_id = f"one-{vm_id}"
    switches: dict[str, Callable[[], None]] = {
        "crash": lambda: cluster.crash_vm(deploy_id, host.name),
        "gone": lambda: cluster.crash_vm(deploy_id, host.name, gone=True),
        "power_off": lambda: cluster.power_off(host.name),
        "power_on": lambda: cluster.power_on(host.name),
        "cut": lambda: cluster.cut_network(host.name),
        "restore": lambda: cluster.restore_network(host.name),
    }
    actions: dict[str, Callable[[], Awaitable[object]]] = {
        "deploy": lambda: hv.deploy(host, spec(vm_id)),
        "shutdown": lambda: hv.shutdown(host, deploy_id, hard=False),
        "suspend": lambda: hv.suspend(host, deploy_id),
        "resume": lambda: hv.resume(host, deploy_id),
        "cleanup": lambda: hv.cleanup(host, deploy_id),
        "migrate": lambda: hv.migrate(host, other, deploy_id, spec(vm_id)),
    }
    if op in switches:
        switches[op]()
        return
    try:
        await actions[op]()
    except (TemporaryDriverError, PermanentDriverError):
        pass


OPS = st.sampled_from(
    ["deploy", "shutdown", "suspend", "resume", "cleanup", "migrate", "crash", "gone",
     "power_off", "power_on", "cut", "restore"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(OPS, st.integers(0, 1), st.integers(0, 3)), max_size=40))
def test_accounting_holds_at_every_instant(steps: list[tuple[str, int, int]]) -> None:
    cluster_ref: list[SimCluster] = []

    def listener(_event: str, _host: str, _deploy_id: str | None) -> None:
        if cluster_ref:
            check_accounting(cluster_ref[0])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualEventLoop)
        cluster = SimCluster(VirtualClock(loop), listener=listener)
        cluster_ref.append(cluster)
        hosts = [Host(id=i, name=f"hv{i}") for i in range(2)]
        for host in hosts:
            cluster.add_host(host.name, memory_kib=3 * 1024 * 1024)
        hv = SimHypervisor(cluster)
        for op, index, vm_id in steps:
            await apply(cluster, hv, op, hosts[index], hosts[1 - index], vm_id)
            check_accounting(cluster)

    vrun(main())
