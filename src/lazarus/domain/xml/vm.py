"""VM documents: `one.vm.info` (full), `one.vmpool.info` (short) and `one.vmpool.infoextended`.

Shapes follow OpenNebula's vm.xsd, vm_pool.xsd and vm_pool_extended.xsd.
The VM TEMPLATE is not free-form in vm.xsd: it is a sequence of known attributes in a fixed
order, with TM_MAD_SYSTEM and VMID required. OpenNebula keeps every other attribute in the
USER_TEMPLATE. `split_vm_template` does that split (the API uses it on allocate); the renderer
applies the same rule, so an attribute the XSD does not allow in TEMPLATE is shown in
USER_TEMPLATE rather than making the document invalid for strict clients such as pyone.

Users: the API (vm.info, vmpool.info*), the hook manager ($TEMPLATE of VM state hooks).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

from ..entities import VM, History
from ..secrets import public_vm
from ..template import Template, Value, Vector
from .text import (
    NUM,
    Entry,
    attribute_xml,
    cdata,
    decimal_text,
    entries_xml,
    esc,
    int_text,
    items_xml,
    vector_xml,
)

# -- the VM TEMPLATE of vm.xsd ----------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    """A typed vector of vm.xsd: its children in order, which must be present, which are ints."""

    order: tuple[str, ...]
    required: frozenset[str] = frozenset()
    ints: frozenset[str] = frozenset()

    def fits(self, vector: Vector) -> bool:
        keys = [k for k, _ in vector.pairs]
        if len(set(keys)) != len(keys) or not set(keys) <= set(self.order):
            return False
        if not self.required <= set(keys):
            return False
        return all(int_text(v) is not None for k, v in vector.pairs if k in self.ints)

    def pairs(self, vector: Vector) -> list[tuple[str, str]]:
        index = {name: i for i, name in enumerate(self.order)}
        out = sorted(vector.pairs, key=lambda p: index[p[0]])
        return [(k, int_text(v) or v) if k in self.ints else (k, v) for k, v in out]


_STR = "string"  # xs:string: a single value, no children
_ANY = "any"  # untyped element: a value or a vector
_VEC = "vector"  # children only (NIC, NIC_ALIAS)

_SCHED_ACTION = _Shape(
    ("ID", "PARENT_ID", "TYPE", "ACTION", "ARGS", "TIME", "REPEAT", "DAYS", "END_TYPE",
     "END_VALUE", "DONE", "MESSAGE", "WARNING"),
    required=frozenset(("ID", "PARENT_ID", "TYPE", "ACTION", "ARGS", "TIME", "REPEAT", "DAYS",
                        "END_TYPE", "END_VALUE", "DONE", "MESSAGE", "WARNING")),
    ints=frozenset(("ID", "PARENT_ID", "REPEAT", "END_TYPE", "END_VALUE", "DONE", "WARNING")),
)  # fmt: skip

# (name, kind, repeatable), in vm.xsd order
_VM_TEMPLATE_SPEC: tuple[tuple[str, str | _Shape, bool], ...] = (
    ("AUTOMATIC_DS_REQUIREMENTS", _STR, False),
    ("AUTOMATIC_NIC_REQUIREMENTS", _STR, False),
    ("AUTOMATIC_REQUIREMENTS", _STR, False),
    ("CLONING_TEMPLATE_ID", _STR, False),
    ("CONTEXT", _ANY, False),
    ("CPU", _STR, False),
    ("CPU_COST", _STR, False),
    ("DISK", _ANY, True),
    ("DISK_COST", _STR, False),
    ("EMULATOR", _STR, False),
    ("FEATURES", _ANY, False),
    ("HYPERV_OPTIONS", _ANY, False),
    ("GRAPHICS", _ANY, False),
    ("VIDEO", _Shape(("TYPE", "IOMMU", "ATS", "VRAM", "RESOLUTION"), ints=frozenset(["VRAM"])),
     False),
    ("IMPORTED", _STR, False),
    ("INPUT", _ANY, False),
    ("MEMORY", _STR, False),
    ("MEMORY_COST", _STR, False),
    ("MEMORY_MAX", _STR, False),
    ("MEMORY_SLOTS", _STR, False),
    ("MEMORY_RESIZE_MODE", _STR, False),
    ("NIC", _VEC, True),
    ("NIC_ALIAS", _VEC, True),
    ("NIC_DEFAULT", _ANY, False),
    ("NUMA_NODE", _ANY, False),
    ("OS", _ANY, False),
    ("PCI", _ANY, True),
    ("QEMU_GA_EXEC", _Shape(("COMMAND", "PID", "RETURN_CODE", "STATUS", "STDERR", "STDIN",
                             "STDOUT")), False),
    ("RAW", _ANY, False),
    ("SECURITY_GROUP_RULE", _ANY, True),
    ("SNAPSHOT", _Shape(("ACTION", "ACTIVE", "HYPERVISOR_ID", "NAME", "SNAPSHOT_ID",
                         "SYSTEM_DISK_SIZE", "TIME"),
                        required=frozenset(("HYPERVISOR_ID", "NAME", "SNAPSHOT_ID",
                                            "SYSTEM_DISK_SIZE", "TIME"))), True),
    ("SPICE_OPTIONS", _ANY, False),
    ("SUBMIT_ON_HOLD", _STR, False),
    ("TEMPLATE_ID", _STR, False),
    ("TM_MAD_SYSTEM", _STR, False),
    ("TOPOLOGY", _ANY, False),
    ("TPM", _Shape(("MODEL",), required=frozenset(["MODEL"])), False),
    ("MEMORY_ENCRYPTION", _Shape(("TYPE",), required=frozenset(["TYPE"])), False),
    ("VCPU", _STR, False),
    ("VCPU_MAX", _STR, False),
    ("VMGROUP", _ANY, False),
    ("VMID", _STR, False),
    ("VROUTER_ID", _STR, False),
    ("VROUTER_KEEPALIVED_ID", _STR, False),
    ("VROUTER_KEEPALIVED_PASSWORD", _STR, False),
    ("SCHED_ACTION", _SCHED_ACTION, True),
)  # fmt: skip

_VM_TEMPLATE = {name: (pos, kind, many) for pos, (name, kind, many) in
                enumerate(_VM_TEMPLATE_SPEC)}  # fmt: skip
_POS_TM_MAD_SYSTEM = _VM_TEMPLATE["TM_MAD_SYSTEM"][0]
_POS_VMID = _VM_TEMPLATE["VMID"][0]

VM_TEMPLATE_ATTRIBUTES = frozenset(_VM_TEMPLATE)
"""The attribute names vm.xsd allows in a VM's TEMPLATE; all others belong in USER_TEMPLATE."""


