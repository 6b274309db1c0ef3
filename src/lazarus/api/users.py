"""one.user.*, one.userpool.info, one.group.*, one.grouppool.info, one.acl.*: OpenNebula's
users, groups and ACL rules over the store (store/auth.py), with oned's signatures.

The right to call each method is checked before the handler (api/rights.py); what the
handlers check on top is what depends on the parameters: one.user.login of another user
needs MANAGE on that user, pools list only what the caller may USE. Writes run through `run`
on the controller's loop thread (the store's one writer), each in one transaction.

Passwords are stored as sha256 digests (api/auth.py); login tokens as sha256 digests, the
token itself is only in the answer of one.user.login. None of these calls can be hooked
(domain/hooks.py), so no $API holds a password or a token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lazarus.domain import acl
from lazarus.domain.acl import MANAGE, AclRule, MalformedRule
from lazarus.domain.entities import Group, LoginToken, User
from lazarus.domain.errors import (
    ActionError,
    AllocateError,
    ApiError,
    InternalError,
    NoExistsError,
    RpcApiError,
)
from lazarus.domain.template import Template
from lazarus.domain.xml import users as docs
from lazarus.ports.store import Store, StoreTx

from . import auth
from .methods import Runner, direct, parse_template
from .rights import Authorizer, group_auth, user_auth
from .roles import HA_USER
from .xmlrpc import CallContext, Registry

_USER_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
MAX_TOKENS = 32
SYSTEM_GROUPS = (acl.ONEADMIN_GID, acl.USERS_GID)


def _check_user_name(name: str, error: type[ApiError]) -> None:
    if not _USER_NAME.fullmatch(name):
        raise error(
            "Invalid NAME: 1 to 128 letters, digits or '_', '.', '@', '+', '-' (no spaces, no ':')."
        )


def _check_password(password: str, error: type[ApiError]) -> None:
    if not password or len(password) > 1024:
        raise error("Invalid password: it must have 1 to 1024 characters.")
    if any(ch.isspace() or ord(ch) < 32 for ch in password):
        raise error("Invalid password, it can not contain spaces.")


def _driver(driver: str, error: type[ApiError]) -> str:
    if driver not in ("", "core"):
        raise error(f"Auth driver {driver[:40]!r} is not served: Lazarus has the core driver only.")
    return "core"


class UserApi:
    def __init__(
        self,
        store: Store,
        rights: Authorizer,
        run: Runner = direct,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.rights = rights
        self.run = run
        self._now = now or (lambda: 0.0)

    def _tx(self, fn: Callable[[StoreTx], Any]) -> Any:
        def body() -> Any:
            with self.store.transaction() as tx:
                return fn(tx)

        return self.run(body)

    def _gnames(self) -> dict[int, str]:
        return {g.id: g.name for g in self.store.groups()}

    # ------------------------------------------------------------------------- users
    def user_allocate(
        self,
        ctx: CallContext,
        name: str,
        password: str,
        driver: str = "core",
        groups: list[Any] | None = None,
    ) -> int:
        _check_user_name(name, AllocateError)
        _check_password(password, AllocateError)
        drv = _driver(driver, AllocateError)
        gids = list(groups or [])
        if any(not isinstance(g, int) or isinstance(g, bool) for g in gids):
            raise RpcApiError("The group list must hold group ids (integers).")
        admin = acl.is_admin(ctx.user.all_groups)
        # oned: the groups given need MANAGE; none given: the users group for the oneadmin
        # group, else the creator's primary group
        if not admin:
            for gid in gids:
                self.rights.require(ctx.user, MANAGE, group_auth(self.store.group(gid).id))
        gids = gids or [acl.USERS_GID if admin else ctx.user.gid]

        def write(tx: StoreTx) -> int:
            primary = tx.group(gids[0])  # NoExistsError for an unknown group
            for gid in gids[1:]:
                tx.group(gid)
            user = User(
                id=-1,
                name=name,
                password_hash=auth.hash_password(password),
                gid=primary.id,
                gname=primary.name,
                groups=[g for g in gids[1:]],
                auth_driver=drv,
            )
            return tx.add_user(user).id

        return int(self._tx(write))

    def _resolve(self, ctx: CallContext, user_id: int) -> int:
        return ctx.user.id if user_id == -1 else user_id

    def user_info(self, ctx: CallContext, user_id: int, decrypt: bool = False) -> str:
        user = self.store.user(self._resolve(ctx, user_id))
        return docs.user_xml(user, self._gnames().get(user.gid, user.gname))

    def userpool_info(self, ctx: CallContext) -> str:
        users = self.rights.visible(ctx.user, self.store.users(), user_auth)
        if not any(u.id == ctx.user.id for u in users):  # oneself is always listed
            users = sorted([*users, self.store.user(ctx.user.id)], key=lambda u: u.id)
        return docs.user_pool_xml(users, self._gnames())

    def user_passwd(self, ctx: CallContext, user_id: int, password: str) -> int:
        _check_password(password, ActionError)
        oid = self._resolve(ctx, user_id)

        def write(tx: StoreTx) -> int:
            user = tx.user(oid)
            user.password_hash = auth.hash_password(password)
            tx.save_user(user)
            return oid

        return int(self._tx(write))

    def user_update(self, ctx: CallContext, user_id: int, text: str, append: int = 0) -> int:
        oid = self._resolve(ctx, user_id)
        template = parse_template(text, InternalError)

        def write(tx: StoreTx) -> int:
            user = tx.user(oid)
            user.template = _merged(user.template, template, bool(append))
            tx.save_user(user)
            return oid

        return int(self._tx(write))

    def user_delete(self, ctx: CallContext, user_id: int) -> int:
        def write(tx: StoreTx) -> int:
            user = tx.user(user_id)
            if user.id == acl.ONEADMIN_UID:
                raise ActionError("oneadmin cannot be deleted.")
            if user.name == HA_USER:
                raise ActionError(
                    f"{HA_USER} is the identity of the hook commands (ft/host_error); "
                    "it cannot be deleted."
                )
            tx.delete_user(user_id)
            return user_id

        return int(self._tx(write))

    def user_chgrp(self, ctx: CallContext, user_id: int, gid: int) -> int:
        self.rights.require(ctx.user, MANAGE, group_auth(self.store.group(gid).id))

        def write(tx: StoreTx) -> int:
            user = tx.user(user_id)
            if user.id == acl.ONEADMIN_UID and gid != acl.ONEADMIN_GID:
                raise ActionError("Cannot change the primary group of oneadmin.")
            group = tx.group(gid)
            if user.gid != group.id:
                user.groups = [g for g in user.groups if g != group.id]
                user.gid, user.gname = group.id, group.name
                tx.save_user(user)
            return user_id

        return int(self._tx(write))

    def user_addgroup(self, ctx: CallContext, user_id: int, gid: int) -> int:
        self.rights.require(ctx.user, MANAGE, group_auth(self.store.group(gid).id))

        def write(tx: StoreTx) -> int:
            user = tx.user(user_id)
            tx.group(gid)
            if gid not in user.all_groups:
                user.groups.append(gid)
                tx.save_user(user)
            return user_id

        return int(self._tx(write))

    def user_delgroup(self, ctx: CallContext, user_id: int, gid: int) -> int:
        def write(tx: StoreTx) -> int:
            user = tx.user(user_id)
            tx.group(gid)
            if gid == user.gid:
                raise ActionError("Cannot remove user from its primary group.")
            if gid not in user.groups:
                raise ActionError(f"User is not part of group {gid}.")
            user.groups.remove(gid)
            tx.save_user(user)
            return user_id

        return int(self._tx(write))

    def user_login(
        self, ctx: CallContext, name: str, token: str, valid: int, egid: int = -1
    ) -> str:
        """one.user.login: a new token ("" asks for one) valid `valid` seconds (-1: never
        expires); valid 0 revokes `token` (or, given as "", every token of the user). The
        answer is the token; the store keeps its sha256 (LOGIN_TOKEN/TOKEN shows that)."""
        target = self.store.user_by_name(name)
        if target is None:
            raise NoExistsError(f"Error getting user [{name[:64]}].")
        if target.id != ctx.user.id:
            self.rights.require(ctx.user, MANAGE, user_auth(target))
        if valid < -1:
            raise RpcApiError("Valid period must be -1 (no expiry), 0 (revoke) or seconds > 0.")
        if egid != -1 and egid not in target.all_groups:
            raise ActionError(f"EGID {egid} is not in the user's group list.")
        now = int(self._now())

        def write(tx: StoreTx) -> str:
            user = tx.user(target.id)
            live = [t for t in user.tokens if t.expires < 0 or t.expires > now]
            digest = auth.token_digest(token) if token else ""
            known = [t for t in live if token and t.digest in (digest, token)]
            if valid == 0:
                user.tokens = [t for t in live if token and t not in known]
                tx.save_user(user)
                return token
            expires = -1 if valid == -1 else now + valid
            if token and not known:
                raise ActionError('Unknown login token: pass "" to be given a new one.')
            if known:
                user.tokens = [
                    LoginToken(t.digest, expires, egid) if t in known else t for t in live
                ]
                tx.save_user(user)
                return token
            if len(live) >= MAX_TOKENS:
                raise ActionError(f"The user has {MAX_TOKENS} login tokens already.")
            new = auth.new_token()
            user.tokens = [*live, LoginToken(auth.token_digest(new), expires, egid)]
            tx.save_user(user)
            return new

        return str(self._tx(write))

    # ------------------------------------------------------------------------ groups
    def group_allocate(self, ctx: CallContext, name: str) -> int:
        if not _GROUP_NAME.fullmatch(name):
            raise AllocateError(
                "Invalid NAME: 1 to 128 letters, digits or '_', '.', '@', '+', '-'."
            )
        return int(self._tx(lambda tx: tx.add_group(Group(id=-1, name=name)).id))

    def group_info(self, ctx: CallContext, group_id: int, decrypt: bool = False) -> str:
        if group_id == -1:
            group_id = ctx.user.gid
        group = self.store.group(group_id)
        members = docs.group_members(self.store.users()).get(group.id, [])
        return docs.group_xml(group, members)

    def grouppool_info(self, ctx: CallContext) -> str:
        groups = self.rights.visible(ctx.user, self.store.groups(), lambda g: group_auth(g.id))
        return docs.group_pool_xml(groups, docs.group_members(self.store.users()))

    def group_update(self, ctx: CallContext, group_id: int, text: str, append: int = 0) -> int:
        template = parse_template(text, InternalError)

        def write(tx: StoreTx) -> int:
            group = tx.group(group_id)
            group.template = _merged(group.template, template, bool(append))
            tx.save_group(group)
            return group_id

        return int(self._tx(write))

    def group_delete(self, ctx: CallContext, group_id: int) -> int:
        def write(tx: StoreTx) -> int:
            group = tx.group(group_id)
            if group.id in SYSTEM_GROUPS:
                raise ActionError(f"System group {group.name} cannot be deleted.")
            if any(group.id in u.all_groups for u in tx.users()):
                raise ActionError(f"Group {group.id} is not empty.")
            tx.delete_group(group_id)
            return group_id

        return int(self._tx(write))

    # --------------------------------------------------------------------------- ACL
    def acl_info(self, ctx: CallContext) -> str:
        return docs.acl_pool_xml(self.store.acl_rules())

    def acl_addrule(
        self, ctx: CallContext, user: str, resource: str, rights: str, zone: str = "*"
    ) -> int:
        try:
            masks = (
                acl.parse_mask(user, "user"),
                acl.parse_mask(resource, "resource"),
                acl.parse_mask(rights, "rights"),
                acl.ALL_ID if zone in ("", "*") else acl.parse_mask(zone, "zone"),
            )
            acl.check_rule(*masks)
        except MalformedRule as exc:
            raise ActionError(f"Error creating rule {exc}") from exc
        rule = AclRule(-1, *masks)
        return int(self._tx(lambda tx: tx.add_acl_rule(rule).id))

    def acl_delrule(self, ctx: CallContext, rule_id: int) -> int:
        def write(tx: StoreTx) -> int:
            tx.delete_acl_rule(rule_id)
            return rule_id

        return int(self._tx(write))

    # ----------------------------------------------------------------------- binding
    def register(self, registry: Registry) -> None:
        table: list[tuple[str, Callable[..., Any], str, tuple[Any, ...]]] = [
            ("one.user.allocate", self.user_allocate, "A:ssssA", ("core", [])),
            ("one.user.info", self.user_info, "A:sib", (-1, False)),
            ("one.user.passwd", self.user_passwd, "A:sis", ()),
            ("one.user.login", self.user_login, "A:sssii", (-1,)),
            ("one.user.update", self.user_update, "A:sisi", (0,)),
            ("one.user.delete", self.user_delete, "A:si", ()),
            ("one.user.chgrp", self.user_chgrp, "A:sii", ()),
            ("one.user.addgroup", self.user_addgroup, "A:sii", ()),
            ("one.user.delgroup", self.user_delgroup, "A:sii", ()),
            ("one.userpool.info", self.userpool_info, "A:s", ()),
            ("one.group.allocate", self.group_allocate, "A:ss", ()),
            ("one.group.info", self.group_info, "A:sib", (-1, False)),
            ("one.group.update", self.group_update, "A:sisi", (0,)),
            ("one.group.delete", self.group_delete, "A:si", ()),
            ("one.grouppool.info", self.grouppool_info, "A:s", ()),
            ("one.acl.info", self.acl_info, "A:s", ()),
            ("one.acl.addrule", self.acl_addrule, "A:sssss", ("*",)),
            ("one.acl.delrule", self.acl_delrule, "A:si", ()),
        ]
        for name, fn, signature, defaults in table:
            registry.register(name, fn, signature, defaults)


def _merged(current: Template, new: Template, append: bool) -> Template:
    """one.*.update: replace the template, or (append) set the new attributes over it."""
    if not append:
        return new
    names = {name for name, _ in new.items}
    return Template([(n, v) for n, v in current.items if n not in names] + list(new.items))
