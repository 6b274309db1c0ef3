"""The one.* methods: OpenNebula's API names bound to the controller core.

Reads (`*.info`, pools) run in the caller's thread straight from the store: it serves
concurrent readers, so one.vm.info scales with HTTP threads. Writes go through `run`, which
executes the core call on the controller's loop thread (app/runtime.py) and returns its
result or raises its error, so the core never sees two writers at once. In the simulator and
in tests `run` simply calls the function (we are already on the loop).

Every handler takes `ctx` first (the Dispatcher fills it) and the parameters after the
session, with the signatures and defaults oned registers (e.g. one.vm.recover "A:sii").
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from defusedxml import ElementTree as SafeET

from lazarus import ONE_VERSION
from lazarus.core.controller import Controller
from lazarus.domain import xml as docs
from lazarus.domain.acl import ADMIN, MANAGE, USE, Permissions, is_admin
from lazarus.domain.entities import VM
from lazarus.domain.errors import (
    ActionError,
    AllocateError,
    ApiError,
    AuthorizationError,
    InternalError,
    RpcApiError,
    TemplateSyntaxError,
)
from lazarus.domain.states import VmState
from lazarus.domain.template import Template
from lazarus.domain.transitions import VM_ACTIONS as ACTION_TABLE

from . import search, validation
from .rights import (
    Authorizer,
    datastore_auth,
    group_auth,
    host_auth,
    plain_auth,
    user_auth,
    vm_auth,
)
from .xmlrpc import CallContext, Registry

T = TypeVar("T")

_HA_WORDS = ("YES", "NO", "TRUE", "FALSE", "1", "0", "ON", "OFF")
# The actions one.vm.action accepts: every row of the state table but deploy (own method).
VM_ACTIONS = frozenset(ACTION_TABLE) - {"deploy"}


class Runner(Protocol):
    def __call__(self, fn: Callable[[], T]) -> T: ...


def direct(fn: Callable[[], T]) -> T:
    """A Runner for callers already on the controller's loop thread (simulator, tests)."""
    return fn()


def parse_template(
    text: str, error: type[ApiError] = AllocateError, kind: str = "", existing: int = 0
) -> Template:
    """A template parameter: OpenNebula syntax, or XML (pyone sends nested dicts as XML).

    Bounded first (api/validation.py); with a `kind` ("vm", "host", ...) its numbers, names
    and addresses are checked too (`existing`: attributes an append adds to)."""
    validation.check_text(text, error)
    template = _parse(text, error)
    if kind:
        validation.check_template(template, kind, error, existing)
    return template


def _parse(text: str, error: type[ApiError]) -> Template:
    try:
        if text.lstrip().startswith("<"):
            try:
                root = SafeET.fromstring(text)
            except Exception as exc:  # defusedxml raises several types; all mean "bad input"
                raise TemplateSyntaxError(f"malformed XML template: {exc}") from exc
            return docs.template_from_element(root)
        return Template.parse(text)
    except TemplateSyntaxError as exc:
        prefix = "Error parsing template" if error is AllocateError else "Cannot parse template"
        raise error(f"{prefix}: {exc}") from exc