def _place(name: str, value: Value, seen: set[str]) -> tuple[int, str] | None:
    """(position, xml) of an attribute in the VM TEMPLATE, or None if it does not fit there."""
    spec = _VM_TEMPLATE.get(name)
    if spec is None:
        return None
    pos, kind, many = spec
    if not many and name in seen:
        return None
    if kind is _ANY:
        xml = attribute_xml(name, value)
    elif kind is _STR:
        if not isinstance(value, str):
            return None
        xml = f"<{name}>{cdata(value)}</{name}>"
    elif not isinstance(value, Vector):
        return None
    elif kind is _VEC:
        xml = vector_xml(name, value.pairs)
    else:
        assert isinstance(kind, _Shape)
        if not kind.fits(value):
            return None
        xml = vector_xml(name, kind.pairs(value))
    if not many:
        seen.add(name)
    return pos, xml


def split_vm_template(template: Template) -> tuple[Template, Template]:
    """(TEMPLATE, USER_TEMPLATE): the attributes vm.xsd allows in TEMPLATE, and the rest.

    Order is kept within each part. A second occurrence of a single-valued attribute, or an
    attribute of the wrong shape (a vector where the XSD wants a string, a SNAPSHOT missing
    required fields...), goes to the user part.
    """
    system, user = Template(), Template()
    seen: set[str] = set()
    for name, value in template.items:
        (system if _place(name, value, seen) else user).items.append((name, value))
    return system, user


def _vm_template_xml(vm: VM) -> tuple[str, list[tuple[str, Value]]]:
    placed: list[tuple[int, str]] = []
    extra: list[tuple[str, Value]] = []
    seen: set[str] = set()
    for name, value in vm.template.items:
        item = _place(name, value, seen)
        if item is None:
            extra.append((name, value))
        else:
            placed.append(item)
    if "TM_MAD_SYSTEM" not in seen:
        last = vm.history[-1].tm_mad if vm.history else ""
        placed.append((_POS_TM_MAD_SYSTEM, f"<TM_MAD_SYSTEM>{cdata(last)}</TM_MAD_SYSTEM>"))
    if "VMID" not in seen:
        placed.append((_POS_VMID, f"<VMID><![CDATA[{vm.id}]]></VMID>"))
    placed.sort(key=_first)
    return "".join([xml for _, xml in placed]), extra


