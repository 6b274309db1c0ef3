"""Tier 2, the second signal: `lazarus agent` in each lab host writes its heartbeat to the
shared datastore; the controller reads it (HEARTBEAT_DIR) and ft/host_error weighs it (root).

* A network cut (the cable pulled, the agent still writing the shared datastore): the host
  goes to ERROR but is ISOLATED, with its incident waiting in ISOLATED: not fenced (the
  default policy has no --fence-isolated-after), its VMs still running there only; when the
  cable is back it is MONITORED again, the incident ABORTED, the VMs RUNNING in place.
* A power cut behind the BMC's back (the agent dies with the host): the heartbeat stops, the
  BMC's OFF and the stopped heartbeat prove the host off, and its VMs run elsewhere; the
  incident's EVIDENCE says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from defusedxml import ElementTree as SafeET
from e2ekit import cluster
from labkit import virsh

from lazarus.lab import hosts
from lazarus.lab.e2e import LabCluster

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    yield from cluster(tmp_path_factory.mktemp("e2e-agent"), "redfish", 3, agents=True)


def _vector(cl: LabCluster, host: str, name: str) -> dict[str, str]:
    xml = cl.client.call("one.host.info", cl.host_ids[host], False)
    element = SafeET.fromstring(xml).find(f"TEMPLATE/{name}")
    if element is None:
        return {}
    return {child.tag: (child.text or "") for child in element}


def _until(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_heartbeats_are_seen_for_every_host(cl: LabCluster) -> None:
    for name in cl.host_ids:
        assert cl.lab.agent_alive(name), cl.daemon_log()
        _until(lambda n=name: _vector(cl, n, "HA_HEARTBEAT").get("STATUS") == "ADVANCING",
               f"{name}'s heartbeat")
        assert _vector(cl, name, "HA_HEARTBEAT")["WATCHDOG"] == "17"  # 5 + 2 x 1 + 10


def test_network_cut_with_agent_writing_is_isolated_not_fenced(cl: LabCluster) -> None:
    victims = cl.create_vms(2, host="hv2", prefix="iso")
    cl.wait_running(victims)
    cut = time.monotonic()
    cl.lab.fail("hv2", "network")
    _until(lambda: _vector(cl, "hv2", "HA_INCIDENT").get("STATE") == "ISOLATED",
           "the incident to be ISOLATED")
    print(f"network cut -> incident ISOLATED: {time.monotonic() - cut:.2f} s")
    assert cl.host_state("hv2") == "ERROR"
    assert _vector(cl, "hv2", "HA_HEARTBEAT")["ISOLATED"] == "YES"
    assert cl.lab.power_state("hv2") == "on"  # not fenced
    assert all(cl.vm(v).host == "hv2" for v in victims)  # nothing started elsewhere
    cl.lab.repair("hv2")
    cl.wait_hosts("MONITORED", ["hv2"], timeout=60)
    _until(lambda: _vector(cl, "hv2", "HA_INCIDENT").get("STATE") == "ABORTED",
           "the incident to end ABORTED (host back)")
    cl.wait_running(victims)
    assert all(cl.vm(v).host == "hv2" for v in victims)
    assert cl.lab.power_state("hv2") == "on"


def test_power_cut_heartbeat_stops_fence_proven_recovered(cl: LabCluster) -> None:
    victims = cl.create_vms(2, host="hv3", prefix="pwr")
    cl.wait_running(victims)
    cut = time.monotonic()
    cl.lab.power_off("hv3")  # behind the BMC's back: the agent dies with the host
    assert not cl.lab.agent_alive("hv3")
    cl.wait_running(victims, not_on="hv3", timeout=90)
    print(f"power cut -> VMs RUNNING elsewhere: {time.monotonic() - cut:.2f} s")
    incident = _vector(cl, "hv3", "HA_INCIDENT")
    assert incident.get("STATE") in ("RECOVERING", "DONE"), incident
    assert "BMC: OFF" in incident.get("EVIDENCE", ""), incident
    assert "heartbeat stopped" in incident.get("EVIDENCE", ""), incident
    assert _vector(cl, "hv3", "HA_HEARTBEAT")["STATUS"] == "STOPPED"
    cl.lab.power_on("hv3")  # repaired: back for the next test (its agent starts with it)
    cl.wait_hosts("MONITORED", ["hv3"], timeout=60)
    _until(lambda: _vector(cl, "hv3", "HA_HEARTBEAT").get("STATUS") == "ADVANCING",
           "hv3's heartbeat after its power-on")


def test_policy_fences_an_isolated_host_then_recovers(cl: LabCluster) -> None:
    """--fence-isolated-after: the isolated host is powered off by its BMC after that long;
    its heartbeat stops, which confirms the BMC's OFF, and its VMs run elsewhere."""
    cl.client.call("one.hook.update", cl.hook_id,
                   'ARGUMENTS = "$TEMPLATE -m -p 1 --fence-isolated-after 3"', 1)
    victims = cl.create_vms(2, host="hv1", prefix="pol")
    cl.wait_running(victims)
    cut = time.monotonic()
    cl.lab.fail("hv1", "network")
    cl.wait_running(victims, not_on="hv1", timeout=90)
    print(f"network cut, --fence-isolated-after 3 -> VMs RUNNING elsewhere: "
          f"{time.monotonic() - cut:.2f} s")
    assert cl.lab.power_state("hv1") == "off"
    incident = _vector(cl, "hv1", "HA_INCIDENT")
    assert incident.get("ISOLATED_SINCE"), incident  # it was ISOLATED first
    assert "BMC: OFF" in incident.get("EVIDENCE", ""), incident
    assert "heartbeat stopped" in incident.get("EVIDENCE", ""), incident
    cl.lab.repair("hv1")  # powered back on, cable in: back for the next test
    cl.wait_hosts("MONITORED", ["hv1"], timeout=60)


def test_isolation_response_stops_the_vms_and_they_run_elsewhere_unfenced(
    cl: LabCluster,
) -> None:
    """The agent's `--isolation-response stop`: cut off from the controller for 3 s (its
    storage still working), it destroys its domains with virsh and says VMS STOPPED; the
    VMs are recovered elsewhere and the host is not fenced."""
    cl.client.call("one.hook.update", cl.hook_id, 'ARGUMENTS = "$TEMPLATE -m -p 1"', 1)
    assert cl.status is not None
    port = cl.controller.url.rsplit(":", 1)[1].split("/", 1)[0]
    cl.lab.stop_agent("hv2")
    cl.lab.start_agent("hv2", f"{cl.controller.listen}:{port}",
                       extra=["--isolation-response", "stop", "--isolation-time", "3"])
    _until(lambda: _vector(cl, "hv2", "HA_HEARTBEAT").get("STATUS") == "ADVANCING",
           "hv2's new agent")
    victims = cl.create_vms(2, host="hv2", prefix="resp")
    cl.wait_running(victims)
    cut = time.monotonic()
    cl.lab.fail("hv2", "network")
    cl.wait_running(victims, not_on="hv2", timeout=90)
    print(f"network cut, isolation response stop -> VMs RUNNING elsewhere: "
          f"{time.monotonic() - cut:.2f} s")
    assert cl.lab.power_state("hv2") == "on"  # not fenced
    assert _vector(cl, "hv2", "HA_HEARTBEAT").get("VMS") == "STOPPED"
    assert "AGENT" in _vector(cl, "hv2", "HA_INCIDENT").get("EVIDENCE", "")
    uri = hosts.HostPaths(cl.lab.root, "hv2").unix_uri  # its cable is out: the local socket
    assert virsh(uri, "list", "--name") == ""  # nothing runs there any more
