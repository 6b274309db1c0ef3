"""ft/host_error end to end: the real daemon, the real hook runner, the shipped error_hook.

Each test starts its own `lazarus serve` (tests/helpers/daemon.py) with simulated hosts (VM_MAD
sim), creates share/examples/host_hooks/error_hook with `lazarus hook create`, sets its
ARGUMENTS with `lazarus hook update --append`, breaks a host through `lazarus.sim.power` /
`lazarus.sim.network`, and checks where the VMs end (the results OpenNebula's own host_error.rb
gives when run). Hosts are fenced by ft/fence_host through the fence_sim agent
($LAZARUS_FENCE_PATH = the package's hooks/ft), which powers the simulated host off.

The split-brain invariant is checked in every test by `Watch`, a thread that samples the
ground truth (`lazarus.sim.running`, `lazarus.sim.power ... status`) every ~50 ms: a VM never
runs on two hosts, and never starts on another host while the host it ran on is powered on.
Host failures are mostly network cuts (the VMs keep running there) so that this really
depends on the fence. Waits are bounded polls, never fixed sleeps.
"""

from __future__ import annotations

import base64
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from defusedxml import ElementTree as SafeET

from helpers.daemon import FAST_SETTINGS, Daemon, both_stores, wait_for
from helpers.env import require_root
from lazarus.cli.main import lazarus
from lazarus.ha.examples import ERROR_HOOK as SHIPPED_ERROR_HOOK

REPO = Path(__file__).resolve().parents[2]
ERROR_HOOK = SHIPPED_ERROR_HOOK
FT = REPO / "src" / "lazarus" / "hooks" / "ft"
DEADLINE = 40.0

ACTIVE, POWEROFF, DONE, PENDING = 3, 8, 6, 1
RUNNING_LCM, UNKNOWN_LCM = 3, 16
MONITORED, ERROR = 2, 3
# a bounded fence: one attempt of at most 1 s per level, 4 s for the whole fence
FENCE_ENV = {"FENCE_ATTEMPTS": "1", "FENCE_TIMEOUT": "1", "FENCE_BACKOFF": "0.1",
             "FENCE_TOTAL_TIMEOUT": "4"}


@dataclass
class Vm:
    id: int
    state: int
    lcm: int
    hosts: list[int]  # HID of every history record, oldest first

    @property
    def host(self) -> int | None:
        return self.hosts[-1] if self.hosts else None


class Watch:
    """Samples the simulated ground truth in a thread; collects split-brain violations."""

    def __init__(self, daemon: Daemon, vms: list[int], hosts: list[str],
                 no_fencing: bool = False) -> None:
        self.daemon, self.vms, self.hosts, self.no_fencing = daemon, vms, hosts, no_fencing
        self.violations: list[str] = []
        self.samples = 0
        self.last: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="split-brain-watch", daemon=True)

    def start(self) -> Watch:
        self.sample()  # one synchronous sample: the VMs' hosts before anything breaks
        self._thread.start()
        return self

    def sample(self) -> None:
        with self.daemon.client(timeout=5) as client:
            power = {h: client.call("lazarus.sim.power", h, "status") for h in self.hosts}
            for vm in self.vms:
                where = str(client.call("lazarus.sim.running", vm)).split()
                if len(where) > 1:
                    self.violations.append(f"VM {vm} runs on {where}")
                if len(where) == 1:
                    old = self.last.get(vm)
                    if old is not None and old != where[0] and power.get(old) == "on" \
                            and not self.no_fencing:
                        self.violations.append(
                            f"VM {vm} started on {where[0]} while {old} is powered on")
                    self.last[vm] = where[0]
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.sample()
            except Exception:  # the daemon may be down for a moment: sample again
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sample()  # and a last one, after everything settled

    def check(self) -> None:
        assert self.violations == [], self.violations
        assert self.samples >= 2


