"""The SQL both store adapters share: the StoreReader queries and the StoreTx writes.

store/sqlite.py and store/postgres.py mix these classes into their store and transaction
objects, so one text of every query serves both databases. The SQL is written once, with `?`
placeholders (SQLite's); the PostgreSQL adapter turns them into `%s` in one place
(`postgres._pg_sql`). It uses only what both databases take the same way: `ON CONFLICT ... DO
UPDATE ... RETURNING` (counters, meta), `RETURNING id` (events), `CASE`, `COALESCE`, `LIMIT ?`.

An adapter provides, on its transaction class:
    _all(sql, params) -> rows        run one statement, store errors as InternalError
    _write(sql, params, unique) -> n  an INSERT/UPDATE/DELETE; a UNIQUE violation becomes
                                     AllocateError(unique()) and leaves the transaction usable
    touch_hosts(ids, now)            the monitor's timestamp refresh (each does it its own way)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lazarus.domain.entities import VM, Cluster, Datastore, Event, Host, User
from lazarus.domain.errors import STORE_ERROR, InternalError, NoExistsError
from lazarus.domain.states import VmState

from . import codec, rendered
from .hooks import HookQueries, no_unique

Row = tuple[Any, ...]
_DONE = int(VmState.DONE)
EVENT_COLUMNS = "id, " + codec.EVENT_COLUMNS
_EVENT_INSERT = codec.EVENT_COLUMNS
_EVENT_SLOTS = ", ".join("?" * len(codec.EVENT_COLUMNS.split(", ")))


def refuse_nul(params: Sequence[Any]) -> None:
    """Refuse a NUL character in a column value (a name): PostgreSQL's text cannot hold one,
    so neither store takes it (the contract), while JSON bodies escape it and hold any str."""
    for value in params:
        if type(value) is str and "\x00" in value:
            raise InternalError(f"{STORE_ERROR}a text value contains a NUL character")


def missing(what: str, obj_id: int) -> NoExistsError:
    return NoExistsError(f"Error getting {what} [{obj_id}].", obj_id)


def vm_query(
    columns: str,
    states: Iterable[VmState] | None,
    host_id: int | None,
    include_done: bool,
    owner: int | None,
    start: int,
    end: int,
    limit: int | None,
) -> tuple[str, list[int]] | None:
    """(sql, params) selecting `columns` of the VMs the filters pick (see StoreReader.vms),
    ordered by id; None when nothing can match."""
    clauses: list[str] = []
    params: list[int] = []
    if states is None:
        if not include_done:
            clauses.append(f"state <> {_DONE}")
    else:
        wanted = {int(s) for s in states}
        if include_done:
            wanted.add(_DONE)
        if not wanted:
            return None
        clauses.append(f"state IN ({', '.join('?' * len(wanted))})")
        params.extend(sorted(wanted))
    if host_id is not None:
        clauses.append("host_id = ?")
        params.append(host_id)
    if owner is not None:
        clauses.append("owner = ?")
        params.append(owner)
    if start >= 0:
        clauses.append("id >= ?")
        params.append(start)
    if end >= 0:
        clauses.append("id <= ?")
        params.append(end)
    sql = f"SELECT {columns} FROM vms"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY id"
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


class SqlReader(HookQueries):
    """The StoreReader queries, over whatever connection `_all` uses (`?` placeholders)."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _body(self, table: str, what: str, obj_id: int) -> str:
        rows = self._all(f"SELECT body FROM {table} WHERE id = ?", (obj_id,))
        if not rows:
            raise missing(what, obj_id)
        return str(rows[0][0])

    def host(self, host_id: int) -> Host:
        return codec.decode_host(host_id, self._body("hosts", "host", host_id))

    def host_by_name(self, name: str) -> Host | None:
        rows = self._all("SELECT id, body FROM hosts WHERE name = ?", (name,))
        return codec.decode_host(rows[0][0], rows[0][1]) if rows else None

    def hosts(self) -> list[Host]:
        decode = codec.decode_host
        return [decode(i, b) for i, b in self._all("SELECT id, body FROM hosts ORDER BY id")]

    def vm(self, vm_id: int) -> VM:
        return codec.decode_vm(vm_id, self._body("vms", "virtual machine", vm_id))

    def vms(
        self,
        *,
        states: Iterable[VmState] | None = None,
        host_id: int | None = None,
        include_done: bool = False,
        owner: int | None = None,
        start: int = -1,
        end: int = -1,
        limit: int | None = None,
    ) -> list[VM]:
        """VMs ordered by id. The states returned are `states` (all but DONE when None), plus
        DONE when `include_done`; the other filters narrow that (see the port)."""
        query = vm_query("id, body", states, host_id, include_done, owner, start, end, limit)
        if query is None:
            return []
        decode = codec.decode_vm
        return [decode(i, b) for i, b in self._all(*query)]

    def vm_short_bodies(
        self,
        *,
        states: Iterable[VmState] | None = None,
        host_id: int | None = None,
        include_done: bool = False,
        owner: int | None = None,
        start: int = -1,
        end: int = -1,
        limit: int | None = None,
    ) -> list[str]:
        """The cached short bodies (store/rendered.py) of the VMs `vms()` would return, in the
        same order, without decoding them. A row without one (not expected: `open` fills
        them) is rendered from its JSON body, read only for that row."""
        query = vm_query(
            "id, short_xml, CASE WHEN short_xml IS NULL THEN body END",
            states, host_id, include_done, owner, start, end, limit,
        )  # fmt: skip
        if query is None:
            return []
        rows = self._all(*query)
        bodies = [short for _, short, _ in rows]
        if None in bodies:
            return [
                short if short is not None else rendered.short_xml(codec.decode_vm(i, body))
                for i, short, body in rows
            ]
        return bodies

    def datastore(self, ds_id: int) -> Datastore:
        return codec.decode_datastore(ds_id, self._body("datastores", "datastore", ds_id))

    def datastores(self) -> list[Datastore]:
        rows = self._all("SELECT id, body FROM datastores ORDER BY id")
        return [codec.decode_datastore(i, b) for i, b in rows]

    def cluster(self, cluster_id: int) -> Cluster:
        return codec.decode_cluster(cluster_id, self._body("clusters", "cluster", cluster_id))

    def clusters(self) -> list[Cluster]:
        rows = self._all("SELECT id, body FROM clusters ORDER BY id")
        return [codec.decode_cluster(i, b) for i, b in rows]

    def user_by_name(self, name: str) -> User | None:
        rows = self._all("SELECT id, body FROM users WHERE name = ?", (name,))
        return codec.decode_user(rows[0][0], rows[0][1]) if rows else None

    def get_meta(self, key: str) -> str | None:
        rows = self._all("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def events(self, after_id: int = 0, limit: int = 1000, kind: str | None = None) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ?"
        params: list[Any] = [after_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return [codec.decode_event(row) for row in self._all(sql, params)]


    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A raw read (`?` placeholders), for `lazarus db check/copy` (app/dbtools.py) only."""
        return self._all(sql, params)


class SqlWrites:
    """The StoreTx writes over the adapter's `_all`, `_write` (see the module docstring)."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        raise NotImplementedError

    def _next_id(self, kind: str) -> int:
        rows = self._all(
            "INSERT INTO counters (kind, next_id) VALUES (?, 1) "
            "ON CONFLICT (kind) DO UPDATE SET next_id = counters.next_id + 1 "
            "RETURNING next_id - 1",
            (kind,),
        )
        return int(rows[0][0])

    def _taken(self, table: str, kind: str, name: str) -> Callable[[], str]:
        def message() -> str:
            rows = self._all(f"SELECT id FROM {table} WHERE name = ?", (name,))
            owner = rows[0][0] if rows else "?"
            return f"NAME is already taken by {kind} {owner}."

        return message

    # -- hosts ------------------------------------------------------------------------------
    def add_host(self, host: Host) -> Host:
        host_id = self._next_id("host")
        self._write(
            "INSERT INTO hosts (id, name, state, body) VALUES (?, ?, ?, ?)",
            (host_id, host.name, int(host.state), codec.encode_host(host)),
            self._taken("hosts", "HOST", host.name),
        )
        host.id = host_id
        return host

    def save_host(self, host: Host) -> None:
        changed = self._write(
            "UPDATE hosts SET name = ?, state = ?, body = ? WHERE id = ?",
            (host.name, int(host.state), codec.encode_host(host), host.id),
            self._taken("hosts", "HOST", host.name),
        )
        if not changed:
            raise missing("host", host.id)

    def delete_host(self, host_id: int) -> None:
        if not self._write("DELETE FROM hosts WHERE id = ?", (host_id,), no_unique):
            raise missing("host", host_id)

    # -- VMs --------------------------------------------------------------------------------
    def _vm_row(self, vm: VM) -> tuple[int, int, int | None, int, str, str]:
        """The columns of a VM row; the short body is rendered here, so it is written in the
        same statement as the JSON body and can never disagree with it."""
        return (
            int(vm.state),
            int(vm.lcm_state),
            vm.host_id,
            vm.uid,
            codec.encode_vm(vm),
            rendered.short_xml(vm),
        )

    def add_vm(self, vm: VM) -> VM:
        vm_id = self._next_id("vm")
        old_id, vm.id = vm.id, vm_id  # the short body shows the id
        try:
            self._write(
                "INSERT INTO vms (state, lcm_state, host_id, owner, body, short_xml, id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*self._vm_row(vm), vm_id),
                no_unique,
            )
        except BaseException:
            vm.id = old_id
            raise
        return vm

    def save_vm(self, vm: VM) -> None:
        changed = self._write(
            "UPDATE vms SET state = ?, lcm_state = ?, host_id = ?, owner = ?, body = ?, "
            "short_xml = ? WHERE id = ?",
            (*self._vm_row(vm), vm.id),
            no_unique,
        )
        if not changed:
            raise missing("virtual machine", vm.id)

    def delete_vm(self, vm_id: int) -> None:
        if not self._write("DELETE FROM vms WHERE id = ?", (vm_id,), no_unique):
            raise missing("virtual machine", vm_id)

    # -- datastores, clusters, users ----------------------------------------------------------
    def add_datastore(self, ds: Datastore) -> Datastore:
        ds_id = self._next_id("datastore")
        self._write(
            "INSERT INTO datastores (id, name, body) VALUES (?, ?, ?)",
            (ds_id, ds.name, codec.encode_datastore(ds)),
            no_unique,
        )
        ds.id = ds_id
        return ds

    def save_datastore(self, ds: Datastore) -> None:
        changed = self._write(
            "UPDATE datastores SET name = ?, body = ? WHERE id = ?",
            (ds.name, codec.encode_datastore(ds), ds.id),
            no_unique,
        )
        if not changed:
            raise missing("datastore", ds.id)

    def add_cluster(self, cluster: Cluster) -> Cluster:
        cluster_id = self._next_id("cluster")
        self._write(
            "INSERT INTO clusters (id, name, body) VALUES (?, ?, ?)",
            (cluster_id, cluster.name, codec.encode_cluster(cluster)),
            self._taken("clusters", "CLUSTER", cluster.name),
        )
        cluster.id = cluster_id
        return cluster

    def save_cluster(self, cluster: Cluster) -> None:
        changed = self._write(
            "UPDATE clusters SET name = ?, body = ? WHERE id = ?",
            (cluster.name, codec.encode_cluster(cluster), cluster.id),
            self._taken("clusters", "CLUSTER", cluster.name),
        )
        if not changed:
            raise missing("cluster", cluster.id)

    def add_user(self, user: User) -> User:
        user_id = self._next_id("user")
        self._write(
            "INSERT INTO users (id, name, body) VALUES (?, ?, ?)",
            (user_id, user.name, codec.encode_user(user)),
            self._taken("users", "USER", user.name),
        )
        user.id = user_id
        return user

    def save_user(self, user: User) -> None:
        changed = self._write(
            "UPDATE users SET name = ?, body = ? WHERE id = ?",
            (user.name, codec.encode_user(user), user.id),
            self._taken("users", "USER", user.name),
        )
        if not changed:
            raise missing("user", user.id)

    # -- meta, events ---------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
            no_unique,
        )

    def record(self, event: Event) -> int:
        rows = self._all(
            f"INSERT INTO events ({_EVENT_INSERT}) VALUES ({_EVENT_SLOTS}) RETURNING id",
            codec.encode_event(event),
        )
        event.id = int(rows[0][0])
        return event.id
