"""The simulator's HookExecutor: runs ft/host_error in-process, in virtual time.

The HookManager (core/hooks.py) dispatches the HOST => ERROR event to the shipped error_hook
exactly as in production; instead of starting the `ft/host_error` process, this executor
parses the same argument string (`$TEMPLATE -m -p 2`, already substituted) and runs the same
`HostErrorRun` (ha/host_error.py) against the in-process API client, fencing through
`agent_fencer` and the simulated fence devices. Its log lines become the execution's stdout,
its exit code the record's code. Other commands succeed without doing anything.

`break_fencing` is the safety switch for the oracle tests: host_error then records the host as
fenced without calling any fence device (a deliberately broken build).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lazarus.core.waits import within
from lazarus.domain.hooks import ExecutionResult
from lazarus.ha.host_error import (
    EXIT_ERROR,
    Api,
    Fencer,
    HostErrorRun,
    Options,
    StepOutcome,
    UsageError,
    host_id_from_template,
    parse_args,
)
from lazarus.ha.incident import HostLock, Incident, IncidentState
from lazarus.ports.clock import Clock
from lazarus.ports.hooks import HookRequest

HOST_ERROR = "ft/host_error"


class _NoFenceRun(HostErrorRun):
    """A broken host_error: claims the fence succeeded without touching the device."""

    async def _step_fence(self, host: Any, incident: Incident) -> StepOutcome:
        self.log("Fencing success")  # the lie a broken build would tell
        incident.fence = "skipped by the simulator's break_fencing switch"
        return StepOutcome(IncidentState.FENCED)


class RunObserver(Protocol):
    def hook_started(self, host_id: int, options: Options, event_id: int) -> None: ...

    def hook_line(self, host_id: int, line: str) -> None: ...

    def hook_finished(self, host_id: int, code: int, lines: list[str]) -> None: ...


@dataclass
class HostErrorExecutor:
    """`api()` returns the current in-process client (a restarted controller has a new one)."""

    api: Callable[[], Api]
    clock: Clock
    fencer: Fencer
    lock: Callable[[], HostLock]
    observer: RunObserver | None = None
    break_fencing: bool = False

    def _emit(self, lines: list[str], host_id: int, line: str) -> None:
        lines.append(line)
        if self.observer is not None:
            self.observer.hook_line(host_id, line)

    async def run(self, request: HookRequest) -> ExecutionResult:
        if request.command != HOST_ERROR:
            return ExecutionResult(request.command, b"", b"", 0)
        lines: list[str] = []
        try:
            b64, options = parse_args(request.arguments.split())
            host_id, error_text = host_id_from_template(b64)
        except UsageError as exc:
            return ExecutionResult(request.command, b"", f"[host_error][E] {exc}\n".encode(),
                                   EXIT_ERROR)
        cls = _NoFenceRun if self.break_fencing else HostErrorRun
        run = cls(
            api=self.api(),
            clock=self.clock,
            fencer=self.fencer,
            lock=self.lock(),
            emit=lambda line: self._emit(lines, host_id, line),
            options=options,
            host_id=host_id,
            error_text=error_text,
        )
        if self.observer is not None:
            event = request.env.get("LAZARUS_HOOK_EVENT", "-1")
            self.observer.hook_started(host_id, options, int(event) if event.lstrip("-").isdigit()
                                       else -1)
        try:
            if request.timeout:
                code = await within(run.run(), request.timeout)
            else:
                code = await run.run()
        except TimeoutError:
            self._emit(lines, host_id, f"Timeout executing {request.command}")
            code = EXIT_ERROR
        if self.observer is not None:
            self.observer.hook_finished(host_id, code, lines)
        stdout = "".join(line + "\n" for line in lines).encode()
        return ExecutionResult(request.command, stdout, b"", code)