class Api:
    """The method table. `register(registry)` binds it to the XML-RPC dispatcher."""

    def __init__(
        self,
        controller: Controller,
        run: Runner = direct,
        fence_key: str | None = None,
        rights: Authorizer | None = None,
    ) -> None:
        self.c = controller
        self.store = controller.store
        self.run = run
        self._fence_key = fence_key  # lazarus.host.fencecreds: None serves nobody
        # Pools list what the caller may USE (api/rights.py); None: everything (tests)
        self.rights = rights

    def _everything(self, ctx: CallContext) -> bool:
        return self.rights is None or is_admin(ctx.user.all_groups)

    # ----------------------------------------------------------------------- system
    def system_version(self, ctx: CallContext) -> str:
        return ONE_VERSION

    def system_config(self, ctx: CallContext) -> str:
        return docs.config_xml(self.c.settings.to_config())

    # ------------------------------------------------------------------------ hosts
    def hostpool_info(self, ctx: CallContext, *_filters: int) -> str:
        hosts = self.store.hosts()
        if self.rights is not None:
            hosts = self.rights.visible(ctx.user, hosts, host_auth)
        return docs.host_pool_xml(hosts)  # secrets masked by the renderer

    def host_info(self, ctx: CallContext, host_id: int, decrypt: bool = False) -> str:
        return docs.host_xml(self.store.host(host_id))

    def host_allocate(
        self, ctx: CallContext, name: str, im_mad: str, vm_mad: str, cluster_id: int = -1
    ) -> int:
        validation.check_host_name(name, AllocateError)
        inv = self.c.inventory
        return self.run(lambda: inv.allocate_host(name, im_mad, vm_mad, cluster_id))

    def host_delete(self, ctx: CallContext, host_id: int) -> int:
        return self.run(lambda: self.c.inventory.delete_host(host_id))

    def host_status(self, ctx: CallContext, host_id: int, status: int) -> int:
        return self.run(lambda: self.c.inventory.set_status(host_id, status))

    def host_update(self, ctx: CallContext, host_id: int, text: str, append: int = 0) -> int:
        existing = len(self.store.host(host_id).template) if append else 0
        template = parse_template(text, InternalError, "host", existing)
        return self.run(lambda: self.c.inventory.update_host(host_id, template, bool(append)))

    def host_rename(self, ctx: CallContext, host_id: int, name: str) -> int:
        validation.check_host_name(name, ActionError)
        return self.run(lambda: self.c.inventory.rename_host(host_id, name))

    def host_fenced(self, ctx: CallContext, host_id: int) -> int:
        """lazarus.host.fenced: the operator confirms the host is off (recorded with user)."""
        user = ctx.user.name
        return self.run(lambda: self.c.inventory.confirm_fenced(host_id, user))

    def host_fencecreds(self, ctx: CallContext, host_id: int, key: str) -> str:
        """lazarus.host.fencecreds: the host's FENCE levels unmasked, `<TEMPLATE><FENCE>...`,
        for ft/fence_host only: besides the session it takes the daemon's fence key (a 0600
        file in the data directory, $LAZARUS_FENCE_KEY of the hooks), so a client holding
        only oneadmin's one_auth cannot read a BMC password. Never hookable (no $API holds
        the answer), never logged. docs/security.md."""
        expected = self._fence_key
        if expected is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise AuthorizationError(
                "[lazarus.host.fencecreds] Not authorized: the fence key is wrong or not served"
            )
        host = self.store.host(host_id)
        fence = Template([("FENCE", vector) for vector in host.template.vectors("FENCE")])
        return docs.template_xml("TEMPLATE", fence)

    # -------------------------------------------------------------------------- VMs
    def _pool(
        self, fetch: Callable[..., list[T]], filter_flag: int, start: int, end: int, state: int
    ) -> list[T]:
        """`fetch` (store.vms or store.vm_short_bodies) with one.vmpool.info's filters:
        filter_flag >= 0 is an owner; state -2 is any state with DONE, -1 any but DONE;
        end < -1 pages (start = offset, -end = page size), else start/end is an id range."""
        if state < -2 or state > max(VmState):
            raise RpcApiError("Incorrect state filter")
        owner = filter_flag if filter_flag >= 0 else None
        paged = end < -1
        states = None if state < 0 else [VmState(state)]
        found = fetch(
            states=states,
            include_done=state == -2,
            owner=owner,
            start=-1 if paged else start,
            end=-1 if paged else end,
        )
        if paged:
            offset = max(start, 0)
            found = found[offset : offset - end]
        return found

    def vmpool_info(
        self, ctx: CallContext, flt: int, start: int, end: int, state: int, query: str = ""
    ) -> str:
        if query.strip():
            return docs.vm_pool_xml(self._searched(ctx, flt, start, end, state, query))
        if self._everything(ctx):
            # The store keeps each VM's short body rendered: the pool is a join, no decoding.
            bodies = self._pool(self.store.vm_short_bodies, flt, start, end, state)
            return "<VM_POOL>" + "".join(bodies) + "</VM_POOL>"
        return docs.vm_pool_xml(self._visible_vms(ctx, flt, start, end, state))

    def vmpool_infoextended(
        self, ctx: CallContext, flt: int, start: int, end: int, state: int, query: str = ""
    ) -> str:
        if query.strip():
            return docs.vm_pool_extended_xml(
                self._searched(ctx, flt, start, end, state, query)
            )
        if self._everything(ctx):
            return docs.vm_pool_extended_xml(self._pool(self.store.vms, flt, start, end, state))
        return docs.vm_pool_extended_xml(self._visible_vms(ctx, flt, start, end, state))

    def _searched(
        self, ctx: CallContext, flt: int, start: int, end: int, state: int, query: str
    ) -> list[VM]:
        """The pool with the KEY=VALUE filter (api/search.py): conditions checked first (a
        malformed query is refused), pagination after the search, as oned pages results."""
        conditions = search.parse_query(query)
        if end < -1:  # page the searched list, not the store's
            found = self._filtered(ctx, flt, -1, -1, state)
            found = search.matching(found, conditions)
            offset = max(start, 0)
            return found[offset : offset - end]
        return search.matching(self._filtered(ctx, flt, start, end, state), conditions)

    def _filtered(
        self, ctx: CallContext, flt: int, start: int, end: int, state: int
    ) -> list[VM]:
        if self._everything(ctx):
            return self._pool(self.store.vms, flt, start, end, state)
        return self._visible_vms(ctx, flt, start, end, state)

    def _visible_vms(
        self, ctx: CallContext, flt: int, start: int, end: int, state: int
    ) -> list[VM]:
        """A non-admin caller's pool: the filter flag as oned reads it (-3 mine, -4 my
        primary group, -1 mine and my groups', -2 all, >= 0 that user's), then only the VMs
        the caller may USE."""
        user = ctx.user
        vms = self._pool(self.store.vms, flt, start, end, state)
        if flt == -3:
            vms = [vm for vm in vms if vm.uid == user.id]
        elif flt == -4:
            vms = [vm for vm in vms if vm.gid == user.gid]
        elif flt == -1:
            groups = set(user.all_groups)
            vms = [vm for vm in vms if vm.uid == user.id or vm.gid in groups]
        assert self.rights is not None
        return self.rights.visible(user, vms, vm_auth)

    def vm_info(self, ctx: CallContext, vm_id: int, decrypt: bool = False) -> str:
        return docs.vm_xml(self.store.vm(vm_id))

    def vm_allocate(self, ctx: CallContext, text: str, hold: bool = False) -> int:
        template = parse_template(text, AllocateError, "vm")
        user = ctx.user
        owner = (user.gid, user.name, user.gname)
        return self.run(lambda: self.c.lifecycle.allocate(template, hold, user.id, owner))

    def vm_action(self, ctx: CallContext, action: str, vm_id: int) -> int:
        if action not in VM_ACTIONS:
            raise RpcApiError(f"Virtual machine action \"{action}\" is not supported")
        return self.run(lambda: self.c.lifecycle.action(action, vm_id))

    def vm_deploy(
        self,
        ctx: CallContext,
        vm_id: int,
        host_id: int,
        enforce: bool = False,
        ds_id: int = -1,
        extra: str = "",
    ) -> int:
        return self.run(lambda: self.c.lifecycle.deploy(vm_id, host_id, enforce, ds_id))

    def vm_migrate(
        self,
        ctx: CallContext,
        vm_id: int,
        host_id: int,
        live: bool,
        enforce: bool = False,
        ds_id: int = -1,
        kind: int = 0,
    ) -> int:
        return self.run(lambda: self.c.lifecycle.migrate(vm_id, host_id, live, enforce, ds_id))

    def vm_recover(self, ctx: CallContext, vm_id: int, op: int) -> int:
        return self.run(lambda: self.c.lifecycle.recover(vm_id, op))

    # ------------------------------------------------------------------ VM management
    def vm_update(self, ctx: CallContext, vm_id: int, text: str, append: int = 0) -> int:
        """USER_TEMPLATE replaced (append 0) or merged (1); HA and HA_PRIORITY with it."""
        existing = len(self.store.vm(vm_id).user_template) if append else 0
        template = parse_template(text, InternalError, "vm", existing)
        ha = template.get("HA")
        if ha is not None and ha.strip().upper() not in _HA_WORDS:
            raise InternalError(f"HA must be YES or NO, not {validation.printable(ha)}.")
        return self.run(lambda: self.c.vm_admin.update(vm_id, template, bool(append)))

    def vm_rename(self, ctx: CallContext, vm_id: int, name: str) -> int:
        validation.check_name(name, ActionError)
        if not name.strip():
            raise ActionError("Invalid NAME: it cannot be empty.")
        return self.run(lambda: self.c.vm_admin.rename(vm_id, name))

    def vm_lock(self, ctx: CallContext, vm_id: int, level: int = 1, test: bool = False) -> int:
        return self.run(lambda: self.c.vm_admin.lock(vm_id, level, test))

    def vm_unlock(self, ctx: CallContext, vm_id: int) -> int:
        return self.run(lambda: self.c.vm_admin.unlock(vm_id))

    def vm_chown(self, ctx: CallContext, vm_id: int, uid: int, gid: int) -> int:
        """New owner (uid, -1 keeps it) and group (gid, -1 keeps it): MANAGE on the new owner
        and USE on the new group, as oned asks."""
        owner = group = None
        if uid != -1:
            new_user = self.store.user(uid)
            if self.rights is not None:
                self.rights.require(ctx.user, MANAGE, user_auth(new_user))
            owner = (new_user.id, new_user.name)
        if gid != -1:
            new_group = self.store.group(gid)
            if self.rights is not None:
                self.rights.require(ctx.user, USE, group_auth(new_group.id))
            group = (new_group.id, new_group.name)
        return self.run(lambda: self.c.vm_admin.chown(vm_id, owner, group))

    def vm_chmod(self, ctx: CallContext, vm_id: int, *bits: int) -> int:
        """Nine values owner/group/other x use/manage/admin; -1 keeps a bit. Changing an
        ADMIN bit needs ADMIN on the VM (oned's rule)."""
        vm = self.store.vm(vm_id)
        current = Permissions.from_octal(vm.perms)
        try:
            new = current.changed(bits)
        except ValueError as exc:
            raise RpcApiError(f"Permissions: {exc}") from exc
        admin_bits = (2, 5, 8)
        if self.rights is not None and any(
            new.values()[i] != current.values()[i] for i in admin_bits
        ):
            self.rights.require(ctx.user, ADMIN, vm_auth(vm))
        return self.run(lambda: self.c.vm_admin.chmod(vm_id, new.octal()))

    def vm_resize(self, ctx: CallContext, vm_id: int, text: str, enforce: bool = False) -> int:
        template = parse_template(text, ActionError, "vm")
        size = Template([(n, v) for n, v in template.items if n in ("CPU", "VCPU", "MEMORY")])
        if not size.items:
            raise ActionError("Resize needs CPU, VCPU or MEMORY.")
        return self.run(lambda: self.c.vm_admin.resize(vm_id, size, enforce))

    # ------------------------------------------------------------ datastores, clusters
    def datastorepool_info(self, ctx: CallContext, *_filters: int) -> str:
        dss = self.store.datastores()
        if self.rights is not None:
            dss = self.rights.visible(ctx.user, dss, datastore_auth)
        return docs.datastore_pool_xml(dss)

    def datastore_info(self, ctx: CallContext, ds_id: int, decrypt: bool = False) -> str:
        return docs.datastore_xml(self.store.datastore(ds_id))

    def datastore_allocate(self, ctx: CallContext, text: str, cluster_id: int = -1) -> int:
        template = parse_template(text, AllocateError, "datastore")
        return self.run(lambda: self.c.inventory.allocate_datastore(template, cluster_id))

    def cluster_info(self, ctx: CallContext, cluster_id: int, decrypt: bool = False) -> str:
        cluster = self.store.cluster(cluster_id)
        hosts, dss = docs.cluster_members(self.store.hosts(), self.store.datastores())
        return docs.cluster_xml(cluster, hosts.get(cluster.id, []), dss.get(cluster.id, []))

    def clusterpool_info(self, ctx: CallContext, *_filters: int) -> str:
        hosts, dss = docs.cluster_members(self.store.hosts(), self.store.datastores())
        clusters = self.store.clusters()
        if self.rights is not None:
            clusters = self.rights.visible(
                ctx.user, clusters, lambda c: plain_auth("CLUSTER", c.id)
            )
        return docs.cluster_pool_xml(clusters, hosts, dss)

    # ------------------------------------------------------------------- binding
    def register(self, registry: Registry) -> None:
        pool3: tuple[Any, ...] = (-2, -1, -1)
        table: list[tuple[str, Callable[..., Any], str, tuple[Any, ...]]] = [
            ("one.system.version", self.system_version, "A:s", ()),
            ("one.system.config", self.system_config, "A:s", ()),
            ("one.hostpool.info", self.hostpool_info, "A:siii", pool3),
            ("one.host.info", self.host_info, "A:sib", (False,)),
            ("one.host.allocate", self.host_allocate, "A:ssssi", (-1,)),
            ("one.host.delete", self.host_delete, "A:si", ()),
            ("one.host.status", self.host_status, "A:sii", ()),
            ("one.host.update", self.host_update, "A:sisi", (0,)),
            ("one.host.rename", self.host_rename, "A:sis", ()),
            ("lazarus.host.fenced", self.host_fenced, "A:si", ()),
            ("lazarus.host.fencecreds", self.host_fencecreds, "A:sis", ()),
            ("one.vmpool.info", self.vmpool_info, "A:siiiis", (-2, -1, -1, -1, "")),
            ("one.vmpool.infoextended", self.vmpool_infoextended, "A:siiiis",
             (-2, -1, -1, -1, "")),
            ("one.vm.info", self.vm_info, "A:sib", (False,)),
            ("one.vm.allocate", self.vm_allocate, "A:ssb", (False,)),
            ("one.vm.action", self.vm_action, "A:ssi", ()),
            ("one.vm.deploy", self.vm_deploy, "A:siibis", (False, -1, "")),
            ("one.vm.migrate", self.vm_migrate, "A:siibbii", (False, -1, 0)),
            ("one.vm.recover", self.vm_recover, "A:sii", ()),
            ("one.vm.update", self.vm_update, "A:sisi", (0,)),
            ("one.vm.rename", self.vm_rename, "A:sis", ()),
            ("one.vm.lock", self.vm_lock, "A:siib", (1, False)),
            ("one.vm.unlock", self.vm_unlock, "A:si", ()),
            ("one.vm.chown", self.vm_chown, "A:siii", ()),
            ("one.vm.chmod", self.vm_chmod, "A:siiiiiiiiii", ()),
            ("one.vm.resize", self.vm_resize, "A:sisb", (False,)),
            ("one.datastorepool.info", self.datastorepool_info, "A:siii", pool3),
            ("one.datastore.info", self.datastore_info, "A:sib", (False,)),
            ("one.datastore.allocate", self.datastore_allocate, "A:ssi", (-1,)),
            ("one.cluster.info", self.cluster_info, "A:sib", (False,)),
            ("one.clusterpool.info", self.clusterpool_info, "A:siii", pool3),
        ]
        for name, fn, signature, defaults in table:
            registry.register(name, fn, signature, defaults)
