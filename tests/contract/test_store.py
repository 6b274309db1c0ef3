"""Contract of the Store port (ports/store.py), run against every store factory.

Every adapter (store/sqlite.py as a file and in memory, store/postgres.py on a throwaway
PostgreSQL server: helpers/postgres.py) must pass all of it. Tests of a store that outlives its
connections (reopen, migrations, rendered bodies filled on open) take `durable` (a SQLite file
and a PostgreSQL database); tests of the file itself (mode, WAL) take `file_store`/`db_path`.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import lazarus
from lazarus.domain.entities import (
    VM,
    Cluster,
    Datastore,
    Event,
    EventKind,
    History,
    Host,
    HostShare,
    ObjType,
    User,
)
from lazarus.domain.errors import AllocateError, ErrorCode, InternalError, NoExistsError
from lazarus.domain.states import HistoryAction, HostState, LcmState, VmState
from lazarus.domain.template import Template, Vector
from lazarus.domain.xml import vm_short_xml
from lazarus.ports.store import Store, StoreReader
from lazarus.store import codec, rendered
from lazarus.store.migrations import MIGRATIONS, Migration
from lazarus.store.postgres import PostgresStore
from lazarus.store.sqlite import SqliteStore

STORES = ["postgresql", "sqlite-file", "sqlite-memory"]


class Durable:
    """A store that outlives its connections (a SQLite file, a PostgreSQL database): open it
    again (with another schema), and reach its tables behind the store's back (`raw`)."""

    def __init__(self, kind: str, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.db_path = tmp / "data" / "lazarus.db"
        self.conninfo = request.getfixturevalue("pg_conninfo") if kind == "postgresql" else ""

    def open(self, schema: Sequence[Migration] = MIGRATIONS) -> SqliteStore | PostgresStore:
        if self.kind == "postgresql":
            return PostgresStore.open(self.conninfo, schema=schema)
        return SqliteStore.open(self.db_path, schema=schema)

    def raw(self, *statements: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Run statements (`?` placeholders) outside the store; the last one's rows."""
        rows: list[Any] = []
        if self.kind == "postgresql":
            import psycopg

            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                for sql, params in statements:
                    cur = conn.execute(sql.replace("?", "%s"), params)
                    rows = cur.fetchall() if cur.description else []
            return rows
        raw = sqlite3.connect(self.db_path, isolation_level=None)
        try:
            for sql, params in statements:
                rows = raw.execute(sql, params).fetchall()
        finally:
            raw.close()
        return rows


def _open(kind: str, tmp: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "sqlite-memory":
        return SqliteStore.memory()
    return Durable(kind, tmp, request).open()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = _open(request.param, tmp_path, request)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["postgresql", "sqlite-file"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Durable:
    return Durable(request.param, tmp_path, request)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "lazarus.db"


@pytest.fixture
def file_store(db_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(db_path)
    try:
        yield opened
    finally:
        opened.close()


# -- sample objects with every field set to a non-default value ----------------------------------
def full_host(name: str = "node1") -> Host:
    return Host(
        id=99,
        name=name,
        state=HostState.MONITORED,
        prev_state=HostState.ERROR,
        im_mad="kvm",
        vm_mad="kvm",
        cluster_id=100,
        cluster="production",
        share=HostShare(
            mem_usage=1,
            cpu_usage=2,
            total_mem=3,
            total_cpu=4,
            max_mem=5,
            max_cpu=6,
            running_vms=7,
            free_mem=8,
            used_mem=9,
            free_cpu=10,
            used_cpu=11,
        ),
        vms=[4, 2, 9],
        template=Template.parse(
            'FENCE_IP = "10.0.0.1"\nRESERVED_CPU = 50\nPCI = [ ADDR = "00:01", CLASS = "0c" ]\n'
            'PCI = [ ADDR = "00:02" ]\nNOTE = "quote \\" back\\\\slash ünïcode"\n'
        ),
        last_monitored=1_767_225_600.25,
        monitoring={"FREE_CPU": "350", "USED_MEMORY": "1024"},
    )


def full_history(seq: int, hid: int) -> History:
    return History(
        oid=5,
        seq=seq,
        hostname=f"node{hid}",
        hid=hid,
        cid=1,
        stime=100 + seq,
        etime=200 + seq,
        vm_mad="kvm",
        tm_mad="ssh",
        ds_id=2,
        pstime=1,
        petime=2,
        rstime=3,
        retime=4,
        estime=5,
        eetime=6,
        action=HistoryAction(1),
        uid=7,
        gid=8,
        request_id=9,
    )


def full_vm(name: str = "web", hosts: tuple[int, ...] = (1, 3)) -> VM:
    return VM(
        id=99,
        name=name,
        uid=3,
        gid=4,
        uname="alice",
        gname="users",
        state=VmState.ACTIVE,
        lcm_state=LcmState.RUNNING,
        prev_state=VmState.PENDING,
        prev_lcm_state=LcmState.BOOT,
        resched=True,
        stime=1000,
        etime=2000,
        deploy_id="one-5",
        last_poll=1500,
        template=Template.parse(
            'CPU = 0.5\nMEMORY = 256\nDISK = [ IMAGE = "base", SIZE = "1024" ]\n'
            'DISK = [ IMAGE = "data" ]\nNIC = [ ]\nEMPTY = ""\n'
        ),
        user_template=Template.parse('HA = "NO"\nHA_PRIORITY = 5\n'),
        history=[full_history(seq, hid) for seq, hid in enumerate(hosts)],
        lock=2,
        monitoring={"CPU": "12.5", "MEMORY": "2048"},
    )


def full_datastore() -> Datastore:
    return Datastore(
        id=99,
        name="system",
        type=0,
        ds_mad="fs",
        tm_mad="ssh",
        base_path="/var/lib/one/datastores/0",
        cluster_ids=[0, 100],
        template=Template.parse("SHARED = NO\nTM_MAD = ssh\n"),
        state=1,
        total_mb=1000,
        free_mb=600,
        used_mb=400,
    )


def full_cluster() -> Cluster:
    return Cluster(id=99, name="production", template=Template.parse('RESERVED_MEM = "10%"\n'))


def full_user() -> User:
    return User(
        id=99, name="oneadmin", password_hash="ab" * 32, gid=1, gname="admins", enabled=False
    )


def state_event(n: int = 0) -> Event:
    return Event(
        kind="state",
        line=f"host/{n} node{n}: MONITORED => ERROR (3 missed probes)",
        obj="host",
        obj_id=n,
        state="ERROR",
        lcm_state="",
        body="<HOST><ID>0</ID></HOST>",
        time=1_767_225_600.5 + n,
    )


# -- ids ------------------------------------------------------------------------------------------
def test_ids_start_at_zero_per_kind_and_are_never_reused(store: Store) -> None:
    with store.transaction() as tx:
        hosts = [tx.add_host(Host(id=-1, name=f"n{i}")).id for i in range(3)]
        vm = tx.add_vm(VM(id=-1, name="a"))
        ds = tx.add_datastore(Datastore(id=-1, name="ds"))
        cluster = tx.add_cluster(Cluster(id=-1, name="default"))
        user = tx.add_user(User(id=-1, name="oneadmin", password_hash="x"))
    assert hosts == [0, 1, 2]
    assert (vm.id, ds.id, cluster.id, user.id) == (0, 0, 0, 0)
    with store.transaction() as tx:
        tx.delete_host(2)
        tx.delete_vm(0)
    with store.transaction() as tx:
        assert tx.add_host(Host(id=-1, name="n2")).id == 3
        assert tx.add_vm(VM(id=-1, name="b")).id == 1
    assert [h.id for h in store.hosts()] == [0, 1, 3]
    assert [v.id for v in store.vms()] == [1]


def test_add_returns_the_same_object_with_its_id(store: Store) -> None:
    host = Host(id=-1, name="n")
    with store.transaction() as tx:
        assert tx.add_host(host) is host
    assert host.id == 0


# -- round trips ----------------------------------------------------------------------------------
def test_host_round_trip(store: Store) -> None:
    with store.transaction() as tx:
        host_id = tx.add_host(full_host()).id
    got = store.host(host_id)
    expected = full_host()
    expected.id = host_id
    assert got == expected
    assert type(got.state) is HostState and type(got.prev_state) is HostState
    assert store.host_by_name("node1") == expected
    assert store.host_by_name("nope") is None
    assert store.hosts() == [expected]

    got.state = HostState.ERROR
    got.share.cpu_usage = 250
    got.vms.append(11)
    got.template.set("ERROR", "probe timeout")
    with store.transaction() as tx:
        tx.save_host(got)
    assert store.host(host_id) == got


def test_vm_round_trip(store: Store) -> None:
    with store.transaction() as tx:
        vm_id = tx.add_vm(full_vm()).id
    expected = full_vm()
    expected.id = vm_id
    got = store.vm(vm_id)
    assert got == expected
    assert type(got.state) is VmState and type(got.lcm_state) is LcmState
    assert type(got.prev_state) is VmState and type(got.prev_lcm_state) is LcmState
    assert all(type(h.action) is HistoryAction for h in got.history)
    assert isinstance(got.template.vectors("DISK")[0], Vector)
    assert got.host_id == 3
    assert store.vms() == [expected]

    got.history.append(full_history(2, 7))
    got.lcm_state = LcmState.UNKNOWN
    with store.transaction() as tx:
        tx.save_vm(got)
    assert store.vm(vm_id) == got
    assert [v.id for v in store.vms(host_id=7)] == [vm_id]


def test_datastore_cluster_user_round_trip(store: Store) -> None:
    with store.transaction() as tx:
        ds_id = tx.add_datastore(full_datastore()).id
        cluster_id = tx.add_cluster(full_cluster()).id
        tx.add_user(full_user())
    ds, cluster, user = full_datastore(), full_cluster(), full_user()
    ds.id, cluster.id, user.id = ds_id, cluster_id, 0
    assert store.datastore(ds_id) == ds
    assert store.datastore(ds_id).shared is False
    assert store.datastores() == [ds]
    assert store.cluster(cluster_id) == cluster
    assert store.clusters() == [cluster]
    assert store.user_by_name("oneadmin") == user
    assert store.user_by_name("bob") is None

    ds.template.set("SHARED", "YES")
    ds.free_mb = 1
    cluster.name = "renamed"
    with store.transaction() as tx:
        tx.save_datastore(ds)
        tx.save_cluster(cluster)
    assert store.datastore(ds_id) == ds and store.datastore(ds_id).shared is True
    assert store.cluster(cluster_id) == cluster


def test_any_text_round_trips(store: Store) -> None:
    """Bodies hold any str; columns (names) hold UTF-8 without NUL (PostgreSQL's text cannot
    hold a NUL, so the contract refuses it on every store, as a store error)."""
    odd = 'quote " back\\ nul \x00 newline \n emoji \U0001f600 lone \udc80 end'
    name = odd.replace("\udc80", "").replace("\x00", "")
    host = Host(id=-1, name=name, template=Template([("X", odd), ("V", Vector([("K", odd)]))]))
    with store.transaction() as tx:
        tx.add_host(host)
    assert store.host(0) == host
    assert store.host_by_name(name) == host
    for bad in (odd, odd.replace("\udc80", ""), "nul \x00 only"):
        with pytest.raises(InternalError), store.transaction() as tx:
            tx.add_host(Host(id=-1, name=bad))
    with pytest.raises(InternalError):
        store.host_by_name(odd)
    assert store.hosts() == [host]


def test_empty_entities_round_trip(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name="bare"))
        tx.add_vm(VM(id=-1, name="bare"))
    assert store.host(0) == Host(id=0, name="bare")
    assert store.vm(0) == VM(id=0, name="bare")
    assert store.vm(0).host_id is None


# -- vms() filters --------------------------------------------------------------------------------
@pytest.fixture
def populated(store: Store) -> Store:
    """VMs 0..7: (state, host, owner)."""
    layout = [
        (VmState.ACTIVE, 0, 0),
        (VmState.ACTIVE, 1, 1),
        (VmState.DONE, 0, 0),
        (VmState.PENDING, None, 1),
        (VmState.POWEROFF, 1, 0),
        (VmState.DONE, 1, 1),
        (VmState.ACTIVE, 0, 1),
        (VmState.HOLD, None, 0),
    ]
    with store.transaction() as tx:
        for index, (state, host, owner) in enumerate(layout):
            vm = VM(id=-1, name=f"vm{index}", state=state, uid=owner)
            if host is not None:
                # An earlier placement elsewhere: only the last record counts.
                vm.history = [History(oid=index, seq=0, hostname="x", hid=9)]
                vm.history.append(History(oid=index, seq=1, hostname=f"n{host}", hid=host))
            tx.add_vm(vm)
    return store


def ids(vms: list[VM]) -> list[int]:
    return [vm.id for vm in vms]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, [0, 1, 3, 4, 6, 7]),
        ({"include_done": True}, [0, 1, 2, 3, 4, 5, 6, 7]),
        ({"states": [VmState.ACTIVE]}, [0, 1, 6]),
        ({"states": [VmState.DONE]}, [2, 5]),
        ({"states": [VmState.ACTIVE, VmState.HOLD]}, [0, 1, 6, 7]),
        ({"states": [VmState.PENDING], "include_done": True}, [2, 3, 5]),
        ({"states": []}, []),
        ({"states": (VmState.POWEROFF,)}, [4]),
        ({"host_id": 0}, [0, 6]),
        ({"host_id": 0, "include_done": True}, [0, 2, 6]),
        ({"host_id": 9}, []),
        ({"owner": 1}, [1, 3, 6]),
        ({"owner": 0, "states": [VmState.ACTIVE]}, [0]),
        ({"start": 3}, [3, 4, 6, 7]),
        ({"end": 3}, [0, 1, 3]),
        ({"start": 1, "end": 4}, [1, 3, 4]),
        ({"start": 4, "end": 4}, [4]),
        ({"start": 5, "end": 4}, []),
        ({"limit": 2}, [0, 1]),
        ({"limit": 0}, []),
        ({"start": 2, "limit": 2, "include_done": True}, [2, 3]),
        ({"host_id": 1, "owner": 1, "include_done": True}, [1, 5]),
    ],
    ids=lambda v: repr(v) if not isinstance(v, list) else "",
)
def test_vms_filters(populated: Store, kwargs: dict[str, object], expected: list[int]) -> None:
    assert ids(populated.vms(**kwargs)) == expected  # type: ignore[arg-type]


def test_vms_filters_inside_a_transaction_see_its_writes(populated: Store) -> None:
    with populated.transaction() as tx:
        vm = tx.vm(3)
        vm.state = VmState.ACTIVE
        tx.save_vm(vm)
        assert ids(tx.vms(states=[VmState.ACTIVE])) == [0, 1, 3, 6]
    assert ids(populated.vms(states=[VmState.ACTIVE])) == [0, 1, 3, 6]


# -- transactions ---------------------------------------------------------------------------------
class Boom(Exception):
    pass


def test_exception_rolls_back_everything(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name="keep"))
        tx.record(state_event(0))
        tx.set_meta("cursor", "1")
    with pytest.raises(Boom), store.transaction() as tx:
        host = tx.host(0)
        host.state = HostState.ERROR
        tx.save_host(host)
        tx.add_host(Host(id=-1, name="lost"))
        tx.add_vm(VM(id=-1, name="lost"))
        tx.add_datastore(Datastore(id=-1, name="lost"))
        tx.add_cluster(Cluster(id=-1, name="lost"))
        tx.add_user(User(id=-1, name="lost", password_hash="x"))
        tx.set_meta("cursor", "2")
        tx.set_meta("other", "x")
        tx.record(state_event(1))
        tx.delete_host(0)
        raise Boom
    assert store.hosts() == [Host(id=0, name="keep")]
    assert store.vms(include_done=True) == []
    assert store.datastores() == [] and store.clusters() == []
    assert store.user_by_name("lost") is None
    assert store.get_meta("cursor") == "1" and store.get_meta("other") is None
    assert [e.line for e in store.events()] == [state_event(0).line]
    # The store is still usable, and nothing of the failed transaction took an object id.
    # Event ids only increase, never reused: SQLite hands the rolled-back 2 out again, a
    # PostgreSQL sequence skips it (the contract promises order, not consecutive ids).
    with store.transaction() as tx:
        assert tx.add_host(Host(id=-1, name="next")).id == 1
        assert tx.record(state_event(2)) >= 2
    assert [e.line for e in store.events()] == [state_event(0).line, state_event(2).line]


