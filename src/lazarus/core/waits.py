"""Waiting helpers shared by the core's loops."""

from __future__ import annotations

import asyncio

from lazarus.ports.clock import Clock


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
