"""Clock adapters: the real one, and a virtual one for tests and the simulator.

`VirtualEventLoop` is an asyncio loop whose time only moves when the loop would otherwise wait:
when no callback is ready and no I/O is pending it jumps straight to the next timer. So
`await clock.sleep(180)` costs microseconds, timeouts (`asyncio.timeout`) fire in virtual
time, and a run is deterministic. Do not mix it with real threads or subprocesses: they would
see virtual time race ahead of them.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# 2026-01-01T00:00:00Z: virtual runs start at a fixed, recognisable instant.
VIRTUAL_EPOCH = 1_767_225_600.0


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class _JumpingSelector(selectors.BaseSelector):
    """Polls real I/O without blocking; instead of waiting, advances the loop's virtual time."""

    def __init__(self, loop: VirtualEventLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # Nothing scheduled: only another thread can wake us (call_soon_threadsafe).
            return self._real.select(None)
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualEventLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        self._virtual_time = start
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_time

    def advance(self, seconds: float) -> None:
        self._virtual_time += max(0.0, seconds)


class VirtualClock:
    """The clock of a VirtualEventLoop; `now()` is VIRTUAL_EPOCH + the loop's time."""

    def __init__(self, loop: VirtualEventLoop, epoch: float = VIRTUAL_EPOCH) -> None:
        self.loop = loop
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + self.loop.time()

    def monotonic(self) -> float:
        return self.loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh virtual-time loop."""
    loop = VirtualEventLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