def test_error_from_the_store_inside_a_transaction_rolls_it_back(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name="a"))
    with pytest.raises(AllocateError), store.transaction() as tx:
        tx.add_vm(VM(id=-1, name="lost"))
        tx.add_host(Host(id=-1, name="a"))
    assert store.vms() == []


def test_transaction_reads_see_own_writes(store: Store) -> None:
    with store.transaction() as tx:
        host = tx.add_host(Host(id=-1, name="n"))
        tx.set_meta("k", "v")
        assert tx.host(host.id).name == "n"
        assert tx.host_by_name("n") is not None
        assert tx.get_meta("k") == "v"
        tx.record(state_event())
        assert len(tx.events()) == 1


def test_transaction_misuse_is_refused(store: Store) -> None:
    with store.transaction() as tx:
        with pytest.raises(RuntimeError), store.transaction():
            pass
        kept = tx
    with pytest.raises(RuntimeError):
        kept.add_host(Host(id=-1, name="late"))
    assert store.hosts() == []


# -- events and meta ------------------------------------------------------------------------------
def test_events_round_trip_and_paging(store: Store) -> None:
    with store.transaction() as tx:
        first = state_event(0)
        assert tx.record(first) == 1 and first.id == 1
        for n in range(1, 5):
            tx.record(state_event(n))
        tx.record(Event(kind="api", line="one.vm.deploy 3 1", time=5.0))
    events = store.events()
    assert [e.id for e in events] == [1, 2, 3, 4, 5, 6]
    expected = state_event(0)
    expected.id = 1
    assert events[0] == expected
    assert events[5] == Event(kind="api", line="one.vm.deploy 3 1", time=5.0, id=6)
    assert [e.id for e in store.events(after_id=2, limit=2)] == [3, 4]
    assert [e.id for e in store.events(kind="api")] == [6]
    assert [e.id for e in store.events(after_id=1, kind="state")] == [2, 3, 4, 5]
    assert store.events(after_id=6) == []


