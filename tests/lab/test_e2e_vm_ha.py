"""Tier 2, VM HA on real qemu hosts (root): crashed guests come back, hosts are not fenced.

A real `lazarus serve` (the e2e cadence: 1 s probes) over 2 lab hosts. The crash is the real
thing: kill -9 of the guest's qemu, or the tiny guest panicking through pvpanic / hanging
until its ib700 watchdog fires, on command through its COM2 socket (lab/guest.py). libvirt's
domain events wake the host; the probe that follows shows the domain crashed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from defusedxml import ElementTree as SafeET
from e2ekit import cluster
from labkit import wait_for

from lazarus.lab import guest
from lazarus.lab.e2e import LabCluster

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    yield from cluster(tmp_path_factory.mktemp("e2e-vmha"), "redfish", 3, hosts=2)


def vm_ha(cl: LabCluster, vm_id: int) -> dict[str, str]:
    """The VM's VM_HA record, from one.vm.info (USER_TEMPLATE)."""
    root = SafeET.fromstring(cl.client.call("one.vm.info", vm_id, False))
    node = root.find("USER_TEMPLATE/VM_HA")
    return {child.tag: child.text or "" for child in node} if node is not None else {}


def restarted(cl: LabCluster, vm_id: int, boots: int) -> str:
    """Wait until the guest booted `boots` times, runs and counts; returns its host."""
    wait_for(lambda: cl.counter(vm_id)[0] >= boots, f"boot {boots} of VM {vm_id}", timeout=60)
    [view] = cl.wait_running([vm_id])
    wait_for(lambda: (cl.counter(vm_id)[1] or 0) >= 1, "the new guest to count", timeout=30)
    return view.host


def no_host_failure(cl: LabCluster, since: float = 0.0) -> None:
    """No host failed a probe, went to ERROR or had an incident since `since` (monotonic)."""
    changes = [c for c in cl.watch.snapshot() if c.at >= since]
    assert not [c for c in changes if c.kind == "incident"], "a host_error incident"
    assert {c.value for c in changes if c.kind == "host"} <= {"INIT", "MONITORED"}
    assert {c.value for c in changes if c.kind == "failures"} <= {"0"}, "a failed probe"


def test_killed_qemu_runs_again_in_place_without_a_fence(cl: LabCluster) -> None:
    [vm_id] = cl.create_vms(1, host="hv1", prefix="kill")
    cl.wait_running([vm_id])
    wait_for(lambda: (cl.counter(vm_id)[1] or 0) >= 3, "the guest to count")
    since = time.monotonic()
    old = cl.kill_qemu(vm_id)
    assert restarted(cl, vm_id, 2) == "hv1"
    boots, counter = cl.counter(vm_id)
    assert boots == 2 and counter is not None and counter < 20  # the counter restarted
    assert old not in cl.qemu_pids(vm_id)
    record = vm_ha(cl, vm_id)
    assert record["STATE"] == "RUNNING" and record["HOST_RESTARTS"] == "1", record
    assert "crashed" in record["REASON"], record
    no_host_failure(cl, since)
    cl.client.call("one.vm.action", "terminate-hard", vm_id)


def test_four_crashes_end_relocated_then_stopped(cl: LabCluster) -> None:
    [vm_id] = cl.create_vms(1, host="hv1", prefix="flap")
    cl.wait_running([vm_id])
    wait_for(lambda: (cl.counter(vm_id)[1] or 0) >= 1, "the guest to count")
    since = time.monotonic()
    where = []
    for boots in (2, 3, 4):
        cl.kill_qemu(vm_id)
        where.append(restarted(cl, vm_id, boots))
    assert where == ["hv1", "hv1", "hv2"], where
    record = vm_ha(cl, vm_id)
    assert record["RELOCATIONS"] == "1" and record["AVOID"] == str(cl.host_ids["hv1"]), record
    cl.kill_qemu(vm_id)
    wait_for(lambda: vm_ha(cl, vm_id).get("STATE") == "GAVE_UP", "VM HA to give up")
    record = vm_ha(cl, vm_id)
    assert len(record["RESTARTS"].split()) == 3, record
    view = cl.vm(vm_id)
    assert (view.state.name, view.lcm.name) == ("ACTIVE", "UNKNOWN")
    assert cl.qemu_pids(vm_id) == []

    def steps() -> list[str]:
        return [c.value + "@" + c.host for c in cl.watch.snapshot()
                if c.kind == "vm" and c.oid == vm_id]  # fmt: skip

    wait_for(lambda: steps()[-1] == "ACTIVE/UNKNOWN@hv2", "the watch to see it UNKNOWN")
    steps = steps()
    hosts = [s.split("@")[1] for s in steps if s.startswith("ACTIVE/RUNNING@")]
    assert hosts == ["hv1", "hv1", "hv1", "hv2"], steps  # boot, 2 restarts, relocated
    root = SafeET.fromstring(cl.client.call("one.vm.info", vm_id, False))
    history = [h.findtext("HOSTNAME") for h in root.iter("HISTORY")]
    assert history == ["hv1", "hv2"], history  # the move is in the VM's history
    no_host_failure(cl, since)
    cl.client.call("one.vm.recover", vm_id, 3)  # delete


def test_guest_panic_and_hang_are_crashes(cl: LabCluster) -> None:
    [vm_id] = cl.create_vms(1, host="hv2", prefix="panic", liveness=True)
    cl.wait_running([vm_id])
    wait_for(lambda: (cl.counter(vm_id)[1] or 0) >= 2, "the guest to count")
    since = time.monotonic()
    cl.guest_command(vm_id, guest.PANIC_BYTE)
    assert restarted(cl, vm_id, 2) == "hv2"
    assert "panicked" in vm_ha(cl, vm_id)["REASON"]
    wait_for(lambda: (cl.counter(vm_id)[1] or 0) >= 2, "the guest to count again")
    cl.guest_command(vm_id, guest.HANG_BYTE)  # its watchdog fires WATCHDOG_TIMEOUT s later
    assert restarted(cl, vm_id, 3) == "hv2"
    assert "watchdog" in vm_ha(cl, vm_id)["REASON"]
    no_host_failure(cl, since)
    cl.client.call("one.vm.action", "terminate-hard", vm_id)
