"""API benchmark: the real daemon over real HTTP with 1,000 hosts and 10,000 VMs, on each store
side by side (not a test: prints figures, asserts nothing).

    .venv/bin/python bench/bench_api.py [--hosts 1000] [--vms 10000] [--runs 20]
                                        [--calls 3000] [--monitor-interval 3600] [--no-pyone]
                                        [--stores sqlite,postgresql]

For each store (SQLite in the data directory; PostgreSQL on a throwaway server this script
starts, app/pgserver.py, fsync on), the same run, then a table of the main figures side by side:
1. Fills a fresh store in a temporary data directory straight through the store (fast):
   hosts MONITORED with capacity and monitoring, VMs in realistic states (mostly RUNNING, some
   POWEROFF, UNDEPLOYED, HOLD, DONE) with templates (DISK, NIC, GRAPHICS, CONTEXT, OS), a user
   template and one to three history records.
2. Writes the simulated machines (VM_MAD=sim) as the store says they are into sim.json in the
   data directory (a machine per host, a domain per placed VM: the daemon keeps its simulated
   machines there across restarts), then starts the real `lazarus serve` (controller, monitor,
   scheduler, hooks, XML-RPC server on 127.0.0.1 and a free port) as a child process, so client
   and server do not share a GIL. The monitor finds the cluster as the store says it is and
   changes nothing (the run ends by counting the state changes it made: 0 expected).
   `--monitor-interval` is the host probe interval: the default (3600 s) leaves the controller
   idle after its first round of probes; 5 is Lazarus' default and adds 200 probes/s of
   background work.
3. Measures with lazarus.api.client.Client (one keep-alive connection per client) and pyone:
   one.vmpool.info(-2,-1,-1,-1) latency (median / p95 of --runs), one.vm.info calls/s from one
   client and from 4 threads (a client each), one.hostpool.info latency; and, in this process
   on the same file, where the time goes without HTTP: the handlers' work (store read +
   render) and the XML-RPC serializing / parsing of their answers.

Wall-clock timing is fine here: this is a benchmark, not a test. Every loop is bounded; the
child is always terminated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO

from lazarus.api.client import Client
from lazarus.api.wire import dumps_response, loads_response
from lazarus.app import pgserver
from lazarus.domain import xml as docs
from lazarus.domain.entities import VM, History, Host, HostShare
from lazarus.domain.secrets import public_host
from lazarus.domain.states import HistoryAction, HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.vmm.sim import SimCluster
from lazarus.ports.hypervisor import DomainState
from lazarus.store import open_store

LISTENING = "Lazarus controller listening on "  # the daemon's ready lines (app/daemon.py)
CREDENTIALS = "oneadmin credentials: "

HOST_CPU = 3200  # 32 cores
HOST_MEM_KIB = 256 * 1024 * 1024
VM_CPU = 100
VM_MEM_KIB = 2 * 1024 * 1024
T0 = 1_767_225_600  # 2026-01-01

TEMPLATE = """CPU = "1"
VCPU = "2"
MEMORY = "2048"
DISK = [ IMAGE = "debian12", IMAGE_ID = "3", DATASTORE = "default", DATASTORE_ID = "1",
         DISK_ID = "0", SIZE = "20480", TARGET = "vda", TYPE = "FILE", CLONE = "YES" ]
