"""A HookExecutor that times each run for the metrics (hook executions by result, duration).

Wraps the daemon's executor (drivers/hooks/subprocess.py); the hook manager sees only `run`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lazarus.domain.hooks import ExecutionResult
from lazarus.ports.hooks import HookExecutor, HookRequest

from .metrics import Metrics


class TimedHookExecutor:
    def __init__(
        self,
        inner: HookExecutor,
        metrics: Metrics,
        hook_name: Callable[[int], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._metrics = metrics
        self._name = hook_name
        self._clock = clock

    async def run(self, request: HookRequest) -> ExecutionResult:
        start = self._clock()
        result = await self.inner.run(request)
        try:
            name = self._name(request.hook_id)
        except Exception:  # deleted meanwhile
            name = f"hook/{request.hook_id}"
        self._metrics.hook_done(name, result.code, self._clock() - start)
        return result
