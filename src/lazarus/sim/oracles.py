"""Invariant oracles, checked at every virtual instant against the simulated ground truth.

Fed by the World's observers (SimCluster listener, journal listener, fence runner, host_error
runs, scenario faults). Each violation names its oracle:

    split_brain     a VM's domain RUNNING on two hosts at once
    unfenced_start  a VM started on another host while its old host, unreachable, still had
                    power since the VM last started there, with no operator confirmation
                    (lazarus.host.fenced) and no -u for that host
    recovery        an HA VM that was RUNNING on a host that then failed (and went to ERROR)
                    is not RUNNING, on exactly one host, `recovery_deadline` seconds after
                    the fault; excused when recovery is not owed (delete mode, -m on a
                    non-shared datastore, the fence failed, a mass failure, no capacity, the
                    VM crashed or an operator acted on it, its new host failed too)
    mass_fence      a fence device told "off" while more than the mass-failure share of the
                    cluster's hosts are in ERROR
    fence_rate      more than `max_fences_per_host_hour` fences of one host within an hour
    hook_lost       a HOST => ERROR event that got no host_error execution (checked at the end)
    accounting      a host's VMS / CPU_USAGE / MEM_USAGE / RUNNING_VMS differ from the VMs
                    placed on it (checked at the end)
    false_error     a host went to ERROR although it had been powered, reachable and
                    answering for longer than detection takes (a store fault, a controller
                    crash or a bug must never make a healthy host look dead)
    vm_ha_*         VM HA's budget, host and operator rules (sim/vm_ha_oracles.py)
    one_actor       several controllers: a side effect (a driver call that changes a domain,
                    a fence, a hook run) from a controller that is not acting as the leader:
                    its own lease deadline passed, or its epoch is not the store's (a newer
                    leader took over)

Used by sim/runner.py; the runner also checks the scenario's final-state expectations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lazarus.core.restarts import recovering
from lazarus.domain.entities import Event, EventKind, ObjType
from lazarus.domain.errors import NoExistsError
from lazarus.domain.hooks import RUNNING as JOB_RUNNING
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.ha.host_error import Options, UsageError, parse_args
from lazarus.ports.fence import AgentResult
from lazarus.ports.hypervisor import DomainState

from . import scenario as sc
from .controllers import Node
from .vm_ha_oracles import VmHaOracles
from .world import World

FAILURES = ("power_off", "network_cut", "hang")
_STARTS = ("started", "resumed", "migrated_in")
_WAITING = {LcmState.UNKNOWN, LcmState.LCM_INIT, LcmState.PROLOG, LcmState.BOOT,
            LcmState.PROLOG_MIGRATE_UNKNOWN}


@dataclass(frozen=True)
class Violation:
    oracle: str
    at: float  # virtual seconds since the scenario's time zero
    message: str

    def line(self) -> str:
        return f"[{self.oracle}] t={self.at:.1f}: {self.message}"


def hook_options(arguments: str) -> Options:
    """The host_error options of the scenario's hook (defaults when they do not parse)."""
    try:
        return parse_args(["x", *arguments.replace("$TEMPLATE", "").split()])[1]
    except UsageError:
        return Options()


@dataclass
class _Owed:
    host: str
    host_id: int
    fault: str
    t0: float  # monotonic
    vms: list[int]
    extended: bool = False
    follow: bool = False  # a re-check of a VM excused for a passing reason: no ERROR check
    room_seen: bool = False  # at the previous check there was room for the (waiting) VM


