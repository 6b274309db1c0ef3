"""Coordination port: leadership among several controllers, backed by a lease.

    term = await coord.campaign("lazarus/leader", "ctl-a http://10.0.0.1:2633/RPC2", ttl=2.0)
    if term is not None:            # we lead; term.epoch is the fencing token
        ok = await coord.renew(term)  # False: the lease is gone (expired, revoked)
        ...
        await coord.resign(term)
    who = await coord.leader("lazarus/leader")   # (value, epoch) of the leader, or None

A campaign is one attempt, never a wait: it grants a lease of `ttl` seconds and creates the
key bound to it only if the key does not exist (one transaction), so at most one controller
holds the key at a time. When the holder stops renewing, the coordination service deletes
the key at the lease's expiry and the next campaign wins.

`epoch` strictly increases with each new holder of the key: etcd gives the revision at which
the key was created (revisions only grow), the fake a counter. The controller writes it into
the store when it takes over (cluster/fenced.py) and every write checks it, so a deposed
leader cannot write even if it does not know yet that it was deposed.

Every call may raise CoordinationError (service unreachable, no quorum, timeout); `timeout`
bounds one call. Adapters: drivers/coord/etcd.py (etcd's v3 JSON gateway), drivers/coord/
memory.py (in-process, on an injected clock: unit tests and the simulator). Contract tests:
tests/contract/test_coordination.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Term:
    """One leadership: the key, its value, the lease it is bound to, and its epoch."""

    key: str
    value: str
    lease: int
    epoch: int
    ttl: float  # as granted (the service may round it up)


class Coordination(Protocol):
    async def campaign(self, key: str, value: str, ttl: float) -> Term | None:
        """Become the holder of `key` if nobody holds it; None when someone does."""
        ...

    async def renew(self, term: Term) -> bool:
        """Refresh the lease for another `ttl`; False when it no longer exists (then this
        controller is no longer the leader, whatever it believes)."""
        ...

    async def leader(self, key: str) -> tuple[str, int] | None:
        """(value, epoch) of the current holder of `key`, or None."""
        ...

    async def resign(self, term: Term) -> None:
        """Give the leadership up now (revokes the lease, which deletes the key)."""
        ...

    def close(self) -> None: ...