@dataclass
class Cluster:
    """One daemon and the calls the tests make to it."""

    daemon: Daemon
    hook_id: int = -1
    host_ids: dict[str, int] = field(default_factory=dict)

    def call(self, method: str, *params: Any) -> Any:
        with self.daemon.client() as client:
            return client.call(method, *params)

    def cli(self, *args: str, stdin: str | None = None, code: int = 0) -> str:
        result = CliRunner().invoke(
            lazarus,
            ["--endpoint", self.daemon.url, "--auth-file", str(self.daemon.auth_file), *args],
            input=stdin, catch_exceptions=False,
        )
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        return result.stdout

    # -- hosts -------------------------------------------------------------------------------
    def add_host(self, name: str, fence: str | None = None) -> int:
        host_id = int(self.call("one.host.allocate", name, "sim", "sim", -1))
        fence = fence if fence is not None else f'FENCE = [ AGENT = "fence_sim", PLUG = "{name}" ]'
        self.call("one.host.update", host_id, fence, 1)
        self.host_ids[name] = host_id
        wait_for(f"{name} MONITORED", lambda: self.host_state(host_id) == MONITORED)
        return host_id

    def host(self, host_id: int) -> Any:
        return SafeET.fromstring(self.call("one.host.info", host_id))

    def host_state(self, host_id: int) -> int:
        return int(self.host(host_id).findtext("STATE") or -1)

    def incident(self, host_id: int) -> dict[str, str]:
        element = self.host(host_id).find("TEMPLATE/HA_INCIDENT")
        return {} if element is None else {c.tag: (c.text or "") for c in element}

    def power(self, name: str, action: str = "status") -> str:
        return str(self.call("lazarus.sim.power", name, action))

    # -- VMs ---------------------------------------------------------------------------------
    def add_vms(self, count: int, extra: str = "") -> list[int]:
        return [int(self.call("one.vm.allocate",
                              f'NAME = "vm{i}"\nCPU = 1\nMEMORY = 128\n{extra}', False))
                for i in range(count)]

    def vm(self, vm_id: int) -> Vm:
        doc = SafeET.fromstring(self.call("one.vm.info", vm_id))
        return Vm(vm_id, int(doc.findtext("STATE") or -1), int(doc.findtext("LCM_STATE") or -1),
                  [int(h.findtext("HID") or -1) for h in doc.findall("HISTORY_RECORDS/HISTORY")])

    def running_on(self, vm_ids: list[int], host_id: int | None = None) -> bool:
        vms = [self.vm(v) for v in vm_ids]
        return all(v.state == ACTIVE and v.lcm == RUNNING_LCM
                   and (host_id is None or v.host == host_id) for v in vms)

    def truth(self, vm_id: int) -> list[str]:
        return str(self.call("lazarus.sim.running", vm_id)).split()

    # -- the hook ----------------------------------------------------------------------------
    def create_hook(self, arguments: str) -> int:
        out = self.cli("hook", "create", str(ERROR_HOOK))
        self.hook_id = int(out.split()[-1])
        self.cli("hook", "update", str(self.hook_id), "--append", "-",
                 stdin=f'ARGUMENTS = "{arguments}"\n')
        assert f"{arguments}" in self.cli("hook", "show", str(self.hook_id))
        return self.hook_id

    def records(self) -> list[dict[str, str]]:
        doc = SafeET.fromstring(self.call("one.hook.info", self.hook_id))
        out = []
        for rec in doc.findall("HOOKLOG/HOOK_EXECUTION_RECORD"):
            out.append({
                "id": rec.findtext("EXECUTION_ID") or "",
                "code": rec.findtext("EXECUTION_RESULT/CODE") or "",
                "stdout": base64.b64decode(rec.findtext("EXECUTION_RESULT/STDOUT") or "")
                .decode(errors="replace"),
                "stderr": base64.b64decode(rec.findtext("EXECUTION_RESULT/STDERR") or "")
                .decode(errors="replace"),
            })
        return out

    def wait_records(self, count: int, deadline: float = DEADLINE) -> list[dict[str, str]]:
        found: list[dict[str, str]] = wait_for(
            f"{count} hook record(s)",
            lambda: (r := self.records()) and len(r) >= count and r, deadline)
        return found


