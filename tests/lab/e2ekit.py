"""Helpers for the tier-2 end-to-end tests (tests/lab/test_e2e_*.py): a LabCluster per module.

Settings are the fast cadence the integration tests use (1 s monitoring interval, 0.5 s
retries, 1 s probe timeout) and the hook runs `ft/host_error -m -p 1`, so one failover takes
a few seconds; bench/rto.py measures the defaults. Each module gets its own /24 per
pytest-xdist worker (10.250.30+ range), so modules and workers never share addresses.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import require_lab, worker_index

from lazarus.lab.e2e import LabCluster
from lazarus.lab.observe import QemuWatch

FAST = {
    "MONITORING_INTERVAL_HOST": "1",
    "RETRY_INTERVAL": "0.5",
    "PROBE_TIMEOUT": "1",
    "SCHED_INTERVAL": "0.5",
}
HOOK_ARGS = "$TEMPLATE -m -p 1"


def require_e2e(fence: str) -> None:
    require_lab()
    modules = ("bcrypt", "sushy_tools", "virtualbmc", "libvirt")
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    agent = "fence_redfish" if fence == "redfish" else "fence_ipmilan"
    missing += [b for b in (agent, "openssl", "ipmitool") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing: {', '.join(missing)}")


def cluster(tmp: Path, fence: str, slot: int, hosts: int = 3, *, agents: bool = False
            ) -> Iterator[LabCluster]:  # fmt: skip
    """A cluster (3 hosts unless told) under a real controller, closed (lab down) even when
    a test fails; `agents`: every host runs `lazarus agent` (storage heartbeat, fake watchdog)."""
    require_e2e(fence)
    subnet = f"10.250.{30 + 4 * worker_index() + slot}"
    with LabCluster(tmp, hosts=hosts, fence=fence, subnet=subnet, settings=FAST,
                    hook_args=HOOK_ARGS, agents=agents) as the_cluster:  # fmt: skip
        try:
            yield the_cluster
        finally:
            print(the_cluster.hook_log())


def qemu_watch(cl: LabCluster) -> Iterator[QemuWatch]:
    """The qemus of this cluster's hosts (a lab test on the other worker has VMs of the same
    names), sampled every 20 ms."""
    watch = QemuWatch(mounts=cl.host_mnts()).start()
    try:
        yield watch
    finally:
        watch.stop()
