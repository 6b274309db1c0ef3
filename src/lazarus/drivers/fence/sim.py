"""The simulated fence agent `fence_sim`, answered in-process against a simulated chassis.

The simulator (and demo tests) fence exactly as real hardware is fenced: ha/fencing.py
sends the same ClusterLabs `key=value` parameters (action=off|on|status|monitor|reboot,
plug=<host name>) and reads the same exit codes (status: 0 = ON, 2 = OFF, 1 = failure).
`power` is any PowerControl (lazarus.drivers.vmm.sim.SimCluster in the simulator). Faults per
host make the device misbehave like real BMCs do:

    unreachable   the agent hangs until its timeout (timed_out=True)
    wrong_password every action fails with rc 1 (login failed), no power change
    ignores_off   off answers success but the power stays on (status stays honest)
    reports_off   status always answers OFF (with ignores_off: a lying device)
    delay         each action takes this long (virtual seconds); past the timeout = timed out
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from dataclasses import dataclass

from lazarus.ports.clock import Clock
from lazarus.ports.fence import (
    RC_FAILED,
    RC_OK,
    RC_STATUS_OFF,
    RC_TIMEOUT,
    AgentResult,
    PowerControl,
)

AGENT = "fence_sim"


@dataclass(frozen=True)
class SimFault:
    unreachable: bool = False
    wrong_password: bool = False
    ignores_off: bool = False
    reports_off: bool = False
    delay: float = 0.0

    @classmethod
    def lying(cls) -> SimFault:
        """Says it powered off, and that the power is off, while the host keeps running."""
        return cls(ignores_off=True, reports_off=True)


class SimAgentRunner:
    def __init__(
        self, power: PowerControl, clock: Clock | None = None, password: str | None = None
    ) -> None:
        """`password`: when set, the password every call must carry."""
        self.power = power
        self.clock = clock
        self.password = password
        self.faults: dict[str, SimFault] = {}
        self.calls: list[tuple[str, str]] = []  # (action, plug), for tests and the simulator

    def set_fault(self, host: str, fault: SimFault) -> None:
        self.faults[host] = fault

    def clear_fault(self, host: str) -> None:
        self.faults.pop(host, None)

    async def _sleep(self, seconds: float) -> None:
        if self.clock is not None:
            await self.clock.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    async def _call(self, method: str, plug: str) -> object:
        result = getattr(self.power, method)(plug)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def run(self, agent: str, params: Mapping[str, str], timeout: float) -> AgentResult:
        if agent != AGENT:
            return AgentResult(RC_FAILED, "", f"ERROR: {agent} is not simulated (only {AGENT})")
        action = params.get("action", "reboot")
        plug = params.get("plug") or params.get("port") or ""
        self.calls.append((action, plug))
        fault = self.faults.get(plug, SimFault())
        if fault.unreachable or fault.delay > timeout:
            await self._sleep(timeout)
            return AgentResult(RC_TIMEOUT, "", "", timed_out=True)
        if fault.delay:
            await self._sleep(fault.delay)
        if not plug:
            return AgentResult(RC_FAILED, "", "ERROR: Failed: You have to enter plug number or "
                                              "machine identification")  # fmt: skip
        if fault.wrong_password or (
            self.password is not None and params.get("password") != self.password
        ):
            return AgentResult(RC_FAILED, "", "ERROR: Unable to connect/login to fencing device")
        try:
            return await self._act(action, plug, fault)
        except (KeyError, ValueError, LookupError) as exc:
            return AgentResult(RC_FAILED, "", f"ERROR: Failed: unknown plug {plug}: {exc}")

    async def _act(self, action: str, plug: str, fault: SimFault) -> AgentResult:
        if action in ("status", "monitor"):
            state = "off" if fault.reports_off else str(await self._call("power_state", plug))
            if action == "monitor":
                return AgentResult(RC_OK, "", "")
            if state == "off":
                return AgentResult(RC_STATUS_OFF, "Status: OFF\n", "")
            return AgentResult(RC_OK, "Status: ON\n", "")
        if action == "off":
            if not fault.ignores_off:
                await self._call("power_off", plug)
            return AgentResult(RC_OK, "Success: Powered OFF\n", "")
        if action == "on":
            await self._call("power_on", plug)
            return AgentResult(RC_OK, "Success: Powered ON\n", "")
        if action == "reboot":
            if not fault.ignores_off:
                await self._call("power_off", plug)
            await self._call("power_on", plug)
            return AgentResult(RC_OK, "Success: Rebooted\n", "")
        return AgentResult(RC_FAILED, "", f"ERROR: Failed: unsupported action {action}")
