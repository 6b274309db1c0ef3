"""Waiting helpers shared by the core's loops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
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
