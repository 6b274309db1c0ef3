"""Run one scenario: build the world, inject its events, check oracles and expectations.

    result = run_scenario(load(Path("tests/scenarios/power-loss-migrate.toml")), seed=1)
    result.ok, result.violations, result.failures, result.timeline.render_text()

Deterministic: the same scenario and seed give the same timeline (virtual time, one loop,
no wall clock, seeded random.Random for the optional event jitter). Used by the CLI
(`lazarus sim run`), the scenario suite and the fuzzer.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
from dataclasses import dataclass, field
from typing import Any

from lazarus.domain.states import HostState, VmState
from lazarus.ha.incident import Incident

from . import scenario as sc
from .oracles import FAILURES, Oracles, Violation
from .timeline import Timeline
from .world import World


@dataclass
class RunResult:
    scenario: str
    seed: int
    violations: list[Violation] = field(default_factory=list)  # unexpected ones
    expected: list[Violation] = field(default_factory=list)  # ones the scenario asked for
    failures: list[str] = field(default_factory=list)  # unmet expectations, event errors
    timeline: Timeline | None = None
    virtual_seconds: float = 0.0
    leadership: list[dict[str, Any]] = field(default_factory=list)  # several controllers

    @property
    def ok(self) -> bool:
        return not self.violations and not self.failures

    def summary(self) -> str:
        state = "ok" if self.ok else "FAILED"
        return (f"{self.scenario} (seed {self.seed}): {state}, {len(self.violations)} "
                f"violation(s), {len(self.failures)} failed expectation(s), "
                f"{self.virtual_seconds:.0f} virtual s")

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "ok": self.ok,
            "violations": [v.__dict__ for v in self.violations],
            "expected_violations": [v.__dict__ for v in self.expected],
            "failures": self.failures,
            "virtual_seconds": self.virtual_seconds,
            **({"leadership": self.leadership} if self.leadership else {}),
            **(self.timeline.to_json() if self.timeline is not None else {}),
        }


def _schedule(world: World, events: list[sc.Event], seed: int, jitter: float) -> float:
    rng = random.Random(seed)
    loop = world.loop
    last = 0.0
    for e in sorted(events, key=lambda ev: ev.at):
        at = e.at + (rng.uniform(0.0, jitter) if jitter else 0.0)
        last = max(last, at)

        def fire(ev: sc.Event = e) -> None:
            loop.create_task(_apply(world, ev))

        loop.call_at(world.t0 + at, fire)
    return last


async def _apply(world: World, e: sc.Event) -> None:
    try:
        await world.apply(e)
    except Exception as exc:  # a scenario that asks for the impossible: a failure, not a crash
        world.errors.append(f"t={world.now():.1f} {e.describe()}: {type(exc).__name__}: {exc}")


def _end(s: sc.Scenario) -> float:
    end = s.duration
    deadline = s.expect.recovery_deadline
    outages = ("controller_crash", "controller_freeze", "coordination_cut")
    down = sum(e.down for e in s.events if e.action in outages)
    crashes = any(e.action in outages for e in s.events)
    for e in s.events:
        if e.action in FAILURES or e.action == "partition":
            end = max(end, e.at + deadline * (2 if crashes else 1) + down + 1.0)
    return end


def run_scenario(
    scenario: sc.Scenario, seed: int = 0, *, break_fencing: bool = False
) -> RunResult:
    world = World(scenario, break_fencing=break_fencing)
    result = RunResult(scenario.name, seed)
    try:
        world.setup()
        oracles = Oracles(world)
        timeline = Timeline(world)
        result.timeline = timeline
        _schedule(world, scenario.events, seed, scenario.jitter)
        end = _end(scenario)
        world.run(asyncio.sleep(end))
        if world.down:  # a crash still "down" at the end: let the new controller come up
            world.run(asyncio.sleep(max(e.down for e in scenario.events) + 1.0))
        oracles.finish()
        result.virtual_seconds = world.now()
        result.leadership = list(world.leaders)
        wanted = set(scenario.expect.violations)
        enabled = set(scenario.expect.oracles) | wanted
        for v in oracles.violations:
            if v.oracle in wanted:
                result.expected.append(v)
            elif v.oracle in enabled:
                result.violations.append(v)
        fired = {v.oracle for v in result.expected}
        result.failures += [f"expected a {name} violation; none seen" for name in
                            sorted(wanted - fired)]
        result.failures += world.errors
        result.failures += check_expectations(world, timeline)
        for v in result.violations:
            timeline.add("oracle", v.line())
    except sc.ScenarioError as exc:
        result.failures.append(str(exc))
    finally:
        world.close()
    return result


def _state_matches(want: str, state: VmState, lcm: str) -> bool:
    return want.upper() in (state.name, lcm, f"{state.name}/{lcm}")


def check_expectations(world: World, timeline: Timeline) -> list[str]:
    exp = world.scenario.expect
    store = world.store
    failures: list[str] = []
    vms = store.vms(include_done=True)
    for want in exp.vms:
        pattern = str(want.get("name", "*"))
        matched = [vm for vm in vms if fnmatch.fnmatchcase(vm.name, pattern)]
        if not matched:
            failures.append(f"expect.vms: no VM matches {pattern}")
        for vm in matched:
            last = vm.last
            host = last.hostname if last is not None else ""
            if "state" in want and not _state_matches(str(want["state"]), vm.state,
                                                      vm.lcm_state.name):
                failures.append(f"vm {vm.name}: state {vm.state.name}/{vm.lcm_state.name}, "
                                f"expected {want['state']}")
            if "host" in want and host != want["host"]:
                failures.append(f"vm {vm.name}: on {host or 'no host'}, expected {want['host']}")
            if "not_host" in want and host == want["not_host"]:
                failures.append(f"vm {vm.name}: still on {host}")
            if want.get("running_once") and len(world.cluster.running_hosts(vm.id)) != 1:
                failures.append(f"vm {vm.name}: running on {world.cluster.running_hosts(vm.id)}")
    for want_host in exp.hosts:
        want = want_host
        name = str(want["name"])
        found = store.host_by_name(name)
        if found is None:
            failures.append(f"expect.hosts: no host {name}")
            continue
        sh = found
        if "state" in want and sh.state is not HostState[str(want["state"]).upper()]:
            failures.append(f"host {name}: {sh.state.name}, expected {want['state']}")
        if "power" in want and world.cluster.power_state(name) != want["power"]:
            failures.append(f"host {name}: power {world.cluster.power_state(name)}, "
                            f"expected {want['power']}")
        if "incident" in want:
            incident = Incident.from_template(sh.template)
            got = incident.state if incident is not None else "none"
            if got != want["incident"]:
                failures.append(f"host {name}: incident {got}, expected {want['incident']}")
    hook_lines = [line for _, source, line in timeline.log if source == "hook"]
    for text in exp.log:
        if not any(text in line for line in hook_lines):
            failures.append(f"expect.log: no host_error line contains {text!r}")
    for text in exp.no_log:
        if any(text in line for line in hook_lines):
            failures.append(f"expect.no_log: a host_error line contains {text!r}")
    offs = {plug for action, plug in world.runner.calls if action == "off"}
    for name in exp.fenced:
        if name not in offs:
            failures.append(f"expect.fenced: {name} was never fenced")
    for name in exp.not_fenced:
        if name in offs:
            failures.append(f"expect.not_fenced: {name} was fenced")
    return failures
