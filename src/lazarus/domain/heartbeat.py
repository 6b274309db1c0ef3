"""The host agent's heartbeat: one small text file per host on the shared system datastore.

    <datastore>/.lazarus-heartbeat/<host name>.hb

    LAZARUS_HEARTBEAT 1
    HOST node1
    BOOT 1795906062123        # when this agent process started (ms since the epoch)
    COUNTER 1834              # +1 per beat; continues across agent restarts
    TIME 1795907896.021       # the host's clock (shown only: the controller uses its own)
    PERIOD 1                  # seconds between beats
    WATCHDOG 17               # seconds after its last beat by which the host is reset if it
                              # lost both the controller and the storage (0: no watchdog)
    VMS RUNNING               # STOPPED: the agent's isolation response stopped its VMs

The agent writes it atomically (a temporary file, fsync, rename); the controller reads it and
decides from *its own* clock when the beat last advanced (BOOT or COUNTER changed), so the
two clocks never have to agree. Stdlib only: used by the agent (lazarus/agent), the
controller (core/heartbeats.py), host_error (ha/evidence.py) and the drivers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import LazarusError

MAGIC = "LAZARUS_HEARTBEAT 1"
DIRECTORY = ".lazarus-heartbeat"
MAX_BYTES = 4096
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class HeartbeatError(LazarusError):
    """A heartbeat file that cannot be read (the message says why)."""


@dataclass(frozen=True)
class Beat:
    host: str
    boot: int
    counter: int
    time: float
    period: float
    watchdog: float  # safe time in seconds; 0: the agent runs no watchdog
    vms_stopped: bool = False

    def key(self) -> tuple[int, int]:
        """What must change for the beat to count as advanced."""
        return (self.boot, self.counter)

    def encode(self) -> bytes:
        lines = [
            MAGIC,
            f"HOST {self.host}",
            f"BOOT {self.boot}",
            f"COUNTER {self.counter}",
            f"TIME {self.time:.3f}",
            f"PERIOD {self.period:g}",
            f"WATCHDOG {self.watchdog:g}",
            f"VMS {'STOPPED' if self.vms_stopped else 'RUNNING'}",
        ]
        return ("\n".join(lines) + "\n").encode()


def file_name(host: str) -> str:
    """The heartbeat file's name for a host; HeartbeatError for a name unsafe in a path."""
    if not _NAME.match(host):
        raise HeartbeatError(f"host name {host!r} cannot name a heartbeat file")
    return f"{host}.hb"


def decode(data: bytes) -> Beat:
    if len(data) > MAX_BYTES:
        raise HeartbeatError(f"heartbeat file too large ({len(data)} bytes)")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise HeartbeatError("heartbeat file is not ASCII") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        raise HeartbeatError("not a heartbeat file (no LAZARUS_HEARTBEAT 1 line)")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.strip().partition(" ")
        if key:
            fields[key] = value.strip()
    try:
        beat = Beat(
            host=fields["HOST"],
            boot=int(fields["BOOT"]),
            counter=int(fields["COUNTER"]),
            time=float(fields["TIME"]),
            period=float(fields["PERIOD"]),
            watchdog=float(fields.get("WATCHDOG", "0")),
            vms_stopped=fields.get("VMS", "RUNNING") == "STOPPED",
        )
    except KeyError as exc:
        raise HeartbeatError(f"heartbeat file lacks {exc.args[0]}") from None
    except ValueError as exc:
        raise HeartbeatError(f"heartbeat file has a bad number: {exc}") from None
    if not (0 < beat.period <= 3600) or not (0 <= beat.watchdog <= 86400) or beat.counter < 0:
        raise HeartbeatError("heartbeat file has an out-of-range PERIOD, WATCHDOG or COUNTER")
    return beat
