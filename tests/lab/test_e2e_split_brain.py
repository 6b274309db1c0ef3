"""Tier 2, split brain: a host cut off the network keeps running its VMs (root).

The controller cannot tell a cut cable from a dead host. ft/host_error must fence the host
(fence_redfish powers the chassis off, which kills its qemus) before any of its VMs is started
elsewhere. Checked from the processes themselves: a thread samples every qemu process's
`-name guest=...` argument and mount namespace (= lab host) every 20 ms during the test; no
VM may ever have two qemu processes at once, and every replacement qemu must appear after the
isolated host's one was last seen alive.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2ekit import cluster, qemu_watch

from lazarus.lab.e2e import LabCluster
from lazarus.lab.observe import QemuWatch

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    yield from cluster(tmp_path_factory.mktemp("e2e-split"), "redfish", 2)


@pytest.fixture
def qemus(cl: LabCluster) -> Iterator[QemuWatch]:
    yield from qemu_watch(cl)


def test_network_cut_host_is_fenced_before_its_vms_start_elsewhere(
    cl: LabCluster, qemus: QemuWatch
) -> None:
    victims = cl.create_vms(3, host="hv2", prefix="split")
    cl.wait_running(victims)
    names = {v: f"one-{v}" for v in victims}
    mnt = cl.host_mnt("hv2")

    cut = time.monotonic()
    cl.lab.fail("hv2", "network")  # the VMs keep running on the isolated host
    time.sleep(0.5)
    assert all(any(p.mnt == mnt and p.last >= cut for p in qemus.processes(n))
               for n in names.values()), "the VMs should still run on the cut-off host"  # fmt: skip
    cl.wait_running(victims, not_on="hv2", timeout=90)
    print(f"network cut -> VMs RUNNING elsewhere: {time.monotonic() - cut:.2f} s "
          f"({qemus.samples} qemu samples)")  # fmt: skip
    time.sleep(0.2)  # a few more samples with the new qemus alive

    assert qemus.overlaps == [], f"two qemu processes for one VM: {qemus.overlaps[:5]}"
    for vm_id, name in names.items():
        procs = qemus.processes(name)
        old = [p for p in procs if p.mnt == mnt]
        new = [p for p in procs if p.mnt != mnt]
        assert old and new, (vm_id, procs)
        assert max(p.last for p in old) < min(p.first for p in new), (vm_id, procs)
        assert qemus.most[name] == 1
    log = cl.hook_log()
    assert "fence_redfish off #1: ok" in log and "Powered OFF" in log, log
    assert cl.lab.power_state("hv2") == "off"
