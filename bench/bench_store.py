"""Store benchmark: the read paths the XML-RPC API leans on, at 1,000 hosts and 10,000 VMs.

    .venv/bin/python bench/bench_store.py [--hosts 1000] [--vms 10000] [--dir DIR]

Fills a fresh SQLite file store (realistic bodies: templates with DISK/NIC vectors, two history
records per VM), then times vms() (all; the core of one.vmpool.infoextended),
vm_short_bodies() (one.vmpool.info's cached short bodies), vm(id) for every VM (one.vm.info),
hosts() (one.hostpool.info), and vm(id) from 8 threads at once. Prints figures; no
assertions (timings depend on the machine). Wall-clock timing is fine here: this is not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lazarus.domain.entities import VM, History, Host, HostShare
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.store import codec
from lazarus.store.sqlite import SqliteStore


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


def timed(label: str, action: Callable[[], object], per: int = 1) -> float:
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    extra = f"  ({elapsed / per * 1e6:8.1f} us each, {per / elapsed:10.0f}/s)" if per > 1 else ""
    print(f"{label:<44} {elapsed * 1000:9.1f} ms{extra}")
    return elapsed


def calibrate() -> None:
    """A machine-speed yardstick to scale the figures by (loaded CI boxes run 2-3x slower)."""
    doc = json.dumps({"k": [[str(i), "x" * 20] for i in range(30)]})
    timed(
        f"calibration: json.loads {len(doc)} B x10000",
        lambda: [json.loads(doc) for _ in range(10_000)],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the db file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store = SqliteStore.open(Path(tmp) / "lazarus.db")
        try:
            print(f"SQLite store, {args.hosts} hosts, {args.vms} VMs ({Path(tmp)})")
            calibrate()

            def fill() -> None:
                with store.transaction() as tx:
                    for n in range(args.hosts):
                        tx.add_host(make_host(n))
                    for n in range(args.vms):
                        tx.add_vm(make_vm(n, args.hosts))

            timed("insert all (one transaction)", fill)
            body = len(store.vms(limit=1)[0].template.render())
            print(f"{'(one VM template, rendered)':<44} {body:9d} chars")

            timed("vms() all", store.vms)
            rows = [(vm.id, codec.encode_vm(vm)) for vm in store.vms()]
            timed(
                "  of which decoding bodies (codec only)",
                lambda: [codec.decode_vm(*r) for r in rows],
            )
            timed("vms() all, second run", store.vms)
            timed("vm_short_bodies() all", store.vm_short_bodies)
            timed("vms(host_id=5)", lambda: store.vms(host_id=5))
            timed(
                "vm(id) x all, one thread",
                lambda: [store.vm(i) for i in range(args.vms)],
                per=args.vms,
            )
            timed("hosts() all", store.hosts)

            def threaded(workers: int = 8) -> None:
                def work(offset: int) -> None:
                    for i in range(offset, args.vms, workers):
                        store.vm(i)

                threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()

            timed("vm(id) x all, 8 threads", threaded, per=args.vms)

            def updates(count: int = 1000) -> None:
                for i in range(count):
                    with store.transaction() as tx:
                        vm = tx.vm(i)
                        vm.lcm_state = LcmState.UNKNOWN
                        tx.save_vm(vm)

            timed("save_vm, one transaction each, x1000", updates, per=1000)
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