_first = itemgetter(0)

# -- the short TEMPLATE / USER_TEMPLATE / MONITORING of vm_pool.xsd ------------------------------

_SHORT_DISK = frozenset(("CLONE", "DATASTORE", "DATASTORE_ID", "DISK_ID", "IMAGE", "IMAGE_ID",
                         "IMAGE_STATE", "IMAGE_UNAME", "PERSISTENT", "SIZE", "TARGET", "TYPE"))
_SHORT_NIC = frozenset(("BRIDGE", "EXTERNAL_IP", "IP", "IP6", "IP6_GLOBAL", "IP6_LINK", "IP6_ULA",
                        "MAC", "NETWORK", "NETWORK_ID", "NETWORK_UNAME", "NIC_ID",
                        "SECURITY_GROUPS", "VN_MAD"))
_SHORT_GRAPHICS = frozenset(("LISTEN", "PORT", "TYPE"))
# name -> (position, vector children kept or None for a string-only attribute, repeatable)
_SHORT_TEMPLATE: dict[str, tuple[int, frozenset[str] | None, bool]] = {
    "CPU": (0, None, False),
    "MEMORY": (1, None, False),
    "VCPU": (2, None, False),
    "DISK": (3, _SHORT_DISK, True),
    "NIC": (4, _SHORT_NIC, True),
    "GRAPHICS": (5, _SHORT_GRAPHICS, False),
}
# What OpenNebula keeps of the USER_TEMPLATE in short bodies, plus Lazarus' HA attributes.
_SHORT_USER = frozenset(("LABELS", "ERROR", "SCHED_MESSAGE", "SCHED_RANK", "SCHED_DS_RANK",
                         "SCHED_REQUIREMENTS", "SCHED_DS_REQUIREMENTS", "USER_PRIORITY",
                         "PUBLIC_CLOUD", "HA", "HA_PRIORITY"))
_SHORT_MONITORING = ("CPU", "MEMORY", "STATE")  # fmt: skip


def _short_template_xml(template: Template) -> str:
    placed: list[tuple[int, Entry]] = []
    seen: set[str] = set()
    for name, value in template.items:
        spec = _SHORT_TEMPLATE.get(name)
        if spec is None:
            continue
        pos, keep, many = spec
        if not many:
            if name in seen:
                continue
            seen.add(name)
        if isinstance(value, str):
            if name != "NIC":
                placed.append((pos, (name, value)))
        elif keep is not None:
            placed.append((pos, (name, [p for p in value.pairs if p[0] in keep])))
    if len(placed) > 1:
        placed.sort(key=_first)
    return entries_xml([entry for _, entry in placed])


# -- MONITORING of vm.xsd: known keys only, typed, in order ------------------------------------

_VM_MONITORING_SPEC = (
    "CPU", "CPU_FORECAST", "CPU_FORECAST_FAR", "DISKRDBYTES", "DISKRDBYTES_BW",
    "DISKRDBYTES_BW_FORECAST", "DISKRDBYTES_BW_FORECAST_FAR", "DISKRDIOPS", "DISKRDIOPS_BW",
    "DISKRDIOPS_BW_FORECAST", "DISKRDIOPS_BW_FORECAST_FAR", "DISKWRBYTES", "DISKWRBYTES_BW",
    "DISKWRBYTES_BW_FORECAST", "DISKWRBYTES_BW_FORECAST_FAR", "DISKWRIOPS", "DISKWRIOPS_BW",
    "DISKWRIOPS_BW_FORECAST", "DISKWRIOPS_BW_FORECAST_FAR", "ID", "MEMORY", "MEMORY_FORECAST",
    "MEMORY_FORECAST_FAR", "NETRX", "NETRX_BW", "NETRX_BW_FORECAST", "NETRX_BW_FORECAST_FAR",
    "NETTX", "NETTX_BW", "NETTX_BW_FORECAST", "NETTX_BW_FORECAST_FAR", "TIMESTAMP",
)  # fmt: skip
_VM_MONITORING = {name: pos for pos, name in enumerate(_VM_MONITORING_SPEC)}
_VM_MONITORING_INTS = frozenset(("ID", "TIMESTAMP"))


