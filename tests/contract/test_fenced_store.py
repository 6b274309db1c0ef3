"""Epoch fencing (cluster/fenced.py) over every store that two controllers can share: two
store objects on one SQLite file, and two on one PostgreSQL schema, as two controller
processes would open them. The old leader's writes are refused in the same transaction that would
have made them, and nothing of a refused transaction lands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lazarus.cluster.fenced import EPOCH_KEY, FencedStore, claim_epoch
from lazarus.domain.entities import Host
from lazarus.domain.errors import InternalError, StaleLeaderError, is_store_failure
from lazarus.domain.hooks import Hook
from lazarus.domain.template import Template
from lazarus.store.sqlite import SqliteStore

Pair = Callable[[Path], tuple[Any, Any]]


def _sqlite_pair(tmp: Path) -> tuple[Any, Any]:
    path = tmp / "data" / "lazarus.db"
    return SqliteStore.open(path), SqliteStore.open(path)


PAIRS: dict[str, Pair] = {"sqlite-file": _sqlite_pair}


@pytest.fixture(params=[*sorted(PAIRS), "postgresql"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    if request.param == "postgresql":
        from lazarus.store.postgres import PostgresStore

        conninfo = request.getfixturevalue("pg_conninfo")
        one, two = PostgresStore.open(conninfo), PostgresStore.open(conninfo)
    else:
        one, two = PAIRS[request.param](tmp_path)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def _host(name: str) -> Host:
    return Host(id=-1, name=name, im_mad="sim", vm_mad="sim")


def test_the_new_leader_claims_and_the_old_ones_writes_are_refused(pair: Any) -> None:
    a_store, b_store = pair
    assert claim_epoch(a_store, 7) == 0
    a = FencedStore(a_store, 7)
    with a.transaction() as tx:
        tx.add_host(_host("node1"))
    assert claim_epoch(b_store, 9) == 7  # b takes over (another process, same file)
    b = FencedStore(b_store, 9)
    with pytest.raises(StaleLeaderError) as err, a.transaction() as tx:
        tx.add_host(_host("node2"))
    assert isinstance(err.value, InternalError) and not is_store_failure(err.value)
    assert "superseded by epoch 9" in str(err.value)
    assert a.refused == 1
    with b.transaction() as tx:
        tx.add_host(_host("node3"))
    assert [h.name for h in a.hosts()] == ["node1", "node3"]  # reads pass; node2 never landed
    assert b_store.get_meta(EPOCH_KEY) == "9"


def test_the_check_is_in_the_writing_transaction_not_before_it(pair: Any) -> None:
    """Whatever the old leader read before, the claim that commits first wins: a claim
    between two of its transactions refuses the second, never half of one."""
    a_store, b_store = pair
    claim_epoch(a_store, 3)
    a = FencedStore(a_store, 3)
    with a.transaction() as tx:
        host = tx.add_host(_host("node1"))
    claim_epoch(b_store, 4)
    with pytest.raises(StaleLeaderError), a.transaction() as tx:
        host.name = "renamed"
        tx.save_host(host)
        tx.set_meta("some.cursor", "42")
    assert a_store.host(host.id).name == "node1"
    assert b_store.get_meta("some.cursor") is None


def test_a_late_claim_is_refused(pair: Any) -> None:
    a_store, b_store = pair
    claim_epoch(b_store, 12)
    with pytest.raises(StaleLeaderError):
        claim_epoch(a_store, 11)
    assert a_store.get_meta(EPOCH_KEY) == "12"
    assert claim_epoch(b_store, 12) == 12  # the same leader again (a restart): idempotent


def test_a_store_nobody_claimed_refuses_fenced_writes(pair: Any) -> None:
    a_store, _ = pair
    fenced = FencedStore(a_store, 5)
    with pytest.raises(StaleLeaderError, match="not the store's"), fenced.transaction() as tx:
        tx.add_host(_host("node1"))
    assert a_store.hosts() == []


def test_hook_writes_are_fenced_too(pair: Any) -> None:
    a_store, b_store = pair
    claim_epoch(a_store, 1)
    a = FencedStore(a_store, 1)
    claim_epoch(b_store, 2)
    hook = Hook(id=-1, name="h", type="state", template=Template.parse('COMMAND = "x"'))
    with pytest.raises(StaleLeaderError), a.transaction() as tx:
        tx.add_hook(hook)
    assert b_store.hooks() == []


def test_a_lapsed_lease_refuses_writes_before_any_successor_claims(pair: Any) -> None:
    a_store, _ = pair
    claim_epoch(a_store, 1)
    leading = [True]
    a = FencedStore(a_store, 1, still_leader=lambda: leading[0])
    with a.transaction() as tx:
        tx.add_host(_host("node1"))
    leading[0] = False
    with pytest.raises(StaleLeaderError, match="lapsed"), a.transaction() as tx:
        tx.add_host(_host("node2"))
    assert [h.name for h in a_store.hosts()] == ["node1"]
