"""`make bench`: the benchmarks that need neither root nor the lab, one after another.

    .venv/bin/python bench/run_all.py [--quick]

Runs each in its own process with this interpreter and prints, before each, the command and
the load average (a figure taken while the machine is busy is not a floor: docs/benchmarks.md).
`--quick` uses small sizes (a smoke run of the benchmarks themselves, seconds not minutes).
The lab benchmarks (bench/rto.py, root and qemu) and the mutation run (bench/mutants.py, long)
are run by hand. Prints figures; judges nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL: list[list[str]] = [
    ["bench_store.py"],
    ["bench_scheduler.py"],
    ["bench_xml.py"],
    ["bench_xmlrpc.py"],
    ["bench_api.py"],
    ["sim_scale.py", "--hosts", "200", "--vms", "4000", "--minutes", "10"],
]
QUICK: list[list[str]] = [
    ["bench_store.py", "--hosts", "50", "--vms", "500"],
    ["bench_scheduler.py"],
    ["bench_xml.py", "200"],
    ["bench_xmlrpc.py", "200"],
    ["bench_api.py", "--hosts", "20", "--vms", "200", "--runs", "3", "--calls", "200",
     "--no-pyone"],
    ["sim_scale.py", "--hosts", "20", "--vms", "200", "--minutes", "2"],
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args()
    failed: list[str] = []
    for argv in QUICK if args.quick else FULL:
        command = [sys.executable, str(HERE / argv[0]), *argv[1:]]
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\n== {' '.join(['bench/' + argv[0], *argv[1:]])}   (load average {load})",
              flush=True)  # fmt: skip
        started = time.monotonic()
        code = subprocess.call(command)
        print(f"== exit {code} after {time.monotonic() - started:.1f} s", flush=True)
        if code:
            failed.append(argv[0])
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
