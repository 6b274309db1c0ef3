"""Scale benchmark of the real controller in the simulator (not a timed test).

    .venv/bin/python bench/sim_scale.py                       # 2,000 hosts, 40,000 VMs, 1 h
    .venv/bin/python bench/sim_scale.py --hosts 200 --vms 4000 --minutes 10 --profile
    .venv/bin/python bench/sim_scale.py --store postgresql    # the same on a throwaway PostgreSQL

Builds the world directly (hosts through the inventory, VMs written RUNNING into the store and
defined on the simulated hosts: setup is not what is measured), registers the error hook
(host_error -m -p 2, in-process), then simulates `--minutes` of virtual time with a host power
failure every `--every` minutes, the first on a host with 100 VMs. Prints: wall time of the
simulated period, controller CPU per monitoring cycle (process CPU / (virtual s / interval)),
and the wall time from host_error's start to all 100 VMs of the first failed host placed and
to all RUNNING. --profile prints the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import pstats
import time

from lazarus.app import pgserver
from lazarus.core.placement import open_history, reaccount
from lazarus.domain.entities import VM
from lazarus.domain.states import HistoryAction, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.drivers.vmm.sim import SimDomain
from lazarus.ports.hypervisor import DomainState
from lazarus.sim.scenario import Event, HostSpec, Scenario
from lazarus.sim.world import World
from lazarus.store.postgres import PostgresStore


def build(hosts: int, vms: int, first_host_vms: int, store: object = None) -> World:
    scenario = Scenario(name="scale", hosts=[HostSpec(f"h{i}", cpu=6400, memory=262144)
                                             for i in range(hosts)])
    world = World(scenario, store=store)
    c = world.controller
    world._register_hook()
    for spec in scenario.hosts:
        world.cluster.add_host(spec.name, spec.cpu, spec.memory * 1024)
        host_id = c.inventory.allocate_host(spec.name, "sim", "sim")
        c.inventory.update_host(
            host_id, Template.parse(f'FENCE = [ AGENT = "fence_sim", PLUG = "{spec.name}" ]'),
            True)
    store = world.store
    all_hosts = store.hosts()
    ds = store.datastore(0)
    now = world.clock.now()
    per_host = [first_host_vms] + [0] * (hosts - 1)
    rest = vms - first_host_vms
    for i in range(rest):
        per_host[1 + i % (hosts - 1)] += 1
    with store.transaction() as tx:
        for host, count in zip(all_hosts, per_host, strict=True):
            sim = world.cluster.host(host.name)
            for _ in range(count):
                vm = tx.add_vm(VM(id=-1, name="", state=VmState.ACTIVE,
                                  lcm_state=LcmState.RUNNING,
                                  template=Template.parse("CPU = 0.1\nMEMORY = 512")))
                vm.name = f"vm{vm.id}"
                vm.deploy_id = f"one-{vm.id}"
                open_history(vm, host, ds, now, HistoryAction.DEPLOY)
                tx.save_vm(vm)
                dom = SimDomain(vm.deploy_id, vm.id, DomainState.RUNNING, 10, 512 * 1024)
                world.cluster._add(sim, dom, "defined")
            reaccount(tx, host.id)
    return world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--vms", type=int, default=40000)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=5.0, help="minutes between failures")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="SQLite in memory, or a throwaway PostgreSQL server (fsync on)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        store = None
        if args.store == "postgresql":
            server = stack.enter_context(pgserver.throwaway())
            server.create_database("scale")
            store = PostgresStore.open(server.conninfo("scale"))
            stack.callback(store.close)
        run(args, store)


def run(args: argparse.Namespace, store: object) -> None:
    t = time.perf_counter()
    world = build(args.hosts, args.vms, 100, store)
    print(f"store: {args.store}")
    print(f"setup: {args.hosts} hosts, {args.vms} VMs in {time.perf_counter() - t:.1f} s wall")
    world.run(world.controller.start())
    interval = world.settings.monitoring_interval_host
    marks: dict[str, float] = {}
    first = world.store.host_by_name("h0")
    assert first is not None
    first_vms = [vm.id for vm in world.store.vms(host_id=first.id)]

    class Watch:
        def hook_started(self, host_id: int, options: object, event_id: int) -> None:
            marks.setdefault(f"hook{host_id}", time.perf_counter())

        def hook_line(self, host_id: int, line: str) -> None:
            pass

        def hook_finished(self, host_id: int, code: int, lines: list[str]) -> None:
            marks.setdefault(f"done{host_id}", time.perf_counter())

    world.observers.runs.append(Watch())
    placed: set[int] = set()
    running: set[int] = set()
    watched = set(first_vms)

    def on_journal(events: list[object]) -> None:
        for e in events:
            obj_id = getattr(e, "obj_id", -1)
            if getattr(e, "obj", "") != "VM" or obj_id not in watched:
                continue
            lcm = getattr(e, "lcm_state", "")
            if lcm.startswith("PROLOG"):
                placed.add(obj_id)
                if len(placed) == len(watched):
                    marks.setdefault("placed", time.perf_counter())
            elif lcm == "RUNNING" and obj_id in placed:
                running.add(obj_id)
                if len(running) == len(watched):
                    marks.setdefault("running", time.perf_counter())

    world.observers.journal.append(on_journal)  # type: ignore[arg-type]
    world.t0 = world.clock.monotonic()
    failures = int(args.minutes // args.every)
    for n in range(failures):
        event = Event(at=30.0 + n * args.every * 60.0, action="power_off", host=f"h{n * 7}")
        world.loop.call_at(world.t0 + event.at,
                           lambda e=event: world.loop.create_task(world.apply(e)))
    profiler = cProfile.Profile() if args.profile else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    world.run(asyncio.sleep(args.minutes * 60.0))
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cycles = args.minutes * 60.0 / interval
    print(f"simulated {args.minutes:g} min ({failures} host failures): {wall:.1f} s wall, "
          f"{cpu:.1f} s CPU")
    print(f"controller CPU per monitoring cycle ({interval:g} s, {args.hosts} hosts): "
          f"{cpu / cycles * 1000:.0f} ms")
    hook = marks.get(f"hook{first.id}")
    if hook is not None and "placed" in marks:
        print(f"host with {len(first_vms)} VMs: host_error start -> all placed "
              f"{(marks['placed'] - hook) * 1000:.0f} ms wall; -> all RUNNING "
              f"{(marks.get('running', float('nan')) - hook) * 1000:.0f} ms wall")
    else:
        print(f"host with {len(first_vms)} VMs: not recovered within the run "
              f"(placed {len(placed)}, running {len(running)})")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    world.close()


if __name__ == "__main__":
    main()
