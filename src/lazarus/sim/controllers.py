"""Several controllers in the simulator: a coordination service with leases in virtual time,
one Elector per controller, and the leader's Controller on an epoch-fenced store.

    nodes = Controllers(world, 3)    # [cluster] controllers = 3 in a scenario
    nodes.start()                    # ctl0 campaigns first, then the standbys
    nodes.crash("", down=5)          # the leader (or a named one) killed; back as a follower
    nodes.freeze("", down=4)         # SIGSTOP-like: its clock-driven work stops, then resumes
    nodes.cut("", down=4)            # partitioned from the coordination service only

What is real: cluster/leadership.py's Elector with its lease deadline, cluster/fenced.py's
claim and FencedStore (every write of a controller checks its epoch in the transaction), the
Controller, API and host_error of the leader, exactly as with one controller. What is
simulated: the coordination service (drivers/coord/memory.py on the world's virtual clock)
and the processes: each controller is a `Node` with its own clock (a `NodeClock`, whose
sleeps do not return while the node is frozen), hypervisor driver, hook executor and lock,
sharing the one store, cluster and fence devices.

A node that wins claims the epoch in the store and builds a Controller over a FencedStore of
that epoch; when it stops leading (its deadline passed, its lease is gone) the Controller is
aborted as a crash would end it, and the node campaigns again. A crashed node's elector is
dropped without resigning (its lease runs out), and after `down` seconds a new one campaigns.
Every side effect of a node (a driver call that changes a domain, a fence "off", a hook run)
is reported to the observers with the node, for the "one_actor" oracle (sim/oracles.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from lazarus.api.local import LocalClient
from lazarus.cluster.fenced import EPOCH_KEY, FencedStore, claim_epoch
from lazarus.cluster.leadership import DEFAULT_KEY, Elector, LeaseTiming
from lazarus.core.controller import Controller
from lazarus.domain.entities import Host
from lazarus.domain.hooks import ExecutionResult
from lazarus.drivers.coord.memory import MemoryCoordinationService
from lazarus.drivers.vmm.sim import SimHypervisor
from lazarus.ha.fencers import agent_fencer
from lazarus.ha.host_error import Fencer
from lazarus.ha.incident import MemoryLock
from lazarus.ports.clock import Clock
from lazarus.ports.coordination import Term
from lazarus.ports.hooks import HookRequest
from lazarus.ports.hypervisor import VmSpec

from .hostexec import HostErrorExecutor

if TYPE_CHECKING:
    from lazarus.ports.store import Store

    from .world import World

SideEffect = Callable[["Node", str, str], None]  # (node, kind, what)


class NodeClock:
    """The world's clock as one controller process sees it: a frozen process's sleeps end
    only when it is thawed (time itself goes on)."""

    def __init__(self, inner: Clock) -> None:
        self.inner = inner
        self._thawed: asyncio.Event | None = None

    def now(self) -> float:
        return self.inner.now()

    def monotonic(self) -> float:
        return self.inner.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
        while self._thawed is not None:
            await self._thawed.wait()

    @property
    def frozen(self) -> bool:
        return self._thawed is not None

    def freeze(self) -> None:
        if self._thawed is None:
            self._thawed = asyncio.Event()

    def thaw(self) -> None:
        event, self._thawed = self._thawed, None
        if event is not None:
            event.set()


class NodeHypervisor(SimHypervisor):
    """The simulated driver of one node: every call that changes a domain is reported first."""

    def __init__(self, node: Node) -> None:
        super().__init__(node.world.cluster)
        self.node = node

    def _effect(self, what: str) -> None:
        self.node.side_effect("driver", what)

    async def deploy(self, host: Host, spec: VmSpec) -> str:
        self._effect(f"deploy vm {spec.vm_id} on {host.name}")
        return await super().deploy(host, spec)

    async def shutdown(self, host: Host, deploy_id: str, hard: bool) -> None:
        self._effect(f"shutdown {deploy_id} on {host.name}")
        await super().shutdown(host, deploy_id, hard)

    async def suspend(self, host: Host, deploy_id: str) -> None:
        self._effect(f"suspend {deploy_id} on {host.name}")
        await super().suspend(host, deploy_id)

    async def resume(self, host: Host, deploy_id: str) -> None:
        self._effect(f"resume {deploy_id} on {host.name}")
        await super().resume(host, deploy_id)

    async def migrate(self, source: Host, target: Host, deploy_id: str, spec: VmSpec) -> str:
        self._effect(f"migrate {deploy_id} {source.name} -> {target.name}")
        return await super().migrate(source, target, deploy_id, spec)

    async def cleanup(self, host: Host, deploy_id: str) -> None:
        self._effect(f"cleanup {deploy_id} on {host.name}")
        await super().cleanup(host, deploy_id)


class NodeExecutor:
    """The node's hook executor: a hook run is a side effect of the node that starts it."""

    def __init__(self, node: Node, inner: HostErrorExecutor) -> None:
        self.node = node
        self.inner = inner

    async def run(self, request: HookRequest) -> ExecutionResult:
        self.node.side_effect("hook", f"start {request.command}")
        return await self.inner.run(request)


