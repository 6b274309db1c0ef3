"""one.template.* and one.templatepool.info (VM templates, one.template.instantiate: how
OpenNebula users usually create VMs), the empty pools of the objects Lazarus does not manage
(one.vnpool.info, one.imagepool.info, ...: a list command prints an empty table instead of
failing), the one zone (one.zone.info, one.zonepool.info), one.cluster.addhost / delhost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazarus.core.controller import Controller
from lazarus.domain.acl import ADMIN, CREATE, USE, ObjectAuth, Permissions
from lazarus.domain.entities import VmTemplate
from lazarus.domain.errors import ActionError, AllocateError, InternalError, NoExistsError
from lazarus.domain.template import Template
from lazarus.domain.xml import templates as docs

from . import validation
from .methods import Runner, direct, parse_template
from .rights import Authorizer, host_auth
from .xmlrpc import CallContext, Registry


def template_auth(t: VmTemplate) -> ObjectAuth:
    return ObjectAuth("TEMPLATE", t.id, t.uid, t.gid, (), Permissions.from_octal(t.perms))


class TemplateApi:
    def __init__(
        self,
        controller: Controller,
        rights: Authorizer,
        run: Runner = direct,
        endpoint: str = "http://localhost:2633/RPC2",
    ) -> None:
        self.c = controller
        self.store = controller.store
        self.rights = rights
        self.run = run
        self.endpoint = endpoint

    def _tx(self, fn: Callable[[Any], Any]) -> Any:
        def body() -> Any:
            with self.store.transaction() as tx:
                return fn(tx)

        return self.run(body)

    # -------------------------------------------------------------------- templates
    def allocate(self, ctx: CallContext, text: str) -> int:
        template = parse_template(text, AllocateError, "vm")
        name = (template.get("NAME") or "").strip()
        if not name:
            raise AllocateError("No NAME in template.")
        validation.check_name(name, AllocateError)
        body = template.copy()
        body.remove("NAME")
        return self._create(ctx, name, body)

    def info(
        self, ctx: CallContext, template_id: int, extended: bool = False, decrypt: bool = False
    ) -> str:
        return docs.vmtemplate_xml(self.store.vm_template(template_id))

    def pool_info(self, ctx: CallContext, *_filters: int) -> str:
        found = self.rights.visible(ctx.user, self.store.vm_templates(), template_auth)
        return docs.vmtemplate_pool_xml(found)

    def update(self, ctx: CallContext, template_id: int, text: str, append: int = 0) -> int:
        template = parse_template(text, InternalError, "vm")

        def write(tx: Any) -> int:
            t = tx.vm_template(template_id)
            if append:
                names = {n for n, _ in template.items}
                t.template = Template(
                    [(n, v) for n, v in t.template.items if n not in names] + template.items
                )
            else:
                t.template = template
            t.template.remove("NAME")
            tx.save_vm_template(t)
            return template_id

        return int(self._tx(write))

    def rename(self, ctx: CallContext, template_id: int, name: str) -> int:
        validation.check_name(name, ActionError)
        if not name.strip():
            raise ActionError("Invalid NAME: it cannot be empty.")

        def write(tx: Any) -> int:
            t = tx.vm_template(template_id)
            t.name = name
            tx.save_vm_template(t)
            return template_id

        return int(self._tx(write))

    def delete(self, ctx: CallContext, template_id: int, recursive: bool = False) -> int:
        def write(tx: Any) -> int:
            tx.delete_vm_template(template_id)
            return template_id

        return int(self._tx(write))

    def clone(self, ctx: CallContext, template_id: int, name: str, recursive: bool = False) -> int:
        source = self.store.vm_template(template_id)
        self.rights.require(ctx.user, USE, template_auth(source))
        validation.check_name(name, ActionError)
        return self._create(ctx, name, source.template.copy())

    def _create(self, ctx: CallContext, name: str, body: Template) -> int:
        """A new template owned by the caller (allocate, clone); its id."""
        user = ctx.user
        new = VmTemplate(id=-1, name=name, uid=user.id, gid=user.gid, uname=user.name,
                         gname=user.gname, regtime=int(self.c.clock.now()), template=body)
        return int(self._tx(lambda tx: tx.add_vm_template(new).id))

    def instantiate(
        self,
        ctx: CallContext,
        template_id: int,
        name: str = "",
        hold: bool = False,
        extra: str = "",
        persistent: bool = False,
    ) -> int:
        """A VM from the template, `extra` attributes over it; NAME `name`, or the template's
        name and the VM id. Needs USE on the template (checked before) and VM CREATE."""
        source = self.store.vm_template(template_id)
        self.rights.require(ctx.user, CREATE, ObjectAuth("VM"))
        template = source.template.copy()
        if extra.strip():
            over = parse_template(extra, ActionError, "vm")
            names = {n for n, _ in over.items}
            template = Template([(n, v) for n, v in template.items if n not in names] + over.items)
        template.set("TEMPLATE_ID", str(source.id))
        if name.strip():
            validation.check_name(name, ActionError)
            template.set("NAME", name)
        user = ctx.user
        owner = (user.gid, user.name, user.gname)
        lifecycle = self.c.lifecycle

        def create() -> int:
            vm_id = lifecycle.allocate(template, hold, user.id, owner)
            if not name.strip():
                self.c.vm_admin.rename(vm_id, f"{source.name}-{vm_id}")
            return vm_id

        return int(self.run(create))

    # ------------------------------------------------------------- zones, clusters
    def zone_info(self, ctx: CallContext, zone_id: int, decrypt: bool = False) -> str:
        if zone_id != 0:
            raise NoExistsError(f"Error getting zone [{zone_id}].", zone_id)
        return docs.zone_xml(self.endpoint)

    def zonepool_info(self, ctx: CallContext) -> str:
        return docs.zone_pool_xml(self.endpoint)

    def cluster_addhost(self, ctx: CallContext, cluster_id: int, host_id: int) -> int:
        self.rights.require(ctx.user, ADMIN, host_auth(self.store.host(host_id)))
        return int(self.run(lambda: self.c.inventory.move_host(host_id, cluster_id)))

    def cluster_delhost(self, ctx: CallContext, cluster_id: int, host_id: int) -> int:
        host = self.store.host(host_id)
        self.store.cluster(cluster_id)
        self.rights.require(ctx.user, ADMIN, host_auth(host))
        if host.cluster_id != cluster_id:
            raise ActionError(f"Host {host_id} is not in cluster {cluster_id}.")
        self.run(lambda: self.c.inventory.move_host(host_id, 0))
        return cluster_id

    # --------------------------------------------------------------------- binding
    def register(self, registry: Registry) -> None:
        table: list[tuple[str, Callable[..., Any], str, tuple[Any, ...]]] = [
            ("one.template.allocate", self.allocate, "A:ss", ()),
            ("one.template.info", self.info, "A:sibb", (False, False)),
            ("one.template.update", self.update, "A:sisi", (0,)),
            ("one.template.rename", self.rename, "A:sis", ()),
            ("one.template.delete", self.delete, "A:sib", (False,)),
            ("one.template.clone", self.clone, "A:sisb", (False,)),
            ("one.template.instantiate", self.instantiate, "A:sisbsb", ("", False, "", False)),
            ("one.templatepool.info", self.pool_info, "A:siii", (-2, -1, -1)),
            ("one.zone.info", self.zone_info, "A:sib", (False,)),
            ("one.zonepool.info", self.zonepool_info, "A:s", ()),
            ("one.cluster.addhost", self.cluster_addhost, "A:sii", ()),
            ("one.cluster.delhost", self.cluster_delhost, "A:sii", ()),
        ]
        for name, fn, signature, defaults in table:
            registry.register(name, fn, signature, defaults)
        for method, root in docs.EMPTY_POOLS.items():
            registry.register(method, _empty(root), "A:siii", (-2, -1, -1))


def _empty(root: str) -> Callable[..., str]:
    def pool(ctx: CallContext, *_filters: int) -> str:
        return f"<{root}></{root}>"

    return pool
