"""ft/host_error's command line, exit codes and the ports it is given.

Command line compatible with OpenNebula's host_error.rb: the hook passes "<base64 HOST XML>
<options>" on stdin (ARGUMENTS_STDIN=yes) or as arguments. The options are described in
ha/host_error.py and docs/ha.md.
"""

from __future__ import annotations

import base64
import binascii
import getopt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from defusedxml import ElementTree as SafeET

from lazarus.domain.errors import LazarusError

EXIT_OK = 0
EXIT_FAILED = 1  # some selected VM was not handled
EXIT_ERROR = 255  # refused to act (bad input, fence failed, mass failure, API error)

FENCE_CONFIRMED = "FENCE_CONFIRMED"
FENCE_HISTORY = "HA_FENCES"  # times of this host's recent fences (seconds since the epoch)


class Api(Protocol):
    def call(self, method: str, *params: object) -> Any: ...


# fencer(host XML) -> (fenced?, output lines)
Fencer = Callable[[str], Awaitable[tuple[bool, str]]]


class UsageError(LazarusError):
    pass


@dataclass
class Options:
    mode: str = ""
    force: bool = False
    pause: int = 2
    fencing: bool = True
    ignore_mass_failure: bool = False
    mass_failure_share: float = 0.5
    # seconds the cluster must be quiet (no host newly failing) before a fence; keep it at
    # most the controller's MONITOR_ALERT_WINDOW, during which peers are probed every second
    mass_failure_window: float = 5.0
    max_fences_per_hour: int = 3  # 0: no limit
    watch: float = 120.0  # seconds the VMs acted on are followed until they run
    # an ISOLATED host (probes fail, heartbeat advances) is fenced after this many seconds of
    # isolation; None: never (it waits for its heartbeat to stop, its agent to stop its VMs,
    # an operator, or its return)
    fence_isolated_after: float | None = None


def parse_args(argv: list[str]) -> tuple[str, Options]:
    """(base64 host XML, options); UsageError with a clear message otherwise."""
    try:
        opts, args = getopt.gnu_getopt(
            argv,
            "mrdfp:u",
            ["migrate", "recreate", "delete", "force", "pause=", "no-fencing",
             "ignore-mass-failure", "mass-failure-share=", "max-fences-per-hour=",
             "mass-failure-window=", "watch=", "fence-isolated-after="],
        )
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    options = Options()
    modes = {"-m": "migrate", "--migrate": "migrate", "-r": "recreate", "--recreate": "recreate",
             "-d": "delete", "--delete": "delete"}
    for flag, value in opts:
        if flag in modes:
            if options.mode and options.mode != modes[flag]:
                raise UsageError(
                    f"only one mode may be given (got {options.mode} and {modes[flag]})"
                )
            options.mode = modes[flag]
        elif flag in ("-f", "--force"):
            options.force = True
        elif flag in ("-u", "--no-fencing"):
            options.fencing = False
        elif flag == "--ignore-mass-failure":
            options.ignore_mass_failure = True
        elif flag == "--max-fences-per-hour":
            if not value.isdigit():
                raise UsageError(f"--max-fences-per-hour needs a whole number, not {value!r}")
            options.max_fences_per_hour = int(value)
        elif flag == "--mass-failure-window":
            options.mass_failure_window = _seconds(flag, value, 3600)
        elif flag == "--watch":
            options.watch = _seconds(flag, value, 86400)
        elif flag == "--fence-isolated-after":
            options.fence_isolated_after = _seconds(flag, value, 86400)
        elif flag == "--mass-failure-share":
            share = _number(value)
            if not 0 < share <= 1:  # NaN too: the guard would never trip
                raise UsageError(f"--mass-failure-share needs a share in (0, 1], not {value!r}")
            options.mass_failure_share = share
        else:
            if not value.isdigit():
                raise UsageError(f"-p needs a whole number of cycles, not {value!r}")
            options.pause = int(value)
    if not options.mode:
        raise UsageError("A mode must be supplied (-m, -r or -d).")
    if not args:
        raise UsageError("missing the base64 HOST document ($TEMPLATE)")
    return args[0], options


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")  # fails every range check below


def _seconds(flag: str, value: str, most: float) -> float:
    seconds = _number(value)
    if not 0 <= seconds <= most:
        raise UsageError(f"{flag} needs seconds (0-{most:g}), not {value!r}")
    return seconds


def host_id_from_template(b64: str) -> tuple[int, str]:
    """(HOST/ID, HOST/TEMPLATE/ERROR) from the hook's $TEMPLATE."""
    try:
        root = SafeET.fromstring(base64.b64decode(b64, validate=True))
        host_id = int(root.findtext("ID", ""))
    except (binascii.Error, ValueError, SafeET.ParseError) as exc:
        raise UsageError(f"the first argument is not a base64 HOST document: {exc}") from None
    except Exception as exc:  # defusedxml's refusals (DTDs, entities)
        raise UsageError(f"refused HOST document: {exc}") from None
    return host_id, root.findtext("TEMPLATE/ERROR", "") or ""
