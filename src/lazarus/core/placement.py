"""Where a VM is placed: history records, host capacity, and the driver's view of a VM.

Capacity is *derived*, never incremented: `reaccount(store, host_id)` recomputes a host's
CPU_USAGE, MEM_USAGE, RUNNING_VMS and VMS from the VMs placed on it (last history record on
that host, in a state that holds capacity). So no sequence of failures, retries or restarts
can make the accounting drift.
"""

from __future__ import annotations

import re

from lazarus.domain.entities import VM, Datastore, History, Host
from lazarus.domain.errors import NoExistsError
from lazarus.domain.states import HistoryAction
from lazarus.domain.transitions import HOLDS_CAPACITY
from lazarus.ports.hypervisor import DiskSpec, VmSpec
from lazarus.ports.store import StoreReader, StoreTx

_DS_REQ = re.compile(r'^\s*ID\s*=\s*"?(\d+)"?\s*$', re.IGNORECASE)


_DEVICE_KEYS = ("SERIAL_SOCKET", "WATCHDOG_MODEL", "PANIC_DEVICE")


def reaccount(store: StoreTx, host_id: int) -> None:
    try:
        host = store.host(host_id)
    except NoExistsError:
        return
    placed = [vm for vm in store.vms(host_id=host_id) if vm.state in HOLDS_CAPACITY]
    share = host.share
    share.cpu_usage = sum(vm.cpu for vm in placed)
    share.mem_usage = sum(vm.memory for vm in placed)
    share.running_vms = len(placed)
    host.vms = [vm.id for vm in placed]
    store.save_host(host)


def open_history(vm: VM, host: Host, ds: Datastore, now: float, action: HistoryAction) -> None:
    """Close the current record (if open) and start one on `host`."""
    close_history(vm, now, action)
    vm.history.append(
        History(
            oid=vm.id,
            seq=len(vm.history),
            hostname=host.name,
            hid=host.id,
            cid=host.cluster_id,
            stime=int(now),
            vm_mad=host.vm_mad,
            tm_mad=ds.tm_mad,
            ds_id=ds.id,
            pstime=int(now),
            uid=vm.uid,
            gid=vm.gid,
        )
    )


def close_history(vm: VM, now: float, action: HistoryAction | None = None) -> None:
    last = vm.last
    if last is not None and last.etime == 0:
        last.etime = int(now)
        if action is not None:
            last.action = action


def previous_host_id(vm: VM) -> int | None:
    return vm.history[-2].hid if len(vm.history) >= 2 else None


def system_datastore(store: StoreReader, vm: VM, host: Host, ds_id: int) -> Datastore:
    """The system datastore for a placement: explicit id, SCHED_DS_REQUIREMENTS = "ID=n",
    or the lowest-id system datastore of the host's cluster."""
    if ds_id < 0:
        # one.vm.allocate files SCHED_* under USER_TEMPLATE (as OpenNebula does)
        requirement = (vm.template.get("SCHED_DS_REQUIREMENTS")
                       or vm.user_template.get("SCHED_DS_REQUIREMENTS") or "")
        match = _DS_REQ.match(requirement)
        if match:
            ds_id = int(match.group(1))
    if ds_id >= 0:
        return store.datastore(ds_id)
    candidates = [
        ds for ds in store.datastores() if ds.type == 1 and host.cluster_id in ds.cluster_ids
    ]
    if not candidates:
        raise NoExistsError(f"No system datastore in cluster {host.cluster_id}")
    return min(candidates, key=lambda ds: ds.id)


def vm_spec(vm: VM, ds: Datastore | None) -> VmSpec:
    """What a driver needs: name one-<id>, CPU/VCPU/MEMORY, file disks (PATH or SOURCE,
    relative paths under the datastore's BASE_PATH), optional SERIAL_FILE ($VMID expands)."""
    base = (ds.base_path if ds else "") or ""

    def resolve(path: str) -> str:
        path = path.replace("$VMID", str(vm.id))
        return path if path.startswith("/") or not base else f"{base.rstrip('/')}/{path}"

    disks = []
    for index, disk in enumerate(vm.template.vectors("DISK")):
        path = disk.get("PATH") or disk.get("SOURCE")
        if not path:
            continue
        disks.append(
            DiskSpec(
                path=resolve(path),
                target=disk.get("TARGET") or f"vd{chr(ord('a') + index)}",
                format=(disk.get("FORMAT") or disk.get("DRIVER") or "raw").lower(),
                readonly=(disk.get("READONLY") or "NO").upper() in ("YES", "TRUE"),
            )
        )
    serial = vm.template.get("SERIAL_FILE") or vm.user_template.get("SERIAL_FILE") or ""
    template = vm.template
    # Device attributes the driver reads (vm.xsd files them under USER_TEMPLATE)
    devices = [k for k in _DEVICE_KEYS if template.get(k) is None and vm.user_template.get(k)]
    if devices:
        template = template.copy()
        for key in devices:
            template.set(key, vm.user_template.get(key) or "")
    socket = template.get("SERIAL_SOCKET")
    if socket:  # like SERIAL_FILE: relative to the datastore, $VMID expanded
        template = template.copy()
        template.set("SERIAL_SOCKET", resolve(socket))
    return VmSpec(
        vm_id=vm.id,
        name=f"one-{vm.id}",
        vcpu=max(1, vm.template.get_int("VCPU", 1)),
        cpu=vm.cpu,
        memory_kib=vm.memory,
        disks=tuple(disks),
        template=template,
        serial_path=resolve(serial) if serial else "",
    )
