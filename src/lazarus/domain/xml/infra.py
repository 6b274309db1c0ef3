"""HOST, DATASTORE, CLUSTER and OPENNEBULA_CONFIGURATION documents (and their pools).

Shapes follow OpenNebula's host.xsd, datastore.xsd, cluster.xsd and
opennebula_configuration.xsd. Integer-typed elements always hold integers: pyone binds the
documents with generated classes and refuses anything else.

Users: the API (host/datastore/cluster info and pool calls, system.config), the hook manager
($TEMPLATE of HOST state hooks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..entities import Cluster, Datastore, Host
from ..secrets import public_datastore, public_host, redact
from .text import NUM, decimal_text, esc, ids_xml, int_text, template_xml
from .vm import PERMISSIONS_XML

# -- HOST ---------------------------------------------------------------------------------------

_CAPACITY = (
    ("FREE_CPU", True), ("FREE_CPU_FORECAST", False), ("FREE_CPU_FORECAST_FAR", False),
    ("FREE_MEMORY", True), ("FREE_MEMORY_FORECAST", False), ("FREE_MEMORY_FORECAST_FAR", False),
    ("USED_CPU", True), ("USED_CPU_FORECAST", False), ("USED_CPU_FORECAST_FAR", False),
    ("USED_MEMORY", True), ("USED_MEMORY_FORECAST", False), ("USED_MEMORY_FORECAST_FAR", False),
)  # fmt: skip
_SYSTEM = (
    ("NETRX", True), ("NETRX_BW", False), ("NETRX_BW_FORECAST", False),
    ("NETRX_BW_FORECAST_FAR", False), ("NETTX", True), ("NETTX_BW", False),
    ("NETTX_BW_FORECAST", False), ("NETTX_BW_FORECAST_FAR", False),
)  # fmt: skip


def _typed(monitoring: Mapping[str, object], spec: Iterable[tuple[str, bool]]) -> str:
    out = []
    for name, is_int in spec:
        raw = monitoring.get(name)
        if raw is None:
            continue
        text = int_text(raw) if is_int else decimal_text(raw)
        if text is not None:
            out.append(f"<{name}>{text}</{name}>")
    return "".join(out)


def _host_monitoring_xml(host: Host) -> str:
    """MONITORING: host.monitoring (flat names) over the monitored values of HOST_SHARE."""
    if not host.monitoring and not host.last_monitored:
        return "<MONITORING/>"
    share = host.share
    values: dict[str, object] = {
        "FREE_CPU": share.free_cpu,
        "FREE_MEMORY": share.free_mem,
        "USED_CPU": share.used_cpu,
        "USED_MEMORY": share.used_mem,
    }
    values.update(host.monitoring)
    stamp = int_text(values.get("TIMESTAMP", int(host.last_monitored)))
    head = f"<TIMESTAMP>{stamp}</TIMESTAMP>" if stamp is not None else ""
    system = _typed(values, _SYSTEM)
    return (
        f"<MONITORING>{head}<ID>{host.id}</ID>"
        f"<CAPACITY>{_typed(values, _CAPACITY)}</CAPACITY>"
        f"{f'<SYSTEM>{system}</SYSTEM>' if system else ''}</MONITORING>"
    )


def _disk(host: Host, name: str) -> str:
    return int_text(host.monitoring.get(name, 0)) or "0"


def host_xml(host: Host) -> str:
    """The HOST document (host.xsd) of one.host.info and of HOST state hooks (secrets masked)."""
    host = public_host(host)
    s = host.share
    vms_thread = int_text(host.template.get("VMS_THREAD") or 1) or "1"
    return (
        f"<HOST><ID>{host.id}</ID><NAME>{esc(host.name)}</NAME><STATE>{NUM[host.state]}</STATE>"
        f"<PREV_STATE>{NUM[host.prev_state]}</PREV_STATE><IM_MAD>{esc(host.im_mad)}</IM_MAD>"
        f"<VM_MAD>{esc(host.vm_mad)}</VM_MAD><CLUSTER_ID>{host.cluster_id}</CLUSTER_ID>"
        f"<CLUSTER>{esc(host.cluster)}</CLUSTER><HOST_SHARE>"
        f"<MEM_USAGE>{s.mem_usage}</MEM_USAGE><CPU_USAGE>{s.cpu_usage}</CPU_USAGE>"
        f"<TOTAL_MEM>{s.total_mem}</TOTAL_MEM><TOTAL_CPU>{s.total_cpu}</TOTAL_CPU>"
        f"<MAX_MEM>{s.max_mem}</MAX_MEM><MAX_CPU>{s.max_cpu}</MAX_CPU>"
        f"<RUNNING_VMS>{s.running_vms}</RUNNING_VMS><VMS_THREAD>{vms_thread}</VMS_THREAD>"
        f"<DATASTORES><DISK_USAGE>0</DISK_USAGE><FREE_DISK>{_disk(host, 'FREE_DISK')}</FREE_DISK>"
        f"<MAX_DISK>{_disk(host, 'MAX_DISK')}</MAX_DISK>"
        f"<USED_DISK>{_disk(host, 'USED_DISK')}</USED_DISK></DATASTORES>"
        f"<PCI_DEVICES/><NUMA_NODES/></HOST_SHARE>{ids_xml('VMS', host.vms)}"
        f"{template_xml('TEMPLATE', host.template)}{_host_monitoring_xml(host)}</HOST>"
    )


def host_pool_xml(hosts: Iterable[Host]) -> str:
    return "<HOST_POOL>" + "".join([host_xml(h) for h in hosts]) + "</HOST_POOL>"


# -- DATASTORE ----------------------------------------------------------------------------------


def datastore_xml(ds: Datastore) -> str:
    """The DATASTORE document (datastore.xsd); host_error reads TEMPLATE/SHARED from it."""
    ds = public_datastore(ds)
    return (
        f"<DATASTORE><ID>{ds.id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
        f"<GNAME>oneadmin</GNAME><NAME>{esc(ds.name)}</NAME>{PERMISSIONS_XML}"
        f"<DS_MAD>{esc(ds.ds_mad)}</DS_MAD><TM_MAD>{esc(ds.tm_mad)}</TM_MAD>"
        f"<BASE_PATH>{esc(ds.base_path)}</BASE_PATH><TYPE>{ds.type}</TYPE>"
        f"<DISK_TYPE>0</DISK_TYPE><STATE>{ds.state}</STATE>{ids_xml('CLUSTERS', ds.cluster_ids)}"
        f"<TOTAL_MB>{ds.total_mb}</TOTAL_MB><FREE_MB>{ds.free_mb}</FREE_MB>"
        f"<USED_MB>{ds.used_mb}</USED_MB><IMAGES/>{template_xml('TEMPLATE', ds.template)}"
        "</DATASTORE>"
    )


def datastore_pool_xml(datastores: Iterable[Datastore]) -> str:
    return "<DATASTORE_POOL>" + "".join([datastore_xml(d) for d in datastores]) + (
        "</DATASTORE_POOL>"
    )


# -- CLUSTER ------------------------------------------------------------------------------------


def cluster_xml(
    cluster: Cluster,
    host_ids: Iterable[int],
    ds_ids: Iterable[int],
    vnet_ids: Iterable[int] = (),
) -> str:
    """The CLUSTER document (cluster.xsd); members are passed in, so the domain stays pure."""
    return (
        f"<CLUSTER><ID>{cluster.id}</ID><NAME>{esc(cluster.name)}</NAME>"
        f"{ids_xml('HOSTS', host_ids)}{ids_xml('DATASTORES', ds_ids)}{ids_xml('VNETS', vnet_ids)}"
        f"{template_xml('TEMPLATE', redact(cluster.template))}</CLUSTER>"
    )


def cluster_members(
    hosts: Iterable[Host], datastores: Iterable[Datastore]
) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """(cluster id -> host ids, cluster id -> datastore ids), ids ascending."""
    host_ids: dict[int, list[int]] = {}
    ds_ids: dict[int, list[int]] = {}
    for host in sorted(hosts, key=lambda h: h.id):
        host_ids.setdefault(host.cluster_id, []).append(host.id)
    for ds in sorted(datastores, key=lambda d: d.id):
        for cid in ds.cluster_ids:
            ds_ids.setdefault(cid, []).append(ds.id)
    return host_ids, ds_ids


def cluster_pool_xml(
    clusters: Iterable[Cluster],
    host_ids: Mapping[int, Sequence[int]],
    ds_ids: Mapping[int, Sequence[int]],
) -> str:
    """<CLUSTER_POOL>; host_ids / ds_ids map a cluster id to its members (see cluster_members)."""
    body = "".join(
        [cluster_xml(c, host_ids.get(c.id, ()), ds_ids.get(c.id, ())) for c in clusters]
    )
    return f"<CLUSTER_POOL>{body}</CLUSTER_POOL>"


# -- OPENNEBULA_CONFIGURATION -------------------------------------------------------------------

# The single-valued top-level elements of opennebula_configuration.xsd, in schema order
# ("i" = xs:integer, "s" = xs:string). The structured ones (DB, VM_MAD, ...) are not offered.
_CONFIG_SPEC = (
    "ACTION_TIMEOUT i", "API_LIST_ORDER s", "CLUSTER_ENCRYPTED_ATTR s", "COLD_MIGRATE_MODE i",
    "CONTEXT_ALLOW_ETH_UPDATES s", "CONTEXT_RESTRICTED_DIRS s", "CONTEXT_SAFE_DIRS s",
    "DATASTORE_CAPACITY_CHECK s", "DATASTORE_ENCRYPTED_ATTR s", "DATASTORE_LOCATION s",
    "DEFAULT_AUTH s", "DEFAULT_DEVICE_PREFIX s", "DEFAULT_IMAGE_PERSISTENT s",
    "DEFAULT_IMAGE_PERSISTENT_NEW s", "DEFAULT_IMAGE_TYPE s", "DEFAULT_UMASK s",
    "DEFAULT_VDC_CLUSTER_DATASTORE_ACL s", "DEFAULT_VDC_CLUSTER_HOST_ACL s",
    "DEFAULT_VDC_CLUSTER_NET_ACL s", "DEFAULT_VDC_DATASTORE_ACL s", "DEFAULT_VDC_HOST_ACL s",
    "DEFAULT_VDC_VNET_ACL s", "DOCUMENT_ENCRYPTED_ATTR s", "DRS_INTERVAL i",
    "DS_MONITOR_VM_DISK i", "GROUP_RESTRICTED_ATTR s", "GRPC_LISTEN_ADDRESS s", "GRPC_PORT i",
    "HOST_ENCRYPTED_ATTR s", "IMAGE_ENCRYPTED_ATTR s", "IMAGE_RESTRICTED_ATTR s",
    "INHERIT_DATASTORE_ATTR s", "INHERIT_IMAGE_ATTR s", "INHERIT_VNET_ATTR s",
    "KEEPALIVE_MAX_CONN i", "KEEPALIVE_TIMEOUT i", "LISTEN_ADDRESS s", "LIVE_RESCHEDS i",
    "LOG_CALL_FORMAT s", "LOG_RESULT_LENGTH i", "MAC_GLOBAL_SPACE s", "MAC_PREFIX s",
    "MANAGER_TIMER i", "MAX_ACTIONS_PER_CLUSTER i", "MAX_ACTIONS_PER_HOST i", "MAX_BACKUPS i",
    "MAX_BACKUPS_HOST i", "MAX_CONN i", "MAX_CONN_BACKLOG i", "MESSAGE_SIZE i",
    "MONITORING_INTERVAL_DATASTORE i", "MONITORING_INTERVAL_HOST i",
    "MONITORING_INTERVAL_MARKET i", "MONITORING_INTERVAL_VM i", "NETWORK_SIZE i", "ONE_KEY s",
    "PCI_PASSTHROUGH_BUS s", "PORT i", "RPC_LOG s", "SCHED_MAX_WND_LENGTH s",
    "SCHED_MAX_WND_TIME s", "SCHED_RETRY_TIME s", "SCRIPTS_REMOTE_DIR s",
    "SESSION_EXPIRATION_TIME i", "SHOWBACK_ONLY_RUNNING s", "TIMEOUT i", "USER_ENCRYPTED_ATTR s",
    "USER_RESTRICTED_ATTR s", "VM_ADMIN_OPERATIONS s", "VM_ENCRYPTED_ATTR s",
    "VM_MANAGE_OPERATIONS s", "VM_RESTRICTED_ATTR s", "VM_SNAPSHOT_FACTOR s",
    "VM_USE_OPERATIONS s", "VNET_ENCRYPTED_ATTR s", "VNET_RESTRICTED_ATTR s",
)  # fmt: skip
_CONFIG = {spec.split()[0]: (pos, spec.endswith(" i")) for pos, spec in enumerate(_CONFIG_SPEC)}
CONFIG_KEYS = frozenset(_CONFIG)
"""The settings config_xml can publish; others are left out (the XSD has no place for them)."""


def config_xml(settings: Mapping[str, str | int | float]) -> str:
    """<OPENNEBULA_CONFIGURATION>, flat, in schema order (one.system.config).

    host_error.rb reads MONITORING_INTERVAL_HOST from it. Names are case-insensitive; names
    outside CONFIG_KEYS are skipped. A non-integral value for an integer element raises
    ValueError (a configuration bug, better loud than a document pyone cannot bind).
    """
    placed: list[tuple[int, str]] = []
    for key, value in settings.items():
        name = key.upper()
        spec = _CONFIG.get(name)
        if spec is None:
            continue
        pos, is_int = spec
        if is_int:
            text = int_text(value)
            if text is None:
                raise ValueError(f"{name} must be an integer, not {value!r}")
        else:
            text = esc(str(value))
        placed.append((pos, f"<{name}>{text}</{name}>"))
    placed.sort(key=lambda p: p[0])
    body = "".join([xml for _, xml in placed])
    return f"<OPENNEBULA_CONFIGURATION>{body}</OPENNEBULA_CONFIGURATION>"


def host_monitoring_xml(host: Host) -> str:
    """The host's current <MONITORING> element: one record of one.host.monitoring."""
    return _host_monitoring_xml(host)
