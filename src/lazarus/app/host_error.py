"""The ft/host_error hook program (see lazarus.ha.host_error for what it does).

Input as OpenNebula's: "<base64 HOST XML> <options>" on stdin (ARGUMENTS_STDIN=yes) or as
command-line arguments. The API endpoint and credentials come from the hook environment
($LAZARUS_XMLRPC/$ONE_XMLRPC, $LAZARUS_AUTH/$ONE_AUTH). Fencing runs `fence_host` from the same
directory as the hook script, as OpenNebula does. Log lines go to stdout (the hook record
keeps them) and are appended to host_error.log in $LAZARUS_LOG_DIR or <data dir>/log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from lazarus.api import defaults
from lazarus.api.auth import resolve_auth_file
from lazarus.api.client import Client
from lazarus.domain.errors import LazarusError
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.fence.script import script_fencer
from lazarus.drivers.files import open_private
from lazarus.drivers.hooks.lifeline import die_with_parent
from lazarus.ha.host_error import (
    EXIT_ERROR,
    HostErrorRun,
    UsageError,
    host_id_from_template,
    parse_args,
)
from lazarus.ha.incident import FileLock

HOOKS_DIR = Path(__file__).resolve().parent.parent / "hooks"
STORE_WAIT = 600.0  # seconds: a store refusing writes for longer waits for an operator


def _data_dir() -> Path:
    if os.environ.get("LAZARUS_DATA_DIR"):
        return Path(os.environ["LAZARUS_DATA_DIR"])
    try:
        return resolve_auth_file().parent
    except LazarusError:
        return defaults.data_dir()


def _store_wait() -> float:
    """$LAZARUS_STORE_WAIT seconds (default STORE_WAIT): how long a write the store refuses
    is retried before the run gives up (exit 255; docs/security.md, "Store failures")."""
    try:
        return max(0.0, float(os.environ.get("LAZARUS_STORE_WAIT") or STORE_WAIT))
    except ValueError:
        return STORE_WAIT


def main(argv: list[str] | None = None) -> int:
    if not die_with_parent():
        print("host_error: the process that started it is gone; exiting", file=sys.stderr)
        return EXIT_ERROR
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and not sys.stdin.isatty():
        args = sys.stdin.read().split()
    log_dir = Path(os.environ.get("LAZARUS_LOG_DIR") or _data_dir() / "log")
    log_file = None
    try:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_file = open_private(log_dir / "host_error.log")  # 0600: docs/security.md
    except OSError as exc:
        print(f"host_error: cannot open {log_dir}/host_error.log: {exc}", file=sys.stderr)

    def emit(line: str) -> None:
        nonlocal log_file
        print(line, flush=True)
        if log_file is None:
            return
        try:
            log_file.write(line + "\n")
            log_file.flush()
        except OSError as exc:  # a full disk must not stop a failover: stdout still has it
            print(f"host_error: cannot write host_error.log any more: {exc}", file=sys.stderr,
                  flush=True)
            with contextlib.suppress(OSError):
                log_file.close()
            log_file = None

    try:
        b64, options = parse_args(args)
        host_id, error_text = host_id_from_template(b64)
        script_dir = Path(sys.argv[0]).resolve().parent if argv is None else HOOKS_DIR / "ft"
        fence_script = script_dir / "fence_host"
        if not fence_script.exists():
            fence_script = HOOKS_DIR / "ft" / "fence_host"
        run = HostErrorRun(
            # its writes go ahead of other API writes; a write the store refused (full
            # disk, read-only database) is sent again for up to STORE_WAIT s
            api=Client.from_env(lane="ha", store_wait=_store_wait(),
                                on_store_retry=lambda text: emit(f"[host_error][W] {text}")),
            clock=SystemClock(),
            fencer=script_fencer(fence_script),
            lock=FileLock(_data_dir() / "locks"),
            emit=emit,
            options=options,
            host_id=host_id,
            error_text=error_text,
        )
        return asyncio.run(run.run())
    except UsageError as exc:
        emit(f"[host_error][E] {exc}")
        return EXIT_ERROR
    except LazarusError as exc:
        emit(f"[host_error][E] {exc}")
        return EXIT_ERROR
    finally:
        if log_file is not None:
            with contextlib.suppress(OSError):
                log_file.close()


if __name__ == "__main__":
    sys.exit(main())