@dataclass
class Oracles:
    world: World
    violations: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        w = self.world
        s = w.scenario
        self.options = hook_options(s.hook_arguments)
        self.max_fences = s.expect.max_fences_per_host_hour
        self.last_start: dict[int, tuple[str, float]] = {}  # vm -> (host, when)
        self.power_lost: dict[str, float] = {}  # host -> last power_off instant
        self.cleared: dict[str, str] = {}  # host -> why a start elsewhere is allowed
        self.fences: dict[str, list[float]] = {}
        self.fence_log: dict[str, list[tuple[float, bool]]] = {}  # host -> (when, proven off)
        self.error_events: list[tuple[int, int]] = []  # (event id, host id)
        self.entered_error: dict[int, list[float]] = {}
        self.executed: set[int] = set()  # event ids host_error ran for
        self.hook_ends: dict[int, list[tuple[float, int]]] = {}  # host id -> (when, exit code)
        self.mass_at: list[float] = []  # instants the ERROR share exceeded the guard
        self.crashed_vms: set[str] = set()
        self.ran_at: dict[int, float] = {}  # vm -> when the store last said ACTIVE/RUNNING
        self.troubled: dict[str, float] = {}  # host -> last instant a fault touched it
        self.touched_at: dict[str, list[float]] = {}  # host -> every instant a fault touched it
        st = w.settings
        self.detection = (st.monitoring_interval_host + (st.monitor_failures + 1)
                          * (st.probe_timeout + st.retry_interval) + 1.0)
        self.touched_vms: set[str] = set()
        self.owed: list[_Owed] = []
        for name, host in w.cluster.hosts.items():  # what already runs when the oracles start
            for dom in host.domains.values():
                if dom.vm_id is not None and name in w.cluster.running_hosts(dom.vm_id):
                    self.last_start[dom.vm_id] = (name, w.clock.monotonic())
        w.observers.sim.append(self.on_sim)
        w.observers.journal.append(self.on_journal)
        w.observers.fence.append(self.on_agent)
        w.observers.fenced.append(self.on_fenced)
        w.observers.runs.append(self)
        w.observers.faults.append(self.on_fault)
        self.vm_ha = VmHaOracles(w, self.flag)  # vm_ha_budget, vm_ha_host, vm_ha_operator
        if w.nodes is not None:
            w.nodes.effects.append(self.on_effect)

    def on_effect(self, node: Node, kind: str, what: str) -> None:
        assert self.world.nodes is not None
        stored = self.world.nodes.stored_epoch()
        if not node.acting() or node.epoch != stored:
            why = ("its lease deadline passed" if node.epoch == stored
                   else f"its epoch {node.epoch} is not the store's {stored}")
            self.flag("one_actor", f"{kind} {what} by {node.name}, which is not the leader "
                                   f"({why})")

    def flag(self, oracle: str, message: str) -> None:
        self.violations.append(Violation(oracle, round(self.world.now(), 3), message))

    # -- ground truth ----------------------------------------------------------------------------
    def on_sim(self, event: str, host: str, deploy_id: str | None) -> None:
        now = self.world.clock.monotonic()
        if event == "power_off":
            self.power_lost[host] = now
            return
        if event not in _STARTS or deploy_id is None or not deploy_id.startswith("one-"):
            return
        vm_id = int(deploy_id[4:])
        cluster = self.world.cluster
        running = cluster.running_hosts(vm_id)
        if len(running) > 1:
            self.flag("split_brain", f"vm {vm_id} runs on {', '.join(running)}")
        previous = self.last_start.get(vm_id)
        if previous is not None and previous[0] != host and event != "migrated_in":
            old, since = previous
            old_host = cluster.host(old)
            powered_since = old_host.powered and self.power_lost.get(old, -1.0) < since
            old_dom = old_host.domains.get(deploy_id)
            still_there = old_dom is not None and old_dom.state is not DomainState.POWEROFF
            if (not cluster.reachable(old) and powered_since and still_there
                    and old not in self.cleared):
                self.flag(
                    "unfenced_start",
                    f"vm {vm_id} started on {host} while {old} (unreachable) was never "
                    "powered off since the VM started there",
                )
        self.last_start[vm_id] = (host, now)

    # -- the controller's record -----------------------------------------------------------------
    def on_journal(self, events: list[Event]) -> None:
        store = self.world.store
        for event in events:
            if event.kind == EventKind.STATE and event.obj == ObjType.VM and (
                event.lcm_state == "RUNNING" and self.world.cluster.running_hosts(event.obj_id)
            ):  # the record says RUNNING and the domain does run somewhere
                self.ran_at[event.obj_id] = self.world.clock.monotonic()
            if event.kind == EventKind.STATE and event.obj == ObjType.HOST:
                name = store.host(event.obj_id).name
                if event.state == "ERROR":
                    self._false_error(name)
                    self.error_events.append((event.id, event.obj_id))
                    self.entered_error.setdefault(event.obj_id, []).append(
                        self.world.clock.monotonic())
                elif event.state == "MONITORED":
                    self.cleared.pop(name, None)
                self._mass_share()
            elif event.kind == EventKind.FENCE_CONFIRMED:
                self.cleared[store.host(event.obj_id).name] = "confirmed by an operator"

    def _false_error(self, name: str) -> None:
        cluster = self.world.cluster
        host = cluster.hosts.get(name)
        if host is None or not host.powered or host.hung or not cluster.reachable(name):
            return
        quiet = self.world.clock.monotonic() - self.troubled.get(name, -1e18)
        if quiet > self.detection:
            self.flag("false_error", f"{name} went to ERROR although it has been powered, "
                                     f"reachable and answering for {min(quiet, 1e9):.0f} s")

    def _error_share(self, failing: bool = False) -> float:
        """The share of (not OFFLINE) hosts in ERROR; with `failing`, also those whose last
        probes failed (MONITOR_FAILURES), as the mass-failure guard counts them."""
        hosts = [h for h in self.world.store.hosts() if h.state is not HostState.OFFLINE]
        failed = sum(1 for h in hosts if h.state is HostState.ERROR or (
            failing and h.template.get_int("MONITOR_FAILURES", 0) > 0))
        return failed / len(hosts) if hosts else 0.0

    def _ignores_mass_failure(self, name: str) -> bool:
        for host in self.world.store.hosts():
            if host.name == name:
                flag = (host.template.get("HA_IGNORE_MASS_FAILURE") or "").strip().upper()
                return flag in ("YES", "TRUE", "1")
        return False

    def _mass_share(self) -> None:
        if self._error_share(failing=True) > self.options.mass_failure_share:
            self.mass_at.append(self.world.clock.monotonic())

    # -- fencing and host_error ------------------------------------------------------------------
    def on_agent(self, plug: str, action: str, result: AgentResult) -> None:
        if action != "off-start" or self.options.ignore_mass_failure:
            return
        if self._ignores_mass_failure(plug):
            return  # the documented per-host override: the operator said it really is down
        share = self._error_share()
        if share > self.options.mass_failure_share:
            self.flag("mass_fence", f"fence off for {plug} while {share:.0%} of the hosts are "
                                    f"in ERROR (guard {self.options.mass_failure_share:.0%})")

    def on_fenced(self, host: str, ok: bool, output: str) -> None:
        now = self.world.clock.monotonic()
        self.fence_log.setdefault(host, []).append((now, ok))
        times = [t for t in self.fences.get(host, []) if t > now - 3600.0] + [now]
        self.fences[host] = times
        if len(times) > self.max_fences:
            self.flag("fence_rate", f"{host} fenced {len(times)} times within an hour "
                                    f"(at most {self.max_fences})")

    def hook_started(self, host_id: int, options: Options, event_id: int) -> None:
        self.executed.add(event_id)
        if not options.fencing:
            self.cleared[self.world.store.host(host_id).name] = "-u (no fencing)"

    def hook_line(self, host_id: int, line: str) -> None:
        pass

    def hook_finished(self, host_id: int, code: int, lines: list[str]) -> None:
        self.hook_ends.setdefault(host_id, []).append((self.world.clock.monotonic(), code))

    # -- recovery deadlines ----------------------------------------------------------------------
    def on_fault(self, e: sc.Event) -> None:
        now = self.world.clock.monotonic()
        for name in [e.host, *e.parties]:
            if name in self.world.cluster.hosts:
                self.troubled[name] = now  # a fault or its repair: detection may follow
                self.touched_at.setdefault(name, []).append(now)
        if e.action == "vm_crash":
            self.crashed_vms.add(e.vm)
        for p in e.params:
            if isinstance(p, str) and p.startswith("vm:"):
                self.touched_vms.add(p[3:])
        host = e.host
        if e.action == "partition" and "controller" in e.parties:
            host = next((p for p in e.parties if p != "controller"), "")
        elif e.action not in FAILURES:
            return
        deadline = self.world.scenario.expect.recovery_deadline
        if not deadline or not self.world.scenario.hook or self.options.mode == "delete":
            return
        try:
            host_id = self.world.host_id(host)
        except sc.ScenarioError:
            return
        vms = [
            vm.id for vm in self.world.store.vms(host_id=host_id, states=[VmState.ACTIVE])
            if vm.lcm_state is LcmState.RUNNING and vm.host_id == host_id
            and (vm.user_template.get("HA") or "").upper() not in ("NO", "FALSE", "0", "OFF")
        ]
        if not vms:
            return
        owed = _Owed(host, host_id, e.action, self.world.clock.monotonic(), vms)
        self.owed.append(owed)
        self.world.loop.call_later(deadline, self._check, owed)

    def _check(self, owed: _Owed) -> None:
        w = self.world
        now = w.clock.monotonic()
        if not owed.extended and (w.down or any(c[0] >= owed.t0 for c in w.crashes) or any(
            until >= owed.t0 for _, until in w.store_faults
        )):
            owed.extended = True  # a restart or a store fault costs a cycle: one more deadline
            w.loop.call_later(w.scenario.expect.recovery_deadline, self._check, owed)
            return
        if w.down:
            return
        if not owed.follow and not self._caused_error(owed):
            return  # never in ERROR: no HA incident (a blip, a power cycle before detection)
        for vm_id in owed.vms:
            why, later = self._unrecovered(owed, vm_id, now)
            if why:
                self.flag("recovery", f"vm {vm_id} {why} {now - owed.t0:.0f} s after "
                                      f"{owed.fault} {owed.host}")
            elif later:
                # Excused for a passing reason: the obligation follows the VM until it runs
                # somewhere or a reason an operator can see stops it.
                again = _Owed(owed.host, owed.host_id, owed.fault, owed.t0, [vm_id],
                              extended=True, follow=True, room_seen=later == "room")
                w.loop.call_later(w.scenario.expect.recovery_deadline, self._check, again)

    def _caused_error(self, owed: _Owed) -> bool:
        """The host went to ERROR during this fault's episode: before the next fault or
        repair touching it (and the probes in flight then) ended the episode. A later
        failure of the same host is its own incident, with its own obligation."""
        later = [t for t in self.touched_at.get(owed.host, []) if t > owed.t0]
        st = self.world.settings
        end = (later[0] + st.probe_timeout + 2 * st.retry_interval) if later else float("inf")
        return any(owed.t0 <= t <= end for t in self.entered_error.get(owed.host_id, []))

    def _unrecovered(self, owed: _Owed, vm_id: int, now: float) -> tuple[str, str]:
        """('', '') when the VM is fine or excused for good; ('', reason) when excused for a
        passing reason (check again later); (what is wrong, '') otherwise."""
        w = self.world
        try:
            vm = w.store.vm(vm_id)
        except NoExistsError:
            return "", ""
        running = w.cluster.running_hosts(vm_id)
        if (vm.state, vm.lcm_state) == (VmState.ACTIVE, LcmState.RUNNING) and running:
            return "", ""  # (running twice is split_brain's to report)
        if vm.name in self.crashed_vms or vm.name in self.touched_vms:
            return "", ""
        if vm.state is VmState.DONE:
            return "", ""
        if self.ran_at.get(vm_id, -1.0) > owed.t0:
            return "", ""  # it ran again after this fault: a later failure owes it now
        started = self.last_start.get(vm_id)
        if started is not None and started[0] != owed.host and (
            self.power_lost.get(started[0], -1.0) >= started[1]
        ):
            return "", ""  # recovered, then its new host lost power: that failure owes it now
        deadline = w.scenario.expect.recovery_deadline
        fences = [(t, ok) for t, ok in self.fence_log.get(owed.host, []) if t >= owed.t0]
        if fences and not fences[-1][1]:
            return "", "fence"  # not proven off (operator-visible); an operator may retry
        if fences and now - fences[-1][0] < deadline:
            return "", "fence"  # proven off late (a slow or retried fence): a deadline from then
        if not any(ok for _, ok in fences) and owed.host not in self.cleared:
            ends = [code for t, code in self.hook_ends.get(owed.host_id, []) if t >= owed.t0]
            if ends and ends[-1] != 0:
                return "", "fence"  # never proven off and host_error failed, saying why
        if any(t >= owed.t0 for t in self.mass_at) and not self._ignores_mass_failure(owed.host):
            return "", ""  # the guard stopped host_error: an operator decides
        if self.options.mode == "migrate" and vm.last is not None:
            ds = w.store.datastore(vm.last.ds_id)
            if (ds.template.get("SHARED") or "").upper() != "YES":
                return "", ""
        home = self.last_start.get(vm_id)
        if (vm.state is VmState.POWEROFF and home is not None and home[0] == owed.host
                and self.power_lost.get(owed.host, -1.0) >= home[1]
                and not vm.resched and not recovering(vm)):
            return "", ""  # died with the power; its host came back before a recovery began
        record = vm.template.vectors("HA_RECOVERY")
        if record and (record[-1].get("STATE") or "") == "GAVE_UP":
            return "", ""  # the restart policy's limits ran out: said in the VM and its event
        current = vm.host_id
        if current is not None and current != owed.host_id:
            host = w.store.host(current)
            if host.state is not HostState.MONITORED or not w.cluster.reachable(host.name):
                return "", "host"  # its new host failed too: follow the VM there
        waiting = vm.state is VmState.PENDING or (
            vm.state is VmState.ACTIVE and vm.lcm_state in _WAITING)
        if waiting and not self._capacity_for(vm.memory, vm.cpu, vm_id, owed.host):
            return "", "room"
        if waiting and not owed.room_seen and owed.follow:
            return "", "room"  # room appeared since the last check: one deadline to use it
        state = f"{vm.state.name}/{vm.lcm_state.name}"
        return f"is {state} (running on {running or 'no host'})", ""

    def _capacity_for(self, memory_kib: int, cpu: int, vm_id: int, failed: str) -> bool:
        """Some MONITORED, reachable host other than the failed one has room for the VM: its
        hardware less RESERVED_CPU/RESERVED_MEM less what the VMs placed there hold."""
        holding = (VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED)
        for host in self.world.store.hosts():
            if host.name == failed or host.state is not HostState.MONITORED:
                continue
            sim = self.world.cluster.hosts.get(host.name)
            if sim is None or not self.world.cluster.reachable(host.name) or not sim.powered:
                continue
            placed = [vm for vm in self.world.store.vms(host_id=host.id)
                      if vm.state in holding and vm.id != vm_id]
            free_mem = (sim.memory_kib - host.template.get_int("RESERVED_MEM", 0)
                        - sum(vm.memory for vm in placed))
            free_cpu = (sim.cpu - host.template.get_int("RESERVED_CPU", 0)
                        - sum(vm.cpu for vm in placed))
            if free_mem >= memory_kib and free_cpu >= cpu:
                return True
        return False

    # -- at the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        """Checks that need the whole run: every HOST => ERROR event got an execution; every
        host's capacity accounting equals a count of the VMs placed on it."""
        w = self.world
        self._accounting()
        hooks = w.store.hooks()
        if not hooks:
            return
        since = min(h.since_event for h in hooks)
        jobs = {j.event_id for j in w.store.hook_jobs()}
        running = {j.event_id for j in w.store.hook_jobs(JOB_RUNNING)}
        cursor = int(w.store.get_meta("hooks.cursor") or 0)
        for event_id, host_id in self.error_events:
            if event_id <= since or event_id > cursor:
                continue
            if event_id not in self.executed and event_id not in jobs | running:
                self.flag("hook_lost", f"HOST => ERROR event {event_id} of host {host_id} got "
                                       "no host_error execution")

    def _accounting(self) -> None:
        holding = (VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED)
        for host in self.world.store.hosts():
            placed = [vm for vm in self.world.store.vms(host_id=host.id) if vm.state in holding]
            want = (sorted(vm.id for vm in placed), sum(vm.cpu for vm in placed),
                    sum(vm.memory for vm in placed), len(placed))
            have = (sorted(host.vms), host.share.cpu_usage, host.share.mem_usage,
                    host.share.running_vms)
            if want != have:
                self.flag("accounting", f"host {host.name}: VMS, CPU, MEM, RUNNING_VMS are "
                                        f"{have}, the VMs placed there make {want}")
