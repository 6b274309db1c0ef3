"""Store port: durable state of the controller.

Reads may happen anywhere (each read sees a consistent snapshot). Every change goes through a
transaction, and a state change is always written together with the Event that records it:

    with store.transaction() as tx:
        host = tx.host(3)
        host.state = HostState.ERROR
        tx.save_host(host)
        tx.record(Event(kind=EventKind.STATE, line="host/3 node3: MONITORED => ERROR ...", ...))

Either both land or neither does (the hook outbox relies on this). Ids are allocated by the
store (`add_*` fills `.id` and returns the object), starting at 0 for each kind, never reused.
Unknown ids raise `NoExistsError` with OpenNebula's text ("Error getting host [7].").

Adapters: store/sqlite.py (embedded default), store/postgres.py (a shared PostgreSQL database).
Contract tests: tests/contract/test_store.py (both). Every database failure is an InternalError
whose message starts with domain/errors.py STORE_ERROR, and its transaction did not land.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from lazarus.domain.entities import VM, Cluster, Datastore, Event, Host, User
from lazarus.domain.states import VmState


class StoreReader(Protocol):
    def host(self, host_id: int) -> Host: ...

    def host_by_name(self, name: str) -> Host | None: ...

    def hosts(self) -> list[Host]: ...

    def vm(self, vm_id: int) -> VM: ...

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
        """VMs ordered by id. `states` filters exact STATEs; DONE VMs only when asked for
        (`include_done`, or DONE named in `states`); `host_id`: VMs whose last history record
        is on that host; `start`/`end`: inclusive id range (-1 = open); `limit`: page size."""
        ...

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
        """The short VM bodies of one.vmpool.info (exactly `domain.xml.vm_short_xml(vm)`) of
        the VMs `vms()` returns with the same filters, in the same order. Stores keep them
        rendered next to each VM, as OpenNebula keeps its XML bodies, so a pool of 10,000 VMs
        is a string join rather than 10,000 decodes and renders."""
        ...

    def datastore(self, ds_id: int) -> Datastore: ...

    def datastores(self) -> list[Datastore]: ...

    def cluster(self, cluster_id: int) -> Cluster: ...

    def clusters(self) -> list[Cluster]: ...

    def user_by_name(self, name: str) -> User | None: ...

    def get_meta(self, key: str) -> str | None:
        """Small named values the core keeps (cursors, settings)."""
        ...

    def events(
        self, after_id: int = 0, limit: int = 1000, kind: str | None = None
    ) -> list[Event]:
        """Recorded events with id > after_id, oldest first."""
        ...


class StoreTx(StoreReader, Protocol):
    def add_host(self, host: Host) -> Host: ...

    def save_host(self, host: Host) -> None: ...

    def touch_hosts(self, host_ids: Sequence[int], now: float) -> None:
        """Set the monitoring time (last_monitored, MONITORING/TIMESTAMP) of these hosts and
        nothing else, without reading them: the monitor's refresh for probes that changed
        nothing. Unknown ids are ignored."""
        ...

    def delete_host(self, host_id: int) -> None: ...

    def add_vm(self, vm: VM) -> VM: ...

    def save_vm(self, vm: VM) -> None: ...

    def delete_vm(self, vm_id: int) -> None: ...

    def add_datastore(self, ds: Datastore) -> Datastore: ...

    def save_datastore(self, ds: Datastore) -> None: ...

    def add_cluster(self, cluster: Cluster) -> Cluster: ...

    def save_cluster(self, cluster: Cluster) -> None: ...

    def add_user(self, user: User) -> User: ...

    def save_user(self, user: User) -> None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def record(self, event: Event) -> int:
        """Append an event (its `time` must be set by the caller); returns its id."""
        ...


class Store(StoreReader, Protocol):
    def transaction(self) -> AbstractContextManager[StoreTx]:
        """A write transaction. Exiting normally commits; an exception rolls back."""
        ...

    def close(self) -> None: ...

