"""The Coordination port in-process: leases that expire on an injected clock.

    service = MemoryCoordinationService(clock)    # one per simulated cluster
    coord = service.client("ctl-a")               # one per controller
    service.cut("ctl-a")                          # that client's calls now raise (partition)
    service.heal("ctl-a")

What etcd does, in memory: a lease lives `ttl` seconds after its grant or last renewal (on the
service's clock: the simulator's virtual time); a key bound to a lease disappears when the
lease expires or is revoked; campaign creates the key only if absent; the epoch is a counter
that grows by one with every creation (etcd: the creation revision, which also only grows).
Expiry is checked lazily at every call, so nothing runs in the background. Passes the
contract tests of the etcd adapter (tests/contract/test_coordination.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from lazarus.domain.errors import CoordinationError
from lazarus.ports.clock import Clock
from lazarus.ports.coordination import Term


@dataclass
class _Lease:
    expires: float
    ttl: float


class MemoryCoordinationService:
    def __init__(self, clock: Clock, *, latency: float = 0.0) -> None:
        self.clock = clock
        self.latency = latency  # each call takes this long (virtual seconds), like a round trip
        self.leases: dict[int, _Lease] = {}
        self.keys: dict[str, tuple[str, int, int]] = {}  # key -> (value, lease, epoch)
        self.revision = 0
        self._next_lease = 1
        self.cut_off: set[str] = set()
        self.down = False  # the whole service (quorum lost)

    def client(self, name: str) -> MemoryCoordination:
        return MemoryCoordination(self, name)

    def cut(self, name: str) -> None:
        self.cut_off.add(name)

    def heal(self, name: str) -> None:
        self.cut_off.discard(name)

    def _expire(self) -> None:
        now = self.clock.monotonic()
        for lease_id in [i for i, le in self.leases.items() if le.expires <= now]:
            self._revoke(lease_id)

    def _revoke(self, lease_id: int) -> None:
        self.leases.pop(lease_id, None)
        for key in [k for k, (_, le, _) in self.keys.items() if le == lease_id]:
            del self.keys[key]

    def holder(self, key: str) -> tuple[str, int] | None:
        """For observers (the simulator's oracles): no reachability check."""
        self._expire()
        held = self.keys.get(key)
        return (held[0], held[2]) if held is not None else None


class MemoryCoordination:
    def __init__(self, service: MemoryCoordinationService, name: str) -> None:
        self.service = service
        self.name = name

    async def _enter(self) -> MemoryCoordinationService:
        s = self.service
        if s.latency:
            await s.clock.sleep(s.latency)
        if s.down or self.name in s.cut_off:
            raise CoordinationError(f"coordination service unreachable from {self.name}")
        s._expire()
        return s

    async def leader(self, key: str) -> tuple[str, int] | None:
        s = await self._enter()
        held = s.keys.get(key)
        return (held[0], held[2]) if held is not None else None

    async def campaign(self, key: str, value: str, ttl: float) -> Term | None:
        s = await self._enter()
        if key in s.keys:
            return None
        lease = s._next_lease
        s._next_lease += 1
        s.leases[lease] = _Lease(s.clock.monotonic() + ttl, ttl)
        s.revision += 1
        s.keys[key] = (value, lease, s.revision)
        return Term(key=key, value=value, lease=lease, epoch=s.revision, ttl=ttl)

    async def renew(self, term: Term) -> bool:
        s = await self._enter()
        lease = s.leases.get(term.lease)
        if lease is None:
            return False
        lease.expires = s.clock.monotonic() + lease.ttl
        return True

    async def resign(self, term: Term) -> None:
        s = await self._enter()
        s._revoke(term.lease)

    def close(self) -> None:
        pass
