"""Run a fence script (ft/fence_host) as a process: OpenNebula's contract for host_error.

`script_fencer(path)` is ft/host_error's fencer in production (app/host_error.py): the script
next to host_error gets the base64 HOST document on stdin; exit 0 means the host is proven off.
No shell. The script runs in its own session and dies with this process
(drivers/hooks/lifeline.py: die_with_parent reads LAZARUS_PARENT_PID); when host_error stops
the fence (a mass failure) or its timeout expires, its whole process group is killed,
agents included, and reaped (drivers/process.py).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from lazarus.drivers.process import run_process

# fencer(host XML) -> (fenced?, output lines): ha/host_error.Fencer
ScriptFencer = Callable[[str], Awaitable[tuple[bool, str]]]


def script_fencer(path: Path, timeout: float = 300.0) -> ScriptFencer:
    async def run(host_xml: str) -> tuple[bool, str]:
        if not os.access(path, os.X_OK):
            return False, f"fence script {path} is missing or not executable"
        # fence_host dies with this run (drivers/hooks/lifeline.py: die_with_parent); a
        # timeout or a cancellation (host_error stops the fence: a mass failure) kills its
        # whole process group, agents included (drivers/process.py).
        result = await run_process(
            [str(path)],
            base64.b64encode(host_xml.encode()),
            timeout,
            env={**os.environ, "LAZARUS_PARENT_PID": str(os.getpid())},
            merge_stderr=True,
        )
        if result.timed_out:
            return False, f"fence script timed out after {timeout:g} s"
        return result.rc == 0, result.stdout.decode(errors="replace")

    return run
