"""Helpers for the lab tests: a module-wide 3-host lab fixture and helpers to drive virsh.

Test modules import what they use (`from labkit import lab, virsh`); this is not a conftest.py
because a sub-directory conftest shadows `from conftest import ...` for every other test.

Each pytest-xdist worker gets its own /24 (10.250.100+N for the shared lab, 10.250.150+N for
labs a test builds itself), so parallel workers never share addresses; the default 10.250.0.0/24
stays free for a lab someone brought up by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lazarus.lab import Lab, LabStatus, netns
from lazarus.lab.guest import domain_xml
from lazarus.lab.proc import alive, cmdline, mounts_under

LAB_BINARIES = ("libvirtd", "qemu-system-x86_64", "ip", "nsenter", "unshare")


def require_lab() -> None:
    """Skip unless root with the lab's programs (tests/conftest.py's require_root, inlined)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    missing = [b for b in LAB_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing binaries: {', '.join(missing)} (run `make setup` as root)")


def worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def virsh(uri: str, *args: str, timeout: float = 60.0) -> str:
    done = subprocess.run(
        ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} on {uri}: {done.stderr.strip()}")
    return done.stdout.strip()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll a real condition (a real qemu, a real daemon) until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_vm(st: LabStatus, host: str, name: str, *, persistent: bool = True) -> Path:
    """Start a tiny guest named `name` on `host` with virsh; return its serial file."""
    serial = Path(st.datastore) / f"{name}.serial"
    xml = Path(st.datastore) / f"{name}.xml"
    xml.write_text(domain_xml(name, Path(st.image), serial))
    uri = st.host(host).libvirt_uri
    if persistent:
        virsh(uri, "define", str(xml))
        virsh(uri, "start", name)
    else:
        virsh(uri, "create", str(xml))
    return serial


def remove_vm(st: LabStatus, name: str) -> None:
    """Best-effort: destroy and undefine `name` wherever it is (hosts may be down)."""
    for h in st.hosts:
        for args in (("destroy", name), ("undefine", name)):
            subprocess.run(["virsh", "-q", "-c", h.unix_uri, *args], capture_output=True,
                           timeout=10, check=False)  # fmt: skip


def qemu_pids(name: str) -> list[int]:
    """Live qemu processes running the domain `name` (libvirt passes `-name guest=NAME,...`)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            args = cmdline(int(entry))
            if args and "qemu-system" in args[0] and f"guest={name}," in " ".join(args):
                found.append(int(entry))
    return [p for p in found if alive(p)]


def assert_nothing_left(lab: Lab, pids: list[int]) -> None:
    """Everything a lab made is gone: processes, mounts, namespaces, bridge ports and links."""
    assert netns.list_netns(lab.prefix) == []
    assert netns.root_links(lab.prefix) == []
    assert mounts_under(lab.root) == []
    assert [p for p in pids if alive(p)] == []
    leftovers = [
        int(e) for e in os.listdir("/proc")
        if e.isdigit() and alive(int(e)) and str(lab.root) in " ".join(cmdline(int(e)))
    ]  # fmt: skip
    assert leftovers == []
    assert not lab.state_file.exists()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A 3-host lab shared by one test module; torn down (and checked) even on failure."""
    require_lab()
    the_lab = Lab(tmp_path_factory.mktemp("lab"), subnet=f"10.250.{100 + worker_index()}")
    seen: list[int] = []
    try:
        started = time.monotonic()
        st = the_lab.up(3)
        print(f"lab up (3 hosts): {time.monotonic() - started:.2f} s")
        seen += [p for h in st.hosts for p in h.pids]
        yield the_lab
        seen += [p for h in the_lab.status().hosts for p in h.pids]
    finally:
        the_lab.down()
    assert_nothing_left(the_lab, seen)
