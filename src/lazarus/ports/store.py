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

from lazarus.domain.acl import AclRule
from lazarus.domain.entities import (
    VM,
    Cluster,
    Datastore,
    Event,
    Group,
    Host,
    User,
    VmTemplate,
)
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

    def user(self, user_id: int) -> User: ...

    def users(self) -> list[User]: ...

    def group(self, group_id: int) -> Group: ...

    def group_by_name(self, name: str) -> Group | None: ...

    def groups(self) -> list[Group]: ...

    def acl_rules(self) -> list[AclRule]:
        """ACL rules ordered by id (store/auth.py keeps the masks as hex text)."""
        ...

    def monitoring_records(
        self, kind: str, obj_id: int | None = None, since: int = -1
    ) -> list[tuple[int, int, str]]:
        """(object id, timestamp, <MONITORING> body) of kind "host" or "vm", ordered by object
        and time; `obj_id` None for all objects; `since` >= 0 keeps records at or after it."""
        ...

    def last_monitoring_records(self, kind: str) -> list[tuple[int, int, str]]: ...

    def vm_template(self, template_id: int) -> VmTemplate: ...

    def vm_templates(self) -> list[VmTemplate]: ...

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

    def delete_user(self, user_id: int) -> None: ...

    def add_group(self, group: Group) -> Group: ...

    def save_group(self, group: Group) -> None: ...

    def delete_group(self, group_id: int) -> None: ...

    def add_acl_rule(self, rule: AclRule) -> AclRule:
        """Stores the rule under a new id (returned); the same four masks twice is an
        AllocateError "Rule already exists"."""
        ...

    def delete_acl_rule(self, rule_id: int) -> None: ...

    def add_monitoring_records(self, kind: str, records: Sequence[tuple[int, int, str]]) -> None:
        """Samples (object id, timestamp, body); a (object, timestamp) already stored is kept."""
        ...

    def prune_monitoring_records(self, kind: str, before: int) -> int: ...

    def delete_monitoring_records(self, kind: str, obj_id: int) -> None: ...

    def add_vm_template(self, template: VmTemplate) -> VmTemplate: ...

    def save_vm_template(self, template: VmTemplate) -> None: ...

    def delete_vm_template(self, template_id: int) -> None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def record(self, event: Event) -> int:
        """Append an event (its `time` must be set by the caller); returns its id."""
        ...


class Store(StoreReader, Protocol):
    def transaction(self) -> AbstractContextManager[StoreTx]:
        """A write transaction. Exiting normally commits; an exception rolls back."""
        ...

    def close(self) -> None: ...