class Node:
    def __init__(self, world: World, name: str, service: MemoryCoordinationService,
                 timing: LeaseTiming, on_effect: SideEffect) -> None:
        self.world = world
        self.name = name
        self.clock = NodeClock(world.clock)
        self.coord = service.client(name)
        self.timing = timing
        self.on_effect = on_effect
        self.controller: Controller | None = None
        self.api: LocalClient | None = None
        self.lock = MemoryLock()
        self.epoch = 0
        self.elector: Elector | None = None
        self.task: asyncio.Task[None] | None = None
        self.alive = False
        self.crashed_at = float("-inf")
        self.hypervisor = NodeHypervisor(self)
        fencer = agent_fencer(world.fence_runner, self.clock)
        self.fencer = world._observed_fencer(self._observed(fencer))
        self.executor = NodeExecutor(self, HostErrorExecutor(
            api=lambda: self._api(), clock=self.clock, fencer=self.fencer,
            lock=lambda: self.lock, observer=world.observers,
            break_fencing=world.break_fencing,
        ))

    def _api(self) -> Any:
        assert self.api is not None
        return self.api

    def _observed(self, inner: Fencer) -> Fencer:
        async def run(host_xml: str) -> tuple[bool, str]:
            name = host_xml.split("<NAME>", 1)[1].split("</NAME>", 1)[0] if "<NAME>" in \
                host_xml else ""
            self.side_effect("fence", f"fence {name}")
            return await inner(host_xml)

        return run

    def side_effect(self, kind: str, what: str) -> None:
        self.on_effect(self, kind, what)

    def acting(self) -> bool:
        return self.elector is not None and self.elector.acting()

    @property
    def acted_until(self) -> float:
        """When its last term stopped acting (monotonic): a crash ends it at once."""
        if not self.alive:
            return self.crashed_at
        return self.elector.acted_until if self.elector is not None else float("-inf")

    # -- the process ----------------------------------------------------------------------------
    def start(self) -> None:
        self.alive = True
        self.lock = MemoryLock()  # dies with the process
        self.elector = Elector(self.coord, self.clock, DEFAULT_KEY, self.name, self.timing,
                               on_elected=self._elected, on_deposed=self._deposed)
        self.task = asyncio.get_running_loop().create_task(self.elector.run(),
                                                           name=f"elector {self.name}")

    async def _elected(self, term: Term) -> None:
        w = self.world
        claim_epoch(w.store, term.epoch)  # raises when the store refuses: the term is given up
        self.epoch = term.epoch
        elector = self.elector
        assert elector is not None
        # the Store port, reads delegated (FencedStore.__getattr__), writes epoch-checked
        store = cast("Store", FencedStore(w.store, term.epoch, still_leader=elector.acting))
        self.controller = Controller(
            store, self.clock, {"sim": self.hypervisor}, w.settings,
            datastore_root="/sim/datastores", hook_executor=self.executor,
        )
        self.controller.journal.listeners.append(w._on_journal)
        self.api = w.api_for(self.controller)
        w.leader_changed(self)
        await self.controller.start()

    async def _deposed(self, term: Term, why: str) -> None:
        await self._stop_controller()
        self.world.leader_changed(None, deposed=self)

    async def _stop_controller(self) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            await controller.abort()

    async def crash(self) -> None:
        """SIGKILL: the controller and the elector end at once; the lease is not given up."""
        self.alive = False
        self.crashed_at = self.clock.monotonic()
        self.clock.thaw()
        if self.elector is not None:
            self.elector.term = None  # no resign in its finally: the lease runs out alone
        if self.task is not None:
            self.task.cancel()  # no await before the controller's tasks are cancelled too
        was_leader = self.controller is not None
        await self._stop_controller()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        if was_leader:
            self.world.leader_changed(None, deposed=self)


class Controllers:
    """The nodes of a scenario with `controllers >= 2`, and the coordination service."""

    def __init__(self, world: World, count: int, timing: LeaseTiming | None = None) -> None:
        self.world = world
        self.service = MemoryCoordinationService(world.clock)
        self.timing = timing or LeaseTiming()
        self.effects: list[SideEffect] = []
        self.nodes = [Node(world, f"ctl{i}", self.service, self.timing, self._effect)
                      for i in range(count)]

    def _effect(self, node: Node, kind: str, what: str) -> None:
        for listener in self.effects:
            listener(node, kind, what)

    def stored_epoch(self) -> int:
        return int(self.world.store.get_meta(EPOCH_KEY) or 0)

    def leader(self) -> Node | None:
        for node in self.nodes:
            if node.controller is not None:
                return node
        return None

    def node(self, name: str) -> Node | None:
        """The named node, or the leader (None when nobody leads at this instant: an event
        aimed at the leader then does nothing)."""
        if not name:
            return self.leader()
        for node in self.nodes:
            if node.name == name:
                return node
        raise LookupError(f"no controller {name}")

    async def start(self) -> None:
        """ctl0 first (it becomes the first leader), the standbys once it leads."""
        self.nodes[0].start()
        while self.leader() is None:
            await self.world.clock.sleep(0.05)
        for node in self.nodes[1:]:
            node.start()

    async def crash(self, name: str, down: float) -> None:
        node = self.node(name)
        if node is None or not node.alive:
            return
        await node.crash()
        await self.world.clock.sleep(down)
        node.start()

    async def freeze(self, name: str, down: float) -> None:
        node = self.node(name)
        if node is None or node.clock.frozen:
            return
        node.clock.freeze()
        await self.world.clock.sleep(down)
        node.clock.thaw()

    async def cut(self, name: str, down: float) -> None:
        node = self.node(name)
        if node is None or node.name in self.service.cut_off:
            return
        self.service.cut(node.name)
        await self.world.clock.sleep(down)
        self.service.heal(node.name)

    async def close(self) -> None:
        for node in self.nodes:
            if node.alive:
                node.clock.thaw()
                if node.task is not None:
                    node.task.cancel()
                    await asyncio.gather(node.task, return_exceptions=True)
                controller, node.controller = node.controller, None
                if controller is not None:
                    await controller.stop()
