"""The simulator's composition root: the real controller on a virtual clock, a simulated
cluster, simulated fence devices, the real API method table and the real hook path.

    world = World(scenario)            # builds everything (nothing runs yet)
    world.setup()                      # hosts, datastores, hook, VMs; controller started
    world.apply(event)                 # one scenario event (faults, operator calls, crashes)
    world.close()

What is real here: core.controller.Controller (journal, lifecycle, inventory, monitor,
scheduler, hook manager), the SQLite store (in memory), the API stack of api/stack.py behind
LocalClient, ha.host_error.HostErrorRun and ha.fencing through ha.fencers.agent_fencer.
What is simulated: the hypervisor (drivers/vmm/sim), the fence devices (drivers/fence/sim),
the hook process (sim/hostexec.py runs host_error in-process) and time (drivers/clock).

A controller crash cancels every task of the controller generation and drops its in-memory
state (monitor counters, hook tasks, the host_error lock); the store survives and a new
Controller starts on it, as after a SIGKILL and restart.

With `[cluster] controllers = N` (N >= 2) the controllers are sim/controllers.py's nodes: one
leader elected through a simulated coordination service, its Controller on an epoch-fenced
store; `self.controller` and `self.api` are the current leader's. A controller crash kills
the leader (or the named node), which comes back as a follower after `down` seconds; a
standby takes over when the lease lapses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.local import LocalClient
from lazarus.api.stack import build_dispatcher
from lazarus.core.controller import Controller
from lazarus.core.settings import Settings
from lazarus.domain.entities import Event, User
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.fence.sim import SimAgentRunner, SimFault
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor, deploy_id_for
from lazarus.ha.examples import error_hook_text
from lazarus.ha.fencers import agent_fencer
from lazarus.ha.host_error import Fencer
from lazarus.ha.incident import MemoryLock
from lazarus.ports.fence import AgentResult
from lazarus.store.sqlite import SqliteStore

from . import scenario as sc
from .agents import SimAgents
from .controllers import Controllers, Node
from .hostexec import HostErrorExecutor, RunObserver

PASSWORD = "sim"  # the in-process oneadmin; never leaves the process
FAULTS = {
    "none": SimFault(),
    "unreachable": SimFault(unreachable=True),
    "wrong_password": SimFault(wrong_password=True),
    "lying": SimFault.lying(),
    "ignores_off": SimFault(ignores_off=True),
    "reports_off": SimFault(reports_off=True),
}
SimListener = Callable[[str, str, str | None], None]
JournalListener = Callable[[list[Event]], None]


class Observers:
    """Fan-out of what the world sees, to the oracles and the timeline (same interface)."""

    def __init__(self) -> None:
        self.sim: list[SimListener] = []
        self.journal: list[JournalListener] = []
        self.fence: list[Callable[[str, str, AgentResult], None]] = []
        self.fenced: list[Callable[[str, bool, str], None]] = []
        self.runs: list[RunObserver] = []
        self.faults: list[Callable[[sc.Event], None]] = []

    def hook_started(self, host_id: int, options: Any, event_id: int) -> None:
        for r in self.runs:
            r.hook_started(host_id, options, event_id)

    def hook_line(self, host_id: int, line: str) -> None:
        for r in self.runs:
            r.hook_line(host_id, line)

    def hook_finished(self, host_id: int, code: int, lines: list[str]) -> None:
        for r in self.runs:
            r.hook_finished(host_id, code, lines)


class ObservedRunner:
    """The SimAgentRunner, telling observers about every agent run (oracles count fences)."""

    def __init__(self, inner: SimAgentRunner, observers: Observers) -> None:
        self.inner = inner
        self.observers = observers

    async def run(self, agent: str, params: Any, timeout: float) -> AgentResult:
        plug = params.get("plug", "")
        action = params.get("action", "")
        if action == "off":
            for before in self.observers.fence:
                before(plug, "off-start", AgentResult(0, "", ""))
        result = await self.inner.run(agent, params, timeout)
        for after in self.observers.fence:
            after(plug, action, result)
        return result


class World:
    def __init__(
        self, scenario: sc.Scenario, *, break_fencing: bool = False, store: Any = None
    ) -> None:
        """`store`: an empty store to run on (bench/sim_scale.py --store postgresql); by default
        a private SQLite store in memory."""
        self.scenario = scenario
        self.loop = VirtualEventLoop()
        self.clock = VirtualClock(self.loop)
        self.observers = Observers()
        self.cluster = SimCluster(self.clock, listener=self._on_sim)
        self.runner = SimAgentRunner(self.cluster, self.clock)
        self.fence_runner = ObservedRunner(self.runner, self.observers)
        self.store = SqliteStore.memory() if store is None else store
        self.settings = Settings(**scenario.settings)
        with self.store.transaction() as tx:
            tx.add_user(User(id=-1, name="oneadmin", password_hash=hash_password(PASSWORD)))
        self.fencer = self._observed_fencer(agent_fencer(self.fence_runner, self.clock))
        self.executor = HostErrorExecutor(
            api=lambda: self.api,
            clock=self.clock,
            fencer=self.fencer,
            lock=lambda: self.lock,
            observer=self.observers,
            break_fencing=break_fencing,
        )
        self.generation = 0
        self.crashes: list[tuple[float, float]] = []  # (crashed at, restarted at), monotonic
        self.down = False
        # (from, until) of each store fault: writes refused as by a full disk (monotonic)
        self.store_faults: list[tuple[float, float]] = []
        self.t0 = 0.0  # monotonic instant the scenario's events count from
        self.errors: list[str] = []
        self.partitions: set[tuple[str, str]] = set()  # host-host / host-storage
        # host agents (sim/agents.py): the storage heartbeat as its own channel
        self.agents = SimAgents(scenario.agent, self.cluster, self.clock, self.cut) \
            if scenario.agent is not None else None
        self.break_fencing = break_fencing
        self.nodes: Controllers | None = None
        # leadership changes (several controllers): {"t", "node", "epoch", "change"} and, for a
        # leader that stopped, "acted_until" (its deadline or the instant it stopped)
        self.leaders: list[dict[str, Any]] = []
        self.leader_listeners: list[Callable[[str], None]] = []
        if scenario.controllers >= 2:
            self.nodes = Controllers(self, scenario.controllers)
        else:
            self._build_controller()

    # -- the controller generations --------------------------------------------------------------
    def _build_controller(self) -> None:
        self.lock = MemoryLock()  # dies with the process
        self.controller = Controller(
            self.store, self.clock, {"sim": SimHypervisor(self.cluster)}, self.settings,
            datastore_root="/sim/datastores", hook_executor=self.executor,
            heartbeats=self.agents.storage if self.agents is not None else None,
        )
        self.controller.journal.listeners.append(self._on_journal)
        self.api = self.api_for(self.controller)

    def api_for(self, controller: Controller) -> LocalClient:
        dispatcher = build_dispatcher(controller, Authenticator(self.store.user_by_name))
        return LocalClient(dispatcher, f"oneadmin:{PASSWORD}")

    def leader_changed(self, node: Node | None, deposed: Node | None = None) -> None:
        """Several controllers: `node` leads now (None: nobody, `deposed` stopped)."""
        if node is not None:
            assert node.controller is not None and node.api is not None
            self.controller = node.controller
            self.api = node.api
            self.lock = node.lock
            self.leaders.append({"t": self.now(), "node": node.name, "epoch": node.epoch,
                                 "change": "elected"})
            line = f"{node.name} leads (epoch {node.epoch})"
        else:
            assert deposed is not None
            until = deposed.acted_until - self.t0
            self.leaders.append({"t": self.now(), "node": deposed.name, "epoch": deposed.epoch,
                                 "change": "stopped", "acted_until": round(until, 3)})
            now_leading = self.nodes.leader() if self.nodes is not None else None
            line = (f"{deposed.name} stopped leading (epoch {deposed.epoch}; it stopped acting "
                    f"at t={until:.2f}); "
                    + (f"{now_leading.name} leads" if now_leading else "no leader"))
        for listener in self.leader_listeners:
            listener(line)

    async def crash(self, down: float) -> None:
        """Kill the controller's tasks abruptly; after `down` seconds start a new one."""
        self.crashes.append((self.clock.monotonic(), self.clock.monotonic() + down))
        self.down = True
        await self.controller.abort()
        await self.clock.sleep(down)
        self.generation += 1
        self._build_controller()
        await self.controller.start()
        self.down = False

    # -- observation -----------------------------------------------------------------------------
    def _on_sim(self, event: str, host: str, deploy_id: str | None) -> None:
        for listener in self.observers.sim:
            listener(event, host, deploy_id)

    def _on_journal(self, events: list[Event]) -> None:
        for listener in self.observers.journal:
            listener(events)

    def _observed_fencer(self, inner: Fencer) -> Fencer:
        async def run(host_xml: str) -> tuple[bool, str]:
            ok, output = await inner(host_xml)
            name = host_xml.split("<NAME>", 1)[1].split("</NAME>", 1)[0] if "<NAME>" in \
                host_xml else ""
            for listener in self.observers.fenced:
                listener(name, ok, output)
            return ok, output

        return run

    # -- helpers ---------------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def now(self) -> float:
        """Virtual seconds since the scenario's time zero."""
        return self.clock.monotonic() - self.t0

    def host_id(self, name: str) -> int:
        host = self.store.host_by_name(name)
        if host is None:
            raise sc.ScenarioError(f"no host {name}")
        return host.id

    def vm_id(self, name: str) -> int:
        for vm in self.store.vms(include_done=True):
            if vm.name == name:
                return vm.id
        raise sc.ScenarioError(f"no vm {name}")

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        async def poll() -> None:
            start = self.clock.monotonic()
            while not predicate():
                if self.clock.monotonic() - start > timeout:
                    raise sc.ScenarioError(f"setup: {what} not reached in {timeout:g} s")
                await self.clock.sleep(0.25)

        self.run(poll())

    # -- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        s = self.scenario
        if self.nodes is not None:
            self.run(self.nodes.start())  # the first leader builds and starts its controller
        c = self.controller
        ds_ids: dict[str, int] = {"system": 0}
        for ds in s.datastores:
            text = f'NAME = "{ds.name}"\nTYPE = "SYSTEM_DS"\nTM_MAD = "{ds.tm_mad}"'
            if ds.shared is not None:
                text += f'\nSHARED = "{"YES" if ds.shared else "NO"}"'
            ds_ids[ds.name] = c.inventory.allocate_datastore(Template.parse(text))
        if s.hook:
            self._register_hook()
        for h in s.hosts:
            self.cluster.add_host(h.name, h.cpu, h.memory * 1024)
            host_id = c.inventory.allocate_host(h.name, "sim", "sim")
            if h.fence:
                fence = f'FENCE = [ AGENT = "fence_sim", PLUG = "{h.name}" ]'
                c.inventory.update_host(host_id, Template.parse(fence), True)
        if self.nodes is None:
            self.run(c.start())
        self.wait_for(
            lambda: all(h.state is HostState.MONITORED for h in self.store.hosts()),
            60, "all hosts MONITORED",
        )
        if self.agents is not None:
            self.run(self._start_agents())
        self._create_vms(ds_ids)
        self.t0 = self.clock.monotonic()

    async def _start_agents(self) -> None:
        assert self.agents is not None
        self.agents.start([h.name for h in self.scenario.hosts])
        await self.clock.sleep(3 * (self.scenario.agent.period if self.scenario.agent else 1))

    def cut(self, a: str, b: str) -> bool:
        """Is this pair of parties partitioned (host-storage, controller-storage, ...)?"""
        return (min(a, b), max(a, b)) in self.partitions

    def _register_hook(self) -> None:
        template = Template.parse(error_hook_text())
        template.set("ARGUMENTS", self.scenario.hook_arguments)
        if self.scenario.hook_timeout:
            template.set("TIMEOUT", str(int(self.scenario.hook_timeout)))
        assert self.controller.hooks is not None
        self.controller.hooks.allocate(template)

    def _create_vms(self, ds_ids: dict[str, int]) -> None:
        self.run(self._create_vms_async(ds_ids))

    async def _create_vms_async(self, ds_ids: dict[str, int]) -> None:
        """On the loop, as the API calls the lifecycle in production (it starts driver tasks)."""
        lc = self.controller.lifecycle
        wanted: dict[int, str] = {}
        for spec in self.scenario.vms:
            for name in spec.names():
                extra = f'HA_PRIORITY = "{spec.priority}"\n' + ("" if spec.ha else 'HA = "NO"\n')
                text = f'NAME = "{name}"\nCPU = {spec.cpu}\nMEMORY = {spec.memory}\n{extra}'
                hold = bool(spec.host) or spec.state == "HOLD"
                vm_id = lc.allocate(Template.parse(text), hold=hold)
                if spec.host:
                    ds = ds_ids.get(spec.datastore or "system")
                    if ds is None:
                        raise sc.ScenarioError(f"vm {name}: unknown datastore {spec.datastore}")
                    lc.deploy(vm_id, self.host_id(spec.host), False, ds)
                wanted[vm_id] = spec.state
        start = self.clock.monotonic()
        running = [i for i, st in wanted.items() if st not in ("HOLD", "PENDING")]
        while not all(
            (self.store.vm(i).state, self.store.vm(i).lcm_state)
            == (VmState.ACTIVE, LcmState.RUNNING) for i in running
        ):
            if self.clock.monotonic() - start > 120:
                raise sc.ScenarioError("setup: VMs not RUNNING within 120 s (capacity?)")
            await self.clock.sleep(0.25)
        for vm_id, state in wanted.items():
            if state == "POWEROFF":
                lc.action("poweroff", vm_id)
            elif state == "SUSPENDED":
                lc.action("suspend", vm_id)
        await lc.idle()

    # -- events ----------------------------------------------------------------------------------
    async def apply(self, e: sc.Event) -> None:
        for listener in self.observers.faults:
            listener(e)
        cl = self.cluster
        a = e.action
        if a == "power_off":
            cl.power_off(e.host)
        elif a == "power_on":
            cl.power_on(e.host)
        elif a == "network_cut":
            cl.cut_network(e.host)
        elif a == "network_restore":
            cl.restore_network(e.host)
        elif a in ("partition", "heal"):
            self._partition(e.parties, a == "partition")
        elif a == "hang":
            cl.hang(e.host)
        elif a == "unhang":
            cl.unhang(e.host)
        elif a == "fence_fault":
            fault = SimFault(delay=e.delay or 30.0) if e.fault == "slow" else FAULTS[e.fault]
            self.runner.set_fault(e.host, fault)
        elif a == "vm_crash":
            cl.crash_vm(deploy_id_for(self.vm_id(e.vm)), gone=e.gone, kind=e.kind or "crashed")
        elif a == "storage_fail":
            cl.fail_storage(e.host)
        elif a == "storage_restore":
            cl.restore_storage(e.host)
        elif a == "capacity":
            host = cl.host(e.host)
            cl.set_capacity(e.host, e.cpu or host.cpu, (e.memory * 1024) or host.memory_kib)
        elif a == "fail_next":
            cl.fail_next(e.host, e.op, e.permanent, e.count)
        elif a == "controller_crash" and self.nodes is not None:
            self.crashes.append((self.clock.monotonic(), self.clock.monotonic() + e.down))
            await self.nodes.crash(e.controller, e.down)
        elif a == "controller_crash":
            await self.crash(e.down)
        elif a in ("controller_freeze", "coordination_cut"):
            assert self.nodes is not None  # scenario.check: controllers >= 2
            self.crashes.append((self.clock.monotonic(), self.clock.monotonic() + e.down))
            act = self.nodes.freeze if a == "controller_freeze" else self.nodes.cut
            await act(e.controller, e.down)
        elif a == "store_fault":
            self.store_faults.append((self.clock.monotonic(), self.clock.monotonic() + e.down))
            self.store.refuse_writes(True)
            self.loop.call_later(e.down, self.store.refuse_writes, False)
        elif a == "api":
            self._api(e)

    def _partition(self, parties: list[str], cut: bool) -> None:
        """controller<->host is what the controller sees (the host's network); host<->storage
        and controller<->storage cut the heartbeat channel of the host agents (sim/agents.py);
        host<->host only the oracles and the timeline see."""
        a, b = [*parties, "", ""][:2]
        for one, other in ((a, b), (b, a)):
            if one == "controller" and other in self.cluster.hosts:
                (self.cluster.cut_network if cut else self.cluster.restore_network)(other)
                return
        pair = (min(a, b), max(a, b))
        if cut:
            self.partitions.add(pair)
        else:
            self.partitions.discard(pair)

    def _api(self, e: sc.Event) -> None:
        params: list[Any] = []
        for p in e.params:
            if isinstance(p, str) and p.startswith("vm:"):
                params.append(self.vm_id(p[3:]))
            elif isinstance(p, str) and p.startswith("host:"):
                params.append(self.host_id(p[5:]))
            else:
                params.append(p)
        try:
            self.api.call(e.method, *params)
        except Exception as exc:
            if not e.expect_error:
                self.errors.append(f"t={self.now():.1f} {e.method}{tuple(params)}: {exc}")

    def close(self) -> None:
        async def stop() -> None:
            if self.nodes is not None:
                await self.nodes.close()
            elif not self.down:
                await self.controller.stop()
            current = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not current]
            for task in rest:  # scheduled events, crashed generations' leftovers
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.run(stop())
        finally:
            self.loop.close()
            self.store.close()
