"""Entity <-> JSON body encoding for the store adapters.

Each stored object is one row: a few plain columns the queries filter on (id, name, state, ...)
and a JSON `body` that carries every field, so `decode(encode(x)) == x` for all entities.
Enums are stored as their OpenNebula numbers, templates in `Template.to_json`'s format, a VM's
history as a list of arrays (field order in `_HISTORY_FIELDS`). The row id is authoritative and
is not repeated inside the body.

Bodies are objects keyed by field name (history records: arrays in a fixed, append-only order),
so a field added to an entity later decodes old rows with the dataclass default. The encoders
are written out per entity (no reflection): `vms()` over 10,000 VMs is the hot path of
one.vmpool.info, and this is the cheap way.

Used by store/sql.py for both stores: PostgreSQL keeps the same text in a TEXT column (not
jsonb, which would reorder keys and refuse the \u0000 and lone surrogates a body may hold).
"""

from __future__ import annotations

import json
from typing import Any, cast

from lazarus.domain.entities import (
    VM,
    Cluster,
    Datastore,
    Event,
    EventKind,
    History,
    Host,
    HostShare,
    ObjType,
    User,
)
from lazarus.domain.states import HistoryAction, HostState, LcmState, VmState
from lazarus.domain.template import Template, Vector

# ensure_ascii: a lone surrogate (valid in a Python str, not in UTF-8) must not reach SQLite.
_dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
_loads = json.loads


def _template(data: list[list[Any]]) -> Template:
    """Template.from_json's format, decoded without its per-value str() copies (the JSON here
    was written by Template.to_json, so names and values are already strings): the hot path."""
    return Template(
        [
            (name, Vector([(k, v) for k, v in value["V"]]) if type(value) is dict else value)
            for name, value in data
        ]
    )


# Enum lookups by number: a dict lookup is several times cheaper than calling the enum class.
_HOST_STATES = {int(s): s for s in HostState}
_VM_STATES = {int(s): s for s in VmState}
_LCM_STATES = {int(s): s for s in LcmState}
_ACTIONS = {int(a): a for a in HistoryAction}


# -- hosts ------------------------------------------------------------------------------------
def encode_host(host: Host) -> str:
    return _dumps(
        {
            "name": host.name,
            "state": int(host.state),
            "prev_state": int(host.prev_state),
            "im_mad": host.im_mad,
            "vm_mad": host.vm_mad,
            "cluster_id": host.cluster_id,
            "cluster": host.cluster,
            "share": dict(vars(host.share)),  # flat ints: no asdict deep copy
            "vms": list(host.vms),
            "template": host.template.to_json(),
            "last_monitored": host.last_monitored,
            "monitoring": dict(host.monitoring),
        }
    )


def decode_host(host_id: int, body: str) -> Host:
    d = _loads(body)
    return Host(
        id=host_id,
        name=d["name"],
        state=_HOST_STATES[d["state"]],
        prev_state=_HOST_STATES[d["prev_state"]],
        im_mad=d["im_mad"],
        vm_mad=d["vm_mad"],
        cluster_id=d["cluster_id"],
        cluster=d["cluster"],
        share=HostShare(**d["share"]),
        vms=d["vms"],
        template=_template(d["template"]),
        last_monitored=d["last_monitored"],
        monitoring=d["monitoring"],
    )


# -- VMs --------------------------------------------------------------------------------------
# History records are the bulk of a VM body, so they are stored as arrays in this order (a
# third less JSON to parse than objects). Append new names at the end, never reorder: older
# (shorter) rows then decode with the dataclass defaults for the new fields.
_HISTORY_FIELDS = (
    "oid", "seq", "hostname", "hid", "cid", "stime", "etime", "vm_mad", "tm_mad", "ds_id",
    "pstime", "petime", "rstime", "retime", "estime", "eetime", "action", "uid", "gid",
    "request_id",
)  # fmt: skip


def _encode_history(h: History) -> list[Any]:
    return [
        h.oid, h.seq, h.hostname, h.hid, h.cid, h.stime, h.etime, h.vm_mad, h.tm_mad, h.ds_id,
        h.pstime, h.petime, h.rstime, h.retime, h.estime, h.eetime, int(h.action), h.uid, h.gid,
        h.request_id,
    ]  # fmt: skip


def _decode_history(row: list[Any]) -> History:
    d = dict(zip(_HISTORY_FIELDS, row, strict=False))
    d["action"] = _ACTIONS[d["action"]]
    return History(**d)


