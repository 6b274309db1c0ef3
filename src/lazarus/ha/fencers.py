"""How ft/host_error fences a host: two implementations of its `Fencer`.

- `script_fencer(path)`: OpenNebula's contract: run the fence script (ft/fence_host next to
  host_error) with the base64 HOST document on stdin; exit 0 means proven off. No shell.
- `agent_fencer(runner, clock)`: the same fencing logic (core/fencing.py) in-process, for the
  simulator: FENCE vectors of the host template, agents reached through `runner`
  (drivers/fence/sim.SimAgentRunner speaks the agent protocol to simulated power switches).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from pathlib import Path

from defusedxml import ElementTree as SafeET

from lazarus.core.fencing import FenceConfigError, FencePolicy, fence, parse_devices
from lazarus.core.waits import within
from lazarus.domain.xml import template_from_element
from lazarus.ports.clock import Clock
from lazarus.ports.fence import FenceAgentRunner

from .host_error import Fencer


def script_fencer(path: Path, timeout: float = 300.0) -> Fencer:
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
            out, _ = await within(
                proc.communicate(base64.b64encode(host_xml.encode())), timeout
            )
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


def agent_fencer(
    runner: FenceAgentRunner, clock: Clock, policy: FencePolicy | None = None
) -> Fencer:
    async def run(host_xml: str) -> tuple[bool, str]:
        root = SafeET.fromstring(host_xml)
        name = root.findtext("NAME", "")
        element = root.find("TEMPLATE")
        if element is None:
            return False, "host has no TEMPLATE"
        try:
            devices = parse_devices(template_from_element(element))
        except FenceConfigError as exc:
            return False, str(exc)
        if not devices:
            return False, f"host {name} has no FENCE attribute: cannot prove it off"
        outcome = await fence(name, devices, runner, clock, policy)
        lines = [attempt.line() for attempt in outcome.attempts] + [outcome.summary]
        return outcome.ok, "\n".join(lines)

    return run
