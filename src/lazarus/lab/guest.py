"""The lab's tiny guest: a 512-byte boot sector that counts on COM1, built without downloads.

Used by the lab (`Lab.up` writes the image into the shared datastore), the lab tests and the
end-to-end scenarios. The guest prints a banner line, then an increasing decimal counter, one
line about every `TICKS_PER_STEP` BIOS ticks (18.2 ticks/s), idling with `hlt` in between
(about 1 % of a core under TCG). A counter that keeps rising without a second banner proves a
VM survived a live migration; a second banner means it was restarted.

For VM HA tests the guest also cooperates with liveness devices and takes commands: it arms
an ib700 watchdog (ISA, I/O port 0x443, WATCHDOG_TIMEOUT seconds) at boot and feeds it at
every counter step, and at every timer tick it reads COM2 (0x2f8; the lab gives it a unix
socket, SERIAL_SOCKET): the byte `p` makes it panic through pvpanic (port 0x505, "guest
panicked"), `h` makes it hang (interrupts off, halted: the watchdog is no longer fed and
fires). Without those devices the port writes go nowhere and the guest only counts.

The machine code is assembled here by a ten-line two-pass assembler (labels and relative
jumps only) so the listing stays readable and no assembler is needed at run time.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

BANNER = b"lazarus tinyvm\r\n"
TICKS_PER_STEP = 4  # about 0.22 s per counter step
LOAD_ADDRESS = 0x7C00
IMAGE_BYTES = 1024 * 1024  # 1 MiB virtual disk; the qcow2 file is a few hundred KiB


@dataclass(frozen=True)
class _Label:
    name: str


@dataclass(frozen=True)
class _Rel:
    """A relative jump/call: opcode bytes then an 8- or 16-bit displacement to `label`."""

    opcode: bytes
    label: str
    size: int  # 1 or 2


@dataclass(frozen=True)
class _Abs16:
    """An instruction whose last two bytes are the absolute address of `label`."""

    opcode: bytes
    label: str


_Item = bytes | _Label | _Rel | _Abs16

COM1 = b"\xf8\x03"  # 0x3f8, little endian
TICK = b"\x6c\x04"  # 0x046c: BIOS tick counter (low word)
COM2_LSR = b"\xfd\x02"  # 0x2fd: line status (bit 0: a byte was received)
COM2 = b"\xf8\x02"  # 0x2f8
IB700 = b"\x43\x04"  # 0x443: writing N (0..15) (re)arms the ib700 for (15 - N) * 2 s
PVPANIC = b"\x05\x05"  # 0x505: writing 1 reports a guest panic
WATCHDOG_TIMEOUT = 4  # seconds without a feed before the ib700 fires
_IB700_ARG = bytes([15 - WATCHDOG_TIMEOUT // 2])
PANIC_BYTE = b"p"
HANG_BYTE = b"h"

# 16-bit real mode, loaded at 0x7c00 by the BIOS. Register use: DX = COM1 port while printing,
# BX = the counter, CX = tick count at the start of a step.
_PROGRAM: tuple[_Item, ...] = (
    b"\xfa",  # cli
    b"\xfc",  # cld (lodsb counts upwards)
    b"\x31\xc0",  # xor ax, ax
    b"\x8e\xd8",  # mov ds, ax
    b"\x8e\xd0",  # mov ss, ax
    b"\xbc\x00\x7c",  # mov sp, 0x7c00
    b"\xfb",  # sti
    b"\xba" + COM1,  # mov dx, 0x3f8
    _Abs16(b"\xbe", "banner"),  # mov si, banner
    _Rel(b"\xe8", "puts", 2),  # call puts
    b"\x31\xdb",  # xor bx, bx
    _Label("step"),
    b"\xba" + IB700,  # mov dx, 0x443
    b"\xb0" + _IB700_ARG,  # mov al, N
    b"\xee",  # out dx, al (feed the watchdog)
    b"\x8b\x0e" + TICK,  # mov cx, [0x46c]
    _Label("wait"),
    b"\xf4",  # hlt (the timer interrupt wakes us)
    b"\xba" + COM2_LSR,  # mov dx, 0x2fd
    b"\xec",  # in al, dx
    b"\xa8\x01",  # test al, 1
    _Rel(b"\x74", "nobyte", 1),  # jz nobyte
    b"\xba" + COM2,  # mov dx, 0x2f8
    b"\xec",  # in al, dx
    b"\x3c" + PANIC_BYTE,  # cmp al, 'p'
    _Rel(b"\x74", "panic", 1),  # je panic
    b"\x3c" + HANG_BYTE,  # cmp al, 'h'
    _Rel(b"\x74", "hang", 1),  # je hang
    _Label("nobyte"),
    b"\xba" + COM1,  # mov dx, 0x3f8 (the printing below expects it)
    b"\xa1" + TICK,  # mov ax, [0x46c]
    b"\x29\xc8",  # sub ax, cx
    b"\x83\xf8" + bytes([TICKS_PER_STEP]),  # cmp ax, TICKS_PER_STEP
    _Rel(b"\x72", "wait", 1),  # jb wait
    b"\x43",  # inc bx
    b"\x89\xd8",  # mov ax, bx
    _Rel(b"\xe8", "putdec", 2),  # call putdec
    b"\xb0\x0d",  # mov al, 13
    b"\xee",  # out dx, al
    b"\xb0\x0a",  # mov al, 10
    b"\xee",  # out dx, al
    _Rel(b"\xeb", "step", 1),  # jmp step
    _Label("panic"),
    b"\xba" + PVPANIC,  # mov dx, 0x505
    b"\xb0\x01",  # mov al, 1
    b"\xee",  # out dx, al
    _Label("hang"),
    b"\xfa",  # cli
    b"\xf4",  # hlt (forever: no interrupt can wake it)
    _Rel(b"\xeb", "hang", 1),  # jmp hang (an NMI would)
    _Label("puts"),  # print the NUL-terminated string at DS:SI on port DX
    b"\xac",  # lodsb
    b"\x84\xc0",  # test al, al
    _Rel(b"\x74", "puts_done", 1),  # jz puts_done
    b"\xee",  # out dx, al
    _Rel(b"\xeb", "puts", 1),  # jmp puts
    _Label("puts_done"),
    b"\xc3",  # ret
    _Label("putdec"),  # print AX in decimal; leaves DX = COM1, keeps BX
    b"\x53",  # push bx
    b"\xbb\x0a\x00",  # mov bx, 10
    b"\x31\xc9",  # xor cx, cx
    _Label("divide"),
    b"\x31\xd2",  # xor dx, dx
    b"\xf7\xf3",  # div bx
    b"\x52",  # push dx (one digit)
    b"\x41",  # inc cx
    b"\x85\xc0",  # test ax, ax
    _Rel(b"\x75", "divide", 1),  # jnz divide
    b"\xba" + COM1,  # mov dx, 0x3f8
    _Label("emit"),
    b"\x58",  # pop ax
    b"\x04\x30",  # add al, '0'
    b"\xee",  # out dx, al
    _Rel(b"\xe2", "emit", 1),  # loop emit
    b"\x5b",  # pop bx
    b"\xc3",  # ret
    _Label("banner"),
    BANNER + b"\x00",
)


def _size(item: _Item) -> int:
    if isinstance(item, bytes):
        return len(item)
    if isinstance(item, _Label):
        return 0
    if isinstance(item, _Rel):
        return len(item.opcode) + item.size
    return len(item.opcode) + 2


def assemble(program: tuple[_Item, ...] = _PROGRAM, origin: int = LOAD_ADDRESS) -> bytes:
    """Two passes: place the labels, then emit bytes with resolved displacements."""
    labels: dict[str, int] = {}
    offset = 0
    for item in program:
        if isinstance(item, _Label):
            labels[item.name] = offset
        offset += _size(item)
    out = bytearray()
    for item in program:
        end = len(out) + _size(item)
        if isinstance(item, bytes):
            out += item
        elif isinstance(item, _Rel):
            disp = labels[item.label] - end
            limit = 1 << (8 * item.size - 1)
            if not -limit <= disp < limit:
                raise ValueError(f"jump to {item.label} out of range ({disp})")
            out += item.opcode + disp.to_bytes(item.size, "little", signed=True)
        elif isinstance(item, _Abs16):
            out += item.opcode + (origin + labels[item.label]).to_bytes(2, "little")
    return bytes(out)


def boot_sector() -> bytes:
    """The 512-byte boot sector (code, zero padding, 0x55 0xAA signature)."""
    code = assemble()
    if len(code) > 510:
        raise ValueError(f"boot code is {len(code)} bytes, more than 510")
    return code + bytes(510 - len(code)) + b"\x55\xaa"


def write_image(directory: Path, name: str = "tinyvm") -> Path:
    """Write `<name>.qcow2` (via qemu-img) into `directory` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / f"{name}.raw"
    qcow2 = directory / f"{name}.qcow2"
    raw.write_bytes(boot_sector() + bytes(IMAGE_BYTES - 512))
    tmp = directory / f".{name}.qcow2.tmp"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(tmp)],
        check=True,
        capture_output=True,
    )
    tmp.replace(qcow2)
    raw.unlink()
    return qcow2


