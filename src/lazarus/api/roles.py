"""The groups, users and ACL rules every Lazarus store starts with (docs/security.md, "Users,
groups and rights").

    oneadmin (group 0)  may do everything (the oneadmin user, id 0, is in it)
    users (group 1)     OpenNebula's default group: `@1 VM+NET+IMAGE+TEMPLATE+DOCUMENT/*
                        CREATE #0`, and `* ZONE/* USE *`, as oned bootstraps them
    readonly            `@readonly <every object type>/* USE *`: lists and shows everything,
                        changes nothing (every change needs MANAGE, ADMIN or CREATE)
    ha                  the rights ft/host_error and ft/fence_host need and no more, in
                        OpenNebula's model: `@ha HOST+VM/* USE+ADMIN *` (one.host.update of
                        HA_INCIDENT and lazarus.host.fencecreds are ADMIN on the host;
                        one.vm.action resched and one.vm.recover are ADMIN on the VM) and
                        `@ha DATASTORE/* USE *` (the shared-storage check)
    lazarus-ha (user)   in group ha: the hook commands' identity. At every daemon start it
                        gets a fresh login token (the old ones are dropped), written to
                        <data dir>/ha_auth (0600) as "lazarus-ha:<token>": the hooks'
                        ONE_AUTH. Its password is random and kept nowhere.

The rules are written once, when the store has none of them yet (meta `acl.bootstrap`): a
rule an operator deletes stays deleted across restarts. Groups and the HA user are re-created
if missing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from lazarus.domain import acl
from lazarus.domain.acl import ADMIN, ALL_ID, CREATE, GROUP_ID, INDIVIDUAL_ID, USE, AclRule
from lazarus.domain.entities import Group, LoginToken, User
from lazarus.ports.store import Store, StoreTx

from . import auth

READONLY_GROUP = "readonly"
HA_GROUP = "ha"
HA_USER = "lazarus-ha"
_BOOTSTRAP = "acl.bootstrap"
READ_TYPES = (
    "VM",
    "HOST",
    "NET",
    "IMAGE",
    "USER",
    "TEMPLATE",
    "GROUP",
    "ACL",
    "DATASTORE",
    "CLUSTER",
    "DOCUMENT",
    "ZONE",
    "SECGROUP",
    "VDC",
    "VROUTER",
    "MARKETPLACE",
    "MARKETPLACEAPP",
    "VMGROUP",
    "VNTEMPLATE",
    "HOOK",
    "BACKUPJOB",
)


@dataclass(frozen=True)
class Roles:
    readonly_gid: int
    ha_gid: int
    ha_uid: int


def _group(tx: StoreTx, name: str) -> Group:
    found = tx.group_by_name(name)
    return found if found is not None else tx.add_group(Group(id=-1, name=name))


def default_rules(readonly_gid: int, ha_gid: int) -> list[AclRule]:
    def rule(user: int, resource: int, rights: int, zone: int = ALL_ID) -> AclRule:
        return AclRule(-1, user, resource, rights, zone)

    return [
        rule(
            GROUP_ID | acl.USERS_GID,
            ALL_ID | acl.types("VM", "NET", "IMAGE", "TEMPLATE", "DOCUMENT"),
            CREATE,
            INDIVIDUAL_ID | 0,
        ),
        rule(ALL_ID, ALL_ID | acl.types("ZONE"), USE),
        rule(GROUP_ID | readonly_gid, ALL_ID | acl.types(*READ_TYPES), USE),
        rule(GROUP_ID | ha_gid, ALL_ID | acl.types("HOST", "VM"), USE | ADMIN),
        rule(GROUP_ID | ha_gid, ALL_ID | acl.types("DATASTORE"), USE),
    ]


def ensure_roles(store: Store) -> Roles:
    """Create what is missing (see the module text); the oneadmin user must exist already
    or be created later with gid 0."""
    with store.transaction() as tx:
        if tx.group_by_name("oneadmin") is None and not tx.groups():
            tx.add_group(Group(id=-1, name="oneadmin"))
            tx.add_group(Group(id=-1, name="users"))
        readonly = _group(tx, READONLY_GROUP)
        ha = _group(tx, HA_GROUP)
        user = tx.user_by_name(HA_USER)
        if user is None:
            password = auth.hash_password(secrets.token_hex(32))
            user = tx.add_user(
                User(id=-1, name=HA_USER, password_hash=password, gid=ha.id, gname=ha.name)
            )
        if tx.get_meta(_BOOTSTRAP) is None:
            existing = {r.key() for r in tx.acl_rules()}
            for rule in default_rules(readonly.id, ha.id):
                if rule.key() not in existing:
                    tx.add_acl_rule(rule)
            tx.set_meta(_BOOTSTRAP, "1")
        return Roles(readonly.id, ha.id, user.id)


def issue_ha_token(store: Store) -> str:
    """A fresh non-expiring login token for the HA user (its older tokens dropped); returns
    the session string "lazarus-ha:<token>" for the hooks' credentials file."""
    token = auth.new_token()
    with store.transaction() as tx:
        user = tx.user_by_name(HA_USER)
        if user is None:
            raise LookupError(f"user {HA_USER} does not exist (ensure_roles first)")
        user.tokens = [LoginToken(auth.token_digest(token), -1, -1)]
        tx.save_user(user)
    return f"{HA_USER}:{token}"