def _monitoring_xml(monitoring: dict[str, str]) -> str:
    if not monitoring:
        return "<MONITORING/>"
    placed: list[tuple[int, str]] = []
    for name, raw in monitoring.items():
        pos = _VM_MONITORING.get(name)
        if pos is None:
            continue
        text = int_text(raw) if name in _VM_MONITORING_INTS else decimal_text(raw)
        if text is not None:
            placed.append((pos, f"<{name}>{text}</{name}>"))
    placed.sort(key=_first)
    return "<MONITORING>" + "".join([xml for _, xml in placed]) + "</MONITORING>"


# -- HISTORY ------------------------------------------------------------------------------------


def history_xml(h: History) -> str:
    """A full HISTORY record (vm.xsd); PLAN_ID and ACTION_ID (7.x) are always -1."""
    return (
        f"<HISTORY><OID>{h.oid}</OID><SEQ>{h.seq}</SEQ><HOSTNAME>{esc(h.hostname)}</HOSTNAME>"
        f"<HID>{h.hid}</HID><CID>{h.cid}</CID><STIME>{h.stime}</STIME>"
        f"<ETIME>{h.etime}</ETIME><VM_MAD>{esc(h.vm_mad)}</VM_MAD>"
        f"<TM_MAD>{esc(h.tm_mad)}</TM_MAD><DS_ID>{h.ds_id}</DS_ID><PLAN_ID>-1</PLAN_ID>"
        f"<ACTION_ID>-1</ACTION_ID><PSTIME>{h.pstime}</PSTIME><PETIME>{h.petime}</PETIME>"
        f"<RSTIME>{h.rstime}</RSTIME><RETIME>{h.retime}</RETIME>"
        f"<ESTIME>{h.estime}</ESTIME><EETIME>{h.eetime}</EETIME>"
        f"<ACTION>{NUM[h.action]}</ACTION><UID>{h.uid}</UID><GID>{h.gid}</GID>"
        f"<REQUEST_ID>{h.request_id}</REQUEST_ID></HISTORY>"
    )


def _short_history_xml(h: History) -> str:
    return (
        f"<HISTORY><OID>{h.oid}</OID><SEQ>{h.seq}</SEQ><HOSTNAME>{esc(h.hostname)}</HOSTNAME>"
        f"<HID>{h.hid}</HID><CID>{h.cid}</CID><DS_ID>{h.ds_id}</DS_ID>"
        f"<VM_MAD>{esc(h.vm_mad)}</VM_MAD><TM_MAD>{esc(h.tm_mad)}</TM_MAD>"
        f"<ACTION>{NUM[h.action]}</ACTION></HISTORY>"
    )


# -- VM -----------------------------------------------------------------------------------------

# Objects without chmod in Lazarus show OpenNebula's default umask 177 (owner use+manage).
PERMISSIONS_XML = (
    "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
    "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>"
    "<OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
)
_PERM_NAMES = ("OWNER", "GROUP", "OTHER")


def permissions_xml(octal: str) -> str:
    """<PERMISSIONS> of an octal mode such as "600" (use 4, manage 2, admin 1)."""
    if octal == "600":
        return PERMISSIONS_XML
    parts = []
    for who, digit in zip(_PERM_NAMES, octal, strict=True):
        n = int(digit)
        parts.append(
            f"<{who}_U>{n >> 2 & 1}</{who}_U><{who}_M>{n >> 1 & 1}</{who}_M>"
            f"<{who}_A>{n & 1}</{who}_A>"
        )
    return "<PERMISSIONS>" + "".join(parts) + "</PERMISSIONS>"


def _lock_xml(vm: VM) -> str:
    if not vm.lock:
        return ""
    return (
        f"<LOCK><LOCKED>{vm.lock}</LOCKED><OWNER>{vm.uid}</OWNER><TIME>0</TIME>"
        "<REQ_ID>-1</REQ_ID></LOCK>"
    )