def domain_xml(name: str, image: Path, serial: Path, memory_mib: int = 16) -> str:
    """A libvirt domain (TCG, read-only shared disk, serial to a file) for the tiny guest.

    The disk is read-only so live migration needs no storage copy; every lab host sees the
    image and the serial file at the same path (the shared datastore).
    """
    return (
        "<domain type='qemu'>"
        f"<name>{escape(name)}</name>"
        f"<memory unit='MiB'>{int(memory_mib)}</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
        "<clock offset='utc'/>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
        "<on_crash>destroy</on_crash>"
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file={quoteattr(str(image))}/><target dev='vda' bus='virtio'/><readonly/>"
        "</disk>"
        f"<serial type='file'><source path={quoteattr(str(serial))} append='on'/>"
        "<target port='0'/></serial>"
        "<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>"
    )


@dataclass(frozen=True)
class SerialView:
    """What a serial file says: how many times the guest booted and its latest counter."""

    boots: int
    counter: int | None  # the last complete counter line after the last banner


_LINE = re.compile(rb"(\d+)\r\n")


def read_serial(path: Path) -> SerialView:
    """Parse a tiny guest's serial file (missing file: no boots yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return SerialView(0, None)
    boots = data.count(BANNER)
    last = data.rfind(BANNER)
    tail = data[last + len(BANNER) :] if last >= 0 else data
    numbers = _LINE.findall(tail)
    return SerialView(boots, int(numbers[-1]) if numbers else None)


def read_counter(path: Path) -> int | None:
    """The latest counter value the guest printed since its last boot, or None."""
    return read_serial(path).counter
