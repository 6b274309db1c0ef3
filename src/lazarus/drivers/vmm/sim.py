"""The simulated cluster and its Hypervisor driver (VM_MAD="sim").

`SimCluster` is the ground truth of a pretend data centre: hosts with capacity, power, network
and a "hung" flag, and the domains each host runs. Tests, the demo and the discrete-event
simulator (sim/) flip its switches (power_off, cut_network, hang, crash_vm, fail_next, ...) and
ask it what is really true (running_hosts is the split-brain oracle). `SimHypervisor` is the
driver the core talks to; it sees the cluster only the way a controller would see real hosts:
through calls that take time (clock.sleep, virtual in tests), time out, or fail.

Per-call cost is O(1), probe is O(domains on the host), so 2,000 hosts with 40,000 VMs stay
cheap; `probe_many` (ports.hypervisor.BatchProbing) answers a monitoring round of hosts that
respond plainly after one shared delay, so a round costs one timer, not one per host. Nothing
here starts threads or touches real time.

Listener events (callback(event, host, deploy_id)), sent after every ground-truth change:
    host_added, power_off, power_on, network_cut, network_restored, hang, unhang, capacity
        (deploy_id None)
    storage_failed, storage_restored (deploy_id None)
    defined, started, stopped, suspended, resumed, crashed, panicked, watchdog, io_error,
    shutdown, undefined, migrated_out, migrated_in (deploy_id set). power_off also sends
    "stopped" for every domain it stops.

Guest failures (`crash_vm(kind=...)`, `fail_storage`) are also reported to the driver's
domain listener (ports.hypervisor.DomainEventReporting), as libvirt's domain events are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lazarus.domain.entities import Host
from lazarus.domain.errors import PermanentDriverError, TemporaryDriverError
from lazarus.ports.clock import Clock
from lazarus.ports.hypervisor import BatchResult, DomainInfo, DomainState, HostProbe, VmSpec

Listener = Callable[[str, str, str | None], None]

# crash_vm's kinds -> the state the domain is left in (its reason is the kind)
GUEST_FAILURES = {
    "crashed": DomainState.FAILURE,
    "panicked": DomainState.FAILURE,
    "watchdog": DomainState.FAILURE,
    "io_error": DomainState.SUSPENDED,
    "shutdown": DomainState.POWEROFF,
}
OPS = ("probe", "deploy", "shutdown", "suspend", "resume", "migrate", "cleanup")
_ACTIVE = (DomainState.RUNNING, DomainState.SUSPENDED)


@dataclass
class SimDomain:
    deploy_id: str
    vm_id: int | None
    state: DomainState
    cpu: int
    memory_kib: int
    reason: str = ""  # ports.hypervisor.DomainReason of the current state, or ""

    def info(self) -> DomainInfo:
        active = self.state in _ACTIVE
        return DomainInfo(
            deploy_id=self.deploy_id,
            state=self.state,
            vm_id=self.vm_id,
            cpu_used=self.cpu if self.state is DomainState.RUNNING else 0,
            memory_kib=self.memory_kib if active else 0,
            reason=self.reason,
        )


@dataclass
class SimHost:
    name: str
    cpu: int
    memory_kib: int
    powered: bool = True
    network: bool = True
    hung: bool = False
    storage: bool = True  # False: every disk I/O fails, running guests pause (io_error)
    domains: dict[str, SimDomain] = field(default_factory=dict)
    used_cpu: int = 0  # of RUNNING domains
    used_mem: int = 0  # of RUNNING and SUSPENDED domains (their memory stays allocated)
    failures: dict[str, bool] = field(default_factory=dict)  # op -> permanent
    failure_counts: dict[str, int] = field(default_factory=dict)  # op -> calls left to fail
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    infos: tuple[DomainInfo, ...] | None = None  # the probe's view, rebuilt after a change
    probe: HostProbe | None = None  # the last probe answered, handed out again while current


def _active(host: SimHost, deploy_id: str) -> bool:
    dom = host.domains.get(deploy_id)
    return dom is not None and dom.state is not DomainState.POWEROFF


def _infos(host: SimHost) -> tuple[DomainInfo, ...]:
    if host.infos is None:
        host.infos = tuple(dom.info() for dom in host.domains.values())
    return host.infos


def deploy_id_for(vm_id: int) -> str:
    return f"one-{vm_id}"


def _parse_vm_id(deploy_id: str) -> int | None:
    prefix, _, number = deploy_id.partition("-")
    return int(number) if prefix == "one" and number.isdigit() else None


class SimCluster:
    """Ground truth of the simulated hosts and domains, plus the switches that break them."""

    def __init__(
        self,
        clock: Clock,
        *,
        deploy_delay: float = 0.5,
        op_delay: float = 0.05,
        probe_delay: float = 0.01,
        unreachable_delay: float = 2.0,
        listener: Listener | None = None,
    ) -> None:
        self.clock = clock
        self.deploy_delay = deploy_delay
        self.op_delay = op_delay
        self.probe_delay = probe_delay
        self.unreachable_delay = unreachable_delay
        self.listener = listener
        self.watchers: list[Listener] = []  # further listeners (drivers), after `listener`
        self.hosts: dict[str, SimHost] = {}
        self._running: dict[int, set[str]] = {}  # vm_id -> hosts where it is RUNNING

    # -- switches ---------------------------------------------------------------------------
    def add_host(self, name: str, cpu: int = 800, memory_kib: int = 8 * 1024 * 1024) -> SimHost:
        if name in self.hosts:
            raise ValueError(f"sim host {name!r} exists")
        host = self.hosts[name] = SimHost(name, cpu, memory_kib)
        self._emit("host_added", name)
        return host

    def power_off(self, name: str) -> None:
        """Cut the power: every domain stops at once; definitions stay (shown as POWEROFF)."""
        host = self.host(name)
        host.powered = False
        for dom in host.domains.values():
            if dom.state is not DomainState.POWEROFF:
                self._set_state(host, dom, DomainState.POWEROFF, "stopped")
        self._release_waiters(host)  # calls in flight on a dead host fail (see _gate)
        self._emit("power_off", name)

    def power_on(self, name: str) -> None:
        """Power back on. Nothing restarts by itself: old definitions show as POWEROFF."""
        host = self.host(name)
        host.powered = True
        host.hung = False
        self._release_waiters(host)
        self._emit("power_on", name)

    def power_state(self, name: str) -> str:
        return "on" if self.host(name).powered else "off"

    def cut_network(self, name: str) -> None:
        """The controller cannot reach the host; its domains keep running (split brain)."""
        self.host(name).network = False
        self._emit("network_cut", name)

    def restore_network(self, name: str) -> None:
        self.host(name).network = True
        self._emit("network_restored", name)

    def hang(self, name: str) -> None:
        """Calls to the host block until unhang (callers must use timeouts)."""
        self.host(name).hung = True
        self._emit("hang", name)

    def unhang(self, name: str) -> None:
        host = self.host(name)
        host.hung = False
        self._release_waiters(host)
        self._emit("unhang", name)

    def set_capacity(self, name: str, cpu: int, memory_kib: int) -> None:
        host = self.host(name)
        host.cpu, host.memory_kib = cpu, memory_kib
        self._emit("capacity", name)

    def fail_next(self, name: str, op: str, permanent: bool = False, count: int = 1) -> None:
        """Make the next `count` `op` calls (one of OPS) on the host raise a driver error."""
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; one of {', '.join(OPS)}")
        host = self.host(name)
        host.failures[op] = permanent
        host.failure_counts[op] = max(1, count)

    def stop_domains(self, name: str) -> int:
        """Shut off every running domain of the host (a host agent's isolation response,
        as `virsh destroy`); definitions stay. The number stopped."""
        host = self.host(name)
        stopped = 0
        for dom in host.domains.values():
            if dom.state is not DomainState.POWEROFF:
                self._set_state(host, dom, DomainState.POWEROFF, "stopped")
                stopped += 1
        return stopped

    def crash_vm(
        self, deploy_id: str, host: str | None = None, *, gone: bool = False,
        kind: str = "crashed",
    ) -> None:
        """The domain fails, on `host` or every host: `kind` crashed (its qemu died),
        panicked (pvpanic), watchdog (hung; its watchdog paused it): FAILURE; io_error:
        paused (SUSPENDED); shutdown: the guest powered itself off (POWEROFF). gone=True:
        the domain vanishes altogether."""
        if kind not in GUEST_FAILURES:
            raise ValueError(f"unknown kind {kind!r}; one of {', '.join(GUEST_FAILURES)}")
        names = [host] if host is not None else list(self.hosts)
        for name in names:
            sim_host = self.host(name)
            dom = sim_host.domains.get(deploy_id)
            if dom is None:
                continue
            if gone:
                self._remove(sim_host, dom)
            elif dom.state in _ACTIVE:
                self._set_state(sim_host, dom, GUEST_FAILURES[kind], kind, kind)

    def fail_storage(self, name: str) -> None:
        """The host's storage stops answering: its running guests pause on I/O errors."""
        host = self.host(name)
        host.storage = False
        self._emit("storage_failed", name)
        for dom in list(host.domains.values()):
            if dom.state is DomainState.RUNNING:
                self._set_state(host, dom, DomainState.SUSPENDED, "io_error", "io_error")

    def restore_storage(self, name: str) -> None:
        """Storage answers again; paused guests stay paused until resumed."""
        self.host(name).storage = True
        self._emit("storage_restored", name)

    # -- ground truth -----------------------------------------------------------------------
    def host(self, name: str) -> SimHost:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no sim host {name!r}") from None

    def running_hosts(self, vm_id: int) -> list[str]:
        """Hosts where a domain of this VM is RUNNING (more than one = split brain)."""
        return sorted(self._running.get(vm_id, ()))

    def domains(self, name: str) -> list[DomainInfo]:
        return [dom.info() for dom in self.host(name).domains.values()]

    def reachable(self, name: str) -> bool:
        host = self.host(name)
        return host.powered and host.network and not host.hung

    # -- persistence ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        """The ground truth as plain data (hosts, switches, domains), for saving."""
        return {
            "hosts": [
                {
                    "name": h.name, "cpu": h.cpu, "memory_kib": h.memory_kib,
                    "powered": h.powered, "network": h.network, "hung": h.hung,
                    "domains": [
                        [d.deploy_id, d.vm_id, d.state.value, d.cpu, d.memory_kib]
                        for d in h.domains.values()
                    ],
                }
                for h in self.hosts.values()
            ]
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Load a snapshot into an empty cluster; derived counters are recomputed."""
        if self.hosts:
            raise ValueError("restore needs an empty sim cluster")
        for item in data.get("hosts", []):
            host = self.hosts[item["name"]] = SimHost(
                item["name"], int(item["cpu"]), int(item["memory_kib"]),
                powered=bool(item["powered"]), network=bool(item["network"]),
                hung=bool(item["hung"]),
            )
            for deploy_id, vm_id, state, cpu, mem in item.get("domains", []):
                dom = SimDomain(deploy_id, vm_id, DomainState(state), int(cpu), int(mem))
                host.domains[deploy_id] = dom
                self._account(host, dom, +1)

    # -- changes used by the driver ---------------------------------------------------------
    def _emit(self, event: str, host: str, deploy_id: str | None = None) -> None:
        if self.listener is not None:
            self.listener(event, host, deploy_id)
        for watcher in self.watchers:
            watcher(event, host, deploy_id)

    def _set_state(
        self, host: SimHost, dom: SimDomain, state: DomainState, event: str, reason: str = ""
    ) -> None:
        self._account(host, dom, -1)
        dom.state = state
        dom.reason = reason
        self._account(host, dom, +1)
        self._emit(event, host.name, dom.deploy_id)

    def _account(self, host: SimHost, dom: SimDomain, sign: int) -> None:
        host.infos = None
        if dom.state is DomainState.RUNNING:
            host.used_cpu += sign * dom.cpu
            if dom.vm_id is not None:
                where = self._running.setdefault(dom.vm_id, set())
                if sign > 0:
                    where.add(host.name)
                else:
                    where.discard(host.name)
                    if not where:
                        del self._running[dom.vm_id]
        if dom.state in _ACTIVE:
            host.used_mem += sign * dom.memory_kib

    def _add(self, host: SimHost, dom: SimDomain, event: str) -> None:
        host.domains[dom.deploy_id] = dom
        self._account(host, dom, +1)
        self._emit(event, host.name, dom.deploy_id)

    def _remove(self, host: SimHost, dom: SimDomain, event: str = "undefined") -> None:
        self._account(host, dom, -1)
        del host.domains[dom.deploy_id]
        self._emit(event, host.name, dom.deploy_id)

    def _release_waiters(self, host: SimHost) -> None:
        waiters, host.waiters = host.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class SimHypervisor:
    """The Hypervisor port over a SimCluster; a Host is matched by its name.

    Like libvirt's keepalive, it reports a host whose connection is lost (power cut, network
    cut, hang) `keepalive_delay` seconds after it happened, to the loss listener if one is set.
    """

    def __init__(self, cluster: SimCluster, keepalive_delay: float = 3.0) -> None:
        self.cluster = cluster
        self.keepalive_delay = keepalive_delay
        self._loss_listener: Callable[[str], None] | None = None
        self._domain_listener: Callable[[str, str, str], None] | None = None
        cluster.watchers.append(self._watch)

    def set_loss_listener(self, listener: Callable[[str], None] | None) -> None:
        self._loss_listener = listener

    def set_domain_listener(self, listener: Callable[[str, str, str], None] | None) -> None:
        """`listener(host, deploy id, kind)` for guest failures (GUEST_FAILURES), at once, as
        libvirt's domain events (a host the controller cannot reach reports nothing)."""
        self._domain_listener = listener

    def _watch(self, event: str, host: str, deploy_id: str | None) -> None:
        if event in GUEST_FAILURES and deploy_id is not None:
            if self._domain_listener is not None and self.cluster.reachable(host):
                self._domain_listener(host, deploy_id, event)
            return
        if self._loss_listener is None or event not in ("power_off", "network_cut", "hang"):
            return
        loop = getattr(self.cluster.clock, "loop", None)
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
        loop.call_later(self.keepalive_delay, self._report, host)

    def _report(self, host: str) -> None:
        if self._loss_listener is not None and not self.cluster.reachable(host):
            self._loss_listener(host)

    async def _gate(self, host: Host, op: str, delay: float) -> SimHost:
        """Reach the host the way a remote call would, spend `delay`, and return it."""
        sim = await self._reach(host.name)
        failure = sim.failures.get(op)
        if failure is not None:
            left = sim.failure_counts.pop(op, 1) - 1
            if left > 0:
                sim.failure_counts[op] = left
            else:
                del sim.failures[op]
            error = PermanentDriverError if failure else TemporaryDriverError
            raise error(f"{host.name}: injected {op} failure")
        await self.cluster.clock.sleep(delay)
        # The host may have died or hung while the call was in flight.
        return await self._reach(host.name, in_flight=True)

    async def _reach(self, name: str, in_flight: bool = False) -> SimHost:
        cluster = self.cluster
        sim = cluster.hosts.get(name)
        if sim is None:
            await cluster.clock.sleep(cluster.unreachable_delay)
            raise TemporaryDriverError(f"{name}: no route to host")
        while sim.powered and sim.network and sim.hung:
            waiter = asyncio.get_running_loop().create_future()
            sim.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in sim.waiters:
                    sim.waiters.remove(waiter)
        if not (sim.powered and sim.network):
            if not in_flight:
                await cluster.clock.sleep(cluster.unreachable_delay)
            raise TemporaryDriverError(f"{name}: host unreachable")
        return sim

    @staticmethod
    def _domain(sim: SimHost, deploy_id: str) -> SimDomain:
        dom = sim.domains.get(deploy_id)
        if dom is None:
            raise PermanentDriverError(f"{sim.name}: no domain {deploy_id}")
        return dom

    async def probe(self, host: Host) -> HostProbe:
        sim = await self._gate(host, "probe", self.cluster.probe_delay)
        return self._probe_of(sim)

    async def probe_many(self, hosts: Sequence[Host]) -> AsyncGenerator[BatchResult, None]:
        """A round: the hosts that answer plainly share one probe delay; the others (unknown,
        down, hung, an injected failure) are handed back to be probed one by one with
        `probe()`. Same outcomes as calling `probe()` for each host."""
        cluster = self.cluster
        plain: list[tuple[Host, SimHost]] = []
        for host in hosts:
            sim = cluster.hosts.get(host.name)
            if sim and sim.powered and sim.network and not sim.hung and "probe" not in sim.failures:
                plain.append((host, sim))
            else:
                yield host, None
        if not plain:
            return
        await cluster.clock.sleep(cluster.probe_delay)
        for host, sim in plain:  # as in _gate: it may have died or hung meanwhile
            if sim.powered and sim.network and not sim.hung:
                yield host, self._probe_of(sim)
            elif sim.powered and sim.network:
                yield host, None  # hung: answers when it un-hangs
            else:
                yield host, TemporaryDriverError(f"{host.name}: host unreachable")

    @staticmethod
    def _probe_of(sim: SimHost) -> HostProbe:
        """The host as a probe sees it; the same object as last time when nothing changed (the
        monitor then skips comparing it)."""
        domains = _infos(sim)
        last = sim.probe
        if (
            last is not None
            and last.domains is domains
            and (last.total_cpu, last.total_mem, last.used_cpu, last.used_mem)
            == (sim.cpu, sim.memory_kib, sim.used_cpu, sim.used_mem)
        ):
            return last
        sim.probe = HostProbe(
            total_cpu=sim.cpu,
            total_mem=sim.memory_kib,
            used_cpu=sim.used_cpu,
            used_mem=sim.used_mem,
            domains=domains,
            info={"HOSTNAME": sim.name, "HYPERVISOR": "sim", "ARCH": "x86_64"},
        )
        return sim.probe

    async def deploy(self, host: Host, spec: VmSpec) -> str:
        sim = await self._gate(host, "deploy", self.cluster.deploy_delay)
        deploy_id = spec.name or deploy_id_for(spec.vm_id)
        dom = sim.domains.get(deploy_id)
        if dom is not None and dom.state is DomainState.RUNNING:
            return deploy_id
        held = dom.memory_kib if dom is not None and dom.state in _ACTIVE else 0
        if sim.used_mem - held + spec.memory_kib > sim.memory_kib:
            raise PermanentDriverError(
                f"{host.name}: cannot allocate {spec.memory_kib} KiB for {deploy_id}"
            )
        if dom is None:
            dom = SimDomain(deploy_id, spec.vm_id, DomainState.POWEROFF, spec.cpu, spec.memory_kib)
            self.cluster._add(sim, dom, "defined")
        else:
            self.cluster._account(sim, dom, -1)
            dom.cpu, dom.memory_kib = spec.cpu, spec.memory_kib
            self.cluster._account(sim, dom, +1)
        self.cluster._set_state(sim, dom, DomainState.RUNNING, "started")
        if not sim.storage:  # its first disk access fails
            self.cluster._set_state(sim, dom, DomainState.SUSPENDED, "io_error", "io_error")
        return deploy_id

    async def shutdown(self, host: Host, deploy_id: str, hard: bool) -> None:
        sim = await self._gate(host, "shutdown", self.cluster.op_delay)
        dom = sim.domains.get(deploy_id)
        if dom is not None and dom.state is not DomainState.POWEROFF:
            self.cluster._set_state(sim, dom, DomainState.POWEROFF, "stopped")

    async def suspend(self, host: Host, deploy_id: str) -> None:
        sim = await self._gate(host, "suspend", self.cluster.op_delay)
        dom = self._domain(sim, deploy_id)
        if dom.state is not DomainState.RUNNING:
            raise PermanentDriverError(f"{host.name}: domain {deploy_id} is not running")
        self.cluster._set_state(sim, dom, DomainState.SUSPENDED, "suspended")

    async def resume(self, host: Host, deploy_id: str) -> None:
        sim = await self._gate(host, "resume", self.cluster.op_delay)
        dom = self._domain(sim, deploy_id)
        if dom.state is not DomainState.SUSPENDED:
            raise PermanentDriverError(f"{host.name}: domain {deploy_id} is not paused")
        self.cluster._set_state(sim, dom, DomainState.RUNNING, "resumed")
        if not sim.storage:  # still failing: it pauses again at its next disk access
            self.cluster._set_state(sim, dom, DomainState.SUSPENDED, "io_error", "io_error")

    async def migrate(self, source: Host, target: Host, deploy_id: str, spec: VmSpec) -> str:
        src = await self._gate(source, "migrate", 0.0)
        dom = self._domain(src, deploy_id)
        if dom.state is not DomainState.RUNNING:
            raise PermanentDriverError(f"{source.name}: domain {deploy_id} is not running")
        dst = await self._reach(target.name)
        if _active(dst, deploy_id):  # an inactive leftover definition is taken over (libvirt)
            raise PermanentDriverError(f"{target.name}: domain {deploy_id} already exists")
        if dst.used_mem + dom.memory_kib > dst.memory_kib:
            raise PermanentDriverError(f"{target.name}: cannot allocate memory for {deploy_id}")
        await self.cluster.clock.sleep(self.cluster.deploy_delay)
        src = await self._reach(source.name, in_flight=True)
        dst = await self._reach(target.name, in_flight=True)
        dom = self._domain(src, deploy_id)
        if dom.state is not DomainState.RUNNING or _active(dst, deploy_id):
            raise PermanentDriverError(f"{source.name}: migration of {deploy_id} aborted")
        leftover = dst.domains.get(deploy_id)
        if leftover is not None:
            self.cluster._remove(dst, leftover, "undefined")
        self.cluster._remove(src, dom, "migrated_out")
        moved = SimDomain(deploy_id, dom.vm_id, DomainState.RUNNING, dom.cpu, dom.memory_kib)
        self.cluster._add(dst, moved, "migrated_in")
        return deploy_id

    async def cleanup(self, host: Host, deploy_id: str) -> None:
        sim = await self._gate(host, "cleanup", self.cluster.op_delay)
        dom = sim.domains.get(deploy_id)
        if dom is not None:
            self.cluster._remove(sim, dom)
