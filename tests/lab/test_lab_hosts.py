"""Lab tests on real qemu hosts: bring-up, a counting VM, live migration, and the three faults.

All tests share one 3-host lab (labkit.lab, torn down and checked for leftovers at the end of
the module). Each test removes its VMs and repairs its host in `finally`, so one failure does
not cascade. VMs are driven with the virsh client, never libvirt-python.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from labkit import lab, qemu_pids, remove_vm, start_vm, virsh, wait_for

from lazarus.cli.lab import lab as lab_cli
from lazarus.lab import Lab
from lazarus.lab.guest import read_counter, read_serial
from lazarus.lab.lab import LIBVIRT_PORT
from lazarus.lab.proc import alive, cmdline, proc_state, tcp_reachable

pytestmark = [pytest.mark.root, pytest.mark.lab]
__all__ = ["lab"]  # the fixture, imported so pytest finds it


def counter_above(serial: Path, value: int) -> bool:
    return (read_counter(serial) or 0) > value


def test_hosts_answer_over_tcp_from_the_root_netns(lab: Lab) -> None:
    st = lab.status()
    assert [h.name for h in st.hosts] == ["hv1", "hv2", "hv3"]
    for h in st.hosts:
        assert (h.power, h.fault, h.libvirtd_alive) == ("on", None, True)
        assert h.libvirt_uri == f"qemu+tcp://{h.address}/system"
        assert h.template() == {"LIBVIRT_URI": h.libvirt_uri, "MIGRATE_URI": f"tcp://{h.address}"}
        # Its own UTS namespace and its own daemon: the hostname is the host's name.
        assert virsh(h.libvirt_uri, "hostname") == h.name
    caps = [virsh(h.libvirt_uri, "capabilities") for h in st.hosts]
    uuids = {c.split("<uuid>")[1].split("</uuid>")[0] for c in caps}
    assert len(uuids) == 3  # distinct host UUIDs, or libvirt refuses to migrate between them


def test_cli_status_json_names_every_uri(lab: Lab) -> None:
    result = CliRunner().invoke(lab_cli, ["status", "--json", "--dir", str(lab.root)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [h["libvirt_uri"] for h in data["hosts"]] == [h.libvirt_uri for h in lab.status().hosts]
    plain = CliRunner().invoke(lab_cli, ["status", "--dir", str(lab.root)])
    assert "qemu+tcp://" in plain.output and "hv3" in plain.output


def test_vm_counts_and_live_migrates_with_its_counter_going_on(lab: Lab) -> None:
    st = lab.status()
    src, dst = st.host("hv1"), st.host("hv2")
    try:
        started = time.monotonic()
        serial = start_vm(st, "hv1", "mig")
        print(f"VM define+start: {time.monotonic() - started:.2f} s")
        wait_for(lambda: counter_above(serial, 2), "the guest to count")
        [pid] = qemu_pids("mig")
        assert pid in lab.status().host("hv1").pids
        before = read_counter(serial) or 0

        started = time.monotonic()
        virsh(src.libvirt_uri, "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
              "mig", dst.libvirt_uri)  # fmt: skip
        print(f"live p2p migration: {time.monotonic() - started:.2f} s")

        assert virsh(dst.libvirt_uri, "domstate", "mig") == "running"
        assert "mig" not in virsh(src.libvirt_uri, "list", "--all", "--name").split()
        [new_pid] = qemu_pids("mig")
        assert new_pid in lab.status().host("hv2").pids
        assert not alive(pid)
        after = read_counter(serial) or 0
        wait_for(lambda: counter_above(serial, after + 2), "the counter to go on after migration")
        view = read_serial(serial)
        assert view.boots == 1  # the same guest, not a restart
        assert view.counter is not None and view.counter > before
    finally:
        remove_vm(st, "mig")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_subreaper_adopts_libvirtd_and_its_qemus(lab: Lab) -> None:
    """This machine's PID 1 reaps orphans after seconds, and libvirt's destroy waits for the
    reaping holding the domain's lock (probes then time out: a busy host got fenced). Each
    host's libvirtd runs under lab.reaper, which adopts the daemonized qemus and reaps them."""
    st = lab.status()
    host = st.host("hv1")
    try:
        start_vm(st, "hv1", "reap")
        [qemu] = qemu_pids("reap")
        assert host.libvirtd_pid is not None
        reaper = _parent(host.libvirtd_pid)
        assert _parent(qemu) == reaper != 1
        assert "lazarus.lab.reaper" in " ".join(cmdline(reaper))
        virsh(host.libvirt_uri, "destroy", "reap")
        assert proc_state(qemu) is None  # reaped, not a zombie waiting for PID 1
    finally:
        remove_vm(lab.status(), "reap")