def test_typed_event_fields_round_trip(store: Store) -> None:
    written = [
        Event(kind=EventKind.FLAG, line="vm/5 web: RESCHED=1 (resched requested)",
              obj=ObjType.VM, obj_id=5, state="ACTIVE", lcm_state="UNKNOWN", flag="RESCHED",
              value="1", time=1.0),
        Event(kind=EventKind.API_CALL, line="one.vm.allocate", obj=ObjType.API,
              method="one.vm.allocate", body="<CALL_INFO/>", time=2.0),
        Event(kind=EventKind.TEMPLATE, line="host/3 n3: template updated", obj=ObjType.HOST,
              obj_id=3, time=3.0),
        Event(kind=EventKind.NOTE, line="datastore/1 default: created", obj=ObjType.DATASTORE,
              obj_id=1, time=4.0),
    ]
    with store.transaction() as tx:
        for event in written:
            tx.record(event)
    read = store.events()
    assert read == written
    assert [type(e.kind) for e in read] == [EventKind] * 4  # enums, not bare strings
    assert [type(e.obj) for e in read] == [ObjType] * 4
    assert [e.id for e in store.events(kind=EventKind.TEMPLATE)] == [3]


def test_meta(store: Store) -> None:
    assert store.get_meta("missing") is None
    with store.transaction() as tx:
        tx.set_meta("cursor", "5")
        tx.set_meta("cursor", "6")
        tx.set_meta("empty", "")
    assert store.get_meta("cursor") == "6"
    assert store.get_meta("empty") == ""


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("read", "text"),
    [
        (lambda r: r.host(7), "Error getting host [7]."),
        (lambda r: r.vm(7), "Error getting virtual machine [7]."),
        (lambda r: r.datastore(7), "Error getting datastore [7]."),
        (lambda r: r.cluster(7), "Error getting cluster [7]."),
    ],
    ids=["host", "vm", "datastore", "cluster"],
)
def test_unknown_id_texts(store: Store, read: Callable[[object], object], text: str) -> None:
    with pytest.raises(NoExistsError) as caught:
        read(store)
    assert caught.value.message == text and str(caught.value) == text
    assert caught.value.code == ErrorCode.NO_EXISTS
    with pytest.raises(NoExistsError, match=text.replace("[", r"\[")), store.transaction() as tx:
        read(tx)


