"""`lazarus lab up` and `down` run as separate processes; `down` leaves nothing behind.

The lab under test runs two VMs and has a hung libvirtd when `down` runs, so teardown has to
handle stopped processes and orphaned qemus too. Asserted afterwards: no namespace with the
lab's prefix (bridge and veths live in them), no root-netns link, no mount under the lab dir,
no process that was part of the lab, no state file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from labkit import assert_nothing_left, qemu_pids, require_lab, start_vm, wait_for, worker_index

from lazarus.lab import Lab, netns
from lazarus.lab.proc import mounts_under

pytestmark = [pytest.mark.root, pytest.mark.lab]
CLI = [sys.executable, "-c", "from lazarus.cli.lab import lab; lab()"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=90, check=False)


def test_down_from_another_process_leaves_nothing_behind(tmp_path: Path) -> None:
    require_lab()
    root = tmp_path / "lab"
    subnet = f"10.250.{150 + worker_index()}"
    the_lab = Lab(root, subnet=subnet)
    try:
        up = cli("up", "--hosts", "2", "--subnet", subnet, "--dir", str(root))
        assert up.returncode == 0, up.stderr
        assert "lab up: 2 hosts" in up.stdout
        st = the_lab.status()
        start_vm(st, "hv1", "doomed1", persistent=False)
        start_vm(st, "hv2", "doomed2")
        wait_for(lambda: bool(qemu_pids("doomed1") and qemu_pids("doomed2")), "both VMs")
        the_lab.fail("hv2", "hang")
        seen = [p for h in the_lab.status().hosts for p in h.pids]
        assert len(seen) == 6  # two reapers (lab/reaper.py), two libvirtds, two qemus
        assert len(netns.list_netns(the_lab.prefix)) == 3  # lan, hv1, hv2
        assert netns.root_links(the_lab.prefix) == [f"{the_lab.prefix}-ctl"]
        assert mounts_under(root) != []

        down = cli("down", "--dir", str(root))
        assert down.returncode == 0, down.stderr
        assert_nothing_left(the_lab, seen)
        again = cli("down", "--dir", str(root))  # idempotent
        assert again.returncode == 0, again.stderr
    finally:
        the_lab.down()
