"""Waiting helpers shared by the core's loops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lazarus.ports.clock import Clock

T = TypeVar("T")


async def sleep_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> bool:
    """Sleep `seconds`, returning early (True) when `wake` is set.

    The timeout runs on the event loop's time, which is the clock's time for both clock
    adapters (SystemClock sleeps with asyncio; the simulator's loop *is* its virtual clock),
    so no task or second timer is needed: this is on the monitor's per-probe hot path."""
    if wake.is_set():
        return True
    try:
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        return False
    return True


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`asyncio.wait_for` without its inner task: on Python 3.11 a wait_for cancelled just as
    its inner task completes can wait for that task forever (it hung the daemon's shutdown).
    Raises TimeoutError after `seconds` of loop (= clock) time."""
    async with asyncio.timeout(seconds):
        return await awaitable


class VmTimers:
    """At most one pending timer per VM id: the restart policies' (restarts.py, vm_ha.py)
    "decide again at NEXT". `arm(vm_id, when, decide)` replaces the VM's timer; at `when` (on
    the clock) the timer is no longer pending and `decide(vm_id)` runs, so a decision may arm
    the next one. A decision that raised is logged as `what` failed."""

    def __init__(self, what: str, log: logging.Logger, clock: Clock) -> None:
        self._what = what
        self._log = log
        self._clock = clock
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def arm(self, vm_id: int, when: float, decide: Callable[[int], Awaitable[None]]) -> None:
        self.cancel(vm_id)
        task = asyncio.get_running_loop().create_task(self._run(vm_id, when, decide))
        self._tasks[vm_id] = task
        task.add_done_callback(lambda done: self._reap(vm_id, done))

    async def _run(self, vm_id: int, when: float, decide: Callable[[int], Awaitable[None]]
                   ) -> None:  # fmt: skip
        wait = when - self._clock.now()
        if wait > 0:
            await self._clock.sleep(wait)
        if self._tasks.get(vm_id) is asyncio.current_task():
            del self._tasks[vm_id]
        await decide(vm_id)

    def cancel(self, vm_id: int) -> None:
        task = self._tasks.pop(vm_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def abort(self) -> list[asyncio.Task[None]]:
        """Cancel every timer at once (a crash); the tasks, for whoever awaits them."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        return tasks

    async def close(self) -> None:
        await asyncio.gather(*self.abort(), return_exceptions=True)
        self._tasks.clear()

    def _reap(self, vm_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(vm_id) is task:
            del self._tasks[vm_id]
        if not task.cancelled() and task.exception() is not None:
            self._log.error("vm/%d: %s failed", vm_id, self._what, exc_info=task.exception())
