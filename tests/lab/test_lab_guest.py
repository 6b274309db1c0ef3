"""The tiny guest: boot sector layout, serial parsing, domain XML, and a real qemu run.

Only the last test starts a process (plain qemu, no libvirt, no root); it is marked `lab`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import defusedxml.ElementTree as ET
import pytest

from lazarus.lab import guest


def test_boot_sector_is_512_bytes_with_the_signature() -> None:
    sector = guest.boot_sector()
    assert len(sector) == 512
    assert sector[-2:] == b"\x55\xaa"
    assert guest.BANNER in sector


def test_assembler_resolves_labels_and_refuses_far_short_jumps() -> None:
    prog = (b"\x90", guest._Label("here"), guest._Rel(b"\xeb", "here", 1))
    assert guest.assemble(prog) == b"\x90\xeb\xfe"  # jmp to itself
    far = (guest._Label("top"), b"\x90" * 200, guest._Rel(b"\xeb", "top", 1))
    with pytest.raises(ValueError, match="out of range"):
        guest.assemble(far)


def test_read_serial_counts_boots_and_takes_the_last_complete_line(tmp_path: Path) -> None:
    serial = tmp_path / "vm.serial"
    assert guest.read_serial(serial) == guest.SerialView(0, None)
    serial.write_bytes(guest.BANNER)
    assert guest.read_serial(serial) == guest.SerialView(1, None)
    serial.write_bytes(guest.BANNER + b"1\r\n2\r\n3\r\n4")  # "4" is still being written
    assert guest.read_serial(serial) == guest.SerialView(1, 3)
    serial.write_bytes(guest.BANNER + b"1\r\n2\r\n" + guest.BANNER + b"1\r\n")  # restarted
    assert guest.read_serial(serial) == guest.SerialView(2, 1)
    assert guest.read_counter(serial) == 1


def test_domain_xml_is_well_formed_and_escapes_paths() -> None:
    xml = guest.domain_xml("a&b", Path("/d/it's.qcow2"), Path("/d/s<1>.serial"), memory_mib=32)
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "a&b"
    assert root.find("devices/disk/source").get("file") == "/d/it's.qcow2"
    assert root.find("devices/disk/readonly") is not None
    assert root.find("devices/serial/source").get("path") == "/d/s<1>.serial"
    assert root.findtext("memory") == "32"


@pytest.mark.lab
def test_the_guest_boots_in_qemu_and_counts(tmp_path: Path) -> None:
    missing = [b for b in ("qemu-system-x86_64", "qemu-img") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing binaries: {', '.join(missing)}")
    image = guest.write_image(tmp_path)
    serial = tmp_path / "serial"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "16", "-nodefaults",
         "-display", "none", "-monitor", "none", "-serial", f"file:{serial}",
         "-drive", f"file={image},if=virtio,format=qcow2,readonly=on"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (guest.read_counter(serial) or 0) < 3:
            assert qemu.poll() is None, "qemu exited"
            assert time.monotonic() < deadline, f"no counting: {serial.read_bytes()!r}"
            time.sleep(0.05)
        assert guest.read_serial(serial).boots == 1
    finally:
        qemu.kill()
        qemu.wait()
