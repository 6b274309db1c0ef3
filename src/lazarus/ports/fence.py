"""Fence port: how the core runs a fence agent, and what a simulated chassis offers.

A fence agent follows the ClusterLabs protocol: `key=value` lines on stdin (action=off|on|
status|monitor, ip=, ipport=, username=, password=, plug=, ...); exit 0 means success, and
for action=status 0 means the power is ON, 2 that it is OFF, anything else a failure.

Adapters: drivers/fence/agent.py (real `fence_*` executables, used by app/fence_host.py) and
drivers/fence/sim.py (agent `fence_sim` answered in-process against a `PowerControl`, used by
the simulator). The orchestration (levels, retries, confirmation) is ha/fencing.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

# Exit codes of the ClusterLabs protocol.
RC_OK = 0  # success; for action=status: the power is ON
RC_FAILED = 1
RC_STATUS_OFF = 2  # action=status only: the power is OFF
RC_TIMEOUT = -9  # not from the agent: the runner killed it after its timeout


@dataclass(frozen=True)
class AgentResult:
    """What one agent run returned. stdout/stderr are raw: redact before logging them."""

    rc: int
    stdout: str
    stderr: str
    timed_out: bool = False


class FenceAgentRunner(Protocol):
    async def run(self, agent: str, params: Mapping[str, str], timeout: float) -> AgentResult:
        """Run `agent` with `params` as stdin lines; kill it after `timeout` seconds (then
        `timed_out` is True). Raises PermanentDriverError when the agent does not exist."""
        ...


class PowerControl(Protocol):
    """A chassis power switch by host name (the simulated cluster implements it)."""

    def power_off(self, name: str) -> object: ...

    def power_on(self, name: str) -> object: ...

    def power_state(self, name: str) -> str:
        """"on" or "off"."""
        ...
