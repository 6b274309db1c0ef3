"""ft/host_error end to end, when the world is unlucky: a full disk under the daemon's store,
and a SIGKILL of the controller while a real ClusterLabs fence agent runs.

The cluster helpers (`Cluster`, `Watch`, the `make_cluster` fixture) are test_ha_daemon.py's;
see its docstring. Both tests need root (a tmpfs mount; the BMC emulators) and skip with the
reason otherwise. Waits are bounded polls.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_ha_daemon as ha
from test_ha_daemon import ERROR, MONITORED, Cluster, Watch

from helpers.bmc import BMC_BINARIES
from helpers.daemon import wait_for
from helpers.env import require_root
from lazarus.lab.bmc import BmcError, BmcSet

make_cluster = ha.make_cluster  # the fixture, shared

DEADLINE = 60.0


# ------------------------------------------------------------------- a full disk (issue 20)
@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs as the daemon's data directory (tmp_path/data, where make_cluster puts
    it; its stderr log stays outside, next to it)."""
    require_root("mount", "umount")
    mount = tmp_path / "data"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    """Fill the file system until it refuses a byte; the filler file is returned."""
    filler = mount / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@pytest.mark.root
def test_disk_full_failover(make_cluster: Callable[..., Cluster], tiny_tmpfs: Path,
                            tmp_path: Path) -> None:
    """The issue's disk-full failover. (1) The disk is full when node1 fails: the monitor
    cannot record it (logged); once space is back node1 goes ERROR and the hook runs. (2) The
    disk fills again while ft/host_error waits (-p): its next write (the incident FENCING) is
    refused. Before, host_error failed with "Store error", exit 255, and nothing ran it again:
    the VMs stayed UNKNOWN until an operator came. Now it sends the write again (logged) and,
    once space is back, fences and recovers the VMs by itself."""
    hook_log = tmp_path / "hook-log"  # host_error.log outside the full disk, to watch it
    c = make_cluster({"LOG_DIR": str(hook_log)})
    daemon_log = c.daemon.log_path
    assert tiny_tmpfs in c.daemon.data_dir.parents or c.daemon.data_dir == tiny_tmpfs
    victim = c.add_host("node1")
    vms = c.add_vms(2)
    wait_for("the VMs RUNNING on node1", lambda: c.running_on(vms, victim))
    other = c.add_host("node2")
    c.create_hook("$TEMPLATE -r -p 10")
    watch = Watch(c.daemon, vms, ["node1", "node2"]).start()

    c.call("lazarus.sim.network", "node1", "cut")  # (it writes the simulator's state file)
    filler = fill(tiny_tmpfs)  # at once: node1's first probes fail a second later
    wait_for("the monitor saying it could not record node1's failed probe",
             lambda: "not recorded, the store fails" in text(daemon_log), DEADLINE)
    assert c.host_state(victim) == MONITORED  # not detected while nothing can be written
    filler.unlink()
    wait_for("node1 ERROR once writes work", lambda: c.host_state(victim) == ERROR, DEADLINE)
    wait_for("host_error waiting (-p)", lambda: c.incident(victim).get("STATE") == "WAITING",
             DEADLINE)

    filler = fill(tiny_tmpfs)
    wait_for("host_error retrying a write the store refused",
             lambda: "the store refused the write" in text(hook_log / "host_error.log"),
             DEADLINE)
    assert c.incident(victim)["STATE"] == "WAITING" and c.records() == []  # still trying
    filler.unlink()
    wait_for("the incident DONE", lambda: c.incident(victim).get("STATE") == "DONE", DEADLINE)
    wait_for("the VMs RUNNING on node2", lambda: c.running_on(vms, other), DEADLINE)
    watch.stop()
    watch.check()
    # host_error saves DONE (after following the VMs), then exits: its record comes after
    wait_for("host_error's record", lambda: len(c.records()) == 1, DEADLINE)
    [record] = c.records()
    assert record["code"] == "0", record
    assert "the store refused the write" in record["stdout"]
    assert c.power("node1") == "off" and all(c.truth(v) == ["node2"] for v in vms)


# ------------------------------------------- SIGKILL during the fence, a real ClusterLabs agent
@pytest.mark.root
def test_controller_killed_during_a_real_ipmi_fence_fences_again_after_the_restart(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """test_ha_daemon's SIGKILL-during-the-fence with fence_ipmilan against the virtualbmc
    emulator instead of fence_sim. node1's chassis is a domain of the emulator's libvirtd; when
    fence_ipmilan powers it off, the simulated node1 is powered off too (on_power), and the
    controller is SIGKILLed while the agent still runs (power_wait=4: it waits 4 s after the
    off before it checks the status). After the restart the interrupted execution runs again:
    it fences again (the agent finds the chassis off), the incident ends DONE and each VM runs
    once, on node2, never before node1 was off."""
    require_root(*BMC_BINARIES)
    off = threading.Event()
    holder: dict[str, Cluster] = {}

    def on_power(host: str, state: str) -> None:
        if state == "off" and "c" in holder:
            holder["c"].power("node1", "off")  # the chassis is the simulated host's power
            off.set()

    try:
        bmcs = BmcSet.start(tmp_path / "bmc", ["node1"], redfish=False, on_power=on_power)
    except BmcError as exc:
        pytest.skip(f"the IPMI emulator (virtualbmc) cannot run here: {exc}")
    try:
        attrs = bmcs.fence_attributes("node1", "ipmi")
        attrs["OPTIONS"] = "lanplus=1 power_wait=4"
        fence = "FENCE = [ " + ", ".join(f'{k} = "{v}"' for k, v in attrs.items()) + " ]"
        c = holder["c"] = make_cluster({"FENCE_ATTEMPTS": "1", "FENCE_TIMEOUT": "30",
                                        "FENCE_BACKOFF": "0.1", "FENCE_TOTAL_TIMEOUT": "60"})
        victim = c.add_host("node1", fence=fence)
        vms = c.add_vms(2)
        wait_for("the VMs RUNNING on node1", lambda: c.running_on(vms, victim))
        other = c.add_host("node2")
        c.create_hook("$TEMPLATE -r -p 0")
        watch = Watch(c.daemon, vms, ["node1", "node2"]).start()
        c.call("lazarus.sim.network", "node1", "cut")  # the VMs keep running there
        wait_for("fence_ipmilan powering the chassis off", off.is_set, DEADLINE)
        assert c.incident(victim)["STATE"] == "FENCING"
        c.daemon.kill()
        c.daemon.start()
        wait_for("the incident DONE", lambda: c.incident(victim).get("STATE") == "DONE",
                 DEADLINE)
        wait_for("the VMs RUNNING on node2", lambda: c.running_on(vms, other), DEADLINE)
        watch.stop()
        watch.check()
        wait_for("the re-run's record", lambda: len(c.records()) == 2, DEADLINE)
        records = c.records()
        assert [r["code"] for r in records] == ["-1", "0"], records
        again = records[1]["stdout"]
        assert "Fencing enabled" in again and "Fencing success" in again  # fenced again
        assert bmcs.power_state("node1") == "off" and c.power("node1") == "off"
        assert all(c.truth(v) == ["node2"] for v in vms)  # each VM runs once
        assert bmcs.password not in "".join(r["stdout"] + r["stderr"] for r in records)
    finally:
        bmcs.stop()
