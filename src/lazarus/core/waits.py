"""Waiting helpers shared by the core's loops."""

from __future__ import annotations

import asyncio

from lazarus.ports.clock import Clock


async def sleep_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> bool:
    """Sleep `seconds` of clock time, returning early (True) when `wake` is set."""
    if wake.is_set():
        return True
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    woken = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, woken):
            task.cancel()
        await asyncio.gather(sleeper, woken, return_exceptions=True)
    return wake.is_set()
