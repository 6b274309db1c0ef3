"""Contract of the Coordination port (ports/coordination.py), run against every adapter:
drivers/coord/memory.py on a manual clock, and drivers/coord/etcd.py on a real 3-member etcd
cluster on loopback (tests/helpers/etcd.py; skipped with a reason when etcd is absent, failed
under LAZARUS_REQUIRE_ETCD=1).

Lease expiry is awaited, never timed: the memory adapter's clock is moved past the TTL; with
etcd the test polls until the key is gone, bounded only so a broken build cannot hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.etcd import EtcdCluster, etcd_cluster
from lazarus.domain.errors import CoordinationError
from lazarus.drivers.coord.etcd import EtcdCoordination
from lazarus.drivers.coord.memory import MemoryCoordinationService
from lazarus.ports.coordination import Coordination

KEY = "lazarus/test/leader"
TTL = 1.0
GIVE_UP = 30.0  # only so a broken build cannot hang the suite


class ManualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


class MemoryEnv:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.service = MemoryCoordinationService(self.clock)

    def client(self, name: str) -> Coordination:
        return self.service.client(name)

    async def until_gone(self, coord: Coordination, key: str) -> None:
        self.clock.t += TTL + 0.01
        assert await coord.leader(key) is None


class EtcdEnv:
    def __init__(self, cluster: EtcdCluster) -> None:
        self.cluster = cluster
        self.clients: list[EtcdCoordination] = []

    def client(self, name: str) -> Coordination:
        c = EtcdCoordination(self.cluster.endpoints, timeout=2.0)
        self.clients.append(c)
        return c

    async def until_gone(self, coord: Coordination, key: str) -> None:
        start = time.monotonic()
        while await coord.leader(key) is not None:
            assert time.monotonic() - start < GIVE_UP, "the lease never expired"
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def etcd_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    yield from etcd_cluster(Path(tmp_path_factory.mktemp("etcd")))


@pytest.fixture(params=["memory", "etcd"])
def env(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryEnv()
    cluster: EtcdCluster = request.getfixturevalue("etcd_module")
    return EtcdEnv(cluster)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


_n = [0]


def key() -> str:
    _n[0] += 1
    return f"{KEY}/{time.monotonic_ns()}-{_n[0]}"  # a fresh key per test (shared cluster)


def test_one_holder_at_a_time(env: Any) -> None:
    async def go() -> None:
        k = key()
        a, b = env.client("a"), env.client("b")
        assert await a.leader(k) is None
        term = await a.campaign(k, "ctl-a", TTL)
        assert term is not None and term.value == "ctl-a" and term.epoch > 0
        assert await b.campaign(k, "ctl-b", TTL) is None
        assert await b.leader(k) == ("ctl-a", term.epoch)
        assert await a.renew(term) is True
        assert await a.campaign(k, "ctl-a again", TTL) is None  # no second term for anyone

    run(go())


def test_resign_hands_over_with_a_greater_epoch(env: Any) -> None:
    async def go() -> None:
        k = key()
        a, b = env.client("a"), env.client("b")
        first = await a.campaign(k, "ctl-a", TTL)
        assert first is not None
        await a.resign(first)
        assert await b.leader(k) is None
        assert await a.renew(first) is False  # the lease is gone with the leadership
        second = await b.campaign(k, "ctl-b", TTL)
        assert second is not None and second.epoch > first.epoch
        assert await a.leader(k) == ("ctl-b", second.epoch)

    run(go())


def test_an_unrenewed_lease_expires_and_the_next_campaign_wins(env: Any) -> None:
    async def go() -> None:
        k = key()
        a, b = env.client("a"), env.client("b")
        first = await a.campaign(k, "ctl-a", TTL)
        assert first is not None
        await env.until_gone(b, k)
        assert await a.renew(first) is False  # too late: deposed
        second = await b.campaign(k, "ctl-b", TTL)
        assert second is not None and second.epoch > first.epoch
        third_try = await a.campaign(k, "ctl-a", TTL)
        assert third_try is None

    run(go())


def test_epochs_strictly_increase_over_many_terms(env: Any) -> None:
    async def go() -> None:
        k = key()
        clients = [env.client(n) for n in "abc"]
        epochs = []
        for i in range(6):
            term = await clients[i % 3].campaign(k, f"ctl-{i}", TTL)
            assert term is not None
            epochs.append(term.epoch)
            await clients[i % 3].resign(term)
        assert epochs == sorted(set(epochs))

    run(go())


# -- etcd only: the engine's own failures -----------------------------------------------------
@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A cluster of its own, for the tests that kill members."""
    yield from etcd_cluster(tmp_path / "etcd")


def test_etcd_one_member_lost_keeps_the_leadership(own_etcd: EtcdCluster) -> None:
    cluster = own_etcd
    coord = EtcdCoordination(cluster.endpoints, timeout=3.0)

    async def go() -> None:
        k = key()
        term = await coord.campaign(k, "ctl-a", 2.0)
        assert term is not None
        cluster.kill(0)  # the member the client talked to first
        assert await coord.renew(term) is True  # quorum of 2 of 3: still the leader
        assert await coord.leader(k) == ("ctl-a", term.epoch)

    run(go())


def test_etcd_quorum_lost_makes_calls_fail(own_etcd: EtcdCluster) -> None:
    cluster = own_etcd
    coord = EtcdCoordination(cluster.endpoints, timeout=1.0)

    async def go() -> None:
        k = key()
        term = await coord.campaign(k, "ctl-a", 2.0)
        assert term is not None
        cluster.kill(1)
        cluster.kill(2)
        # etcd's leader renews leases by itself (no raft round): until it sees it lost
        # the quorum (one election timeout) a renew may still succeed; then every call
        # fails, each within the client's timeout.
        start = time.monotonic()
        with pytest.raises(CoordinationError):
            while time.monotonic() - start < GIVE_UP:
                await coord.renew(term)
                await asyncio.sleep(0.1)
        for call in (coord.renew(term), coord.leader(k), coord.campaign(k, "x", 2.0)):
            with pytest.raises(CoordinationError):
                await call
        cluster.start(1)
        cluster.start(2)
        cluster.wait_healthy()
        # quorum back: the lease may or may not have outlived the outage; either way the
        # answer is a clear True/False, and a campaign works again
        renewed = await coord.renew(term)
        if not renewed:
            assert (await coord.campaign(k, "ctl-a", 2.0)) is not None

    run(go())
