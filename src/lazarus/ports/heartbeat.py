"""Ports of the heartbeat channel (docs/ha.md, "The second signal").

`HeartbeatSource` is how the controller (core/heartbeats.py) reads the hosts' heartbeat files
from the shared system datastore it can see; `BeatSink` is how a host agent (lazarus/agent)
writes its own; `Watchdog` is the host's hardware watchdog (/dev/watchdog) or a fake;
`ControllerLink` tells the agent whether it still reaches the controller; `LocalVms` stops
the host's VMs for the agent's isolation response.
"""

from __future__ import annotations

from typing import Protocol

from lazarus.domain.heartbeat import Beat


class HeartbeatSource(Protocol):
    async def read(self, host: str) -> bytes | None:
        """The host's heartbeat file; None when there is none (no agent). Raises OSError when
        the storage cannot be read (that is no evidence either way)."""
        ...


class BeatSink(Protocol):
    async def write(self, beat: Beat) -> None:
        """Replace the host's heartbeat file atomically; OSError when the storage fails."""
        ...

    async def last(self, host: str) -> Beat | None:
        """The beat this host wrote last (to continue its counter), None when unknown."""
        ...


class Watchdog(Protocol):
    """A watchdog device: the host is reset `timeout` seconds after the last feed."""

    timeout: float

    def feed(self) -> None: ...

    def disarm(self) -> None:
        """A clean stop: the device will not reset the host (the magic close)."""
        ...


class ControllerLink(Protocol):
    async def reachable(self) -> bool:
        """True when the controller's API endpoint answers (within the link's own bound)."""
        ...


class LocalVms(Protocol):
    async def stop_all(self) -> int:
        """Stop (destroy) every VM of this host; the number stopped. Raises on failure."""
        ...
