"""`lazarus serve --ha`: stand by until elected through etcd, lead, exit when deposed.

    standby = Standby(HaOptions(etcd=["http://10.0.0.1:2379", ...]), clock, "ctl-a")
    term = await standby.wait_elected(stop)        # None: stopped while standing by
    claim ... build the controller over standby.fenced(store) ... serve
    await first_of(stop, standby.deposed)          # then abort and exit EXIT_DEPOSED

A standby process opens nothing but the store and etcd: it runs no monitor, scheduler, hook
manager or API, and writes nothing. Once elected it claims its epoch in the store
(cluster/fenced.py) and the daemon builds everything as a single controller would, over a
FencedStore of that epoch. When the elector stands down (its lease could not be renewed in
time, or is gone) the daemon aborts the controller at once, as a crash would, closes the API
and exits with EXIT_DEPOSED (75, EX_TEMPFAIL): crash-only, a supervisor (systemd
`Restart=always`) starts it again as a standby. Nothing the deposed process still tries can
land: its store refuses every write of its epoch.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from lazarus.cluster.fenced import FencedStore, claim_epoch
from lazarus.cluster.leadership import DEFAULT_KEY, Elector, LeaseTiming
from lazarus.drivers.coord.etcd import EtcdCoordination
from lazarus.ports.clock import Clock
from lazarus.ports.coordination import Term

log = logging.getLogger("lazarus.daemon")

EXIT_DEPOSED = 75


@dataclass
class HaOptions:
    etcd: list[str]
    key: str = DEFAULT_KEY
    timing: LeaseTiming = field(default_factory=LeaseTiming)

    def __post_init__(self) -> None:
        EtcdCoordination(self.etcd)  # ValueError: no endpoint, or one that is not http://h:p


class Standby:
    def __init__(self, options: HaOptions, clock: Clock, identity: str) -> None:
        self.coord = EtcdCoordination(options.etcd, timeout=options.timing.call_timeout)
        self.elected = asyncio.Event()
        self.deposed = asyncio.Event()
        self.why = ""
        self.term: Term | None = None
        self.elector = Elector(self.coord, clock, options.key, identity, options.timing,
                               on_elected=self._on_elected, on_deposed=self._on_deposed)
        self.task: asyncio.Task[None] | None = None

    async def _on_elected(self, term: Term) -> None:
        self.term = term
        self.elected.set()

    async def _on_deposed(self, term: Term, why: str) -> None:
        self.why = why
        self.deposed.set()

    async def wait_elected(self, stop: asyncio.Event) -> Term | None:
        self.task = asyncio.get_running_loop().create_task(self.elector.run(), name="elector")
        log.info("lazarus: standing by for the leadership (%s)", self.elector.identity)
        waits = [asyncio.ensure_future(e.wait()) for e in (self.elected, stop)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return self.term if self.elected.is_set() and not stop.is_set() else None

    def claim(self, store: Any) -> FencedStore:
        """Raise the store's epoch to ours; the store every part of the controller writes to."""
        assert self.term is not None
        claim_epoch(store, self.term.epoch)
        return FencedStore(store, self.term.epoch, still_leader=self.elector.acting)

    async def close(self) -> None:
        """Stop campaigning; a leader resigns so a standby takes over at once."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
