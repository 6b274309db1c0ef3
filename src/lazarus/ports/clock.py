"""Clock port: the only way time enters the core.

Production uses `SystemClock` (app/), tests and the simulator a virtual clock whose `sleep`
returns as soon as virtual time reaches the deadline. Nothing in core/ calls time.time(),
datetime.now() or asyncio.sleep() directly.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (virtual in the simulator)."""
        ...

    def monotonic(self) -> float:
        """A clock for measuring intervals; never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...
