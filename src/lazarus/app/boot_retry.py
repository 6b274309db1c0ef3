"""The example VM hook `boot_retry`: retry a VM in BOOT_FAILURE a bounded number of times.

OpenNebula leaves a VM whose start failed in BOOT_FAILURE until someone runs
`onevm recover --retry`; this hook does that for the operator, at most `--max` times (3)
within `--window` seconds (3600) per VM, each after `--delay` seconds (10), and then stops
(exit 1, "giving up": the VM stays in BOOT_FAILURE for a person to look at;
docs/ha.md, "VM failures"). Shipped as hooks/examples/vm_hooks/boot_failure_hook:

    NAME = vm_boot_retry, TYPE = state, RESOURCE = VM, LCM_STATE = BOOT_FAILURE,
    COMMAND = "examples/vm_hooks/boot_retry", ARGUMENTS = "$TEMPLATE --max 3",
    ARGUMENTS_STDIN = yes

Input: "<base64 VM XML> [options]" on stdin (or as arguments). The API endpoint and
credentials come from the hook environment, as for ft/host_error. What it has done is kept
in <data dir>/hook-state/boot_retry/vm-<ID> (0600, one line per retry: time and
LAZARUS_HOOK_EXECUTION), so a run repeated after a controller crash (hooks run at least
once) does not count, or retry, twice. Before retrying it reads the VM again: a VM no
longer in BOOT_FAILURE (an operator acted, VM HA or the restart policy moved it) is left
alone.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from defusedxml import ElementTree as SafeET

from lazarus.api import defaults
from lazarus.api.auth import resolve_auth_file
from lazarus.api.client import Client
from lazarus.domain.errors import LazarusError
from lazarus.domain.states import LcmState, VmState
from lazarus.drivers.files import open_private

RECOVER_RETRY = 2  # one.vm.recover operation: retry the failed step


class Api(Protocol):
    def call(self, method: str, *params: object) -> Any: ...


def _options(argv: list[str]) -> tuple[str, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="boot_retry", add_help=False)
    parser.add_argument("template")
    parser.add_argument("--max", type=int, default=3)
    parser.add_argument("--window", type=float, default=3600.0)
    parser.add_argument("--delay", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.max < 0 or not 0 <= args.window < 1e9 or not 0 <= args.delay <= 3600:
        raise ValueError("--max, --window and --delay must be non-negative (delay <= 3600)")
    return args.template, args


def _state(xml: str) -> tuple[int, VmState, LcmState]:
    root = SafeET.fromstring(xml)
    vm_id = int(root.findtext("ID") or "-1")
    state = VmState(int(root.findtext("STATE") or "0"))
    lcm = LcmState(int(root.findtext("LCM_STATE") or "0"))
    return vm_id, state, lcm


def retry(api: Api, template_b64: str, options: argparse.Namespace, state_dir: Path,
          execution: str, *, now: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep,
          emit: Callable[[str], None] = print) -> int:  # fmt: skip
    """One run of the hook; returns its exit code (0 retried or nothing to do, 1 gave up)."""
    vm_id, _, lcm = _state(base64.b64decode(template_b64, validate=True).decode())
    if lcm is not LcmState.BOOT_FAILURE:
        emit(f"boot_retry: VM {vm_id} is not in BOOT_FAILURE ({lcm.name}): nothing to do")
        return 0
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / f"vm-{vm_id}"
    lines = path.read_text().split("\n") if path.exists() else []
    done = [line.split(" ", 1) for line in lines if line.strip()]
    recent = [(float(t), key) for t, key in done if now() - float(t) < options.window]
    if execution and any(key == execution for _, key in recent):
        emit(f"boot_retry: VM {vm_id}: execution {execution} already retried it")
        return 0
    if len(recent) >= options.max:
        emit(f"boot_retry: VM {vm_id}: giving up after {len(recent)} retries in "
             f"{options.window:g} s; it stays in BOOT_FAILURE (docs/ha.md, VM failures)")
        return 1
    sleep(options.delay)
    _, state, lcm = _state(api.call("one.vm.info", vm_id, False))
    if (state, lcm) != (VmState.ACTIVE, LcmState.BOOT_FAILURE):
        emit(f"boot_retry: VM {vm_id} left BOOT_FAILURE meanwhile ({lcm.name}): not retried")
        return 0
    with open_private(path) as fh:  # appends, 0600
        fh.write(f"{now():.0f} {execution or '-'}\n")
    api.call("one.vm.recover", vm_id, RECOVER_RETRY)
    emit(f"boot_retry: VM {vm_id}: retry {len(recent) + 1} of {options.max} "
         f"(recover --retry)")
    return 0


def _data_dir() -> Path:
    if os.environ.get("LAZARUS_DATA_DIR"):
        return Path(os.environ["LAZARUS_DATA_DIR"])
    try:
        return resolve_auth_file().parent
    except LazarusError:
        return defaults.data_dir()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and not sys.stdin.isatty():
        args = sys.stdin.read().split()
    try:
        template, options = _options(args)
        return retry(Client.from_env(), template, options,
                     _data_dir() / "hook-state" / "boot_retry",
                     os.environ.get("LAZARUS_HOOK_EXECUTION", ""))  # fmt: skip
    except SystemExit:
        print("boot_retry: usage: <base64 VM XML> [--max N] [--window S] [--delay S]")
        return 2
    except (ValueError, SafeET.ParseError, LazarusError) as exc:
        print(f"boot_retry: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
