"""Leadership: campaign for a lease-backed key, renew it, stop acting before it can expire.

    elector = Elector(coord, clock, "lazarus/leader", "ctl-a http://10.0.0.1:2633/RPC2",
                      on_elected=take_over, on_deposed=stand_down)
    task = loop.create_task(elector.run())
    elector.acting()      # True only while leading and before the own deadline

One loop per controller. A follower campaigns every `campaign_every` seconds (one attempt
each: ports/coordination.py) and notes who leads. The leader renews every `renew_every`
seconds. Its own deadline, on its own monotonic clock, is

    deadline = (send time of the last successful renew) + ttl - margin

The service starts counting the TTL when the renew *arrives*, after it was sent, so the key
cannot expire before `sent + ttl`; the leader stops `margin` seconds earlier still (for clock
rate differences and for work already under way). A renew that fails or hangs is given at most
`deadline - now`, so the loop itself reaches the deadline on time; `acting()` reads the clock
and is False past the deadline even if the loop is late (a frozen process). At the deadline,
or at a renew that says the lease is gone, the elector calls `on_deposed` and campaigns again.

Defaults (issue 14: a new leader acting within 3 s p99 of the old one being killed):
ttl 2 s, renew every 0.5 s, margin 0.5 s, campaign every 0.25 s, each call at most 0.5 s.
A killed leader's lease expires 1.5 to 2 s after the kill (its last renew was at most 0.5 s
before); etcd deletes expired leases on its 0.5 s expiry sweep, and the next campaign comes
within 0.25 s: 2.75 s in the worst case. A leader that cannot renew stops acting 1.5 s after
its last successful renew was sent, at least 0.5 s before anybody else can be elected.

`on_elected(term)` and `on_deposed(term, why)` must return promptly (they run on this loop,
between renewals): claim the epoch and start or abort the controller, nothing longer. When
`on_elected` raises (the store refuses the claim: it is down), the term is given up at once
and this controller waits one TTL before campaigning again, so another may try.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from lazarus.domain.errors import CoordinationError
from lazarus.ports.clock import Clock
from lazarus.ports.coordination import Coordination, Term

log = logging.getLogger("lazarus.cluster")
# A retry needs at least this long before the deadline. Smaller waits are not worth making,
# and a sleep of 6e-14 s does not move a float clock at t = 104.55 (fuzz seed 107 never ended).
MIN_WAIT = 0.001

DEFAULT_KEY = "lazarus/leader"
T = TypeVar("T")


@dataclass(frozen=True)
class LeaseTiming:
    ttl: float = 2.0
    renew_every: float = 0.5
    margin: float = 0.5
    campaign_every: float = 0.25
    call_timeout: float = 0.5

    def __post_init__(self) -> None:
        if min(self.ttl, self.renew_every, self.campaign_every, self.call_timeout) <= 0:
            raise ValueError("lease timings must be positive")
        if self.margin < 0 or self.margin >= self.ttl:
            raise ValueError("the margin must be >= 0 and less than the TTL")
        if self.renew_every + self.call_timeout > self.ttl - self.margin:
            raise ValueError(
                "renew_every + call_timeout must fit in ttl - margin (a renew must be able to "
                "complete before the leader's own deadline)")


Elected = Callable[[Term], Awaitable[None]]
Deposed = Callable[[Term, str], Awaitable[None]]


class Elector:
    def __init__(self, coord: Coordination, clock: Clock, key: str, identity: str,
                 timing: LeaseTiming | None = None, *, on_elected: Elected,
                 on_deposed: Deposed) -> None:
        self.coord = coord
        self.clock = clock
        self.key = key
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.term: Term | None = None
        self.deadline = float("-inf")
        self.acted_until = float("-inf")  # when the last term stopped acting (deadline or
        # deposition, whichever came first)
        self.leader: tuple[str, int] | None = None  # as last seen (value, epoch)
        self.status = "starting"
        self._next_renew = 0.0

    def acting(self) -> bool:
        return self.term is not None and self.clock.monotonic() < self.deadline

    async def run(self) -> None:
        try:
            while True:
                await self.step()
        finally:
            if self.term is not None:  # a clean stop: hand over at once
                term, self.term = self.term, None
                try:
                    async with asyncio.timeout(self.timing.call_timeout):
                        await self.coord.resign(term)
                except (CoordinationError, TimeoutError):
                    pass

    async def step(self) -> None:
        """One campaign (follower) or one renew (leader), with the pause before it."""
        if self.term is None:
            await self._campaign()
            if self.term is None:
                await self.clock.sleep(self.timing.campaign_every)
        else:
            await self._renew()

    async def _call(self, call: Callable[[], Awaitable[T]], budget: float) -> T:
        """`call()` within `budget` seconds. The coroutine is made inside the timeout, so none
        is ever left unawaited (a cancellation or an expired budget before it starts)."""
        async with asyncio.timeout(max(0.0, budget)):
            return await call()

    async def _campaign(self) -> None:
        t = self.timing
        sent = self.clock.monotonic()
        try:
            term = await self._call(
                lambda: self.coord.campaign(self.key, self.identity, t.ttl), t.call_timeout)
            if term is None:
                self.leader = await self._call(lambda: self.coord.leader(self.key), t.call_timeout)
                who = f"{self.leader[0]} (epoch {self.leader[1]})" if self.leader else "nobody"
                self.status = f"follower; leader {who}"
                return
        except (CoordinationError, TimeoutError) as exc:
            self.status = f"follower; coordination service unreachable: {exc or 'timeout'}"
            return
        self.term = term
        self.deadline = sent + term.ttl - t.margin
        self._next_renew = sent + t.renew_every
        self.leader = (term.value, term.epoch)
        self.status = f"leader (epoch {term.epoch})"
        log.info("cluster: %s is the leader, epoch %d", self.identity, term.epoch)
        try:
            await self.on_elected(term)
        except Exception as exc:  # e.g. the store refuses the epoch's claim: cannot lead now
            log.error("cluster: %s cannot take over (epoch %d): %s; giving the term up",
                      self.identity, term.epoch, exc)
            self.term = None
            self.deadline = float("-inf")
            self.status = f"follower; could not take over epoch {term.epoch}: {exc}"
            try:
                await self._call(lambda: self.coord.resign(term), t.call_timeout)
            except (CoordinationError, TimeoutError):
                pass  # the lease runs out by itself
            await self.clock.sleep(t.ttl)  # let another controller try first

    async def _renew(self) -> None:
        t = self.timing
        term = self.term
        assert term is not None
        wait = min(self._next_renew, self.deadline) - self.clock.monotonic()
        if wait > 0:
            await self.clock.sleep(wait)
        if self.term is not term:
            return
        sent = self.clock.monotonic()
        budget = min(t.call_timeout, self.deadline - sent)
        if budget < MIN_WAIT:
            await self._depose(term, "the lease could not be renewed before its deadline")
            return
        try:
            ok = await self._call(lambda: self.coord.renew(term), budget)
        except (CoordinationError, TimeoutError) as exc:
            self._next_renew = self.clock.monotonic()  # retry at once, within the deadline
            self.status = f"leader (epoch {term.epoch}); renew failed: {exc or 'timeout'}"
            left = self.deadline - self.clock.monotonic()
            if left < MIN_WAIT:  # no retry can be made in time (and a float clock may not move)
                await self._depose(term, f"the lease could not be renewed: {exc or 'timeout'}")
            else:
                await self.clock.sleep(max(MIN_WAIT, min(t.renew_every / 5, left)))
            return
        if not ok:
            await self._depose(term, "the lease is gone (expired or revoked)")
            return
        self.deadline = sent + term.ttl - t.margin
        self._next_renew = sent + t.renew_every
        self.status = f"leader (epoch {term.epoch})"

    async def _depose(self, term: Term, why: str) -> None:
        self.acted_until = min(self.deadline, self.clock.monotonic())
        self.term = None
        self.deadline = float("-inf")
        self.status = f"follower; stopped leading epoch {term.epoch}: {why}"
        log.warning("cluster: %s stops acting as leader (epoch %d): %s", self.identity,
                    term.epoch, why)
        await self.on_deposed(term, why)