def vm_xml(vm: VM) -> str:
    """The full VM document of one.vm.info (vm.xsd), with every history record (secrets
    masked)."""
    vm = public_vm(vm)
    template, extra = _vm_template_xml(vm)
    user = vm.user_template.items
    if extra:
        user = user + extra
    history = "".join([history_xml(h) for h in vm.history])
    return (
        f"<VM><ID>{vm.id}</ID><UID>{vm.uid}</UID><GID>{vm.gid}</GID>"
        f"<UNAME>{esc(vm.uname)}</UNAME><GNAME>{esc(vm.gname)}</GNAME><NAME>{esc(vm.name)}</NAME>"
        f"{permissions_xml(vm.perms)}<LAST_POLL>{vm.last_poll}</LAST_POLL>"
        f"<STATE>{NUM[vm.state]}</STATE><LCM_STATE>{NUM[vm.lcm_state]}</LCM_STATE>"
        f"<PREV_STATE>{NUM[vm.prev_state]}</PREV_STATE>"
        f"<PREV_LCM_STATE>{NUM[vm.prev_lcm_state]}</PREV_LCM_STATE>"
        f"<RESCHED>{NUM[vm.resched]}</RESCHED><STIME>{vm.stime}</STIME><ETIME>{vm.etime}</ETIME>"
        f"<DEPLOY_ID>{esc(vm.deploy_id)}</DEPLOY_ID>{_lock_xml(vm)}"
        f"{_monitoring_xml(vm.monitoring)}<SCHED_ACTIONS/><TEMPLATE>{template}</TEMPLATE>"
        f"<USER_TEMPLATE>{items_xml(user)}</USER_TEMPLATE>"
        f"<HISTORY_RECORDS>{history}</HISTORY_RECORDS>"
        "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS></VM>"
    )


def vm_short_xml(vm: VM) -> str:
    """The short VM body of one.vmpool.info (vm_pool.xsd): only the last history record."""
    vm = public_vm(vm)
    mon = vm.monitoring
    monitoring = (
        "".join([f"<{k}>{cdata(mon[k])}</{k}>" for k in _SHORT_MONITORING if k in mon])
        if mon
        else ""
    )
    user = items_xml([(n, v) for n, v in vm.user_template.items if n in _SHORT_USER])
    last = _short_history_xml(vm.history[-1]) if vm.history else ""
    return (
        f"<VM><ID>{vm.id}</ID><UID>{vm.uid}</UID><GID>{vm.gid}</GID>"
        f"<UNAME>{esc(vm.uname)}</UNAME><GNAME>{esc(vm.gname)}</GNAME><NAME>{esc(vm.name)}</NAME>"
        f"<LAST_POLL>{vm.last_poll}</LAST_POLL><STATE>{NUM[vm.state]}</STATE>"
        f"<LCM_STATE>{NUM[vm.lcm_state]}</LCM_STATE><RESCHED>{NUM[vm.resched]}</RESCHED>"
        f"<STIME>{vm.stime}</STIME><ETIME>{vm.etime}</ETIME>"
        f"<DEPLOY_ID>{esc(vm.deploy_id)}</DEPLOY_ID>{_lock_xml(vm)}"
        f"<TEMPLATE>{_short_template_xml(vm.template)}</TEMPLATE>"
        f"<MONITORING>{monitoring}</MONITORING><USER_TEMPLATE>{user}</USER_TEMPLATE>"
        f"<HISTORY_RECORDS>{last}</HISTORY_RECORDS></VM>"
    )


def vm_pool_xml(vms: Iterable[VM]) -> str:
    """<VM_POOL> of short bodies (one.vmpool.info)."""
    return "<VM_POOL>" + "".join([vm_short_xml(vm) for vm in vms]) + "</VM_POOL>"


def vm_pool_extended_xml(vms: Iterable[VM]) -> str:
    """<VM_POOL> of full bodies (one.vmpool.infoextended, vm_pool_extended.xsd)."""
    return "<VM_POOL>" + "".join([vm_xml(vm) for vm in vms]) + "</VM_POOL>"


def vm_monitoring_xml(vm_id: int, timestamp: int, monitoring: dict[str, str]) -> str:
    """One record of one.vm.monitoring (monitoring_data.xsd MONITORING): the VM's monitored
    values with its ID and the sample's TIMESTAMP."""
    values = dict(monitoring)
    values["ID"] = str(vm_id)
    values["TIMESTAMP"] = str(timestamp)
    return _monitoring_xml(values)


def monitoring_data_xml(bodies: Iterable[str]) -> str:
    """<MONITORING_DATA> of stored <MONITORING> records."""
    return "<MONITORING_DATA>" + "".join(bodies) + "</MONITORING_DATA>"


def accounting_xml(records: Iterable[tuple[History, VM]]) -> str:
    """<HISTORY_RECORDS> of one.vmpool.accounting (acct.xsd): each record with its VM."""
    return (
        "<HISTORY_RECORDS>"
        + "".join(history_xml(h)[: -len("</HISTORY>")] + vm_xml(vm) + "</HISTORY>"
                  for h, vm in records)
        + "</HISTORY_RECORDS>"
    )
