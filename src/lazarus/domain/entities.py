"""The objects Lazarus keeps: hosts, VMs with their history, datastores, clusters, users, events.

Plain mutable dataclasses. The core changes them and hands them to the Store inside one
transaction; the XML renderer (domain/xml/) turns them into OpenNebula's documents. Capacity
units are OpenNebula's: CPU in percent of a core (100 = one core), memory in KiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .states import HistoryAction, HostState, LcmState, VmState
from .template import Template


@dataclass
class HostShare:
    """Capacity accounting of a host (HOST_SHARE). CPU in 1/100 cores, memory in KiB."""

    mem_usage: int = 0  # allocated to VMs by Lazarus
    cpu_usage: int = 0
    total_mem: int = 0  # after reservations
    total_cpu: int = 0
    max_mem: int = 0  # as reported by the hypervisor
    max_cpu: int = 0
    running_vms: int = 0
    # monitored (what the hypervisor says is really used/free)
    free_mem: int = 0
    used_mem: int = 0
    free_cpu: int = 0
    used_cpu: int = 0

    def fits(self, cpu: int, mem: int) -> bool:
        return self.cpu_usage + cpu <= self.total_cpu and self.mem_usage + mem <= self.total_mem


@dataclass
class Host:
    id: int
    name: str
    state: HostState = HostState.INIT
    prev_state: HostState = HostState.INIT
    im_mad: str = "sim"
    vm_mad: str = "sim"
    cluster_id: int = 0
    cluster: str = "default"
    share: HostShare = field(default_factory=HostShare)
    vms: list[int] = field(default_factory=list)
    template: Template = field(default_factory=Template)
    last_monitored: float = 0.0
    monitoring: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"host/{self.id} {self.name}"


@dataclass
class History:
    """One placement of a VM on a host (a HISTORY record)."""

    oid: int
    seq: int
    hostname: str
    hid: int
    cid: int = 0
    stime: int = 0
    etime: int = 0
    vm_mad: str = "sim"
    tm_mad: str = "shared"
    ds_id: int = 0
    pstime: int = 0
    petime: int = 0
    rstime: int = 0
    retime: int = 0
    estime: int = 0
    eetime: int = 0
    action: HistoryAction = HistoryAction.NONE
    uid: int = 0
    gid: int = 0
    request_id: int = -1


@dataclass
class VM:
    id: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    state: VmState = VmState.PENDING
    lcm_state: LcmState = LcmState.LCM_INIT
    prev_state: VmState = VmState.PENDING
    prev_lcm_state: LcmState = LcmState.LCM_INIT
    resched: bool = False
    stime: int = 0
    etime: int = 0
    deploy_id: str = ""
    last_poll: int = 0
    template: Template = field(default_factory=Template)
    user_template: Template = field(default_factory=Template)
    history: list[History] = field(default_factory=list)
    lock: int = 0  # 0 unlocked, 1..4 OpenNebula lock levels
    monitoring: dict[str, str] = field(default_factory=dict)
    perms: str = "600"  # PERMISSIONS as octal owner/group/other (use 4, manage 2, admin 1)

    @property
    def subject(self) -> str:
        return f"vm/{self.id} {self.name}"

    @property
    def last(self) -> History | None:
        return self.history[-1] if self.history else None

    @property
    def host_id(self) -> int | None:
        """The host the VM is placed on (its last history record), if any."""
        return self.history[-1].hid if self.history else None

    @property
    def cpu(self) -> int:
        """Requested CPU in 1/100 cores (CPU = 0.5 -> 50)."""
        return round(self.template.get_float("CPU", 1.0) * 100)

    @property
    def memory(self) -> int:
        """Requested memory in KiB (MEMORY is in MiB in templates)."""
        return self.template.get_int("MEMORY", 128) * 1024

    @property
    def ha_enabled(self) -> bool:
        raw = (self.user_template.get("HA") or self.template.get("HA") or "YES").strip()
        return raw.upper() not in ("NO", "FALSE", "0", "OFF")

    @property
    def ha_priority(self) -> int:
        raw = self.user_template.get("HA_PRIORITY") or self.template.get("HA_PRIORITY")
        try:
            return int(raw) if raw is not None else 0
        except ValueError:
            return 0


@dataclass
class Datastore:
    id: int
    name: str
    type: int = 1  # 0 image, 1 system, 2 file
    ds_mad: str = "-"
    tm_mad: str = "shared"
    base_path: str = ""
    cluster_ids: list[int] = field(default_factory=lambda: [0])
    template: Template = field(default_factory=Template)
    state: int = 0  # 0 ready, 1 disabled
    total_mb: int = 0
    free_mb: int = 0
    used_mb: int = 0

    @property
    def subject(self) -> str:
        return f"datastore/{self.id} {self.name}"

    @property
    def shared(self) -> bool | None:
        """SHARED from the template: True/False, or None when the attribute is missing."""
        raw = self.template.get("SHARED")
        return None if raw is None else raw.strip().upper() == "YES"


@dataclass
class Cluster:
    id: int
    name: str
    template: Template = field(default_factory=Template)

    @property
    def subject(self) -> str:
        return f"cluster/{self.id} {self.name}"


@dataclass
class LoginToken:
    """A login token of one.user.login. Only its sha256 is kept (`digest`); the token itself
    is shown once, as the answer of the login call. `expires` is a Unix time, -1 never."""

    digest: str
    expires: int = -1
    egid: int = -1  # the effective group of sessions with this token (-1: the user's groups)


@dataclass
class User:
    id: int
    name: str
    password_hash: str
    gid: int = 0
    gname: str = "oneadmin"
    enabled: bool = True
    groups: list[int] = field(default_factory=list)  # secondary groups (the primary is gid)
    auth_driver: str = "core"
    template: Template = field(default_factory=Template)
    tokens: list[LoginToken] = field(default_factory=list)

    @property
    def all_groups(self) -> list[int]:
        """The primary group first, then the secondary ones (USER/GROUPS)."""
        return [self.gid, *(g for g in self.groups if g != self.gid)]


@dataclass
class Group:
    id: int
    name: str
    template: Template = field(default_factory=Template)


class EventKind(StrEnum):
    """What an event records. The value is what the store keeps (events.kind).

    Listeners (monitor, scheduler, hook manager, simulator oracles) decide on the kind and the
    other fields, never on the line: the line is output only (logs, timelines, history)."""

    STATE = "state"  # the object entered `state` / `lcm_state` (what state hooks match)
    FLAG = "flag"  # a flag of the object changed: `flag` and its new `value` (RESCHED)
    TEMPLATE = "template"  # the object's template was updated (one.host.update)
    CREATED = "created"
    DELETED = "deleted"
    RENAMED = "renamed"
    FENCE_CONFIRMED = "fence_confirmed"  # an operator confirmed the host is powered off
    NOTE = "note"  # any other fact worth keeping (stale domain, reboot, HA recovery...)
    API_CALL = "api"  # a hooked API call, `method` (what API hooks match); not journalled


class ObjType(StrEnum):
    """The kind of object an event is about; HOST and VM are hook RESOURCE names."""

    NONE = ""
    HOST = "HOST"
    VM = "VM"
    DATASTORE = "DATASTORE"
    CLUSTER = "CLUSTER"
    API = "API"  # API_CALL events


@dataclass
class Event:
    """One recorded fact, written in the same transaction as the change it describes.

    `kind` says what happened, `obj` / `obj_id` to which object (every journalled event names
    one); STATE events carry `state`, `lcm_state` and `body` (the object's XML at that moment,
    for $TEMPLATE); FLAG events `flag` and `value` (and the VM's state); API_CALL events
    `method` and `body` (the call's document, for $API). `line` is the fixed, greppable text
    (e.g. "host/3 node3: MONITORED => ERROR (3 missed probes)"): logged and shown, never read
    for meaning. A VM's state event also names the host the VM is placed on (`host_id`, in
    memory only: the monitor uses it to know whose probe may be out of date).
    """

    kind: EventKind
    line: str
    obj: ObjType = ObjType.NONE
    obj_id: int = -1
    state: str = ""
    lcm_state: str = ""
    body: str = ""
    id: int = 0
    time: float = 0.0
    host_id: int = -1
    flag: str = ""
    value: str = ""
    method: str = ""


@dataclass
class VmTemplate:
    """A VM template (one.template.*): what one.template.instantiate makes a VM of."""

    id: int
    name: str
    uid: int = 0
    gid: int = 0
    uname: str = "oneadmin"
    gname: str = "oneadmin"
    perms: str = "600"
    regtime: int = 0
    template: Template = field(default_factory=Template)
