"""The rendered short body kept with each VM row (the `short_xml` column, migration 3).

OpenNebula answers one.vmpool.info by concatenating bodies it keeps in its database; Lazarus
does the same for the short VM body of vm_pool.xsd (domain/xml `vm_short_xml`): `save_vm` and
`add_vm` (store/sqlite.py) write it in the same statement as the JSON body, and the reader's
`vm_short_bodies()` returns those strings without decoding any JSON. That makes a pool of
10,000 VMs a string join instead of 10,000 decodes and renders (seconds on a loaded 2-core box).

A cached body is only right while the renderer is the one that wrote it. So the store records a
fingerprint of the renderer in `meta` (key `FINGERPRINT_KEY`): the package version plus a hash of
what `vm_short_xml` makes of a few sample VMs that reach every branch of it (escaping, CDATA,
dropped and kept attributes, history, lock, monitoring). `refresh()`, run by `SqliteStore.open`,
`memory()` and `PostgresStore.open` after the migrations, re-renders every row when the
fingerprint differs (a new release, a changed renderer, a database from before migration 3) and
otherwise only rows that have no body (an open with nothing to do is one read, ~15 ms at 10,000
VMs, and takes no write lock). Re-rendering 10,000 VMs takes about 1.3 s on a loaded 2-core
box, once.
Within one release, a renderer change that none of the samples shows would go unnoticed: when
changing vm_short_xml, make `_samples()` show it (the contract tests compare every cached body
with a fresh render, so such a change fails them only on stores that outlive a test).

Users: store/sqlite.py and store/postgres.py (through `RawDb`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from functools import cache
from typing import Any, Protocol

from lazarus import __version__
from lazarus.domain.entities import VM, History
from lazarus.domain.states import HistoryAction, LcmState, VmState
from lazarus.domain.template import Template
from lazarus.domain.xml import vm_short_xml

from . import codec

FINGERPRINT_KEY = "store.vm_short_xml"


def short_xml(vm: VM) -> str:
    """The body kept in `short_xml`: exactly domain/xml's `vm_short_xml(vm)`."""
    return vm_short_xml(vm)


def _samples() -> list[VM]:
    """VMs that take every path through vm_short_xml."""
    history = [
        History(oid=7, seq=0, hostname="n<1>", hid=1, stime=1, etime=2,
                action=HistoryAction.LIVE_MIGRATE, request_id=4),
        History(oid=7, seq=1, hostname="node&2", hid=2, cid=100, stime=3, vm_mad="kvm",
                tm_mad="ssh", ds_id=102, uid=3, gid=1),
    ]  # fmt: skip
    busy = VM(
        id=7,
        name="a&b <c> ]]> \x01 \r end",
        uid=3,
        gid=1,
        uname="ops",
        gname="users",
        state=VmState.ACTIVE,
        lcm_state=LcmState.MIGRATE,
        prev_state=VmState.ACTIVE,
        prev_lcm_state=LcmState.RUNNING,
        resched=True,
        stime=1_700_000_000,
        etime=1_700_000_500,
        deploy_id="one-7 & co",
        last_poll=1_700_000_100,
        template=Template.parse(
            'CPU = "0.5"\nCPU = "9"\nMEMORY = "512"\nVCPU = "2"\n'
            'DISK = [ IMAGE = "deb]]>ian", DISK_ID = "0", SIZE = "2048", DEV_PREFIX = "vd" ]\n'
            'DISK = [ IMAGE = "data", DISK_ID = "1", TARGET = "vdb" ]\n'
            'NIC = "not a vector"\n'
            'NIC = [ NETWORK = "lan", IP = "10.0.0.7", MAC = "02:00", MODEL = "virtio" ]\n'
            'GRAPHICS = [ TYPE = "VNC", LISTEN = "0.0.0.0", PORT = "5907", KEYMAP = "fr" ]\n'
            'CONTEXT = [ NETWORK = "YES" ]\nOS = [ ARCH = "x86_64" ]\nTM_MAD_SYSTEM = "shared"\n'
        ),
        user_template=Template.parse(
            'HA = "YES"\nHA_PRIORITY = "5"\nLABELS = "a,b"\nDESCRIPTION = "dropped"\n'
            'SCHED_REQUIREMENTS = "ID < 5"\nERROR = [ MESSAGE = "x" ]\n'
        ),
        history=history,
        lock=2,
        monitoring={"CPU": "2.5", "MEMORY": "524288", "NETRX": "1", "STATE": "a", "ZZ": "<"},
    )
    return [busy, VM(id=0, name="bare")]


@cache
def fingerprint() -> str:
    """The package version and a hash of the sample renders: what a stored body depends on."""
    digest = hashlib.sha256()
    for vm in _samples():
        digest.update(short_xml(vm).encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return f"{__version__}:{digest.hexdigest()[:32]}"


_MISSING = "SELECT id, body FROM vms WHERE short_xml IS NULL"


class RawDb(Protocol):
    """What `refresh` needs of an adapter's writer connection (sqlite.py, postgres.py)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with `?` placeholders, outside or inside `exclusive()`."""
        ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def columns(self, table: str) -> set[str]: ...

    def exclusive(self) -> AbstractContextManager[None]:
        """A write transaction serialized with every other writer (commit or roll back)."""
        ...


def _recorded(db: RawDb) -> str | None:
    rows = db.query("SELECT value FROM meta WHERE key = ?", (FINGERPRINT_KEY,))
    return None if not rows else str(rows[0][0])


def refresh(db: RawDb) -> int:
    """Render the bodies that are missing, or all of them when the renderer changed; record the
    fingerprint, in one write transaction. Returns the number of rows rendered."""
    if "short_xml" not in db.columns("vms"):
        return 0  # a test schema that stops before migration 3
    current = fingerprint()
    if _recorded(db) == current and not db.query(_MISSING + " LIMIT 1"):
        return 0  # the usual open: nothing to do, and no need for the write lock
    with db.exclusive():
        recorded = _recorded(db)  # again: another process may have refreshed meanwhile
        sql = _MISSING if recorded == current else "SELECT id, body FROM vms"
        rows = db.query(sql)
        db.many(
            "UPDATE vms SET short_xml = ? WHERE id = ?",
            [(short_xml(codec.decode_vm(vm_id, body)), vm_id) for vm_id, body in rows],
        )
        if recorded != current:
            db.query(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (FINGERPRINT_KEY, current),
            )
    return len(rows)
