"""Which right every API method needs, and the check the Dispatcher runs before each handler.

`RIGHTS` maps each method name to a `Need`: the object type, the operation (USE, MANAGE,
ADMIN, CREATE, as oned's Request classes set `auth_object`/`auth_op`), and where the object
id is among the parameters. `Authorizer.__call__(ctx, params)` is the Dispatcher's
authorization hook (api/xmlrpc.py): members of the oneadmin group pass; anybody else is
checked with domain/acl.py against the object (its owner, group, permissions, cluster, read
from the store) and the ACL rules. A refusal is AUTHORIZATION (0x200) with oned's text; an id
that does not exist is NO_EXISTS (0x400) first, as oned answers. A method missing from the
table is refused to everybody but the oneadmin group: a new method is closed until it is
given a row here (tests/unit/test_rights.py checks every registered method has one).

Pools (`pool=True`) need no right to call: the handler lists what the caller may USE
(`Authorizer.visible`), as oned filters its pools by the ACL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lazarus.domain import acl
from lazarus.domain.acl import ADMIN, CREATE, MANAGE, USE, ObjectAuth, Permissions
from lazarus.domain.entities import VM, Datastore, Host, User
from lazarus.domain.errors import AuthorizationError, LockedError, NoExistsError
from lazarus.ports.store import StoreReader

from .xmlrpc import CallContext

T = TypeVar("T")

OpOf = Callable[[Sequence[object]], int]


@dataclass(frozen=True)
class Need:
    obj: str  # acl.OBJECT_TYPES key
    op: int | OpOf = USE
    id_at: int | None = None  # index of the object id among the parameters after the session
    pool: bool = False  # the handler filters; no right needed to call
    self_ok: bool = False  # a user may do this to itself (USER methods; id -1 = oneself)
    open: bool = False  # any authenticated user (system.version, system.config)


# oned.conf's defaults: VM_ADMIN_OPERATIONS, VM_MANAGE_OPERATIONS (VM_USE_OPERATIONS is empty)
VM_ADMIN_ACTIONS = frozenset(
    {"migrate", "delete", "recover", "retry", "deploy", "resched", "unresched"}
)


def _vm_action_op(params: Sequence[object]) -> int:
    return ADMIN if str(params[0]) in VM_ADMIN_ACTIONS else MANAGE


def _recover_op(params: Sequence[object]) -> int:
    return ADMIN


def _pool(obj: str) -> Need:
    return Need(obj, USE, pool=True)


RIGHTS: dict[str, Need] = {
    "one.system.version": Need("ZONE", open=True),
    "one.system.config": Need("ZONE", open=True),
    # hosts
    "one.hostpool.info": _pool("HOST"),
    "one.host.info": Need("HOST", USE, 0),
    "one.host.allocate": Need("HOST", CREATE),
    "one.host.delete": Need("HOST", ADMIN, 0),
    "one.host.status": Need("HOST", ADMIN, 0),
    "one.host.update": Need("HOST", ADMIN, 0),
    "one.host.rename": Need("HOST", ADMIN, 0),
    "lazarus.host.fenced": Need("HOST", ADMIN, 0),
    "lazarus.host.fencecreds": Need("HOST", ADMIN, 0),
    # VMs
    "one.vmpool.info": _pool("VM"),
    "one.vmpool.infoextended": _pool("VM"),
    "one.vm.info": Need("VM", USE, 0),
    "one.vm.allocate": Need("VM", CREATE),
    "one.vm.action": Need("VM", _vm_action_op, 1),
    "one.vm.deploy": Need("VM", ADMIN, 0),
    "one.vm.migrate": Need("VM", ADMIN, 0),
    "one.vm.recover": Need("VM", _recover_op, 0),
    "one.vm.update": Need("VM", MANAGE, 0),
    "one.vm.rename": Need("VM", MANAGE, 0),
    "one.vm.lock": Need("VM", MANAGE, 0),
    "one.vm.unlock": Need("VM", MANAGE, 0),
    "one.vm.chown": Need("VM", MANAGE, 0),  # + MANAGE on the new user, USE on the group
    "one.vm.chmod": Need("VM", MANAGE, 0),  # ADMIN to change an ADMIN bit
    "one.vm.resize": Need("VM", MANAGE, 0),
    # monitoring records, accounting (api/monitoring.py)
    "one.host.monitoring": Need("HOST", USE, 0),
    "one.hostpool.monitoring": _pool("HOST"),
    "one.vm.monitoring": Need("VM", USE, 0),
    "one.vmpool.monitoring": _pool("VM"),
    "one.vmpool.accounting": _pool("VM"),
    # VM templates, zones, clusters' hosts, empty pools (api/templates.py)
    "one.template.allocate": Need("TEMPLATE", CREATE),
    "one.template.info": Need("TEMPLATE", USE, 0),
    "one.template.update": Need("TEMPLATE", MANAGE, 0),
    "one.template.rename": Need("TEMPLATE", MANAGE, 0),
    "one.template.delete": Need("TEMPLATE", MANAGE, 0),
    "one.template.clone": Need("TEMPLATE", CREATE),  # + USE on the source (handler)
    "one.template.instantiate": Need("TEMPLATE", USE, 0),  # + VM CREATE (handler)
    "one.templatepool.info": _pool("TEMPLATE"),
    "one.zone.info": Need("ZONE", USE),
    "one.zonepool.info": Need("ZONE", USE),
    "one.cluster.addhost": Need("CLUSTER", ADMIN, 0),  # + HOST ADMIN (handler)
    "one.cluster.delhost": Need("CLUSTER", ADMIN, 0),
    **{
        method: _pool(obj)
        for method, obj in (
            ("one.vnpool.info", "NET"),
            ("one.imagepool.info", "IMAGE"),
            ("one.vmgrouppool.info", "VMGROUP"),
            ("one.secgrouppool.info", "SECGROUP"),
            ("one.vrouterpool.info", "VROUTER"),
            ("one.marketpool.info", "MARKETPLACE"),
            ("one.marketapppool.info", "MARKETPLACEAPP"),
            ("one.vdcpool.info", "VDC"),
            ("one.documentpool.info", "DOCUMENT"),
            ("one.vntemplatepool.info", "VNTEMPLATE"),
            ("one.backupjobpool.info", "BACKUPJOB"),
        )
    },
    # datastores, clusters
    "one.datastorepool.info": _pool("DATASTORE"),
    "one.datastore.info": Need("DATASTORE", USE, 0),
    "one.datastore.allocate": Need("DATASTORE", CREATE),
    "one.cluster.info": Need("CLUSTER", USE, 0),
    "one.clusterpool.info": _pool("CLUSTER"),
    # hooks
    "one.hook.allocate": Need("HOOK", CREATE),
    "one.hook.info": Need("HOOK", USE, 0),
    "one.hook.delete": Need("HOOK", MANAGE, 0),
    "one.hook.update": Need("HOOK", MANAGE, 0),
    "one.hook.rename": Need("HOOK", MANAGE, 0),
    "one.hook.lock": Need("HOOK", MANAGE, 0),
    "one.hook.unlock": Need("HOOK", MANAGE, 0),
    "one.hook.retry": Need("HOOK", MANAGE, 0),
    "one.hookpool.info": _pool("HOOK"),
    "one.hooklog.info": Need("HOOK", USE),
    # users, groups, ACL
    "one.user.allocate": Need("USER", CREATE),
    "one.user.info": Need("USER", USE, 0, self_ok=True),
    "one.user.passwd": Need("USER", MANAGE, 0, self_ok=True),
    "one.user.login": Need("USER", MANAGE, self_ok=True),  # the user is a name: handler
    "one.user.update": Need("USER", MANAGE, 0, self_ok=True),
    "one.user.delete": Need("USER", ADMIN, 0),
    "one.user.chgrp": Need("USER", MANAGE, 0),
    "one.user.addgroup": Need("USER", MANAGE, 0),
    "one.user.delgroup": Need("USER", MANAGE, 0),
    "one.userpool.info": _pool("USER"),
    "one.group.allocate": Need("GROUP", CREATE),
    "one.group.info": Need("GROUP", USE, 0),
    "one.group.update": Need("GROUP", MANAGE, 0),
    "one.group.delete": Need("GROUP", ADMIN, 0),
    "one.grouppool.info": _pool("GROUP"),
    "one.acl.info": Need("ACL", USE),
    "one.acl.addrule": Need("ACL", MANAGE),
    "one.acl.delrule": Need("ACL", MANAGE),
    # the simulated cluster (app/sim_api.py): operating hosts, reading a VM's domain
    "lazarus.sim.power": Need("HOST", ADMIN),
    "lazarus.sim.network": Need("HOST", ADMIN),
    "lazarus.sim.hang": Need("HOST", ADMIN),
    "lazarus.sim.running": Need("VM", USE, 0),
}

OP_NAMES = {USE: "USE", MANAGE: "MANAGE", ADMIN: "ADMIN", CREATE: "CREATE"}
_NO_PERMS = Permissions(0, 0, 0, 0, 0, 0, 0, 0, 0)
DATASTORE_PERMS = Permissions(1, 1, 0, 1, 0, 0, 0, 0, 0)  # oned's datastores: UM- U-- ---
OWNED_PERMS = Permissions(1, 1, 0, 0, 0, 0, 0, 0, 0)  # umask 177: UM- --- ---


def vm_auth(vm: VM) -> ObjectAuth:
    cids = (vm.last.cid,) if vm.last is not None else ()
    perms = Permissions.from_octal(vm.perms) if vm.perms else OWNED_PERMS
    return ObjectAuth("VM", vm.id, vm.uid, vm.gid, cids, perms, vm.lock)


def host_auth(host: Host) -> ObjectAuth:
    return ObjectAuth("HOST", host.id, -1, -1, (host.cluster_id,), _NO_PERMS)


def datastore_auth(ds: Datastore) -> ObjectAuth:
    return ObjectAuth("DATASTORE", ds.id, 0, 0, tuple(ds.cluster_ids), DATASTORE_PERMS)


def user_auth(user: User) -> ObjectAuth:
    return ObjectAuth("USER", user.id, -1, user.gid, (), _NO_PERMS)


def group_auth(gid: int) -> ObjectAuth:
    """A group as oned sees it for authorization: its members may USE it (group bit U)."""
    return ObjectAuth("GROUP", gid, -1, gid, (), Permissions(0, 0, 0, 1, 0, 0, 0, 0, 0))


def plain_auth(obj_type: str, oid: int) -> ObjectAuth:
    """Objects without owner, group or cluster: clusters, groups, hooks (oned's uid -1)."""
    return ObjectAuth(obj_type, oid, -1, -1, (), _NO_PERMS)


def refusal(user: User, op: int, obj: ObjectAuth) -> AuthorizationError:
    target = f" [{obj.oid}]" if obj.oid >= 0 else ""
    return AuthorizationError(
        f"User [{user.id}] : Not authorized to perform {OP_NAMES.get(op, op)} "
        f"{obj.obj_type}{target}."
    )


# Calls a lock never refuses: reads, and the lock calls themselves (oned's behaviour).
LOCK_EXEMPT = frozenset(
    {"one.vm.info", "one.vm.monitoring", "one.vm.lock", "one.vm.unlock", "lazarus.sim.running"}
)


class Authorizer:
    """The Dispatcher's authorization hook over a store (ports/store.py) and a hook store."""

    def __init__(
        self,
        store: StoreReader,
        hook_exists: Callable[[int], object] | None = None,
        rights: dict[str, Need] | None = None,
    ) -> None:
        self.store = store
        self._hook_exists = hook_exists
        self.rights = RIGHTS if rights is None else rights

    def __call__(self, ctx: CallContext, params: Sequence[object]) -> None:
        user = ctx.user
        need = self.rights.get(ctx.method)
        if acl.is_admin(user.all_groups):
            if need is not None and need.obj == "VM":
                self._lock_check(ctx.method, need, params, None)  # locks bind oneadmin too
            return
        if need is None:
            raise AuthorizationError(
                f"User [{user.id}] : Not authorized to call {ctx.method}: only the oneadmin "
                "group may."
            )
        if need.open or need.pool:
            return
        op = need.op(params) if callable(need.op) else need.op
        oid = -1
        if need.id_at is not None and need.id_at < len(params):
            raw = params[need.id_at]
            oid = raw if isinstance(raw, int) and not isinstance(raw, bool) else -1
        if need.self_ok and oid in (-1, user.id):
            return  # oneself (one.user.login has no id: its handler checks the name)
        if ctx.method == "one.group.info" and oid == -1:
            return  # one's own primary group

        obj = self.object(need.obj, oid) if need.id_at is not None else ObjectAuth(need.obj)
        self.require(user, op, obj)
        self._lock_check(ctx.method, need, params, obj)

    def _lock_check(
        self, method: str, need: Need, params: Sequence[object], obj: ObjectAuth | None
    ) -> None:
        """A locked VM refuses the operations its level covers (LOCKED, 0x8000)."""
        if method in LOCK_EXEMPT or need.id_at is None or need.id_at >= len(params):
            return
        if obj is None:
            raw = params[need.id_at]
            if not isinstance(raw, int) or isinstance(raw, bool):
                return
            try:
                obj = self.object(need.obj, raw)
            except NoExistsError:
                return  # the handler answers NO_EXISTS
        op = need.op(params) if callable(need.op) else need.op
        if acl.lock_refuses(obj.locked, op):
            raise LockedError(f"The resource {need.obj.lower()} is locked. [{obj.oid}].", obj.oid)

    def lane(self, user: User, lane: str) -> str:
        """The HA lane (X-Lazarus-Lane: ha, app/runtime.py) is for the oneadmin group and the
        HA role's group; anybody else's calls run in the normal lane."""
        if lane != "ha":
            return lane
        groups = set(user.all_groups)
        if acl.ONEADMIN_GID in groups:
            return lane
        ha = self.store.group_by_name("ha")
        return lane if ha is not None and ha.id in groups else ""

    def require(self, user: User, op: int, obj: ObjectAuth) -> None:
        if not self.allowed(user, op, obj):
            raise refusal(user, op, obj)

    def allowed(self, user: User, op: int, obj: ObjectAuth) -> bool:
        groups = user.all_groups
        if acl.is_admin(groups):
            return True
        return acl.authorize(user.id, groups, obj, op, self.store.acl_rules())

    def object(self, obj_type: str, oid: int) -> ObjectAuth:
        """The object's ObjectAuth; NoExistsError (oned's text) for an unknown id."""
        store = self.store
        if obj_type == "VM":
            return vm_auth(store.vm(oid))
        if obj_type == "HOST":
            return host_auth(store.host(oid))
        if obj_type == "DATASTORE":
            return datastore_auth(store.datastore(oid))
        if obj_type == "CLUSTER":
            store.cluster(oid)
        elif obj_type == "USER":
            return user_auth(store.user(oid))
        elif obj_type == "GROUP":
            return group_auth(store.group(oid).id)
        elif obj_type == "TEMPLATE":
            t = store.vm_template(oid)
            return ObjectAuth("TEMPLATE", t.id, t.uid, t.gid, (), Permissions.from_octal(t.perms))
        elif obj_type == "HOOK" and self._hook_exists is not None:
            self._hook_exists(oid)
        return plain_auth(obj_type, oid)

    def visible(
        self, user: User, items: Iterable[T], auth_of: Callable[[T], ObjectAuth]
    ) -> list[T]:
        """The items the user may USE (all of them for the oneadmin group)."""
        groups = user.all_groups
        if acl.is_admin(groups):
            return list(items)
        rules = self.store.acl_rules()
        return [i for i in items if acl.authorize(user.id, groups, auth_of(i), USE, rules)]


def admin_only(ctx: CallContext) -> bool:
    return acl.is_admin(ctx.user.all_groups)