@pytest.fixture
def make_cluster(tmp_path: Path, daemon_db: str) -> Iterator[Callable[..., Cluster]]:
    """Clusters on the test's store (`daemon_db`: SQLite, or PostgreSQL under `both_stores`)."""
    daemons: list[Daemon] = []

    def make(extra: dict[str, str] | None = None) -> Cluster:
        daemon = Daemon(tmp_path / "data",
                        {**FAST_SETTINGS, "FENCE_PATH": str(FT), **(extra or {})}, daemon_db)
        daemons.append(daemon)
        daemon.start()
        return Cluster(daemon)

    try:
        yield make
    finally:
        for daemon in daemons:
            daemon.close()


def placed(cluster: Cluster, count: int, extra: str = "", victim: str = "node1",
           others: tuple[str, ...] = ("node2",)) -> tuple[int, list[int], list[int]]:
    """The victim host with `count` VMs RUNNING on it, then the other hosts (empty)."""
    victim_id = cluster.add_host(victim)
    vms = cluster.add_vms(count, extra)
    wait_for("the VMs RUNNING on the victim", lambda: cluster.running_on(vms, victim_id))
    other_ids = [cluster.add_host(name) for name in others]
    return victim_id, vms, other_ids


# ------------------------------------------------------------------------------ the modes
@both_stores
def test_migrate_moves_vms_on_shared_datastores_and_skips_the_others(
    make_cluster: Callable[..., Cluster]
) -> None:
    c = make_cluster()
    local = int(c.call("one.datastore.allocate",
                       'NAME = "local"\nTYPE = "SYSTEM_DS"\nTM_MAD = "ssh"', -1))
    victim = c.add_host("node1")
    [shared_vm] = c.add_vms(1)
    [local_vm] = c.add_vms(1, f'SCHED_DS_REQUIREMENTS = "ID={local}"')
    vms = [shared_vm, local_vm]
    wait_for("both VMs RUNNING on node1", lambda: c.running_on(vms, victim))
    other = c.add_host("node2")
    c.create_hook("$TEMPLATE -m -p 0")
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    c.call("lazarus.sim.network", "node1", "cut")  # the VMs keep running there

    [record] = c.wait_records(1)
    wait_for("the shared VM RUNNING on node2", lambda: c.running_on([shared_vm], other))
    watch.stop()
    watch.check()
    assert record["code"] == "0", record
    assert f"resched {shared_vm}" in record["stdout"]
    assert f"Skipping VM {local_vm} deployed on non-shared datastore {local}" in record["stdout"]
    assert c.power("node1") == "off" and c.incident(victim)["STATE"] == "DONE"
    assert c.truth(shared_vm) == ["node2"] and c.truth(local_vm) == []
    left = c.vm(local_vm)
    assert (left.state, left.lcm, left.hosts) == (ACTIVE, UNKNOWN_LCM, [victim])


@pytest.mark.parametrize("force", [False, True], ids=["without-f", "with-f"])
def test_recreate_without_and_with_force(make_cluster: Callable[..., Cluster],
                                          force: bool) -> None:
    c = make_cluster()
    victim, vms, [other] = placed(c, 2)
    running, off = vms
    c.call("one.vm.action", "poweroff-hard", off)
    wait_for("VM POWEROFF", lambda: c.vm(off).state == POWEROFF)
    c.create_hook("$TEMPLATE -r -p 0" + (" -f" if force else ""))
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    c.call("lazarus.sim.network", "node1", "cut")

    [record] = c.wait_records(1)
    moved = [running, off] if force else [running]
    wait_for("the recreated VMs RUNNING on node2", lambda: c.running_on(moved, other))
    watch.stop()
    watch.check()
    assert record["code"] == "0", record
    assert f"recreate {running}" in record["stdout"]
    assert (f"recreate {off}" in record["stdout"]) is force
    assert c.power("node1") == "off"
    for vm in moved:
        assert c.vm(vm).hosts[-1] == other and c.truth(vm) == ["node2"]
    if not force:  # POWEROFF VMs are not selected by -r alone (OpenNebula: states {3})
        left = c.vm(off)
        assert (left.state, left.hosts) == (POWEROFF, [victim]) and c.truth(off) == []