def test_power_fault_kills_qemu_and_power_on_brings_the_domain_back_shut_off(lab: Lab) -> None:
    st = lab.status()
    hv3 = st.host("hv3")
    try:
        serial = start_vm(st, "hv3", "pw")
        wait_for(lambda: counter_above(serial, 0), "the guest to count")
        [pid] = qemu_pids("pw")

        lab.fail("hv3", "power")
        assert not alive(pid)
        assert qemu_pids("pw") == []
        assert lab.status().host("hv3").pids == ()
        assert lab.power_state("hv3") == "off"
        assert not tcp_reachable(hv3.address, LIBVIRT_PORT, timeout=1.0)

        lab.power_on("hv3")
        on = lab.status().host("hv3")
        assert (on.power, on.libvirtd_alive) == ("on", True)
        assert on.libvirtd_pid != hv3.libvirtd_pid
        assert virsh(on.libvirt_uri, "domstate", "pw") == "shut off"
        assert qemu_pids("pw") == []  # stale definition, never autostarted
        lab.power_on("hv3")  # powering on a running host does nothing
        assert lab.status().host("hv3").libvirtd_pid == on.libvirtd_pid
    finally:
        lab.repair("hv3")
        remove_vm(lab.status(), "pw")


def test_network_fault_keeps_the_vm_running_while_libvirtd_is_unreachable(lab: Lab) -> None:
    st = lab.status()
    hv2 = st.host("hv2")
    try:
        serial = start_vm(st, "hv2", "split", persistent=False)
        wait_for(lambda: counter_above(serial, 0), "the guest to count")
        [pid] = qemu_pids("split")

        lab.fail("hv2", "network")
        assert lab.status().host("hv2").fault == "network"
        assert not tcp_reachable(hv2.address, LIBVIRT_PORT, timeout=1.0)
        now = read_counter(serial) or 0
        wait_for(lambda: counter_above(serial, now + 2), "the cut-off guest to keep counting")
        assert alive(pid)  # split brain: the VM still runs on the isolated host

        lab.repair("hv2")
        assert tcp_reachable(hv2.address, LIBVIRT_PORT, timeout=5.0)
        assert virsh(hv2.libvirt_uri, "domstate", "split") == "running"
    finally:
        lab.repair("hv2")
        remove_vm(lab.status(), "split")


def test_hang_fault_stops_libvirtd_and_repair_resumes_it(lab: Lab) -> None:
    hv1 = lab.status().host("hv1")
    try:
        lab.fail("hv1", "hang")
        pid = hv1.libvirtd_pid
        assert pid is not None
        # SIGSTOP takes effect when the target next runs: on a busy box, not at once
        wait_for(lambda: proc_state(pid) == "T", "libvirtd to be stopped")
        # The kernel still accepts the TCP connection; nothing answers the RPC.
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(["virsh", "-c", hv1.libvirt_uri, "hostname"], capture_output=True,
                           timeout=2)  # fmt: skip
        lab.repair("hv1")
        assert virsh(hv1.libvirt_uri, "hostname") == "hv1"
    finally:
        lab.repair("hv1")