def encode_vm(vm: VM) -> str:
    return _dumps(
        {
            "name": vm.name,
            "uid": vm.uid,
            "gid": vm.gid,
            "uname": vm.uname,
            "gname": vm.gname,
            "state": int(vm.state),
            "lcm_state": int(vm.lcm_state),
            "prev_state": int(vm.prev_state),
            "prev_lcm_state": int(vm.prev_lcm_state),
            "resched": vm.resched,
            "stime": vm.stime,
            "etime": vm.etime,
            "deploy_id": vm.deploy_id,
            "last_poll": vm.last_poll,
            "template": vm.template.to_json(),
            "user_template": vm.user_template.to_json(),
            "history": [_encode_history(h) for h in vm.history],
            "lock": vm.lock,
            "monitoring": dict(vm.monitoring),
        }
    )


def decode_vm(vm_id: int, body: str) -> VM:
    d = _loads(body)
    return VM(
        id=vm_id,
        name=d["name"],
        uid=d["uid"],
        gid=d["gid"],
        uname=d["uname"],
        gname=d["gname"],
        state=_VM_STATES[d["state"]],
        lcm_state=_LCM_STATES[d["lcm_state"]],
        prev_state=_VM_STATES[d["prev_state"]],
        prev_lcm_state=_LCM_STATES[d["prev_lcm_state"]],
        resched=d["resched"],
        stime=d["stime"],
        etime=d["etime"],
        deploy_id=d["deploy_id"],
        last_poll=d["last_poll"],
        template=_template(d["template"]),
        user_template=_template(d["user_template"]),
        history=[_decode_history(h) for h in d["history"]],
        lock=d["lock"],
        monitoring=d["monitoring"],
    )


# -- datastores, clusters, users ----------------------------------------------------------------
def encode_datastore(ds: Datastore) -> str:
    return _dumps(
        {
            "name": ds.name,
            "type": ds.type,
            "ds_mad": ds.ds_mad,
            "tm_mad": ds.tm_mad,
            "base_path": ds.base_path,
            "cluster_ids": list(ds.cluster_ids),
            "template": ds.template.to_json(),
            "state": ds.state,
            "total_mb": ds.total_mb,
            "free_mb": ds.free_mb,
            "used_mb": ds.used_mb,
        }
    )


def decode_datastore(ds_id: int, body: str) -> Datastore:
    d = _loads(body)
    d["template"] = _template(d["template"])
    return Datastore(id=ds_id, **d)


def encode_cluster(cluster: Cluster) -> str:
    return _dumps({"name": cluster.name, "template": cluster.template.to_json()})


def decode_cluster(cluster_id: int, body: str) -> Cluster:
    d = _loads(body)
    return Cluster(id=cluster_id, name=d["name"], template=_template(d["template"]))


def encode_user(user: User) -> str:
    return _dumps(
        {
            "name": user.name,
            "password_hash": user.password_hash,
            "gid": user.gid,
            "gname": user.gname,
            "enabled": user.enabled,
        }
    )


def decode_user(user_id: int, body: str) -> User:
    return User(id=user_id, **_loads(body))


# -- events -----------------------------------------------------------------------------------
# Events are rows of plain columns (no body JSON): the outbox and later readers filter on them.
# The kind and object type are stored as their enum values (migration 4, "typed events").
EVENT_COLUMNS = "time, kind, obj, obj_id, state, lcm_state, line, body, flag, value, method"
_EVENT_KINDS = {k.value: k for k in EventKind}
_OBJ_TYPES = {o.value: o for o in ObjType}


def encode_event(event: Event) -> tuple[Any, ...]:
    """The EVENT_COLUMNS values of `event` (its id is the store's)."""
    return (event.time, str(event.kind), str(event.obj), event.obj_id, event.state,
            event.lcm_state, event.line, event.body, event.flag, event.value, event.method)


def decode_event(row: tuple[Any, ...]) -> Event:
    """An Event from (id, *EVENT_COLUMNS). A kind or object type this code does not know
    (written by another writer through the Store port) is handed back as the stored string,
    which no listener matches: the store round-trips what it was given."""
    i, t, kind, obj, obj_id, state, lcm, line, body, flag, value, method = row
    return Event(id=i, time=t, kind=_EVENT_KINDS.get(kind, cast(EventKind, kind)),
                 obj=_OBJ_TYPES.get(obj, cast(ObjType, obj)), obj_id=obj_id, state=state,
                 lcm_state=lcm, line=line, body=body, flag=flag, value=value, method=method)
