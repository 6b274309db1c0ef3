"""Tier 2, Redfish: live migration, and a power cut recovered through fence_redfish (root).

Real parts only: qemu hosts in namespaces (lab/), sushy-tools as each host's BMC, the real
`lazarus serve` with the libvirt driver, the HOST/ERROR hook running ft/host_error -m, which
fences with ft/fence_host -> fence_redfish. The power cut is "pulling the plug" (Lab.fail
power): the BMC still says ON, so fence_redfish really has to switch the chassis off.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2ekit import cluster, qemu_watch
from labkit import virsh, wait_for

from lazarus.lab.e2e import LabCluster
from lazarus.lab.observe import QemuWatch

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    yield from cluster(tmp_path_factory.mktemp("e2e-redfish"), "redfish", 0)


@pytest.fixture
def qemus(cl: LabCluster) -> Iterator[QemuWatch]:
    yield from qemu_watch(cl)


def test_live_migration_keeps_the_guest_counting(cl: LabCluster) -> None:
    [vm_id] = cl.create_vms(1, host="hv1", prefix="mig")
    cl.wait_running([vm_id])
    wait_for(lambda: (cl.counter(vm_id)[1] or 0) >= 3, "the guest to count")
    before = cl.counter(vm_id)[1] or 0

    cl.client.call("one.vm.migrate", vm_id, cl.host_ids["hv3"], True, False, -1, 0)
    [view] = cl.wait_running([vm_id], not_on="hv1")
    assert view.host == "hv3"
    wait_for(lambda: (cl.counter(vm_id)[1] or 0) >= before + 3, "the counter to go on")
    boots, counter = cl.counter(vm_id)
    assert boots == 1, "a second banner: the guest was restarted, not migrated"
    assert counter is not None and counter > before
    st = cl.lab.status()
    assert f"one-{vm_id}" in virsh(st.host("hv3").unix_uri, "list", "--name")
    assert f"one-{vm_id}" not in virsh(st.host("hv1").unix_uri, "list", "--all", "--name")


def test_power_cut_fenced_by_redfish_vms_restart_and_the_host_returns_clean(
    cl: LabCluster, qemus: QemuWatch
) -> None:
    victims = cl.create_vms(3, host="hv2", prefix="pc")
    cl.wait_running(victims)
    wait_for(lambda: all((cl.counter(v)[1] or 0) >= 1 for v in victims), "the guests to count")
    assert cl._bmcs is not None
    fence_before = len(cl.hook_log())

    cut = time.monotonic()
    cl.lab.fail("hv2", "power")  # the plug: the BMC does not notice
    views = cl.wait_running(victims, not_on="hv2", timeout=90)
    print(f"power cut -> {len(victims)} VMs RUNNING elsewhere: {time.monotonic() - cut:.2f} s")

    assert {v.host for v in views} <= {"hv1", "hv3"}
    assert cl.host_state("hv2") == "ERROR"
    # host_error follows the VMs it moved (about a second behind) before it finishes
    wait_for(lambda: "Hook finished" in cl.hook_log()[fence_before:], "host_error to finish")
    log = cl.hook_log()[fence_before:]
    assert "fence_redfish off #1: ok" in log, log
    assert "Fencing success" in log and "Hook finished" in log
    assert cl.watch is not None
    host_id = cl.host_ids["hv2"]
    watch = cl.watch
    # the watcher polls every 50 ms: give it the moment to see DONE too
    wait_for(lambda: watch.first("incident", host_id, "DONE", after=cut) is not None,
             "the watcher to see the incident DONE")
    fenced = watch.first("incident", host_id, "DONE", after=cut)
    error = cl.watch.first("host", host_id, "ERROR", after=cut)
    assert error is not None and fenced is not None and error <= fenced
    from lazarus.lab.bmc import BmcSet

    assert isinstance(cl._bmcs, BmcSet) and cl._bmcs.power_state("hv2") == "off"
    for v in victims:  # restarted from scratch: a second banner, counting again
        wait_for(lambda v=v: cl.counter(v)[0] == 2 and (cl.counter(v)[1] or 0) >= 1,  # type: ignore[misc]
                 f"VM {v} to boot again and count")  # fmt: skip

    # Power back on through the BMC: MONITORED, its stale definitions removed, none started.
    back = time.monotonic()
    cl.bmc_power_on("hv2")
    cl.wait_hosts("MONITORED", ["hv2"], timeout=60)
    hv2 = cl.lab.status().host("hv2")
    wait_for(lambda: virsh(hv2.unix_uri, "list", "--all", "--name") == "",
             "the stale definitions on hv2 to be removed")  # fmt: skip
    mnt = cl.host_mnt("hv2")
    started_on_hv2 = [p for p in qemus.seen.values() if p.mnt == mnt and p.first >= back]
    assert started_on_hv2 == [], "a stale domain was started on the returned host"
    assert all(v.running and v.host != "hv2" for v in cl.vms() if v.id in victims)
