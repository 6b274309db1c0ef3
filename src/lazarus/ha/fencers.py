"""How ft/host_error fences a host: two implementations of its `Fencer`.

- `script_fencer(path)` (drivers/fence/script.py, an adapter, since it starts a process):
  OpenNebula's contract: run the fence script (ft/fence_host next to host_error) with the
  base64 HOST document on stdin; exit 0 means proven off. No shell.
- `agent_fencer(runner, clock)`: the same fencing logic (ha/fencing.py) in-process, for the
  simulator: FENCE vectors of the host template, agents reached through `runner`
  (drivers/fence/sim.SimAgentRunner speaks the agent protocol to simulated power switches).
"""

from __future__ import annotations

from defusedxml import ElementTree as SafeET

from lazarus.ports.clock import Clock
from lazarus.ports.fence import FenceAgentRunner

from .fencing import FenceConfigError, FencePolicy, fence, fence_levels, fence_template
from .host_error import Fencer


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
            devices = fence_levels(fence_template(element))
        except FenceConfigError as exc:
            return False, str(exc)
        if not devices:
            return False, f"host {name} has no FENCE attribute: cannot prove it off"
        outcome = await fence(name, devices, runner, clock, policy)
        lines = [attempt.line() for attempt in outcome.attempts] + [outcome.summary]
        return outcome.ok, "\n".join(lines)

    return run