@pytest.mark.parametrize(
    ("write", "text"),
    [
        (lambda tx: tx.save_host(Host(id=7, name="x")), "Error getting host [7]."),
        (lambda tx: tx.delete_host(7), "Error getting host [7]."),
        (lambda tx: tx.save_vm(VM(id=7, name="x")), "Error getting virtual machine [7]."),
        (lambda tx: tx.delete_vm(7), "Error getting virtual machine [7]."),
        (lambda tx: tx.save_datastore(Datastore(id=7, name="x")), "Error getting datastore [7]."),
        (lambda tx: tx.save_cluster(Cluster(id=7, name="x")), "Error getting cluster [7]."),
    ],
    ids=["save_host", "delete_host", "save_vm", "delete_vm", "save_datastore", "save_cluster"],
)
def test_unknown_id_on_write(store: Store, write: Callable[[object], None], text: str) -> None:
    with pytest.raises(NoExistsError) as caught, store.transaction() as tx:
        write(tx)
    assert caught.value.message == text


def test_host_names_are_unique(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name="a"))
        tx.add_host(Host(id=-1, name="b"))
    with pytest.raises(AllocateError) as caught, store.transaction() as tx:
        tx.add_host(Host(id=-1, name="b"))
    assert caught.value.message == "NAME is already taken by HOST 1."
    assert caught.value.code == ErrorCode.ALLOCATE
    host = store.host(0)
    host.name = "b"
    taken = r"^NAME is already taken by HOST 1\.$"
    with pytest.raises(AllocateError, match=taken), store.transaction() as tx:
        tx.save_host(host)
    assert [h.name for h in store.hosts()] == ["a", "b"]