def test_delete_ends_the_vms_done(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster()
    victim, vms, _ = placed(c, 2)
    c.create_hook("$TEMPLATE -d -p 0")
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    c.call("lazarus.sim.network", "node1", "cut")

    [record] = c.wait_records(1)
    wait_for("the VMs DONE", lambda: all(c.vm(v).state == DONE for v in vms))
    watch.stop()
    watch.check()
    assert record["code"] == "0", record
    assert all(f"delete {v}" in record["stdout"] for v in vms)
    assert c.power("node1") == "off" and c.incident(victim)["STATE"] == "DONE"
    assert all(c.truth(v) == [] for v in vms)


# ----------------------------------------------------------------------------- the guards
def test_host_back_during_the_wait_touches_nothing(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster()
    victim, vms, _ = placed(c, 2)
    c.create_hook("$TEMPLATE -m -p 20")
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    c.call("lazarus.sim.network", "node1", "cut")
    wait_for("the hook waiting", lambda: c.incident(victim).get("STATE") == "WAITING")
    c.call("lazarus.sim.network", "node1", "restore")

    [record] = c.wait_records(1)
    wait_for("the VMs RUNNING on node1 again", lambda: c.running_on(vms, victim))
    watch.stop()
    watch.check()
    assert record["code"] == "0", record
    assert "Host came back" in record["stdout"] and "Fencing" not in record["stdout"]
    assert c.incident(victim)["STATE"] == "ABORTED" and c.power("node1") == "on"
    for vm in vms:
        assert c.vm(vm).hosts == [victim] and c.truth(vm) == ["node1"]


def test_second_run_for_one_failure_is_a_no_op(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster()
    _, vms, [other] = placed(c, 2)
    c.create_hook("$TEMPLATE -r -p 0")
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    c.call("lazarus.sim.network", "node1", "cut")
    [first] = c.wait_records(1)
    wait_for("the VMs RUNNING on node2", lambda: c.running_on(vms, other))
    before = [c.vm(v) for v in vms]

    c.cli("hook", "retry", str(c.hook_id), first["id"])
    second = c.wait_records(2)[-1]
    watch.stop()
    watch.check()
    assert first["code"] == second["code"] == "0", (first, second)
    assert "already handled" in second["stdout"]
    assert "recreate" not in second["stdout"] and "Fencing" not in second["stdout"]
    assert [c.vm(v) for v in vms] == before  # no new history record, same states
    assert all(c.truth(v) == ["node2"] for v in vms)


def test_mass_failure_guard(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster()
    a = c.add_host("node1")
    vms_a = c.add_vms(1)
    wait_for("VM on node1", lambda: c.running_on(vms_a, a))
    b = c.add_host("node2")
    c.call("one.host.status", a, 1)  # disable node1 so the next VM goes to node2
    vms_b = c.add_vms(1)
    wait_for("VM on node2", lambda: c.running_on(vms_b, b))
    c.call("one.host.status", a, 0)
    wait_for("node1 MONITORED", lambda: c.host_state(a) == MONITORED)
    c.add_host("node3")
    vms = vms_a + vms_b
    c.create_hook("$TEMPLATE -r -p 2")
    watch = Watch(c.daemon, vms, ["node1", "node2", "node3"]).start()
    c.call("lazarus.sim.network", "node1", "cut")
    c.call("lazarus.sim.network", "node2", "cut")

    records = c.wait_records(2)
    watch.stop()
    watch.check()
    for record in records:
        assert record["code"] == "255", record
        assert "Mass failure: 2 of 3 hosts" in record["stdout"]
        assert "--ignore-mass-failure" in record["stdout"]
        assert "Fencing" not in record["stdout"] and "recreate" not in record["stdout"]
    assert c.power("node1") == c.power("node2") == "on"
    assert c.vm(vms_a[0]).hosts == [a] and c.vm(vms_b[0]).hosts == [b]
    assert c.truth(vms_a[0]) == ["node1"] and c.truth(vms_b[0]) == ["node2"]


# ------------------------------------------------------------------------ fence failures
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def fence_fails_then_operator_confirms(c: Cluster, fence: str, mode: str) -> dict[str, str]:
    """Fencing cannot prove node1 off: nothing happens to its VMs. The operator powers it
    off, confirms with `host fenced --confirm`, retries the execution: recovery completes."""
    victim = c.add_host("node1", fence=fence)
    vms = c.add_vms(2)
    wait_for("the VMs RUNNING on node1", lambda: c.running_on(vms, victim))
    other = c.add_host("node2")
    c.create_hook(f"$TEMPLATE {mode} -p 0")
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    c.call("lazarus.sim.network", "node1", "cut")

    [failed] = c.wait_records(1)
    assert failed["code"] == "255", failed
    assert "Fencing error" in failed["stdout"] and "no VM was touched" in failed["stdout"]
    assert c.incident(victim)["STATE"] == "FENCE_FAILED"
    for vm in vms:  # no VM action at all: same state, same placement, still running there
        assert (c.vm(vm).state, c.vm(vm).lcm, c.vm(vm).hosts) == (ACTIVE, UNKNOWN_LCM, [victim])
        assert c.truth(vm) == ["node1"]
    assert c.power("node1") == "on"

    c.power("node1", "off")  # the operator pulls the plug, then says so
    c.cli("host", "fenced", str(victim), "--confirm")
    c.cli("hook", "retry", str(c.hook_id), failed["id"])
    retried = c.wait_records(2)[-1]
    wait_for("the VMs RUNNING on node2", lambda: c.running_on(vms, other))
    watch.stop()
    watch.check()
    assert retried["code"] == "0", retried
    assert "Fencing confirmed by operator oneadmin" in retried["stdout"]
    assert c.incident(victim)["STATE"] == "DONE"
    assert all(c.truth(vm) == ["node2"] for vm in vms)
    return failed


@pytest.mark.root
def test_fence_failure_bmc_unreachable(make_cluster: Callable[..., Cluster]) -> None:
    require_root("fence_redfish")
    c = make_cluster(FENCE_ENV)
    password = "s3cret-bmc-pw"
    fence = (f'FENCE = [ AGENT = "fence_redfish", IP = "127.0.0.1", PORT = "{closed_port()}", '
             f'USERNAME = "admin", PASSWORD = "{password}", '
             'OPTIONS = "ssl_insecure=1 systems_uri=/redfish/v1/Systems/node1" ]')
    failed = fence_fails_then_operator_confirms(c, fence, "-m")
    assert "fence_redfish" in failed["stdout"]
    assert all(password not in r["stdout"] + r["stderr"] for r in c.records())


def test_fence_failure_agent_hangs(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    hang = agents / "fence_hang"
    hang.write_text("#!/bin/sh\n# a BMC that never answers\nexec sleep 300\n")
    hang.chmod(0o755)
    c = make_cluster({**FENCE_ENV, "FENCE_PATH": f"{agents}:{FT}"})
    started = time.monotonic()
    failed = fence_fails_then_operator_confirms(
        c, 'FENCE = [ AGENT = "fence_hang", PLUG = "node1" ]', "-r")
    assert "fence_hang" in failed["stdout"] and "timeout" in failed["stdout"]
    assert time.monotonic() - started < DEADLINE  # the fence was bounded, not 300 s


# ----------------------------------------------------------------- controller killed mid-way
FENCE_KILL = """#!/bin/sh
# fence_kill: the "power switch" of a test-only libvirtd host; PLUG is the daemon's pid.
# off: SIGKILL it and wait (2 s at most) until it is gone; status: rc 2 (OFF) once the
# process is gone or a zombie, else 0 (ON).
action=; plug=
while IFS='=' read -r key value; do
    case "$key" in action) action=$value;; plug|port) plug=$value;; esac
done
state=$(cut -d' ' -f3 /proc/"$plug"/stat 2>/dev/null)
case "$action" in
    off) kill -CONT "$plug" 2>/dev/null; kill -KILL "$plug" 2>/dev/null
         # like a real agent, return once the power is off (the kill takes effect)
         for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
             state=$(cut -d' ' -f3 /proc/"$plug"/stat 2>/dev/null)
             if [ -z "$state" ] || [ "$state" = Z ]; then exit 0; fi
             sleep 0.1
         done
         exit 0;;
    status|monitor) if [ -z "$state" ] || [ "$state" = Z ]; then exit 2; fi; exit 0;;
    *) exit 0;;
esac
"""


class LibvirtTruth:
    """Where each VM's domain is active, from the test-only libvirtd daemons themselves.

    A SIGSTOPped daemon cannot answer: its last listing stands (its guests are frozen, not
    gone: they would run again on SIGCONT). A killed daemon runs nothing."""

    def __init__(self, daemons: dict[str, Any]) -> None:
        self.daemons = daemons
        self.last: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def refresh(self) -> dict[str, set[str]]:
        with self.lock:
            for name, daemon in self.daemons.items():
                if daemon.proc is None or daemon.proc.poll() is not None:
                    self.last[name] = set()
                elif not daemon.stopped:
                    self.last[name] = {d.name() for d in daemon.keeper.listAllDomains()
                                       if d.isActive()}
            return {k: set(v) for k, v in self.last.items()}

    def where(self, vm_id: int) -> list[str]:
        return sorted(n for n, doms in self.refresh().items() if f"one-{vm_id}" in doms)


SLOW_FENCE = """#!{python}
# fence_slow: fence_sim whose off takes 3 s; it writes {mark} when an off starts.
import subprocess, sys, time
data = sys.stdin.read()
if "action=off" in data:
    open({mark!r}, "a").write("off\\n")
    time.sleep(3)
sys.exit(subprocess.run([{fence_sim!r}], input=data, text=True, check=False).returncode)
"""
SLOW_FENCE_ENV = {"FENCE_ATTEMPTS": "1", "FENCE_TIMEOUT": "10", "FENCE_BACKOFF": "0.1",
                  "FENCE_TOTAL_TIMEOUT": "20"}


@both_stores
def test_controller_killed_during_the_fence_fences_again_after_the_restart(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """SIGKILL of the controller while ft/fence_host runs. Before: host_error and fence_host
    outlived it, the re-run found the host's lock held and exited 0, the orphan died at its
    next write: nobody fenced, the incident stayed FENCING, the VMs UNKNOWN. Now the hook
    processes die with the controller (or are reaped at start) and the re-run fences again,
    finishes the incident and the VMs run on node2, never before node1 is off."""
    agents, mark = tmp_path / "agents", tmp_path / "off-started"
    agents.mkdir()
    (agents / "fence_slow").write_text(SLOW_FENCE.format(
        python=sys.executable, mark=str(mark), fence_sim=str(FT / "fence_sim")))
    (agents / "fence_slow").chmod(0o755)
    c = make_cluster({**SLOW_FENCE_ENV, "FENCE_PATH": f"{agents}:{FT}"})
    victim = c.add_host("node1", fence='FENCE = [ AGENT = "fence_slow", PLUG = "node1" ]')
    vms = c.add_vms(2)
    wait_for("the VMs RUNNING on node1", lambda: c.running_on(vms, victim))
    other = c.add_host("node2")
    c.create_hook("$TEMPLATE -r -p 0")
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
    c.call("lazarus.sim.network", "node1", "cut")  # the VMs keep running there
    wait_for("the fence agent's off", mark.exists)
    assert c.incident(victim)["STATE"] == "FENCING"
    c.daemon.kill()
    c.daemon.start()
    wait_for("the incident DONE", lambda: c.incident(victim).get("STATE") == "DONE")
    wait_for("the VMs RUNNING on node2", lambda: c.running_on(vms, other))
    watch.stop()
    watch.check()
    assert c.power("node1") == "off"
    assert mark.read_text().count("off") == 2  # fenced once more after the restart
    # host_error saves DONE (after following the VMs), then exits: its record comes after
    wait_for("the re-run's record", lambda: len(c.records()) == 2)
    codes = [r["code"] for r in c.records()]
    assert codes == ["-1", "0"], c.records()
    assert all(c.truth(v) == ["node2"] for v in vms)


@pytest.mark.root
def test_controller_killed_during_recovery_handles_every_vm_once(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """Hosts are test-only libvirtd daemons (they outlive the controller, unlike the
    in-process simulated cluster); fence_kill is their power switch. hv1 hangs (SIGSTOP: its
    guests frozen, not gone), host_error -r fences it (SIGKILL) and the controller is
    SIGKILLed as soon as the incident says FENCED; after the restart the interrupted
    execution is re-run: every VM ends RUNNING once, on hv2, never on two hosts."""
    from helpers.libvirtd import Libvirtd, require_libvirtd

    require_libvirtd()
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "fence_kill").write_text(FENCE_KILL)
    (agents / "fence_kill").chmod(0o755)
    daemons = {"hv1": Libvirtd(tmp_path / "hv1"), "hv2": Libvirtd(tmp_path / "hv2")}
    try:
        for daemon in daemons.values():
            daemon.start()
        c = make_cluster({**FENCE_ENV, "FENCE_PATH": f"{agents}:{FT}"})
        ids = {}
        for name, daemon in daemons.items():
            ids[name] = int(c.call("one.host.allocate", name, "kvm", "kvm", -1))
            c.call("one.host.update", ids[name],
                   f'LIBVIRT_URI = "{daemon.uri}"\nLIBVIRT_DOMAIN_TYPE = "test"\n'
                   f'FENCE = [ AGENT = "fence_kill", PLUG = "{daemon.pid}" ]', 1)
            wait_for(f"{name} MONITORED", lambda i=ids[name]: c.host_state(i) == MONITORED)
        vms = [int(c.call("one.vm.allocate", f'NAME = "k{i}"\nCPU = 1\nMEMORY = 64', True))
               for i in range(3)]
        for vm in vms:
            c.call("one.vm.deploy", vm, ids["hv1"], False, -1)
        wait_for("the VMs RUNNING on hv1", lambda: c.running_on(vms, ids["hv1"]))
        truth = LibvirtTruth(daemons)
        assert all(truth.where(vm) == ["hv1"] for vm in vms)
        c.create_hook("$TEMPLATE -r -p 0")

        violations: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.05):
                for vm in vms:
                    where = truth.where(vm)
                    if len(where) > 1:
                        violations.append(f"VM {vm} on {where}")

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        daemons["hv1"].stop()  # hung: guests frozen, the controller cannot reach it
        wait_for("the incident FENCED", lambda: c.incident(ids["hv1"]).get("STATE") in
                 ("FENCED", "RECOVERING", "DONE"))
        c.daemon.kill()
        c.daemon.start()
        done = wait_for("a successful (re-)run", lambda: [
            r for r in c.records() if r["code"] == "0"])
        wait_for("the VMs RUNNING on hv2", lambda: c.running_on(vms, ids["hv2"]))
        stop.set()
        watcher.join(10)
        assert violations == []
        assert len(done) == 1, c.records()
        assert c.incident(ids["hv1"])["STATE"] == "DONE"
        for vm in vms:
            assert truth.where(vm) == ["hv2"]
            assert c.vm(vm).hosts.count(ids["hv2"]) == 1  # placed once, not twice
    finally:
        for daemon in daemons.values():
            daemon.close()
