"""VM HA on the lab: a guest crashes, how long until its VM is RUNNING again (not a test).

    sudo .venv/bin/python bench/vm_crash.py                  # 20 runs of each kind
    sudo .venv/bin/python bench/vm_crash.py --runs 5 --kind kill

Needs root and the lab (lab/). A LabCluster of 2 real qemu hosts under a real `lazarus serve`
with the default settings (MONITORING_INTERVAL_HOST 5 s: the crash is seen through libvirt's
domain event, not the next probe), one tiny guest on hv1 whose restart budget is raised for
the benchmark (VM_HA_MAX_RESTARTS and VM_HA_RESTARTS_IN_PLACE = 1000: every crash is
restarted in place). Kinds:

  kill  kill -9 of the guest's qemu: from the kill to the VM RUNNING again (the API says so,
        polled every 10 ms), to the new guest's banner on its serial port, and to the restart's
        boot starting (BOOT_UNKNOWN seen: detection and decision are done)
  hang  the guest hangs on command (`h` on its COM2): its ib700 watchdog (lab/guest.py
        WATCHDOG_TIMEOUT, 4 s) pauses it; from the command to RUNNING again, and the same
        less the watchdog timeout (the guest feeds it every 0.22 s, so that is within 0.22 s
        of "from the watchdog firing")

Prints every run, then median and p99 (with 20 runs, p99 is the slowest run) and the load
average before and after. docs/benchmarks.md records the figures with this command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from defusedxml import ElementTree as SafeET

from lazarus.lab import guest
from lazarus.lab.e2e import LabCluster

BUDGET = {"VM_HA_MAX_RESTARTS": "1000", "VM_HA_RESTARTS_IN_PLACE": "1000"}


def restarts(cl: LabCluster, vm_id: int) -> tuple[int, str]:
    root = SafeET.fromstring(cl.client.call("one.vm.info", vm_id, False))
    record = root.find("USER_TEMPLATE/VM_HA")
    if record is None:
        return 0, ""
    return len((record.findtext("RESTARTS") or "").split()), record.findtext("STATE") or ""


def running(cl: LabCluster, vm_id: int) -> bool:
    return cl.vm(vm_id).running


def wait(check, what: str, timeout: float = 60.0, period: float = 0.01) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(period)
    return time.monotonic()


def one_run(cl: LabCluster, vm_id: int, kind: str) -> tuple[float, float, float | None]:
    """Seconds from the fault to RUNNING again, to the new guest's banner, and to the
    restart's boot starting (BOOT_UNKNOWN seen; None if the 10 ms polling missed it)."""
    wait(lambda: (cl.counter(vm_id)[1] or 0) >= 2, "the guest to count", period=0.05)
    before, _ = restarts(cl, vm_id)
    boots = cl.counter(vm_id)[0]
    if kind == "kill":
        start = time.monotonic()
        cl.kill_qemu(vm_id)
    else:
        start = time.monotonic()
        cl.guest_command(vm_id, guest.HANG_BYTE)
    booting: list[float] = []

    def back_again() -> bool:
        view = cl.vm(vm_id)
        if not booting and view.lcm.name == "BOOT_UNKNOWN":
            booting.append(time.monotonic())  # VM HA decided and the boot began
        return view.running and restarts(cl, vm_id) == (before + 1, "RUNNING")

    back = wait(back_again, "the VM RUNNING again")
    banner = wait(lambda: cl.counter(vm_id)[0] > boots, "the new guest's banner")
    return back - start, banner - start, (booting[0] - start) if booting else None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kind", choices=("kill", "hang", "both"), default="both")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (the lab)", file=sys.stderr)
        return 2
    kinds = ("kill", "hang") if args.kind == "both" else (args.kind,)
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="vm-crash-") as tmp, LabCluster(
        Path(tmp), hosts=2, subnet="10.250.90"
    ) as cl:
        results: dict[str, list[tuple[float, float, float | None]]] = {}
        for kind in kinds:
            [vm_id] = cl.create_vms(1, host="hv1", prefix=kind, liveness=kind == "hang",
                                    extra=BUDGET)  # fmt: skip
            cl.wait_running([vm_id])
            results[kind] = []
            for run in range(args.runs):
                back, banner, boot = one_run(cl, vm_id, kind)
                results[kind].append((back, banner, boot))
                seen = f"{boot:.3f} s" if boot is not None else "not seen"
                print(f"{kind} run {run:2d}: boot started after {seen}, RUNNING after "
                      f"{back:.3f} s, banner after {banner:.3f} s", flush=True)  # fmt: skip
            cl.client.call("one.vm.action", "terminate-hard", vm_id)
        print(f"load average after: {os.getloadavg()}")
        for kind, values in results.items():
            backs = [b for b, _, _ in values]
            banners = [g for _, g, _ in values]
            boots = [d for _, _, d in values if d is not None]
            line = (f"{kind}: RUNNING again median {statistics.median(backs):.2f} s, p99 "
                    f"{pct(backs, 0.99):.2f} s; guest banner median "
                    f"{statistics.median(banners):.2f} s, p99 {pct(banners, 0.99):.2f} s")
            if boots:
                line += (f"; boot started (detection + decision) median "
                         f"{statistics.median(boots):.2f} s, p99 {pct(boots, 0.99):.2f} s "
                         f"({len(boots)} runs seen)")
            if kind == "hang":
                less = [b - guest.WATCHDOG_TIMEOUT for b in backs]
                line += (f"; less the {guest.WATCHDOG_TIMEOUT} s watchdog timeout: median "
                         f"{statistics.median(less):.2f} s, p99 {pct(less, 0.99):.2f} s")
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
