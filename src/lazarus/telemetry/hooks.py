"""A HookExecutor that times each run for the metrics (hook executions by result, duration)
and tells the event stream that it ended ({"type": "hook", ...}).

Wraps the daemon's executor (drivers/hooks/subprocess.py); the hook manager sees only `run`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lazarus.domain.hooks import ExecutionResult
from lazarus.ports.hooks import HookExecutor, HookRequest

from .events import EventFeed
from .metrics import Metrics


class TimedHookExecutor:
    def __init__(
        self,
        inner: HookExecutor,
        metrics: Metrics,
        hook_name: Callable[[int], str],
        clock: Callable[[], float] = time.monotonic,
        feed: EventFeed | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self._feed = feed
        self._now = now
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
        seconds = self._clock() - start
        self._metrics.hook_done(name, result.code, seconds)
        if self._feed is not None:  # its record is stored right after this returns
            self._feed.publish({"type": "hook", "time": self._now(), "hook_id": request.hook_id,
                                "hook": name, "code": result.code,
                                "seconds": round(seconds, 3)})
        return result
