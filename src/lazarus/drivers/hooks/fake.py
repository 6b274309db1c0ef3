"""A HookExecutor for tests and the simulator: records every request, runs nothing.

    fake = FakeHookExecutor(clock)
    fake.script["ft/host_error"] = ExecutionResult("ft/host_error", b"ok\n", b"", 0)
    fake.duration = 3.0            # each run takes 3 s of the clock's (virtual) time

`gate`, when set, makes every run wait for it (to hold executions "running" while a test
stops the controller). Results default to code 0 with the arguments echoed on stdout.
"""

from __future__ import annotations

import asyncio

from lazarus.domain.hooks import ExecutionResult
from lazarus.ports.clock import Clock
from lazarus.ports.hooks import HookRequest


class FakeHookExecutor:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.requests: list[HookRequest] = []
        self.script: dict[str, ExecutionResult] = {}
        self.duration = 0.0
        self.gate: asyncio.Event | None = None
        self.running = 0
        self.max_running = 0

    async def run(self, request: HookRequest) -> ExecutionResult:
        self.requests.append(request)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.duration and self.clock is not None:
                await self.clock.sleep(self.duration)
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.running -= 1
        scripted = self.script.get(request.command)
        if scripted is not None:
            return scripted
        return ExecutionResult(request.command, request.arguments.encode(), b"", 0)
