"""Per-VM recovery time: from the fault of its host to the VM RUNNING again.

The fault is the first failed probe of the streak that put the host in ERROR (the monitor
reports each probe, metrics.py), or the ERROR event itself when no failed probe was seen
(a lost keepalive connection, a daemon started with the host already failing). When a host
enters ERROR, the VMs it holds become pending; a pending VM's next ACTIVE/RUNNING event ends
its recovery (`vm_running` returns the seconds). A VM that ends DONE is no longer pending;
when the host comes back (MONITORED) the VMs still on it are dropped: they were not
recovered, they never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pending:
    host_id: int
    fault: float


class RecoveryTracker:
    def __init__(self) -> None:
        self._first_failure: dict[int, float] = {}
        self._pending: dict[int, Pending] = {}

    def probe(self, host_id: int, ok: bool, now: float) -> None:
        if ok:
            self._first_failure.pop(host_id, None)
        else:
            self._first_failure.setdefault(host_id, now)

    def host_error(self, host_id: int, vm_ids: list[int], now: float) -> None:
        fault = self._first_failure.get(host_id, now)
        for vm_id in vm_ids:
            self._pending.setdefault(vm_id, Pending(host_id, min(fault, now)))

    def host_back(self, host_id: int, vm_ids_on_it: list[int]) -> None:
        self._first_failure.pop(host_id, None)
        for vm_id in vm_ids_on_it:
            pending = self._pending.get(vm_id)
            if pending is not None and pending.host_id == host_id:
                del self._pending[vm_id]

    def vm_running(self, vm_id: int, now: float) -> float | None:
        pending = self._pending.pop(vm_id, None)
        return None if pending is None else max(0.0, now - pending.fault)

    def vm_done(self, vm_id: int) -> None:
        self._pending.pop(vm_id, None)

    def pending(self) -> dict[int, Pending]:
        return dict(self._pending)
