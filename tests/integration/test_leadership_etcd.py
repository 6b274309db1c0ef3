"""The Elector (cluster/leadership.py) on a real 3-member etcd cluster, in real time.

A "killed" controller is one whose coordination calls all fail from one instant on (its
process is gone: nothing renews its lease). What is asserted is order, never duration: the
old leader stopped acting before the new one was elected, epochs grow, an etcd member that is
not etcd's leader can be lost without any leader change.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.etcd import EtcdCluster, etcd_cluster
from lazarus.cluster.leadership import Elector
from lazarus.domain.errors import CoordinationError
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.coord.etcd import EtcdCoordination
from lazarus.ports.coordination import Term

GIVE_UP = 30.0  # only so a broken build cannot hang the suite


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    yield from etcd_cluster(tmp_path / "etcd")


class Killable:
    """The etcd adapter, until kill(): then every call fails, as from a dead process."""

    def __init__(self, inner: EtcdCoordination) -> None:
        self.inner = inner
        self.dead = False

    def kill(self) -> None:
        self.dead = True

    def _check(self) -> None:
        if self.dead:
            raise CoordinationError("killed")

    async def campaign(self, key: str, value: str, ttl: float) -> Term | None:
        self._check()
        return await self.inner.campaign(key, value, ttl)

    async def renew(self, term: Term) -> bool:
        self._check()
        return await self.inner.renew(term)

    async def leader(self, key: str) -> tuple[str, int] | None:
        self._check()
        return await self.inner.leader(key)

    async def resign(self, term: Term) -> None:
        self._check()
        await self.inner.resign(term)

    def close(self) -> None:
        pass


class Node:
    def __init__(self, cluster: EtcdCluster, name: str, key: str) -> None:
        self.coord = Killable(EtcdCoordination(cluster.endpoints, timeout=0.5))
        self.log: list[tuple[float, str, int]] = []
        self.elector = Elector(self.coord, SystemClock(), key, name,
                               on_elected=self._elected, on_deposed=self._deposed)
        self.task: asyncio.Task[None] | None = None

    async def _elected(self, term: Term) -> None:
        self.log.append((time.monotonic(), "elected", term.epoch))

    async def _deposed(self, term: Term, why: str) -> None:
        self.log.append((time.monotonic(), "deposed", term.epoch))

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.elector.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def until(predicate: Any, what: str) -> None:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < GIVE_UP, f"never: {what}"
        await asyncio.sleep(0.05)


def test_a_killed_leader_stops_acting_before_a_standby_takes_over(etcd: EtcdCluster) -> None:
    async def go() -> None:
        key = f"lazarus/it/{time.monotonic_ns()}"
        a, b = Node(etcd, "a", key), Node(etcd, "b", key)
        a.start()
        await until(lambda: a.elector.acting(), "a leads")
        b.start()
        await asyncio.sleep(1.0)  # b campaigns a few times and follows
        assert not b.elector.acting() and b.elector.leader is not None
        a.coord.kill()
        await until(lambda: b.elector.acting(), "b leads")
        (deposed,) = [e for e in a.log if e[1] == "deposed"]
        (elected,) = [e for e in b.log if e[1] == "elected"]
        assert a.elector.acted_until < elected[0]
        assert deposed[0] < elected[0]
        assert elected[2] > a.log[0][2]
        await a.stop()
        await b.stop()

    asyncio.run(go())


def test_a_clean_stop_resigns_and_the_standby_leads_at_its_next_campaign(
    etcd: EtcdCluster,
) -> None:
    async def go() -> None:
        key = f"lazarus/it/{time.monotonic_ns()}"
        a, b = Node(etcd, "a", key), Node(etcd, "b", key)
        a.start()
        await until(lambda: a.elector.acting(), "a leads")
        b.start()
        await a.stop()
        assert await b.coord.inner.leader(key) is None  # the key went with the lease
        await until(lambda: b.elector.acting(), "b leads")
        await b.stop()

    asyncio.run(go())


def _status(endpoint: str) -> dict[str, Any]:
    req = urllib.request.Request(endpoint + "/v3/maintenance/status", data=b"{}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=2) as resp:
        return dict(json.loads(resp.read()))


def test_losing_an_etcd_member_that_is_not_its_leader_changes_nothing(
    etcd: EtcdCluster,
) -> None:
    async def go() -> None:
        key = f"lazarus/it/{time.monotonic_ns()}"
        a = Node(etcd, "a", key)
        a.start()
        await until(lambda: a.elector.acting(), "a leads")
        statuses = [_status(e) for e in etcd.endpoints]
        leader_id = statuses[0]["leader"]
        follower = next(i for i, s in enumerate(statuses)
                        if s["header"]["member_id"] != leader_id)
        etcd.kill(follower)
        renewed = a.elector.deadline
        await until(lambda: a.elector.deadline > renewed + 1.0, "two renews after the loss")
        assert [e[1] for e in a.log] == ["elected"]
        await a.stop()

    asyncio.run(go())
