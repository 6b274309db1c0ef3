"""`lazarus demo`: the mission end to end on embedded defaults, in well under a minute.

A real `lazarus serve` (SQLite in a temporary data directory, the in-process simulated
cluster), three simulated hosts whose FENCE is the `fence_sim` agent (the same agent protocol
as fence_redfish / fence_ipmilan, reaching the simulated power switches), the shipped
error_hook created with `lazarus hook create`, six VMs. Then one host loses power and the
terminal shows the timeline: host ERROR, hook started, fence confirmed, every VM RUNNING on
another host, with seconds since the failure; a final table; the daemon is stopped and the
directory removed.

With --lab (root, network namespaces) the same story runs on real qemu hosts: lab/demo.py.
`lazarus demo` (cli/main.py) chooses between the two; this module knows nothing of the lab,
which sits above app/ (it starts `lazarus serve` through app/serve_process.py).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from defusedxml import ElementTree as SafeET

from lazarus.api.client import Client
from lazarus.app import pgserver
from lazarus.app.serve_process import ServeProcess
from lazarus.domain.states import HostState, LcmState, VmState, vm_state_label
from lazarus.ha.examples import ERROR_HOOK

PACKAGE = Path(__file__).resolve().parent.parent
HOOKS_FT = PACKAGE / "hooks" / "ft"
HOSTS = ("node1", "node2", "node3")
VMS = 6


def _xml(text: str) -> SafeET.Element:  # type: ignore[name-defined]
    return SafeET.fromstring(text)


class Timeline:
    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.t0: float | None = None
        self.marks: dict[str, float] = {}

    def start(self) -> None:
        self.t0 = time.monotonic()

    def since(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def mark(self, key: str, text: str) -> None:
        if key in self.marks:
            return
        self.marks[key] = self.since()
        self.out(f"  {self.marks[key]:6.1f} s  {text}")


def run_sim_demo(out: Callable[[str], None] = print, keep: bool = False, db: str = "sqlite"
                 ) -> int:  # fmt: skip
    """`db`: "sqlite" (the data directory's file) or "postgresql" (a throwaway PostgreSQL 15
    server started for the demo, app/pgserver.py, and destroyed after it)."""
    work = Path(tempfile.mkdtemp(prefix="lazarus-demo-"))
    # where fence_host (run by the daemon) finds the fence_sim agent
    settings = {"FENCE_PATH": str(HOOKS_FT)}
    server: pgserver.PgServer | None = None
    try:
        if db == "postgresql":
            out("Starting a throwaway PostgreSQL 15 server for the demo ...")
            server = pgserver.PgServer.create(durable=True)
            server.create_database("lazarus")
            settings["DB"] = server.url("lazarus")
        serve = ServeProcess(work, settings)
        store = "PostgreSQL" if server is not None else "SQLite"
        out(f"Lazarus demo: a controller with {store} and a simulated 3-host cluster")
        if server is not None:
            out(f"  store {settings['DB']} (the server is removed at the end)")
        out(f"  data directory {work} (removed at the end)")
        return _run(serve, out)
    finally:
        if server is not None:
            server.destroy()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _run(serve: ServeProcess, out: Callable[[str], None]) -> int:
    try:
        serve.start()
        env = serve.env()
        env["LAZARUS_FENCE_PATH"] = str(HOOKS_FT)
        out(f"  controller listening on {serve.url}")
        return _story(serve.client(), env, out)
    finally:
        serve.close()
        out("Controller stopped; demo finished.")


def _story(client: Client, env: dict[str, str], out: Callable[[str], None]) -> int:
    hook_file = ERROR_HOOK
    created = subprocess.run(
        [sys.executable, "-m", "lazarus", "hook", "create", str(hook_file)],
        env=env, capture_output=True, text=True, check=False,
    )
    if created.returncode != 0:
        out(f"lazarus hook create failed: {created.stderr.strip()}")
        return 1
    out(f"$ lazarus hook create {hook_file.name}   -> {created.stdout.strip()}")
    for name in HOSTS:
        host_id = client.call("one.host.allocate", name, "sim", "sim", -1)
        fence = f'FENCE = [ AGENT = "fence_sim", PLUG = "{name}" ]'
        client.call("one.host.update", host_id, fence, 1)
    out(f"  hosts {', '.join(HOSTS)} created (VM_MAD sim, FENCE agent fence_sim)")
    for index in range(VMS):
        template = f'NAME = "web-{index}"\nCPU = 1\nMEMORY = 1024\nHA_PRIORITY = {index % 3}'
        client.call("one.vm.allocate", template)
    out(f"  {VMS} VMs created; waiting for the scheduler to run them ...")
    if not _wait(lambda: all(s == "runn" for s, _ in _vms(client).values()), 30):
        out("VMs did not start in time")
        return 1
    placement = _vms(client)
    _table(out, placement, "Before the failure")
    victim = max(HOSTS, key=lambda h: sum(1 for _, host in placement.values() if host == h))
    moving = sorted(vm for vm, (_, host) in placement.items() if host == victim)
    timeline = Timeline(out)
    out(f"\nPowering {victim} off (its {len(moving)} VMs: {', '.join(map(str, moving))})")
    timeline.start()
    client.call("lazarus.sim.power", victim, "off")
    timeline.mark("off", f"{victim} lost power")
    ok = _watch(client, timeline, victim, moving)
    _table(out, _vms(client), "After the recovery")
    if ok:
        out(f"\nAll {len(moving)} VMs of {victim} run elsewhere, "
            f"{timeline.since():.1f} s after the power loss.")
    else:
        out("\nRecovery did not finish within 60 s: see `lazarus hook show` output above.")
    return 0 if ok else 1


def _watch(client: Client, timeline: Timeline, victim: str, moving: list[int]) -> bool:
    victim_id = next(
        int(h.findtext("ID", "-1"))
        for h in _xml(client.call("one.hostpool.info")).findall("HOST")
        if h.findtext("NAME") == victim
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        host = _xml(client.call("one.host.info", victim_id))
        state = HostState(int(host.findtext("STATE", "0")))
        if state is HostState.ERROR:
            probes = host.findtext("TEMPLATE/MONITOR_FAILURES") or "?"
            timeline.mark("error", f"host {victim} -> ERROR ({probes} failed probes)")
        incident = host.find("TEMPLATE/HA_INCIDENT")
        if incident is not None:
            timeline.mark("hook", "hook host_error started (incident opened)")
            if incident.findtext("STATE") in ("FENCED", "RECOVERING", "DONE"):
                timeline.mark("fenced", f"{victim} fenced: {incident.findtext('FENCE') or 'ok'}")
        for vm_id, (label, where) in _vms(client).items():
            if vm_id not in moving:
                continue
            if label == "unkn":
                timeline.mark(f"unknown{vm_id}", f"VM {vm_id} -> UNKNOWN")
            elif where != victim and label in ("prol", "boot"):
                timeline.mark(f"moving{vm_id}", f"VM {vm_id} placed on {where}")
            elif where != victim and label == "runn":
                timeline.mark(f"running{vm_id}", f"VM {vm_id} RUNNING on {where}")
        if all(f"running{vm}" in timeline.marks for vm in moving):
            log = _xml(client.call("one.hooklog.info", -1, -1, -1, 0))
            for record in log.findall("HOOK_EXECUTION_RECORD"):
                code = record.findtext("EXECUTION_RESULT/CODE")
                stdout = base64.b64decode(record.findtext("EXECUTION_RESULT/STDOUT") or "")
                timeline.out(f"\nhook execution {record.findtext('EXECUTION_ID')} exit code {code};"
                             " its log:")
                for line in stdout.decode(errors="replace").splitlines()[-12:]:
                    timeline.out(f"    {line}")
            return True
        time.sleep(0.1)
    return False


def _vms(client: Client) -> dict[int, tuple[str, str]]:
    pool = _xml(client.call("one.vmpool.info", -2, -1, -1, -1))
    result = {}
    for vm in pool.findall("VM"):
        state = VmState(int(vm.findtext("STATE", "0")))
        lcm = LcmState(int(vm.findtext("LCM_STATE", "0")))
        hist = vm.findall("HISTORY_RECORDS/HISTORY")
        result[int(vm.findtext("ID", "-1"))] = (
            vm_state_label(state, lcm),
            hist[-1].findtext("HOSTNAME", "") if hist else "",
        )
    return result


def _table(out: Callable[[str], None], vms: dict[int, tuple[str, str]], title: str) -> None:
    out(f"\n{title}:\n    {'ID':>3}  {'STAT':5} HOST")
    for vm_id, (label, host) in sorted(vms.items()):
        out(f"    {vm_id:>3}  {label:5} {host}")


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False
