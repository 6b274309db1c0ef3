"""HA work against an API write flood on the controller's loop (app/runtime.py); not a test:
prints figures, asserts nothing.

    .venv/bin/python bench/bench_lanes.py [--clients 50] [--vms 100] [--reps 3]

A model of issue 20's finding (failover of a 100-VM host: 11 s idle, 41 s under a 50-client
API load), in one process, no network: a real asyncio loop in its own thread with the real
`Runtime`, and
* the failover: `--vms` loop tasks, each 5 driver steps of 0.3 ms CPU then a 2 ms wait (the
  VM life cycle), and an "ft/host_error" thread making one `runtime.call` per VM (0.2 ms of
  work on the loop, 0.5 ms of its own between calls);
* the load: `--clients` threads, each in a loop: 1 ms of CPU in its own thread (parsing and
  rendering XML, holding the GIL), then one `runtime.call` of 0.5 ms (a journal write).
It reports the seconds from the start of the failover to its last step and call, idle and
under load, for the old bridge (one loop callback per call in arrival order, every handler
at once: `--legacy` settings) and the lanes (HA first, one API write per loop turn, four API
handlers at once). Bounded: each run stops when the failover ends or after 120 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

from lazarus.api.xmlrpc import call_lane
from lazarus.app.runtime import Runtime


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def run(vms: int, clients: int, legacy: bool) -> float:
    loop = asyncio.new_event_loop()
    # legacy: every queued write in one go, no handler bound, no HA lane
    big = 1_000_000
    rt = Runtime(loop, api_per_turn=big, api_workers=big) if legacy else Runtime(loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    loop.call_soon_threadsafe(rt.bind)
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with rt.admit(""):
                spin(0.001)
                rt.call(lambda: spin(0.0005))

    load = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in load:
        t.start()
    if clients:
        time.sleep(0.5)  # let the load settle

    async def vm_steps() -> None:
        for _ in range(5):
            spin(0.0003)
            await asyncio.sleep(0.002)

    async def failover() -> None:
        await asyncio.gather(*(vm_steps() for _ in range(vms)))

    def host_error() -> None:
        call_lane.set("" if legacy else "ha")
        for _ in range(vms):
            with rt.admit("" if legacy else "ha"):
                rt.call(lambda: spin(0.0002))
            spin(0.0005)

    start = time.perf_counter()
    steps = asyncio.run_coroutine_threadsafe(failover(), loop)
    caller = threading.Thread(target=host_error, daemon=True)
    caller.start()
    steps.result(120)
    caller.join(120)
    took = time.perf_counter() - start
    stop.set()
    for t in load:
        t.join(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for legacy in (True, False):
        name = "old bridge" if legacy else "lanes     "
        for clients in (0, args.clients):
            times = [run(args.vms, clients, legacy) for _ in range(args.reps)]
            print(f"{name} clients={clients:3d}: failover {statistics.median(times):6.3f} s "
                  f"(median of {args.reps}: {', '.join(f'{t:.3f}' for t in times)})")


if __name__ == "__main__":
    main()
