"""The lab version of `lazarus demo`, and the failover story `lazarus lab check` tells.

`run_lab_demo(out)` (called by `lazarus demo`, cli/main.py, when `lab_available()`): three real
qemu hosts with Redfish BMCs under a real `lazarus serve` (default settings), the HOST/ERROR
hook with the shipped example's arguments (ft/host_error -m -p 5), six tiny guests. One host
is powered off through its BMC; the timeline shows, in seconds since the power-off, the host
going ERROR, the hook starting, the fence being confirmed and each VM RUNNING on another host;
then a table, the live serial counter of a recovered VM, and a clean teardown. Returns 0
when every VM came back.

`follow_failover(...)` prints that timeline from a LabCluster's API watcher and returns the
seconds from the fault to all VMs RUNNING elsewhere (None on timeout); cli/lab.py uses it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lazarus.lab.e2e import DEFAULT_HOOK_ARGS, LabCluster
from lazarus.lab.lab import missing_requirements
from lazarus.lab.observe import VmView
from lazarus.lab.proc import LabError

Out = Callable[[str], None]
DEMO_SUBNET = "10.250.253"
FENCED_STATES = ("FENCED", "RECOVERING", "DONE")


def lab_available() -> tuple[bool, str]:
    """Whether the lab demo can run here, and why not."""
    if os.geteuid() != 0:
        return False, "not root (the lab needs network namespaces)"
    missing = missing_requirements()
    if missing:
        return False, f"missing: {', '.join(missing)}"
    return True, "root, namespaces and the lab packages are available"


def follow_failover(cl: LabCluster, victim: str, moving: Sequence[int], fault_at: float,
                    out: Out, timeout: float = 120.0) -> float | None:  # fmt: skip
    """Print the recovery timeline as it happens; seconds to all `moving` VMs RUNNING."""
    assert cl.watch is not None
    host_id = cl.host_ids[victim]
    shown: set[str] = set()
    done: dict[int, float] = {}
    deadline = fault_at + timeout

    def say(key: str, at: float, text: str) -> None:
        if key not in shown:
            shown.add(key)
            out(f"  {at - fault_at:6.2f} s  {text}")

    while time.monotonic() < deadline:
        for c in cl.watch.snapshot():
            if c.at < fault_at:
                continue
            if c.kind == "host" and c.oid == host_id and c.value == "ERROR":
                say("error", c.at, f"host {victim} ERROR (the monitor gave up on it)")
            elif c.kind == "incident" and c.oid == host_id:
                say("hook", c.at, "hook ft/host_error started (incident recorded)")
                if c.value in FENCED_STATES:
                    say("fenced", c.at, f"fence confirmed: {victim} is proven off")
            elif (c.kind == "vm" and c.oid in moving and c.host not in ("", victim)
                  and c.value == "ACTIVE/RUNNING" and c.oid not in done):  # fmt: skip
                done[c.oid] = c.at
                say(f"vm{c.oid}", c.at, f"VM {c.oid} RUNNING on {c.host}")
        if len(done) == len(moving):
            return max(done.values()) - fault_at
        time.sleep(0.05)
    return None


def table(views: Sequence[VmView], out: Out, title: str) -> None:
    out(f"\n{title}")
    out(f"  {'ID':>3}  {'NAME':<8} {'HOST':<6} STATE")
    for v in sorted(views, key=lambda v: v.id):
        out(f"  {v.id:>3}  {v.name:<8} {v.host:<6} {v.label}")


def run_lab_demo(out: Out = print) -> int:
    """The lab demo; needs root and the lab's programs (see Lab.missing_requirements)."""
    out("Lazarus demo on the lab: 3 real qemu hosts (TCG) in network namespaces,")
    out("Redfish BMCs (sushy-tools), a real `lazarus serve` with default settings.")
    with tempfile.TemporaryDirectory(prefix="lazarus-demo-", dir="/tmp") as tmp:
        started = time.monotonic()
        try:
            with LabCluster(Path(tmp), hosts=3, fence="redfish", subnet=DEMO_SUBNET,
                            hook_args=DEFAULT_HOOK_ARGS) as cl:  # fmt: skip
                out(f"  lab and controller up in {time.monotonic() - started:.1f} s; "
                    f"controller at {cl.controller.url}")  # fmt: skip
                out(f"  hook host_error: HOST/ERROR -> ft/host_error {DEFAULT_HOOK_ARGS}")
                return _story(cl, out)
        except LabError as exc:
            out(f"lab demo failed: {exc}")
            return 1
        finally:
            out("Lab torn down: no namespaces, mounts or processes left.")


def _story(cl: LabCluster, out: Out) -> int:
    ids = cl.create_vms(6)
    views = cl.wait_running(ids, timeout=60)
    table(views, out, "Before the failure")
    by_host: dict[str, int] = {}
    for v in views:
        by_host[v.host] = by_host.get(v.host, 0) + 1
    victim = max(sorted(by_host), key=lambda h: by_host[h])
    moving = [v.id for v in views if v.host == victim]
    deadline = time.monotonic() + 15
    while any((cl.counter(v)[1] or 0) < 1 for v in moving) and time.monotonic() < deadline:
        time.sleep(0.1)

    out(f"\nPowering {victim} off through its BMC (Redfish ForceOff); "
        f"its VMs: {', '.join(map(str, moving))}")  # fmt: skip
    fault_at = time.monotonic()
    cl.bmc_power_off(victim)
    seconds = follow_failover(cl, victim, moving, fault_at, out)
    table(cl.vms(), out, "After the recovery")
    if seconds is None:
        out(f"\nRecovery did not finish in time. Hook log:\n{cl.hook_log()}")
        return 1
    out(f"\nAll {len(moving)} VMs of {victim} run elsewhere, {seconds:.1f} s after the power-off.")
    witness = moving[0]
    out(f"Guest counter of VM {witness} (restarted on {cl.vm(witness).host}), live:")
    samples = []
    for _ in range(4):
        time.sleep(0.5)
        samples.append(str(cl.counter(witness)[1]))
    out("  " + " -> ".join(samples))
    return 0
