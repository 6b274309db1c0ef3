"""Epoch fencing of writes: a deposed leader's writes are refused by the store itself.

    claim_epoch(store, term.epoch)                 # the new leader, once, before acting
    fenced = FencedStore(store, term.epoch, still_leader=elector.acting)
    controller = Controller(fenced, ...)           # every write transaction is checked

The store keeps one meta row, `leader_epoch`: the epoch (fencing token, ports/coordination.py)
of the controller that last took over. `claim_epoch` raises it to the new leader's epoch in a
transaction and refuses when the row already holds a greater one (this controller is late).
Every write transaction of a `FencedStore` first reads the row, in the same transaction, and
raises StaleLeaderError (nothing of the transaction lands) unless it equals its own epoch;
with `still_leader` it also refuses once the controller's own lease deadline has passed
(cluster/leadership.py), before anybody else may even have been elected.

This is safe because both store adapters serialize write transactions (SQLite's BEGIN
IMMEDIATE, PostgreSQL's transaction-level advisory lock): "read the row, compare, write" cannot
interleave with the new leader's claim. A frozen leader that resumes after its successor's
claim gets every write refused, whatever it believes about its lease.

Reads pass through unchanged (a follower may read; a deposed leader's reads are harmless).
The wrapper implements the Store and HookStore ports by delegation; anything else an adapter
offers (schema_versions, refuse_writes) is reached through `inner`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from lazarus.domain.entities import VM, Cluster, Datastore, Event, Host, User
from lazarus.domain.errors import StaleLeaderError
from lazarus.domain.hooks import ExecutionRecord, Hook, HookJob
from lazarus.domain.states import VmState

EPOCH_KEY = "leader_epoch"


class _Tx(Protocol):
    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


class _TxStore(Protocol):
    def transaction(self) -> AbstractContextManager[Any]: ...


def stored_epoch(tx: _Tx) -> int:
    raw = tx.get_meta(EPOCH_KEY)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


def claim_epoch(store: _TxStore, epoch: int) -> int:
    """Make `epoch` the store's leader epoch; returns the one it replaced. StaleLeaderError
    when the store already has a greater one (a newer leader claimed it first)."""
    with store.transaction() as tx:
        current = stored_epoch(tx)
        if current > epoch:
            raise StaleLeaderError(epoch, current)
        tx.set_meta(EPOCH_KEY, str(epoch))
        return current


class FencedStore:
    """A Store (and HookStore) whose write transactions belong to one leadership epoch."""

    def __init__(self, inner: Any, epoch: int,
                 still_leader: Callable[[], bool] | None = None) -> None:
        self.inner = inner
        self.epoch = epoch
        self.still_leader = still_leader
        self.refused = 0  # write transactions refused (for logs and the simulator)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.inner.transaction() as tx:
            current = stored_epoch(tx)
            if current != self.epoch:
                self.refused += 1
                raise StaleLeaderError(self.epoch, current)
            if self.still_leader is not None and not self.still_leader():
                self.refused += 1
                raise StaleLeaderError(self.epoch, current, lapsed=True)
            yield tx

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        """Every other read of the Store and HookStore ports (and those added later: users,
        groups, ACL rules, templates, monitoring records) goes to the inner store as it is:
        only write transactions need the epoch."""
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- StoreReader ----------------------------------------------------------------------------
    def host(self, host_id: int) -> Host:
        return self.inner.host(host_id)  # type: ignore[no-any-return]

    def host_by_name(self, name: str) -> Host | None:
        return self.inner.host_by_name(name)  # type: ignore[no-any-return]

    def hosts(self) -> list[Host]:
        return self.inner.hosts()  # type: ignore[no-any-return]

    def vm(self, vm_id: int) -> VM:
        return self.inner.vm(vm_id)  # type: ignore[no-any-return]

    def vms(self, *, states: Iterable[VmState] | None = None, host_id: int | None = None,
            include_done: bool = False, owner: int | None = None, start: int = -1,
            end: int = -1, limit: int | None = None) -> list[VM]:
        return self.inner.vms(  # type: ignore[no-any-return]
            states=states, host_id=host_id, include_done=include_done, owner=owner,
            start=start, end=end, limit=limit)

    def vm_short_bodies(self, *, states: Iterable[VmState] | None = None,
                        host_id: int | None = None, include_done: bool = False,
                        owner: int | None = None, start: int = -1, end: int = -1,
                        limit: int | None = None) -> list[str]:
        return self.inner.vm_short_bodies(  # type: ignore[no-any-return]
            states=states, host_id=host_id, include_done=include_done, owner=owner,
            start=start, end=end, limit=limit)

    def datastore(self, ds_id: int) -> Datastore:
        return self.inner.datastore(ds_id)  # type: ignore[no-any-return]

    def datastores(self) -> list[Datastore]:
        return self.inner.datastores()  # type: ignore[no-any-return]

    def cluster(self, cluster_id: int) -> Cluster:
        return self.inner.cluster(cluster_id)  # type: ignore[no-any-return]

    def clusters(self) -> list[Cluster]:
        return self.inner.clusters()  # type: ignore[no-any-return]

    def user_by_name(self, name: str) -> User | None:
        return self.inner.user_by_name(name)  # type: ignore[no-any-return]

    def get_meta(self, key: str) -> str | None:
        return self.inner.get_meta(key)  # type: ignore[no-any-return]

    def events(self, after_id: int = 0, limit: int = 1000, kind: str | None = None
               ) -> list[Event]:
        return self.inner.events(after_id, limit, kind)  # type: ignore[no-any-return]

    # -- HookReader -----------------------------------------------------------------------------
    def hook(self, hook_id: int) -> Hook:
        return self.inner.hook(hook_id)  # type: ignore[no-any-return]

    def hooks(self) -> list[Hook]:
        return self.inner.hooks()  # type: ignore[no-any-return]

    def hook_records(self, hook_id: int) -> list[ExecutionRecord]:
        return self.inner.hook_records(hook_id)  # type: ignore[no-any-return]

    def hook_record(self, hook_id: int, execution_id: int) -> ExecutionRecord:
        return self.inner.hook_record(hook_id, execution_id)  # type: ignore[no-any-return]

    def hook_log(self, min_ts: int = -1, max_ts: int = -1, hook_id: int = -1, rc: int = 0
                 ) -> list[ExecutionRecord]:
        return self.inner.hook_log(min_ts, max_ts, hook_id, rc)  # type: ignore[no-any-return]

    def hook_jobs(self, status: str | None = None) -> list[HookJob]:
        return self.inner.hook_jobs(status)  # type: ignore[no-any-return]

    def last_event_id(self) -> int:
        return self.inner.last_event_id()  # type: ignore[no-any-return]
