"""Hosts, datastores and clusters: the API operations on the inventory, and first-start defaults.

OpenNebula's rules (src/host/Host.cc): enable -> MONITORED when the host was DISABLED and already
has capacity, otherwise INIT; disable -> DISABLED; offline -> OFFLINE with capacity cleared.
Names are unique per kind. A host that still has VMs placed on it cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from lazarus.domain.entities import Cluster, Datastore, EventKind, Host, HostShare
from lazarus.domain.errors import ActionError, AllocateError, RpcApiError
from lazarus.domain.secrets import keep_stored_secrets
from lazarus.domain.states import HostState, HostStatus
from lazarus.domain.template import Template, Vector
from lazarus.domain.transitions import HostEvent, apply_host
from lazarus.ports.clock import Clock

from .journal import Journal

SHARED_TM = {"shared", "qcow2", "ceph", "fs_lvm", "nfs", "dev"}
DS_TYPES = {"SYSTEM_DS": 1, "IMAGE_DS": 0, "FILE_DS": 2}


class Inventory:
    def __init__(self, journal: Journal, clock: Clock, vm_mads: Collection[str]) -> None:
        self.journal = journal
        self.clock = clock
        self.vm_mads = vm_mads
        # Called after a host is created (e.g. the daemon adds a simulated machine for it).
        self.on_host_created: list[Callable[[Host], None]] = []

    # --------------------------------------------------------------------------- hosts
    def allocate_host(self, name: str, im_mad: str, vm_mad: str, cluster_id: int = -1) -> int:
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise AllocateError("Host name must be a non-empty word")
        if vm_mad not in self.vm_mads:
            known = ", ".join(sorted(self.vm_mads))
            raise AllocateError(f"Unknown VM_MAD {vm_mad!r} (this controller has: {known})")
        with self.journal.tx() as t:
            cluster = t.store.cluster(0 if cluster_id < 0 else cluster_id)
            host = t.store.add_host(
                Host(
                    id=-1,
                    name=name,
                    im_mad=im_mad or vm_mad,
                    vm_mad=vm_mad,
                    cluster_id=cluster.id,
                    cluster=cluster.name,
                )
            )
            t.note(host, f"created (VM_MAD={vm_mad}, cluster {cluster.id})", EventKind.CREATED)
        for callback in self.on_host_created:
            callback(host)
        return host.id

    def delete_host(self, host_id: int) -> int:
        with self.journal.tx() as t:
            host = t.store.host(host_id)
            if host.vms:
                raise ActionError(
                    f"Cannot delete host {host.id}: it still has VMs {sorted(host.vms)}"
                )
            t.store.delete_host(host.id)
            t.note(host, "deleted", EventKind.DELETED)
        return host_id

    def set_status(self, host_id: int, status: int) -> int:
        try:
            wanted = HostStatus(status)
        except ValueError:
            raise RpcApiError(f"Wrong status {status}: 0 enable, 1 disable, 2 offline") from None
        event = {
            HostStatus.ENABLED: HostEvent.ENABLE,
            HostStatus.DISABLED: HostEvent.DISABLE,
            HostStatus.OFFLINE: HostEvent.OFFLINE,
        }[wanted]
        with self.journal.tx() as t:
            host = t.store.host(host_id)
            new = apply_host(host.state, event, has_capacity=host.share.total_cpu > 0)
            if new is HostState.OFFLINE:
                share = host.share
                host.share = HostShare(
                    mem_usage=share.mem_usage,
                    cpu_usage=share.cpu_usage,
                    running_vms=share.running_vms,
                )
                for key in ("TOTALCPU", "TOTALMEMORY", "FREECPU", "FREEMEMORY", "USEDCPU",
                            "USEDMEMORY"):
                    host.template.remove(key)
            if not t.host_state(host, new, f"{event.value} requested"):
                t.store.save_host(host)
        return host_id

    def update_host(self, host_id: int, template: Template, append: bool) -> int:
        with self.journal.tx() as t:
            host = t.store.host(host_id)
            # a document read masked and written back keeps its secrets (docs/security.md)
            template = keep_stored_secrets(template, host.template)
            if append:
                host.template.merge(template)
            else:
                keep = [(k, v) for k, v in host.template.items if k == "ERROR"]
                host.template = Template(keep + list(template.items))
            t.store.save_host(host)
            names = ", ".join(dict.fromkeys(name for name, _ in template.items)) or "nothing"
            t.note(host, f"template updated ({'append' if append else 'replace'}: {names})",
                   EventKind.TEMPLATE)
        return host_id

    def rename_host(self, host_id: int, name: str) -> int:
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise ActionError("Host name must be a non-empty word")
        with self.journal.tx() as t:
            other = t.store.host_by_name(name)
            if other is not None and other.id != host_id:
                raise ActionError(f"NAME is already taken by HOST {other.id}.")
            host = t.store.host(host_id)
            old = host.name
            host.name = name
            t.store.save_host(host)
            t.note(host, f"renamed from {old}", EventKind.RENAMED)
        return host_id

    def move_host(self, host_id: int, cluster_id: int) -> int:
        """one.cluster.addhost (and delhost: back to the default cluster 0)."""
        with self.journal.tx() as t:
            cluster = t.store.cluster(cluster_id)
            host = t.store.host(host_id)
            if host.cluster_id != cluster.id:
                host.cluster_id, host.cluster = cluster.id, cluster.name
                t.store.save_host(host)
                t.note(host, f"moved to cluster {cluster.id} {cluster.name}")
        return cluster_id

    def confirm_fenced(self, host_id: int, user: str) -> int:
        """An operator states that the host is powered off (Pacemaker's manual confirmation).
        ft/host_error accepts it instead of a fence for the current failure only."""
        with self.journal.tx() as t:
            host = t.store.host(host_id)
            if host.state is not HostState.ERROR:
                raise ActionError(
                    f"Host {host.id} is {host.state.name}, not ERROR: nothing to confirm"
                )
            stamp = str(int(self.clock.now()))
            host.template.set("FENCE_CONFIRMED", Vector([("TIME", stamp), ("USER", user)]))
            t.store.save_host(host)
            t.note(host, f"operator {user} confirmed the host is powered off",
                   EventKind.FENCE_CONFIRMED)
        return host_id

    # ---------------------------------------------------------------------- datastores
    def allocate_datastore(self, template: Template, cluster_id: int = -1) -> int:
        name = (template.get("NAME") or "").strip()
        if not name:
            raise AllocateError("No NAME in template for Datastore.")
        ds_type = (template.get("TYPE") or "IMAGE_DS").upper()
        if ds_type not in DS_TYPES:
            raise AllocateError(f"Wrong TYPE {ds_type!r}: SYSTEM_DS, IMAGE_DS or FILE_DS")
        tm_mad = (template.get("TM_MAD") or "").strip()
        if not tm_mad:
            raise AllocateError("No TM_MAD in template for Datastore.")
        if template.get("SHARED") is None:
            template.set("SHARED", "YES" if tm_mad in SHARED_TM else "NO")
        body = template.copy()
        body.remove("NAME")
        with self.journal.tx() as t:
            cluster = t.store.cluster(0 if cluster_id < 0 else cluster_id)
            if any(ds.name == name for ds in t.store.datastores()):
                raise AllocateError(f"NAME is already taken by DATASTORE {name}.")
            ds = t.store.add_datastore(
                Datastore(
                    id=-1,
                    name=name,
                    type=DS_TYPES[ds_type],
                    ds_mad=template.get("DS_MAD") or "-",
                    tm_mad=tm_mad,
                    base_path=template.get("BASE_PATH") or "",
                    cluster_ids=[cluster.id],
                    template=body,
                )
            )
            t.note(ds, "created", EventKind.CREATED)
        return ds.id


def bootstrap(journal: Journal, datastore_root: str) -> None:
    """First start: cluster 0 "default" and OpenNebula's three default datastores.

    Deliberate difference: datastore 0 ("system") uses TM_MAD=shared, SHARED=YES, so that
    host_error -m can migrate VMs out of the box; OpenNebula's default is ssh (local)."""
    if journal.store.clusters():
        return  # a read: a restart on a store that refuses writes (full disk) still starts
    with journal.tx() as t:
        if t.store.clusters():
            return
        cluster = t.store.add_cluster(Cluster(id=-1, name="default"))
        defaults = [
            ("system", 1, "-", "shared", "YES"),
            ("default", 0, "fs", "shared", "YES"),
            ("files", 2, "fs", "shared", "YES"),
        ]
        for name, ds_type, ds_mad, tm_mad, shared in defaults:
            ds = t.store.add_datastore(
                Datastore(id=-1, name=name, type=ds_type, ds_mad=ds_mad, tm_mad=tm_mad)
            )
            ds.base_path = f"{datastore_root.rstrip('/')}/{ds.id}"
            ds.template = Template(
                [
                    ("SHARED", shared),
                    ("TM_MAD", tm_mad),
                    ("TYPE", next(k for k, v in DS_TYPES.items() if v == ds_type)),
                    ("BASE_PATH", ds.base_path),
                ]
            )
            t.store.save_datastore(ds)
        t.note(cluster, "bootstrap: default cluster and datastores created", EventKind.CREATED)

