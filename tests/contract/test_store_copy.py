"""`lazarus db copy` and `lazarus db check` (app/dbtools.py) over every pair of stores.

A copy keeps every row, id and counter; the copied store serves the same objects and goes on
allocating the ids the source would have; a refused copy leaves the target untouched; `check`
finds what it promises to find, and nothing on a healthy store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_store import full_host, full_vm, state_event

from lazarus.app import dbtools
from lazarus.domain.entities import VM, Event, EventKind, Host, ObjType
from lazarus.domain.hooks import ExecutionRecord, ExecutionResult, Hook, HookJob
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.store import migrations
from lazarus.store.postgres import PostgresStore
from lazarus.store.sqlite import SqliteStore

PAIRS = ["sqlite>sqlite", "sqlite>postgresql", "postgresql>sqlite", "postgresql>postgresql"]


@pytest.fixture(params=PAIRS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """make("src") and make("dst") open the pair's source and target stores (the first one
    made is the source); a "sqlite" pair is also what the single-store tests use."""
    kinds = request.param.split(">")
    opened: list[Any] = []

    def make(name: str) -> Any:
        kind = kinds[min(len(opened), 1)]
        if kind == "postgresql":
            server = request.getfixturevalue("pg_server")
            store = PostgresStore.open(server.create_schema(server.next_name()))
        else:
            store = SqliteStore.open(tmp_path / name / "lazarus.db")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def populate(store: Any) -> None:
    """Every table gets rows, with gaps in the ids (deleted objects) and a moved cursor."""
    with store.transaction() as tx:
        for n in range(3):
            tx.add_host(full_host(f"node{n}"))
        tx.delete_host(1)
        for n in range(4):
            tx.add_vm(full_vm(f"vm{n}", hosts=(0, 2)))
        tx.delete_vm(2)
        for n in range(5):
            tx.record(state_event(n))
        tx.record(Event(kind=EventKind.NOTE, line="vm/0 web: note", obj=ObjType.VM, obj_id=0,
                        time=1_767_225_700.0))  # fmt: skip
        command = Template.parse('COMMAND = "ft/host_error"\n')
        hook = tx.add_hook(Hook(id=-1, name="error", type="state", template=command))
        tx.add_hook_job(HookJob(id=-1, hook_id=hook.id, event_id=3, arguments="a b"))
        tx.add_hook_record(
            ExecutionRecord(hook_id=hook.id, execution_id=-1, timestamp=1_767_225_601,
                            arguments="x", result=ExecutionResult("cmd", b"out\x00", b"err", 1)),
            retention=10,
        )  # fmt: skip
        tx.set_meta("hooks.cursor", "4")


def test_copy_keeps_every_row_id_and_counter(make_store: Callable[[str], Any]) -> None:
    source, target = make_store("src"), make_store("dst")
    populate(source)
    before = dbtools.read_tables(source)
    counts = dbtools.copy(source, target)
    assert counts["hosts"] == 2 and counts["vms"] == 3 and counts["events"] == 6
    assert dbtools.read_tables(target) == before
    assert dbtools.read_tables(source) == before  # the source is only read
    assert [h.name for h in target.hosts()] == ["node0", "node2"]
    assert [v.id for v in target.vms()] == [0, 1, 3]
    assert target.vm_short_bodies() == source.vm_short_bodies()
    assert [e.id for e in target.events()] == [e.id for e in source.events()]
    assert target.hook_records(0)[0].result.stdout == b"out\x00"
    # ids go on where the source would have gone on
    for store in (source, target):
        with store.transaction() as tx:
            assert tx.add_host(Host(id=-1, name="new")).id == 3
            assert tx.add_vm(VM(id=-1, name="n", state=VmState.PENDING,
                                lcm_state=LcmState.LCM_INIT)).id == 4  # fmt: skip
            assert tx.record(state_event(9)) == 7
    assert dbtools.check(target) == []


def test_copy_refuses_a_target_that_is_not_empty(make_store: Callable[[str], Any]) -> None:
    source, target = make_store("src"), make_store("dst")
    populate(source)
    with target.transaction() as tx:
        tx.add_host(Host(id=-1, name="already"))
    before = dbtools.read_tables(target)
    with pytest.raises(dbtools.CopyError, match=r"not empty.*hosts"):
        dbtools.copy(source, target)
    assert dbtools.read_tables(target) == before


def test_copy_refuses_different_schema_versions(tmp_path: Path) -> None:
    source = SqliteStore.open(tmp_path / "a" / "lazarus.db")
    older = SqliteStore.open(tmp_path / "b" / "lazarus.db", schema=migrations.MIGRATIONS[:3])
    try:
        with pytest.raises(dbtools.CopyError, match="schema versions differ"):
            dbtools.copy(source, older)
    finally:
        source.close()
        older.close()


def test_a_copy_that_fails_half_way_leaves_the_target_empty(
    make_store: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = make_store("src"), make_store("dst")
    populate(source)
    real = dbtools.read_tables
    calls = {"n": 0}

    def corrupt(store: Any) -> dict[str, list[Any]]:
        rows = real(store)
        calls["n"] += 1
        if calls["n"] == 1:  # the source's rows: a duplicate host id makes the insert fail
            rows["hosts"] = rows["hosts"] + [rows["hosts"][0]]
        return rows

    monkeypatch.setattr(dbtools, "read_tables", corrupt)
    with pytest.raises(Exception):  # noqa: B017 - the store's own error, whichever it is
        dbtools.copy(source, target)
    assert all(not rows for rows in real(target).values())


def test_check_finds_nothing_on_a_healthy_store(make_store: Callable[[str], Any]) -> None:
    store = make_store("s")
    populate(store)
    assert dbtools.check(store) == []


def test_check_reports_each_kind_of_damage(tmp_path: Path) -> None:
    path = tmp_path / "d" / "lazarus.db"
    store = SqliteStore.open(path)
    populate(store)
    with store.transaction() as tx:
        host = tx.host(0)
        host.template = Template.parse(
            'HA_INCIDENT = [ KEY = "k1", STATE = "DONE", HANDLED = "0 77", VM_3 = "PENDING" ]\n'
            'HA_INCIDENT = [ KEY = "k2", STATE = "NAPPING" ]\n'
        )
        tx.save_host(host)
        vm = tx.vm(0)
        vm.state, vm.lcm_state = VmState.ACTIVE, LcmState.RUNNING
        vm.history[-1].hid = 1  # host 1 was deleted
        tx.save_vm(vm)
    store.close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE counters SET next_id = 1 WHERE kind = 'vm'")
    raw.execute("UPDATE meta SET value = '99' WHERE key = 'hooks.cursor'")
    raw.execute("UPDATE hook_jobs SET hook_id = 5")
    raw.commit()
    raw.close()
    store = SqliteStore.open(path)
    try:
        found = "\n".join(dbtools.check(store))
    finally:
        store.close()
    assert "counter 'vm' is 1 but vms holds id 3" in found
    assert "cursor 99 is past the newest event 6" in found
    assert "job 0 belongs to hook 5" in found
    assert "vm 0: its host 1 does not exist" in found
    assert "incident k1: VM 77 does not exist" in found
    assert "incident k1: DONE with VMs still pending: 3" in found
    assert "incident k2: unknown state 'NAPPING'" in found


def test_tables_cover_the_whole_schema() -> None:
    """Every table and column a migration makes is copied (a new one must be added to TABLES)."""
    store = SqliteStore.memory()
    try:
        names = [
            r[0] for r in store.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name <> 'schema_migrations' ORDER BY name"
            )
        ]  # fmt: skip
        assert sorted(t.name for t in dbtools.TABLES) == names
        for table in dbtools.TABLES:
            columns = {r[1] for r in store.query(f"PRAGMA table_info({table.name})")}
            assert set(table.columns) == columns, table.name
    finally:
        store.close()


def test_host_state_is_a_column_the_copy_keeps(make_store: Callable[[str], Any]) -> None:
    source, target = make_store("src"), make_store("dst")
    with source.transaction() as tx:
        tx.add_host(Host(id=-1, name="h", state=HostState.ERROR))
    dbtools.copy(source, target)
    assert target.host(0).state is HostState.ERROR