GRAPHICS = [ TYPE = "VNC", LISTEN = "0.0.0.0" ]
CONTEXT = [ NETWORK = "YES", SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ops@bastion" ]
OS = [ ARCH = "x86_64", BOOT = "disk0" ]
"""


# -- fill --------------------------------------------------------------------------------------
def make_host(n: int, vm_ids: list[int], running: int) -> Host:
    used_cpu, used_mem = running * VM_CPU, running * VM_MEM_KIB
    share = HostShare(
        mem_usage=len(vm_ids) * VM_MEM_KIB, cpu_usage=len(vm_ids) * VM_CPU,
        total_mem=HOST_MEM_KIB, total_cpu=HOST_CPU, max_mem=HOST_MEM_KIB, max_cpu=HOST_CPU,
        running_vms=running, free_mem=HOST_MEM_KIB - used_mem, used_mem=used_mem,
        free_cpu=HOST_CPU - used_cpu, used_cpu=used_cpu,
    )  # fmt: skip
    return Host(
        id=-1,
        name=f"node{n:04d}",
        state=HostState.MONITORED,
        prev_state=HostState.MONITORED,
        share=share,
        vms=vm_ids,
        template=Template.parse(
            f'HOSTNAME = "node{n:04d}"\nHYPERVISOR = "sim"\nARCH = "x86_64"\n'
            f'TOTALCPU = "{HOST_CPU}"\nTOTALMEMORY = "{HOST_MEM_KIB}"\n'
            f'FENCE_IP = "192.0.2.{n % 250 + 1}"\nHA = "YES"\n'
        ),
        last_monitored=float(T0),
        monitoring={
            "TIMESTAMP": str(T0),
            "FREE_CPU": str(share.free_cpu),
            "USED_CPU": str(used_cpu),
            "FREE_MEMORY": str(share.free_mem),
            "USED_MEMORY": str(used_mem),
        },
    )


def vm_state(n: int) -> tuple[VmState, LcmState]:
    """About 90% RUNNING; the rest POWEROFF, UNDEPLOYED, HOLD (never deployed) and DONE."""
    if n % 50 == 3:
        return VmState.HOLD, LcmState.LCM_INIT
    if n % 50 == 7:
        return VmState.DONE, LcmState.LCM_INIT
    if n % 20 == 1:
        return VmState.POWEROFF, LcmState.LCM_INIT
    if n % 40 == 11:
        return VmState.UNDEPLOYED, LcmState.LCM_INIT
    return VmState.ACTIVE, LcmState.RUNNING


def make_vm(n: int, hosts: int) -> VM:
    state, lcm = vm_state(n)
    template = Template.parse(
        f'{TEMPLATE}NIC = [ NETWORK = "prod", NETWORK_ID = "0", NIC_ID = "0", BRIDGE = "br0",\n'
        f'  IP = "10.{n // 62500}.{n // 250 % 250}.{n % 250 + 1}",\n'
        f'  MAC = "02:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}:01" ]\n'
        f'VMID = "{n}"\nTM_MAD_SYSTEM = "shared"\n'
    )
    history: list[History] = []
    if state is not VmState.HOLD:
        moves = n % 3 + 1  # one to three records: deployed, then migrated / recovered
        for seq in range(moves):
            hid = (n + seq * 7) % hosts
            start = T0 + n + seq * 86_400
            last = seq == moves - 1
            history.append(History(
                oid=n, seq=seq, hostname=f"node{hid:04d}", hid=hid, stime=start,
                etime=0 if last and state is not VmState.DONE else start + 86_000,
                pstime=start, petime=start + 5, rstime=start + 5,
                retime=0 if last and state is not VmState.DONE else start + 86_000,
                action=HistoryAction.NONE if last else HistoryAction.LIVE_MIGRATE,
            ))  # fmt: skip
    placed = state in (VmState.ACTIVE, VmState.POWEROFF)
    return VM(
        id=-1,
        name=f"web-{n:05d}",
        uid=n % 5,
        uname="oneadmin" if n % 5 == 0 else f"user{n % 5}",
        state=state,
        lcm_state=lcm,
        prev_state=state,
        prev_lcm_state=lcm,
        stime=T0 + n,
        etime=T0 + n + 90_000 if state is VmState.DONE else 0,
        deploy_id=f"one-{n}" if placed else "",
        last_poll=T0 + 3600 if placed else 0,
        template=template,
        user_template=Template.parse(
            f'HA = "YES"\nHA_PRIORITY = "{n % 10}"\nDESCRIPTION = "web tier {n % 16}"\n'
            'LOGO = "images/logos/debian.png"\nLABELS = "prod,web"\n'
        ),
        history=history,
        monitoring={"CPU": "2.5", "MEMORY": "1048576", "NETRX": "123456", "NETTX": "654321",
                    "STATE": "a", "TIMESTAMP": str(T0 + 3600)} if state is VmState.ACTIVE else {},
    )  # fmt: skip


def fill(db: str, data_dir: Path, hosts: int, vms: int) -> None:
    made = [make_vm(n, hosts) for n in range(vms)]
    on_host: dict[int, list[int]] = {}
    running: dict[int, int] = {}
    for n, vm in enumerate(made):
        if vm.state in (VmState.ACTIVE, VmState.POWEROFF):
            hid = vm.history[-1].hid
            on_host.setdefault(hid, []).append(n)
            running[hid] = running.get(hid, 0) + (vm.state is VmState.ACTIVE)
    store = open_store(db, data_dir=data_dir)
    try:
        with store.transaction() as tx:
            for n in range(hosts):
                tx.add_host(make_host(n, on_host.get(n, []), running.get(n, 0)))
            for vm in made:
                tx.add_vm(vm)
    finally:
        store.close()


# -- the daemon (child process) ------------------------------------------------------------------
def write_sim_state(data_dir: Path, db: str) -> None:
    """The simulated machines (VM_MAD=sim) as the store says they are: a machine per host, a
    domain per placed VM. The daemon loads them from sim.json in its data directory (simulated
    machines outlive the controller, app/sim_api.py), so its first probes change nothing."""
    store = open_store(db, data_dir=data_dir)
    try:
        placed: dict[str, list[list[object]]] = {h.name: [] for h in store.hosts()}
        for vm in store.vms(states=[VmState.ACTIVE, VmState.POWEROFF]):
            state = DomainState.RUNNING if vm.state is VmState.ACTIVE else DomainState.POWEROFF
            placed[vm.history[-1].hostname].append(
                [vm.deploy_id, vm.id, state.value, VM_CPU, VM_MEM_KIB]
            )
    finally:
        store.close()
    hosts = [
        {"name": name, "cpu": HOST_CPU, "memory_kib": HOST_MEM_KIB, "powered": True,
         "network": True, "hung": False, "domains": domains}
        for name, domains in placed.items()
    ]  # fmt: skip
    sim = SimCluster(SystemClock())
    sim.restore({"hosts": hosts})  # checks the shape; snapshot() is what the daemon reads
    (data_dir / "sim.json").write_text(json.dumps(sim.snapshot()))


def start_daemon(data_dir: Path, db: str, monitor_interval: float, log: IO[str]
                 ) -> subprocess.Popen[str]:  # fmt: skip
    """`lazarus serve` on 127.0.0.1 and a free port, settings from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAZARUS_", "ONE_"))}
    env["LAZARUS_DATA_DIR"] = str(data_dir)
    env["LAZARUS_DB"] = db
    env["LAZARUS_MONITORING_INTERVAL_HOST"] = f"{monitor_interval:g}"
    return subprocess.Popen(
        [sys.executable, "-m", "lazarus.cli.main", "serve", "--port", "0",
         "--listen", "127.0.0.1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip


def wait_ready(proc: subprocess.Popen[str]) -> tuple[str, Path] | None:
    """(url, auth file) from the daemon's two ready lines; None if it ended first."""
    assert proc.stdout is not None
    url = auth_file = None
    for line in proc.stdout:
        if line.startswith(LISTENING):
            url = line[len(LISTENING) :].split()[0]
        elif line.startswith(CREDENTIALS):
            auth_file = Path(line[len(CREDENTIALS) :].split()[0])
        if url and auth_file:
            return url, auth_file
    return None


# -- measuring -----------------------------------------------------------------------------------
def latencies(runs: int, call: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


RESULTS: dict[str, str] = {}  # label -> figure, of the store being measured


def row(label: str, values: list[float], extra: str = "") -> None:
    RESULTS[label] = f"{statistics.median(values) * 1e3:.1f} ms"
    print(f"{label:<52} median {statistics.median(values) * 1e3:8.1f} ms   "
          f"p95 {p95(values) * 1e3:8.1f} ms  {extra}")  # fmt: skip


def rate_row(label: str, calls: int, seconds: float) -> None:
    RESULTS[label] = f"{calls / seconds:.0f} /s"
    print(f"{label:<52} {calls / seconds:8.0f} calls/s   ({seconds * 1e6 / calls:.0f} us/call, "
          f"{calls} calls)")  # fmt: skip


def vm_info_rate(url: str, session: str, ids: list[int], calls: int, threads: int) -> float:
    """Seconds for `calls` one.vm.info calls split over `threads` clients (one each)."""
    per = calls // threads
    clients = [Client(url, session) for _ in range(threads)]
    try:
        for client in clients:
            client.call("one.vm.info", ids[0])  # connect outside the timing
        barrier = threading.Barrier(threads + 1)

        def work(k: int) -> None:
            rng = random.Random(k)
            client = clients[k]
            barrier.wait()
            for _ in range(per):
                client.call("one.vm.info", rng.choice(ids))

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for worker in workers:
            worker.start()
        barrier.wait()
        start = time.perf_counter()
        for worker in workers:
            worker.join()
        return time.perf_counter() - start
    finally:
        for client in clients:
            client.close()


def in_process(db: str, data_dir: Path, runs: int, ids: list[int]) -> None:
    """Where the time goes, without HTTP, on the daemon's own store: the handlers' store read +
    render, then the XML-RPC serializing (server) and parsing (client) of their answers."""
    store = open_store(db, data_dir=data_dir)
    try:
        print("-- in this process, no HTTP: handler work (store read + render)")
        bodies = getattr(store, "vm_short_bodies", None)
        if bodies is not None:
            row("  vm_short_bodies() + join (cached bodies)", latencies(
                runs, lambda: "<VM_POOL>" + "".join(bodies()) + "</VM_POOL>"))  # fmt: skip
        row("  vms() + vm_pool_xml (decode + render)",
            latencies(max(runs // 4, 3), lambda: docs.vm_pool_xml(store.vms())))  # fmt: skip
        row("  hosts() + host_pool_xml", latencies(
            runs, lambda: docs.host_pool_xml([public_host(h) for h in store.hosts()])))  # fmt: skip
        n = 2000
        rng = random.Random(1)
        start = time.perf_counter()
        for _ in range(n):
            docs.vm_xml(store.vm(rng.choice(ids)))
        rate_row("  vm(id) + vm_xml", n, time.perf_counter() - start)

        print("-- in this process, no HTTP: XML-RPC answer serialized (server) / parsed (client)")
        pool = docs.vm_pool_xml(store.vms())
        hostpool = docs.host_pool_xml([public_host(h) for h in store.hosts()])
        one = docs.vm_xml(store.vm(ids[len(ids) // 2]))
        for label, text, count in (
            ("vmpool.info", pool, max(runs // 4, 3)),
            ("hostpool.info", hostpool, runs),
        ):
            serialize = partial(dumps_response, [True, text, 0])
            wire = serialize()
            row(f"  dumps_response({label})", latencies(count, serialize),
                f"{len(wire) / 1e6:.1f} MB")  # fmt: skip
            row(f"  loads_response({label})", latencies(count, partial(loads_response, wire)))
        wire = dumps_response([True, one, 0])
        for label, action in (
            ("  dumps_response(vm.info)", lambda: dumps_response([True, one, 0])),
            ("  loads_response(vm.info)", lambda: loads_response(wire)),
        ):
            start = time.perf_counter()
            for _ in range(n):
                action()
            rate_row(label, n, time.perf_counter() - start)
    finally:
        store.close()


def measure(args: argparse.Namespace, url: str, session: str, db: str, data_dir: Path) -> None:
    ids = list(range(args.vms))
    with Client(url, session, timeout=120) as client:
        body = client.call("one.vmpool.info", -2, -1, -1, -1)
        count = body.count("<VM><ID>")
        print(f"one.vmpool.info(-2,-1,-1,-1): {count} VMs, {len(body) / 1e6:.1f} MB of XML")
        print(f"-- over HTTP ({url})")
        row(
            "one.vmpool.info, lazarus Client",
            latencies(args.runs, lambda: client.call("one.vmpool.info", -2, -1, -1, -1)),
        )
        row(
            "one.hostpool.info, lazarus Client",
            latencies(args.runs, lambda: client.call("one.hostpool.info", -2, -1, -1)),
        )
    rate_row("one.vm.info, 1 Client (keep-alive)", args.calls,
             vm_info_rate(url, session, ids, args.calls, 1))  # fmt: skip
    rate_row("one.vm.info, 4 threads x 1 Client each", args.calls,
             vm_info_rate(url, session, ids, args.calls, 4))  # fmt: skip
    if not args.no_pyone:
        try:
            import pyone
        except ImportError:
            print("pyone not installed, skipped")
        else:
            one = pyone.OneServer(url, session=session, timeout=120)
            runs = max(args.runs // 4, 3)
            row("one.vmpool.info, pyone (binds every VM)", latencies(
                runs, lambda: one.vmpool.info(-2, -1, -1, -1)))  # fmt: skip
            row("one.hostpool.info, pyone", latencies(runs, lambda: one.hostpool.info()))
            n = max(args.calls // 5, 1)
            rng = random.Random(2)
            start = time.perf_counter()
            for _ in range(n):
                one.vm.info(rng.choice(ids))
            rate_row("one.vm.info, pyone (connection per call)", n, time.perf_counter() - start)
    in_process(db, data_dir, args.runs, ids)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"SQLite {__import__('sqlite3').sqlite_version}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20, help="latency samples per pool call")
    parser.add_argument("--calls", type=int, default=3000, help="one.vm.info calls per figure")
    parser.add_argument("--monitor-interval", type=float, default=3600.0)
    parser.add_argument("--no-pyone", action="store_true")
    parser.add_argument("--stores", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql [default: both]")
    parser.add_argument("--dir", type=Path, default=None, help="where to make the data dir")
    args = parser.parse_args()  # fmt: skip
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    print(machine())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures: dict[str, dict[str, str]] = {}
    for kind in kinds:
        if kind not in ("sqlite", "postgresql"):
            parser.error(f"unknown store {kind!r}")
        print(f"\n===== {kind}")
        RESULTS.clear()
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            if kind == "postgresql":
                with pgserver.throwaway() as server:
                    server.create_database("bench")
                    code = run_one(args, Path(tmp), server.url("bench"))
            else:
                code = run_one(args, Path(tmp), "")
        if code:
            return code
        figures[kind] = dict(RESULTS)
    if len(figures) > 1:
        print("\n===== side by side")
        labels = [label for label in figures[kinds[0]] if not label.startswith("  ")]
        print(f"{'':<52}" + "".join(f"{k:>14}" for k in kinds))
        for label in labels:
            print(f"{label:<52}" + "".join(f"{figures[k].get(label, '-'):>14}" for k in kinds))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def run_one(args: argparse.Namespace, tmp: Path, db: str) -> int:
    """One store: fill, start the daemon on it, measure; 1 when the daemon did not start."""
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    start = time.perf_counter()
    fill(db, data_dir, args.hosts, args.vms)
    print(f"filled {args.hosts} hosts, {args.vms} VMs in {time.perf_counter() - start:.1f} s")
    write_sim_state(data_dir, db)
    log_path = tmp / "daemon.log"
    with log_path.open("w") as log:
        proc = start_daemon(data_dir, db, args.monitor_interval, log)
    try:
        ready = wait_ready(proc)
        if ready is None:
            print(log_path.read_text(), file=sys.stderr)
            print("the daemon did not start", file=sys.stderr)
            return 1
        url, auth_file = ready
        session = auth_file.read_text(encoding="utf-8").strip()
        time.sleep(min(3.0, args.monitor_interval))  # let the first round of probes pass
        print(f"daemon: lazarus serve, monitor interval {args.monitor_interval:g} s")
        measure(args, url, session, db, data_dir)
        check = open_store(db, data_dir=data_dir)
        try:  # the daemon should have found the cluster as the store says it is
            changes = check.events(limit=1_000_000, kind="state")
        finally:
            check.close()
        print(f"controller: {len(changes)} state changes during the run (0 expected)")
        for event in changes[:5]:
            print(f"  {event.line}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
