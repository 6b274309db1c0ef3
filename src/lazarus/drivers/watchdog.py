"""The host's watchdog (ports/heartbeat.Watchdog): the Linux device, and a fake.

`DeviceWatchdog` speaks the kernel's watchdog protocol (Documentation/watchdog/watchdog-api):
opening /dev/watchdog arms it, any write feeds it, writing "V" before close disarms it (the
"magic close", when the driver supports it; with `nowayout` nothing disarms it). Its timeout
is the driver's (WDIOC_GETTIMEOUT is not asked here: it is configured, `--watchdog-timeout`,
and must not be shorter than the device's real one).

No machine here has a watchdog device (no /dev/watchdog, no softdog module in the containers),
so the device adapter is exercised against a regular file in the contract tests, and the lab
and the simulator use `FakeWatchdog`, which records feeds and says when it would have fired.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class DeviceWatchdog:
    def __init__(self, path: Path | str = "/dev/watchdog", timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._fd: int | None = None

    def feed(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY)  # opening arms the device
        os.write(self._fd, b"\0")

    def disarm(self) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, b"V")
        finally:
            os.close(self._fd)
            self._fd = None


class FakeWatchdog:
    """Fires (`on_fire`, once) when `check()` finds no feed for `timeout` seconds."""

    def __init__(
        self,
        now: Callable[[], float],
        timeout: float = 10.0,
        on_fire: Callable[[], None] | None = None,
    ) -> None:
        self.now = now
        self.timeout = timeout
        self.on_fire = on_fire
        self.armed = False
        self.fired = False
        self.feeds = 0
        self.last_feed = float("-inf")

    def feed(self) -> None:
        self.armed = True
        self.feeds += 1
        self.last_feed = self.now()

    def disarm(self) -> None:
        self.armed = False

    def check(self) -> bool:
        """True (once) when the device would have reset the host by now."""
        if self.armed and not self.fired and self.now() - self.last_feed >= self.timeout:
            self.fired = True
            if self.on_fire is not None:
                self.on_fire()
            return True
        return False
