"""A controller on a virtual clock with a simulated cluster, for fast core tests.

    def test_x():
        with Harness(hosts=3) as h:
            vm_id = h.running_vm("web")           # placed by the scheduler, RUNNING
            h.wait_for(lambda: h.state(vm_id) == (VmState.ACTIVE, LcmState.RUNNING))

`vrun(coro)` runs a coroutine on a fresh virtual-time loop, for tests without a Harness.

`Recording` wraps the simulated driver and keeps every call as (operation, host name), so
tests can assert that a dead host was never contacted.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from lazarus.core.controller import Controller
from lazarus.core.settings import Settings
from lazarus.domain.entities import VM, Host
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop, run_virtual
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor
from lazarus.ports.hypervisor import HostProbe, VmSpec
from lazarus.store.sqlite import SqliteStore

T = TypeVar("T")

# vrun(coro): run a coroutine on a fresh virtual-time loop (no real sleeps)
vrun = run_virtual


class Recording:
    """A Hypervisor proxy that records (operation, host name) for every call."""

    def __init__(self, inner: SimHypervisor) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def set_domain_listener(self, listener: Callable[[str, str, str], None] | None) -> None:
        self.inner.set_domain_listener(listener)  # guest failures wake the host (VM HA)

    def on(self, host: str, *ops: str) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[1] == host and (not ops or c[0] in ops)]

    async def probe(self, host: Host) -> HostProbe:
        self.calls.append(("probe", host.name))
        return await self.inner.probe(host)

    async def deploy(self, host: Host, spec: VmSpec) -> str:
        self.calls.append(("deploy", host.name))
        return await self.inner.deploy(host, spec)

    async def shutdown(self, host: Host, deploy_id: str, hard: bool) -> None:
        self.calls.append(("shutdown", host.name))
        await self.inner.shutdown(host, deploy_id, hard)

    async def suspend(self, host: Host, deploy_id: str) -> None:
        self.calls.append(("suspend", host.name))
        await self.inner.suspend(host, deploy_id)

    async def resume(self, host: Host, deploy_id: str) -> None:
        self.calls.append(("resume", host.name))
        await self.inner.resume(host, deploy_id)

    async def migrate(self, source: Host, target: Host, deploy_id: str, spec: VmSpec) -> str:
        self.calls.append(("migrate", source.name))
        return await self.inner.migrate(source, target, deploy_id, spec)

    async def cleanup(self, host: Host, deploy_id: str) -> None:
        self.calls.append(("cleanup", host.name))
        await self.inner.cleanup(host, deploy_id)


VM_TEMPLATE = 'NAME = "{name}"\nCPU = 1\nMEMORY = 512\n{extra}'


class OnLoop:
    """Calls the wrapped object's methods on the harness loop, as the API does in production
    (core methods that start driver tasks must run on the controller's loop)."""

    def __init__(self, target: object, loop: VirtualEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                result = attr(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result

            return self._loop.run_until_complete(run())

        return call


class Harness:
    def __init__(
        self,
        hosts: int = 3,
        settings: Settings | None = None,
        start: bool = True,
        store: SqliteStore | None = None,
    ) -> None:
        self.loop = VirtualEventLoop()
        self.clock = VirtualClock(self.loop)
        self.sim = SimCluster(self.clock)
        self.driver = Recording(SimHypervisor(self.sim))
        self.store = store or SqliteStore.memory()
        self.settings = settings or Settings()
        self.controller = Controller(self.store, self.clock, {"sim": self.driver}, self.settings)
        self.started = False
        for index in range(hosts):
            self.add_host(f"node{index + 1}")
        if start:
            self.run(self.controller.start())
            self.started = True

    # -- plumbing -----------------------------------------------------------------------
    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.started:
            self.run(self.controller.stop())
            self.started = False
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def advance(self, seconds: float) -> None:
        self.run(self.clock.sleep(seconds))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 120.0) -> float:
        """Advance virtual time until `predicate()`; returns the virtual seconds it took."""
        start = self.clock.monotonic()

        async def poll() -> None:
            while not predicate():
                if self.clock.monotonic() - start > timeout:
                    raise AssertionError(f"condition not met within {timeout} virtual s")
                await self.clock.sleep(0.05)

        self.run(poll())
        return self.clock.monotonic() - start

    def settle(self) -> None:
        self.run(self.controller.lifecycle.idle())

    # -- objects ------------------------------------------------------------------------
    @property
    def lc(self) -> Any:
        return OnLoop(self.controller.lifecycle, self.loop)

    @property
    def inv(self) -> Any:
        return OnLoop(self.controller.inventory, self.loop)

    def add_host(self, name: str, cpu: int = 800, memory_kib: int = 8 * 1024 * 1024) -> int:
        self.sim.add_host(name, cpu, memory_kib)
        return int(self.inv.allocate_host(name, "sim", "sim"))

    def vm(self, vm_id: int) -> VM:
        return self.store.vm(vm_id)

    def host(self, host_id: int) -> Host:
        return self.store.host(host_id)

    def host_id(self, name: str) -> int:
        host = self.store.host_by_name(name)
        assert host is not None
        return host.id

    def create_vm(self, name: str = "vm", extra: str = "", hold: bool = False) -> int:
        text = VM_TEMPLATE.format(name=name, extra=extra)
        return int(self.lc.allocate(Template.parse(text), hold))

    def monitored(self) -> None:
        """Wait until every non-OFFLINE/DISABLED host has been probed once."""
        self.wait_for(
            lambda: all(
                h.state in (HostState.MONITORED, HostState.OFFLINE, HostState.DISABLED,
                            HostState.ERROR)
                for h in self.store.hosts()
            )
        )

    def running_vm(self, name: str = "vm", host: str | None = None, extra: str = "") -> int:
        """A VM RUNNING on `host` (deployed by hand) or wherever the scheduler puts it."""
        vm_id = self.create_vm(name, extra, hold=host is not None)
        if host is not None:
            self.lc.deploy(vm_id, self.host_id(host))
        self.wait_for(lambda: self.state(vm_id) == (VmState.ACTIVE, LcmState.RUNNING))
        return vm_id

    def state(self, vm_id: int) -> tuple[VmState, LcmState]:
        vm = self.store.vm(vm_id)
        return vm.state, vm.lcm_state

    def until(self, awaitable: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await awaitable

        return self.run(wrap())