def test_user_and_cluster_names_are_unique(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_user(User(id=-1, name="oneadmin", password_hash="x"))
        tx.add_cluster(Cluster(id=-1, name="default"))
    taken = r"^NAME is already taken by USER 0\.$"
    with pytest.raises(AllocateError, match=taken), store.transaction() as tx:
        tx.add_user(User(id=-1, name="oneadmin", password_hash="y"))
    taken = r"^NAME is already taken by CLUSTER 0\.$"
    with pytest.raises(AllocateError, match=taken), store.transaction() as tx:
        tx.add_cluster(Cluster(id=-1, name="default"))


def test_closed_store_refuses_use(store: Store) -> None:
    store.close()
    store.close()
    with pytest.raises(InternalError):
        store.hosts()
    with pytest.raises(InternalError), store.transaction():
        pass


# -- threads --------------------------------------------------------------------------------------
def test_concurrent_readers_while_a_writer_commits(store: Store) -> None:
    """Readers in threads always see a committed, consistent VM, never older than the last
    commit that returned before their read started."""
    with store.transaction() as tx:
        tx.add_vm(VM(id=-1, name="vm-0", template=Template([("COUNTER", "0")])))
    commits = 150
    committed = [0]  # last counter whose transaction returned
    writer_done = threading.Event()
    errors: list[BaseException] = []
    reads = [0] * 4

    def writer() -> None:
        try:
            for n in range(1, commits + 1):
                with store.transaction() as tx:
                    vm = tx.vm(0)
                    vm.name = f"vm-{n}"
                    vm.template.set("COUNTER", str(n))
                    tx.save_vm(vm)
                    tx.record(Event(kind="state", line=f"vm/0: {n}", obj_id=0, time=float(n)))
                committed[0] = n
        except BaseException as exc:
            errors.append(exc)
        finally:
            writer_done.set()

    def reader(slot: int) -> None:
        try:
            last = 0
            while not writer_done.is_set() or reads[slot] < 20:
                floor = committed[0]
                vm = store.vm(0)
                seen = int(vm.template.get("COUNTER") or "-1")
                assert seen >= floor, f"read {seen} after commit {floor} returned"
                assert seen >= last, "went back in time"
                assert vm.name == f"vm-{seen}", "torn read"
                assert len(store.events(limit=10_000)) >= floor
                last = seen
                reads[slot] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(reads))]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert store.vm(0).name == f"vm-{commits}"
    assert len(store.events(limit=10_000)) == commits


def test_read_right_after_a_commit_in_another_thread_sees_it(store: Store) -> None:
    for n in range(20):
        writer = threading.Thread(target=_add_host, args=(store, f"h{n}"))
        writer.start()
        writer.join(timeout=30)
        assert store.host_by_name(f"h{n}") is not None


def _add_host(store: Store, name: str) -> None:
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name=name))


def test_file_readers_do_not_wait_for_an_open_transaction(file_store: SqliteStore) -> None:
    _add_host(file_store, "old")
    results: list[object] = []
    with file_store.transaction() as tx:
        host = tx.host(0)
        host.name = "new"
        tx.save_host(host)
        reader = threading.Thread(target=lambda: results.append(file_store.host(0).name))
        reader.start()
        reader.join(timeout=30)
        assert results == ["old"]  # committed state, without waiting for us
    assert file_store.host(0).name == "new"


# -- files, reopen, migrations --------------------------------------------------------------------
def test_reopen_keeps_everything(durable: Durable) -> None:
    first = durable.open()
    try:
        with first.transaction() as tx:
            tx.add_host(full_host())
            tx.add_vm(full_vm())
            tx.add_host(Host(id=-1, name="gone"))
            tx.delete_host(1)
            tx.set_meta("cursor", "3")
            tx.record(state_event())
    finally:
        first.close()
    second = durable.open()
    try:
        assert [h.name for h in second.hosts()] == ["node1"]
        assert second.vm(0).history == full_vm().history
        assert second.get_meta("cursor") == "3"
        assert len(second.events()) == 1
        with second.transaction() as tx:
            assert tx.add_host(Host(id=-1, name="next")).id == 2
            assert tx.record(state_event(1)) == 2
    finally:
        second.close()


