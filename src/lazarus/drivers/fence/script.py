"""Run a fence script (ft/fence_host) as a process: OpenNebula's contract for host_error.

`script_fencer(path)` is ft/host_error's fencer in production (app/host_error.py): the script
next to host_error gets the base64 HOST document on stdin; exit 0 means the host is proven off.
No shell. The script runs in its own session and dies with this process
(drivers/hooks/lifeline.py: die_with_parent reads LAZARUS_PARENT_PID); when host_error stops
the fence (a mass failure), its whole process group is killed, agents included.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

# fencer(host XML) -> (fenced?, output lines): ha/host_error.Fencer
ScriptFencer = Callable[[str], Awaitable[tuple[bool, str]]]


def script_fencer(path: Path, timeout: float = 300.0) -> ScriptFencer:
    async def run(host_xml: str) -> tuple[bool, str]:
        if not os.access(path, os.X_OK):
            return False, f"fence script {path} is missing or not executable"
        proc = await asyncio.create_subprocess_exec(
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            # fence_host dies with this run (drivers/hooks/lifeline.py: die_with_parent)
            env={**os.environ, "LAZARUS_PARENT_PID": str(os.getpid())},
        )
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see core/waits.py
                out, _ = await proc.communicate(base64.b64encode(host_xml.encode()))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False, f"fence script timed out after {timeout:g} s"
        except asyncio.CancelledError:  # host_error stops the fence (mass failure): its agents too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        return proc.returncode == 0, out.decode(errors="replace")

    return run
