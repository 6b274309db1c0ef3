"""Store benchmark, both stores side by side: the read paths the XML-RPC API leans on and the
writes of a host failure, at 1,000 hosts and 10,000 VMs.

    .venv/bin/python bench/bench_store.py [--hosts 1000] [--vms 10000] [--stores sqlite,postgresql]
    .venv/bin/python bench/bench_store.py --pg-url postgresql://bench@127.0.0.1:5433/bench

For each store, fills a fresh one (realistic bodies: templates with DISK/NIC vectors, two
history records per VM), then times vms() (all; the core of one.vmpool.infoextended),
vm_short_bodies() (one.vmpool.info's cached short bodies), vm(id) for every VM (one.vm.info),
hosts() (one.hostpool.info), vm(id) from 8 threads at once, save_vm in a transaction each, and
a host failure's writes (the journal's: the host to ERROR, then for each of its 100 VMs one
transaction per change, UNKNOWN, RESCHED, placed on another host, each with its event). SQLite
is a file in a temporary directory; PostgreSQL is a throwaway server this script starts
(app/pgserver.py: initdb in a temporary directory, loopback, fsync on as in production) unless
--pg-url names one. Prints a table with the ratio PostgreSQL / SQLite per row; no assertions
(timings depend on the machine). Wall-clock timing is fine here: this is not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lazarus.app import pgserver
from lazarus.domain.entities import VM, Event, EventKind, History, Host, HostShare, ObjType
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.store import open_store


def make_host(n: int) -> Host:
    return Host(
        id=-1,
        name=f"node{n:04d}",
        state=HostState.MONITORED,
        im_mad="kvm",
        vm_mad="kvm",
        share=HostShare(total_mem=64 << 20, total_cpu=1600, max_mem=64 << 20, max_cpu=1600),
        template=Template.parse(
            f'HOSTNAME = "node{n}"\nARCH = x86_64\nCPUSPEED = 2400\nFENCE_IP = "10.0.{n % 250}.1"\n'
        ),
        monitoring={"FREE_CPU": "1200", "USED_CPU": "400", "FREE_MEMORY": "1000000"},
    )


def make_vm(n: int, hosts: int) -> VM:
    hid = n % hosts
    return VM(
        id=-1,
        name=f"vm-{n}",
        uid=n % 7,
        state=VmState.ACTIVE,
        lcm_state=LcmState.RUNNING,
        stime=1_767_225_600 + n,
        deploy_id=f"one-{n}",
        template=Template.parse(
            f'CPU = 0.5\nVCPU = 1\nMEMORY = 512\nVMID = "{n}"\n'
            'DISK = [ IMAGE = "debian", IMAGE_ID = "0", SIZE = "2048", TARGET = "vda" ]\n'
            f'NIC = [ NETWORK = "lan", IP = "10.1.{n // 250 % 250}.{n % 250}", MAC = "02:00" ]\n'
            'GRAPHICS = [ TYPE = "vnc", LISTEN = "0.0.0.0" ]\n'
        ),
        user_template=Template.parse('HA = "YES"\nHA_PRIORITY = 1\n'),
        history=[
            History(oid=n, seq=0, hostname=f"node{(hid + 1) % hosts:04d}", hid=(hid + 1) % hosts),
            History(oid=n, seq=1, hostname=f"node{hid:04d}", hid=hid),
        ],
        monitoring={"CPU": "3.5", "MEMORY": "400000"},
    )


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def calibrate() -> float:
    """A machine-speed yardstick to scale the figures by (loaded CI boxes run 2-3x slower)."""
    doc = json.dumps({"k": [[str(i), "x" * 20] for i in range(30)]})
    return timed(lambda: [json.loads(doc) for _ in range(10_000)])


def host_failure(store: Any, host_id: int, targets: list[int]) -> None:
    """The journal's writes of a host failure: one transaction per change, each with its
    event (core/journal.py), for every VM of the host."""
    with store.transaction() as tx:
        host = tx.host(host_id)
        host.state = HostState.ERROR
        tx.save_host(host)
        tx.record(
            Event(
                kind=EventKind.STATE,
                line=f"host/{host_id}: MONITORED => ERROR",
                obj=ObjType.HOST,
                obj_id=host_id,
                state="ERROR",
                time=time.time(),
            )
        )
    vm_ids = [vm.id for vm in store.vms(host_id=host_id)]
    for step, n in enumerate(vm_ids):
        for change in ("UNKNOWN", "RESCHED", "RUNNING"):
            with store.transaction() as tx:
                vm = tx.vm(n)
                if change == "UNKNOWN":
                    vm.lcm_state = LcmState.UNKNOWN
                elif change == "RESCHED":
                    vm.resched = True
                else:
                    target = targets[step % len(targets)]
                    vm.history.append(
                        History(
                            oid=n, seq=len(vm.history), hostname=f"node{target:04d}", hid=target
                        )
                    )
                    vm.lcm_state, vm.resched = LcmState.RUNNING, False
                tx.save_vm(vm)
                tx.record(
                    Event(
                        kind=EventKind.STATE,
                        line=f"vm/{n}: {change}",
                        obj=ObjType.VM,
                        obj_id=n,
                        state="ACTIVE",
                        lcm_state=change,
                        time=time.time(),
                    )
                )


def measure(store: Any, hosts: int, vms: int) -> dict[str, tuple[float, int]]:
    """label -> (seconds, operations) for one store."""
    out: dict[str, tuple[float, int]] = {}

    def fill() -> None:
        with store.transaction() as tx:
            for n in range(hosts):
                tx.add_host(make_host(n))
            for n in range(vms):
                tx.add_vm(make_vm(n, hosts))

    out["insert all (one transaction)"] = (timed(fill), 1)
    out["vms() all"] = (timed(store.vms), 1)
    out["vms() all, second run"] = (timed(store.vms), 1)
    out["vm_short_bodies() all (vmpool.info)"] = (timed(store.vm_short_bodies), 1)
    out["vms(host_id=5)"] = (timed(lambda: store.vms(host_id=5)), 1)
    out["vm(id) x all, one thread (vm.info)"] = (
        timed(lambda: [store.vm(i) for i in range(vms)]),
        vms,
    )
    out["hosts() all (hostpool.info)"] = (timed(store.hosts), 1)

    def threaded(workers: int = 8) -> None:
        def work(offset: int) -> None:
            for i in range(offset, vms, workers):
                store.vm(i)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    out["vm(id) x all, 8 threads"] = (timed(threaded), vms)
    count = min(1000, vms)

    def updates() -> None:
        for i in range(count):
            with store.transaction() as tx:
                vm = tx.vm(i)
                vm.lcm_state = LcmState.UNKNOWN
                tx.save_vm(vm)

    out[f"save_vm, one transaction each, x{count}"] = (timed(updates), count)
    # the host with the most VMs: make_vm puts VM n on host n % hosts, so host 0 has the most
    victim_vms = len(store.vms(host_id=0))
    targets = list(range(1, min(hosts, 11)))
    out[f"host failure's writes ({victim_vms} VMs x 3 changes)"] = (
        timed(lambda: host_failure(store, 0, targets)),
        1 + 3 * victim_vms,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument(
        "--stores",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql [default: both]",
    )
    parser.add_argument(
        "--pg-url", default=None, help="an existing, empty PostgreSQL database (default: start one)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files")
    args = parser.parse_args()  # fmt: skip
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    results: dict[str, dict[str, tuple[float, int]]] = {}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.hosts} hosts, {args.vms} VMs; load average before: {load}")
    print(f"calibration: json.loads 1.3 kB x10000: {calibrate() * 1000:.1f} ms")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, contextlib.ExitStack() as stack:
        for kind in kinds:
            if kind == "sqlite":
                url = f"sqlite:{Path(tmp) / 'sqlite' / 'lazarus.db'}"
            elif kind == "postgresql":
                url = args.pg_url or stack.enter_context(
                    pgserver.throwaway(Path(tmp) / "pg")
                ).create_database("bench")
            else:
                parser.error(f"unknown store {kind!r}")
            store = open_store(url, data_dir=Path(tmp) / kind)
            try:
                results[kind] = measure(store, args.hosts, args.vms)
            finally:
                store.close()  # fmt: skip
    labels = list(next(iter(results.values())))
    header = f"{'':<48}" + "".join(f"{k:>16}" for k in kinds)
    if kinds == ["sqlite", "postgresql"]:
        header += f"{'PG / SQLite':>14}"
    print(header)
    for label in labels:
        line = f"{label:<48}"
        for kind in kinds:
            seconds, ops = results[kind][label]
            line += f"{seconds * 1000:13.1f} ms" if ops == 1 else f"{ops / seconds:12.0f} /s "
        if kinds == ["sqlite", "postgresql"]:
            line += f"{results['postgresql'][label][0] / results['sqlite'][label][0]:13.2f}x"
        print(line)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
