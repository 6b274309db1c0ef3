"""Tier 2, IPMI: a power cut recovered through ft/host_error -m and fence_ipmilan (root).

The same chain as the Redfish test, with virtualbmc as each host's BMC: the host loses power
behind its BMC's back (Lab.fail power), the controller puts it in ERROR, the hook fences it
with fence_ipmilan (lanplus, power_wait=0) and reschedules its VMs onto the survivors.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2ekit import cluster
from labkit import wait_for

from lazarus.lab.e2e import LabCluster

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    yield from cluster(tmp_path_factory.mktemp("e2e-ipmi"), "ipmi", 1)


def test_power_cut_fenced_by_ipmi_vms_restart_on_the_survivors(cl: LabCluster) -> None:
    victims = cl.create_vms(2, host="hv2", prefix="ipmi")
    others = cl.create_vms(2, host="hv1", prefix="keep")
    cl.wait_running(victims + others)
    wait_for(lambda: all(cl.counter(v)[0] == 1 for v in victims), "the guests to boot")

    cut = time.monotonic()
    cl.lab.fail("hv2", "power")
    views = cl.wait_running(victims, not_on="hv2", timeout=90)
    print(f"power cut -> VMs RUNNING elsewhere: {time.monotonic() - cut:.2f} s")

    assert {v.host for v in views} <= {"hv1", "hv3"}
    # host_error follows the VMs it moved (about a second behind) before it finishes
    wait_for(lambda: "Hook finished" in cl.hook_log(), "host_error to finish")
    log = cl.hook_log()
    assert "fence_ipmilan off #1: ok" in log, log
    assert "fence_ipmilan status #1: off" in log, log
    assert "Hook finished" in log
    assert cl.lab.power_state("hv2") == "off"
    # The survivors' own VMs were not touched.
    assert all(v.running and v.host == "hv1" for v in cl.vms() if v.id in others)
    for v in victims:
        wait_for(lambda v=v: cl.counter(v)[0] == 2, f"VM {v} to boot again")  # type: ignore[misc]
