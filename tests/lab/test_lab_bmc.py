"""The lab with emulated BMCs: fence_redfish powers a real host off (its qemu dies) and on.

fence_redfish -> sushy-tools -> chassis domain in a test-driver libvirtd -> the bmc watcher ->
Lab.power_off / Lab.power_on. The agent reads its options (password included) from stdin, so
the password never appears in a command line.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import (
    assert_nothing_left,
    qemu_pids,
    require_lab,
    start_vm,
    virsh,
    wait_for,
    worker_index,
)

from lazarus.lab import Lab
from lazarus.lab.guest import read_counter

pytestmark = [pytest.mark.root, pytest.mark.lab]


@pytest.fixture
def bmc_lab(tmp_path: Path) -> Iterator[Lab]:
    require_lab()
    modules = ("bcrypt", "sushy_tools", "virtualbmc")
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing or shutil.which("fence_redfish") is None or shutil.which("openssl") is None:
        pytest.skip(f"missing: {missing or 'fence_redfish/openssl'}")
    the_lab = Lab(tmp_path / "lab", subnet=f"10.250.{200 + worker_index()}")
    seen: list[int] = []
    try:
        the_lab.up(2)
        the_lab.start_bmcs(ipmi=False)
        seen += [p for h in the_lab.status().hosts for p in h.pids]
        yield the_lab
        seen += [p for h in the_lab.status().hosts for p in h.pids]
    finally:
        the_lab.down()
    assert_nothing_left(the_lab, seen)


def fence_redfish(fence: dict[str, str], action: str) -> subprocess.CompletedProcess[str]:
    options = dict(o.split("=", 1) for o in fence["OPTIONS"].split())
    password = Path(fence["PASSWORD_FILE"]).read_text().strip()
    stdin = "".join(
        f"{k}={v}\n"
        for k, v in {"ip": fence["IP"], "ipport": fence["PORT"], "username": fence["USERNAME"],
                     "password": password, "action": action, **options}.items()
    )  # fmt: skip
    return subprocess.run([fence["AGENT"]], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_fence_redfish_cuts_a_real_host_and_powers_it_back(bmc_lab: Lab) -> None:
    st = bmc_lab.status()
    fence = st.host("hv2").fence["redfish"]
    assert fence["AGENT"] == "fence_redfish"
    serial = start_vm(st, "hv2", "fenced")
    wait_for(lambda: (read_counter(serial) or 0) > 0, "the guest to count")
    [pid] = qemu_pids("fenced")

    started = time.monotonic()
    off = fence_redfish(fence, "off")
    assert off.returncode == 0, off.stdout + off.stderr
    wait_for(lambda: bmc_lab.power_state("hv2") == "off", "the watcher to cut hv2's power")
    print(f"fence_redfish off -> host off: {time.monotonic() - started:.2f} s")
    assert qemu_pids("fenced") == [] and pid not in bmc_lab.status().host("hv2").pids
    assert fence_redfish(fence, "status").returncode == 2  # 2 = off

    on = fence_redfish(fence, "on")
    assert on.returncode == 0, on.stdout + on.stderr
    wait_for(lambda: bmc_lab.status().host("hv2").libvirtd_alive, "hv2 to boot")
    assert virsh(st.host("hv2").libvirt_uri, "domstate", "fenced") == "shut off"
