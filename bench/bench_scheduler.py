"""Placement of 1,000 pending VMs on 500 hosts with each policy (issue 3: well under 1 s).

    .venv/bin/python bench/bench_scheduler.py
Prints the median of 5 runs of core.scheduler.plan() per policy. No assertions.
"""

from __future__ import annotations

import statistics
import time

from lazarus.core.scheduler import POLICIES, plan
from lazarus.domain.entities import VM, Host, HostShare
from lazarus.domain.states import HostState
from lazarus.domain.template import Template


def main() -> None:
    hosts = [
        Host(id=i, name=f"n{i}", state=HostState.MONITORED,
             share=HostShare(total_cpu=3200, total_mem=64 << 20, cpu_usage=(i % 7) * 100,
                             free_cpu=3200 - (i % 7) * 100, running_vms=i % 7))
        for i in range(500)
    ]
    vms = [VM(id=i, name=f"v{i}", template=Template.parse("CPU=1\nMEMORY=1024"))
           for i in range(1000)]
    for policy in POLICIES:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            placed = plan(vms, hosts, policy, max_actions_per_host=8, max_actions_per_cycle=1000)
            times.append(time.perf_counter() - start)
        print(f"plan {len(vms)} VMs on {len(hosts)} hosts, {policy:8s}: "
              f"{statistics.median(times) * 1000:7.1f} ms (placed {len(placed)})")


if __name__ == "__main__":
    main()