def test_file_is_private_and_in_wal_mode(db_path: Path) -> None:
    opened = SqliteStore.open(db_path)
    try:
        _add_host(opened, "n")
        opened.hosts()
        assert db_path.parent.is_dir()
        for suffix in ("", "-wal", "-shm"):
            path = Path(str(db_path) + suffix)
            assert path.exists(), path
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        raw.close()
    finally:
        opened.close()


def test_existing_file_mode_is_tightened(db_path: Path) -> None:
    SqliteStore.open(db_path).close()
    db_path.chmod(0o644)
    SqliteStore.open(db_path).close()
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600


def test_migrations_are_numbered_from_one() -> None:
    assert [m.number for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_migrations_recorded_once(store: Store) -> None:
    assert isinstance(store, SqliteStore | PostgresStore)
    versions = store.schema_versions()
    assert [(v, n) for v, n, _ in versions] == [(m.number, m.name) for m in MIGRATIONS]
    assert all(applied_at for _, _, applied_at in versions)


def test_reopen_applies_only_new_migrations(durable: Durable) -> None:
    durable.open().close()
    extra = Migration(len(MIGRATIONS) + 1, "test table", "CREATE TABLE extra (x INTEGER);")
    schema = (*MIGRATIONS, extra)
    for _ in range(2):  # the second open would fail on CREATE TABLE if it ran again
        opened = durable.open(schema=schema)
        try:
            assert [v for v, _, _ in opened.schema_versions()] == [m.number for m in schema]
        finally:
            opened.close()
    # An older Lazarus refuses the newer file instead of guessing.
    with pytest.raises(InternalError, match="newer"):
        durable.open()


def test_a_portable_migration_works_on_every_store(durable: Durable) -> None:
    """A migration 5+ written in store/migrations.py's portable SQL needs nothing more for
    PostgreSQL (pg_migrations.translate): a table, a column added, an index, data moved."""
    durable.open().close()
    portable = Migration(
        len(MIGRATIONS) + 1,
        "rights",
        """
        CREATE TABLE rights (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL,
            weight REAL NOT NULL DEFAULT 1.5,
            what TEXT NOT NULL DEFAULT 'INTEGER stays text; REAL too'
        );
        CREATE UNIQUE INDEX rights_user ON rights (user_id) WHERE user_id >= 0;
        ALTER TABLE users ADD COLUMN rights_id INTEGER;
        INSERT INTO rights (id, user_id) SELECT id, id FROM users;
        UPDATE users SET rights_id = id WHERE instr(name, 'x') = 0;
        """,
    )
    opened = durable.open(schema=(*MIGRATIONS, portable))
    try:
        with opened.transaction() as tx:
            tx.add_user(User(id=-1, name="ops", password_hash="x"))
            insert = "INSERT INTO rights (id, user_id, weight) VALUES (?, ?, ?)"
            tx._all(insert, (5, 0, 2**40 + 0.5))
            assert tx._all("SELECT id, user_id, weight, what FROM rights") == [
                (5, 0, 2**40 + 0.5, "INTEGER stays text; REAL too")
            ]
        assert opened.schema_versions()[-1][:2] == (len(MIGRATIONS) + 1, "rights")
        assert opened.user_by_name("ops") is not None
    finally:
        opened.close()


def test_failed_migration_leaves_nothing(durable: Durable) -> None:
    durable.open().close()
    broken = Migration(
        len(MIGRATIONS) + 1, "broken", "CREATE TABLE half (x INTEGER);\nNOT SQL AT ALL;"
    )
    with pytest.raises(InternalError):
        durable.open(schema=(*MIGRATIONS, broken))
    with pytest.raises(Exception):  # noqa: B017 - sqlite3's or psycopg's "no such table"
        durable.raw(("SELECT x FROM half", ()))
    assert durable.raw(("SELECT max(version) FROM schema_migrations", ())) == [(len(MIGRATIONS),)]

def test_misnumbered_migrations_are_refused(tmp_path: Path) -> None:
    wrong = (*MIGRATIONS, Migration(len(MIGRATIONS) + 2, "gap", "SELECT 1;"))
    with pytest.raises(ValueError, match="expected"):
        SqliteStore.open(tmp_path / "x.db", schema=wrong)


# -- cached short bodies (vm_short_bodies, store/rendered.py) -------------------------------------
def short_bodies_of(reader: StoreReader, **kwargs: Any) -> list[str]:
    """What vm_short_bodies must return: vm_short_xml of what vms() returns."""
    return [vm_short_xml(vm) for vm in reader.vms(**kwargs)]


def odd_vm() -> VM:
    vm = full_vm(name="a&b <c> ]]> \x01 \r é")
    vm.user_template = Template.parse('HA = "YES"\nLABELS = "x]]>y"\nDESCRIPTION = "gone"\n')
    vm.monitoring = {"CPU": "1", "STATE": "<a>", "NETRX": "5"}
    return vm


def test_vm_short_bodies_follow_every_write(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_vm(full_vm())
        tx.add_vm(VM(id=-1, name="bare"))
        tx.add_vm(odd_vm())
        assert tx.vm_short_bodies() == short_bodies_of(tx)  # the tx sees its own writes
    assert store.vm_short_bodies() == short_bodies_of(store)
    assert "<ID>2</ID>" in store.vm_short_bodies()[2]  # rendered with the allocated id
    changes: list[Callable[[VM], None]] = [
        lambda vm: setattr(vm, "lcm_state", LcmState.UNKNOWN),
        lambda vm: vm.history.append(full_history(len(vm.history), 7)),
        lambda vm: vm.template.set("MEMORY", "4096"),
        lambda vm: vm.user_template.set("HA", "NO"),
        lambda vm: setattr(vm, "name", "renamed & <moved>"),
        lambda vm: vm.monitoring.update({"CPU": "99.5"}),
        lambda vm: setattr(vm, "state", VmState.DONE),
    ]
    for change in changes:
        for vm_id in range(3):
            with store.transaction() as tx:
                vm = tx.vm(vm_id)
                change(vm)
                tx.save_vm(vm)
            assert store.vm_short_bodies(include_done=True) == short_bodies_of(
                store, include_done=True
            )
    assert store.vm_short_bodies() == []  # all DONE now


def test_vm_short_bodies_are_rolled_back_with_the_vm(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_vm(full_vm())
    before = store.vm_short_bodies()
    with pytest.raises(Boom), store.transaction() as tx:
        vm = tx.vm(0)
        vm.name = "never"
        tx.save_vm(vm)
        tx.add_vm(full_vm())
        raise Boom
    assert store.vm_short_bodies() == before == short_bodies_of(store)


def test_vm_short_bodies_take_the_vms_filters(populated: Store) -> None:
    filters: list[dict[str, Any]] = [
        {},
        {"include_done": True},
        {"states": [VmState.ACTIVE]},
        {"states": [VmState.PENDING], "include_done": True},
        {"states": []},
        {"host_id": 0},
        {"host_id": 0, "include_done": True},
        {"owner": 1},
        {"owner": 0, "states": [VmState.ACTIVE]},
        {"start": 1, "end": 4},
        {"start": 5, "end": 4},
        {"limit": 2},
        {"limit": 0},
        {"start": 2, "limit": 2, "include_done": True},
    ]
    for kwargs in filters:
        assert populated.vm_short_bodies(**kwargs) == short_bodies_of(populated, **kwargs), kwargs
    with pytest.raises(ValueError, match="limit"):
        populated.vm_short_bodies(limit=-1)


def test_missing_short_bodies_are_rendered_on_read_and_filled_on_open(durable: Durable) -> None:
    opened = durable.open()
    try:
        with opened.transaction() as tx:
            tx.add_vm(full_vm())
            tx.add_vm(odd_vm())
        durable.raw(("UPDATE vms SET short_xml = NULL WHERE id = 1", ()))
        assert opened.vm_short_bodies() == short_bodies_of(opened)  # rendered from the body
    finally:
        opened.close()
    # Same renderer: open fills only the missing rows (a wrong one shows it was not redone).
    durable.raw(("UPDATE vms SET short_xml = 'kept' WHERE id = 0", ()))
    opened = durable.open()
    try:
        assert opened.vm_short_bodies() == ["kept", vm_short_xml(opened.vm(1))]
    finally:
        opened.close()


def test_a_changed_renderer_re_renders_every_body(durable: Durable) -> None:
    opened = durable.open()
    try:
        with opened.transaction() as tx:
            tx.add_vm(full_vm())
        assert opened.get_meta(rendered.FINGERPRINT_KEY) == rendered.fingerprint()
    finally:
        opened.close()
    durable.raw(
        ("UPDATE vms SET short_xml = 'stale'", ()),
        ("UPDATE meta SET value = 'older' WHERE key = ?", (rendered.FINGERPRINT_KEY,)),
    )
    opened = durable.open()
    try:
        assert opened.vm_short_bodies() == short_bodies_of(opened)
        assert opened.get_meta(rendered.FINGERPRINT_KEY) == rendered.fingerprint()
    finally:
        opened.close()


def test_a_database_from_before_migration_3_gets_its_bodies(durable: Durable) -> None:
    before = [m for m in MIGRATIONS if m.number < 3]
    durable.open(schema=before).close()
    vm = odd_vm()
    durable.raw(
        (
            "INSERT INTO vms (id, state, lcm_state, host_id, owner, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (4, int(vm.state), int(vm.lcm_state), vm.host_id, vm.uid, codec.encode_vm(vm)),
        ),
    )
    opened = durable.open()
    try:
        vm.id = 4
        assert opened.vm(4) == vm
        assert opened.vm_short_bodies() == [vm_short_xml(vm)]
    finally:
        opened.close()


def test_a_database_from_before_migration_4_gets_typed_events(durable: Durable) -> None:
    durable.open(schema=[m for m in MIGRATIONS if m.number < 4]).close()
    old = [  # kind, obj, obj_id, state, lcm_state, line, body: rows as the code before wrote
        ("state", "HOST", 3, "ERROR", "", "host/3 n3: MONITORED => ERROR (x)", "<HOST/>"),
        ("flag", "VM", 5, "ACTIVE", "UNKNOWN", "vm/5 web: RESCHED=1 (resched requested)", ""),
        ("flag", "VM", 5, "ACTIVE", "UNKNOWN", "vm/5 web: RESCHED=0 (unresched requested)", ""),
        ("log", "", -1, "", "", "host/12 n12: stale domain one-7: removed", ""),
        ("api", "", -1, "", "", "host/2 n2: template updated (append: A)", ""),
        ("api", "API", -1, "", "", "one.vm.allocate", "<CALL/>"),
        ("log", "", -1, "", "", "vm/40 db: reboot ok", ""),
        ("api", "", -1, "", "", "datastore/100 big: created", ""),
        ("api", "", -1, "", "", "cluster/0 default: bootstrap: default cluster ...", ""),
    ]
    durable.raw(*[
        ("INSERT INTO events (time, kind, obj, obj_id, state, lcm_state, line, body) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (float(n), *row))
        for n, row in enumerate(old)
    ])
    opened = durable.open()
    try:
        got = [(e.kind, e.obj, e.obj_id, e.flag, e.value, e.method) for e in opened.events()]
    finally:
        opened.close()
    assert got == [
        (EventKind.STATE, ObjType.HOST, 3, "", "", ""),
        (EventKind.FLAG, ObjType.VM, 5, "RESCHED", "1", ""),
        (EventKind.FLAG, ObjType.VM, 5, "RESCHED", "0", ""),
        (EventKind.NOTE, ObjType.HOST, 12, "", "", ""),
        (EventKind.NOTE, ObjType.HOST, 2, "", "", ""),
        (EventKind.API_CALL, ObjType.API, -1, "", "", "one.vm.allocate"),
        (EventKind.NOTE, ObjType.VM, 40, "", "", ""),
        (EventKind.NOTE, ObjType.DATASTORE, 100, "", "", ""),
        (EventKind.NOTE, ObjType.CLUSTER, 0, "", "", ""),
    ]


def test_renderer_fingerprint_is_stable_and_names_the_version() -> None:
    assert rendered.fingerprint() == rendered.fingerprint()
    assert rendered.fingerprint().startswith(f"{lazarus.__version__}:")


def test_touch_hosts_sets_the_monitoring_time_and_nothing_else(store: Store) -> None:
    with store.transaction() as tx:
        host_id = tx.add_host(full_host()).id
    before = store.host(host_id)
    with store.transaction() as tx:
        tx.touch_hosts([host_id, 999], 1_767_225_700.5)  # an unknown id is ignored
    after = store.host(host_id)
    assert after.last_monitored == 1_767_225_700.5
    assert after.monitoring["TIMESTAMP"] == "1767225700"
    del after.monitoring["TIMESTAMP"]
    before.monitoring.pop("TIMESTAMP", None)
    assert after.monitoring == before.monitoring  # the other monitoring values are kept
    after.last_monitored = before.last_monitored
    assert after == before


# -- several connections, refused writes ----------------------------------------------------------
def test_write_transactions_of_two_stores_on_one_database_are_serialized(
    durable: Durable,
) -> None:
    """Two store objects (as two controllers) increment one meta value read in the same
    transaction: no increment is lost (SQLite: BEGIN IMMEDIATE; PostgreSQL: READ COMMITTED
    alone would lose some, the write lock of every transaction does not)."""
    first, second = durable.open(), durable.open()
    rounds = 40
    errors: list[BaseException] = []

    def bump(store: Store) -> None:
        try:
            for _ in range(rounds):
                with store.transaction() as tx:
                    value = int(tx.get_meta("n") or "0")
                    tx.set_meta("n", str(value + 1))
                    tx.record(state_event(value))
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=bump, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert first.get_meta("n") == str(2 * rounds)
        events = second.events(limit=10_000)
        # Event ids follow commit order: the value each transaction read increases with them.
        assert [e.obj_id for e in events] == list(range(2 * rounds))
    finally:
        first.close()
        second.close()


def test_refused_writes_change_nothing_and_reads_go_on(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_host(Host(id=-1, name="a"))
    refuse = getattr(store, "refuse_writes")  # noqa: B009 - not part of the Store port
    refuse(True)
    try:
        with pytest.raises(InternalError, match=r"^Store error: "), store.transaction() as tx:
            tx.add_host(Host(id=-1, name="b"))
            tx.record(state_event())
        assert [h.name for h in store.hosts()] == ["a"] and store.events() == []
    finally:
        refuse(False)
    with store.transaction() as tx:
        assert tx.add_host(Host(id=-1, name="b")).id == 1


def test_a_transaction_with_a_swallowed_store_error_does_not_commit(store: Store) -> None:
    """After a store error inside a transaction nothing of it commits, even if the caller
    caught the error: PostgreSQL aborts such a transaction, and SQLite is made to agree
    (committing the half that worked would break the state-change-with-its-event rule)."""
    with pytest.raises(InternalError, match="rolled back"), store.transaction() as tx:
        tx.add_host(Host(id=-1, name="half"))
        with pytest.raises(InternalError):
            tx.add_host(Host(id=-1, name="bad \x00 name"))
    assert store.hosts() == []
    with store.transaction() as tx:  # an AllocateError is not a store error: it commits
        tx.add_host(Host(id=-1, name="a"))
        with pytest.raises(AllocateError):
            tx.add_host(Host(id=-1, name="a"))
        tx.add_host(Host(id=-1, name="b"))
    assert [h.name for h in store.hosts()] == ["a", "b"]
