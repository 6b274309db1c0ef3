"""one.host.monitoring, one.hostpool.monitoring, one.vm.monitoring, one.vmpool.monitoring
(the records core/monitoring_records.py keeps) and one.vmpool.accounting (the VMs' history
records), with oned's signatures and documents (MONITORING_DATA, HISTORY_RECORDS).

`seconds` of the pool calls as oned: -1 every record kept, 0 only each object's newest,
N > 0 the records of the last N seconds. Pools list what the caller may USE (api/rights.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazarus.domain import acl
from lazarus.domain import xml as docs
from lazarus.domain.entities import VM, History
from lazarus.domain.errors import RpcApiError
from lazarus.ports.store import StoreReader

from .rights import Authorizer, host_auth, vm_auth
from .xmlrpc import CallContext, Registry


class MonitoringApi:
    def __init__(self, store: StoreReader, rights: Authorizer, now: Callable[[], float]) -> None:
        self.store = store
        self.rights = rights
        self._now = now

    def _records(
        self, kind: str, seconds: int, obj_id: int | None = None
    ) -> list[tuple[int, int, str]]:
        if seconds < -1:
            raise RpcApiError("seconds must be -1 (all), 0 (the last record) or > 0.")
        if seconds == 0:
            last = self.store.last_monitoring_records(kind)
            return [r for r in last if obj_id is None or r[0] == obj_id]
        since = -1 if seconds == -1 else int(self._now()) - seconds
        return self.store.monitoring_records(kind, obj_id, since)

    def host_monitoring(self, ctx: CallContext, host_id: int) -> str:
        self.store.host(host_id)  # NO_EXISTS for an unknown id
        return docs.monitoring_data_xml(b for _, _, b in self._records("host", -1, host_id))

    def hostpool_monitoring(self, ctx: CallContext, seconds: int = -1) -> str:
        visible = {h.id for h in self.rights.visible(ctx.user, self.store.hosts(), host_auth)}
        records = self._records("host", seconds)
        return docs.monitoring_data_xml(b for i, _, b in records if i in visible)

    def vm_monitoring(self, ctx: CallContext, vm_id: int) -> str:
        self.store.vm(vm_id)
        return docs.monitoring_data_xml(b for _, _, b in self._records("vm", -1, vm_id))

    def _vms(self, ctx: CallContext, flt: int) -> list[VM]:
        user = ctx.user
        vms = self.store.vms(include_done=True, owner=flt if flt >= 0 else None)
        if flt == -3:
            vms = [vm for vm in vms if vm.uid == user.id]
        elif flt == -4:
            vms = [vm for vm in vms if vm.gid == user.gid]
        elif flt == -1 and not acl.is_admin(user.all_groups):
            groups = set(user.all_groups)
            vms = [vm for vm in vms if vm.uid == user.id or vm.gid in groups]
        return self.rights.visible(user, vms, vm_auth)

    def vmpool_monitoring(self, ctx: CallContext, flt: int = -2, seconds: int = -1) -> str:
        visible = {vm.id for vm in self._vms(ctx, flt)}
        records = self._records("vm", seconds)
        return docs.monitoring_data_xml(b for i, _, b in records if i in visible)

    def vmpool_accounting(self, ctx: CallContext, flt: int, start: int, end: int) -> str:
        """History records that overlap [start, end] (-1: open), each with its VM."""
        found: list[tuple[History, VM]] = []
        for vm in self._vms(ctx, flt):
            for h in vm.history:
                if end != -1 and h.stime > end:
                    continue
                if start != -1 and h.etime != 0 and h.etime < start:
                    continue
                found.append((h, vm))
        return docs.accounting_xml(found)

    def register(self, registry: Registry) -> None:
        table: list[tuple[str, Callable[..., Any], str, tuple[Any, ...]]] = [
            ("one.host.monitoring", self.host_monitoring, "A:si", ()),
            ("one.hostpool.monitoring", self.hostpool_monitoring, "A:si", (-1,)),
            ("one.vm.monitoring", self.vm_monitoring, "A:si", ()),
            ("one.vmpool.monitoring", self.vmpool_monitoring, "A:sii", (-2, -1)),
            ("one.vmpool.accounting", self.vmpool_accounting, "A:siii", (-2, -1, -1)),
        ]
        for name, fn, signature, defaults in table:
            registry.register(name, fn, signature, defaults)
