"""USER, GROUP and ACL documents (user.xsd, user_pool.xsd, group.xsd, group_pool.xsd,
acl_pool.xsd).

Differences from oned, on purpose: PASSWORD is shown masked (`****`; oned shows the stored
hash), and LOGIN_TOKEN/TOKEN is the token's sha256 (oned shows the token itself: anyone who
may read the user could use it). The token itself is only in the answer of one.user.login.
Quotas are not kept: the quota elements are left out (they are optional) and the default
quota elements are empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..acl import AclRule, hex_mask
from ..entities import Group, User
from ..secrets import redact
from .text import esc, ids_xml, template_xml

MASK = "****"


def _user_body(user: User, gname: str) -> str:
    tokens = "".join(
        f"<LOGIN_TOKEN><TOKEN>{t.digest}</TOKEN><EXPIRATION_TIME>{t.expires}</EXPIRATION_TIME>"
        f"<EGID>{t.egid}</EGID></LOGIN_TOKEN>"
        for t in user.tokens
    )
    return (
        f"<ID>{user.id}</ID><GID>{user.gid}</GID>{ids_xml('GROUPS', user.all_groups)}"
        f"<GNAME>{esc(gname)}</GNAME><NAME>{esc(user.name)}</NAME><PASSWORD>{MASK}</PASSWORD>"
        f"<AUTH_DRIVER>{esc(user.auth_driver)}</AUTH_DRIVER>"
        f"<ENABLED>{1 if user.enabled else 0}</ENABLED>{tokens}"
        f"{template_xml('TEMPLATE', redact(user.template))}"
    )


def user_xml(user: User, gname: str | None = None) -> str:
    """The USER document of one.user.info (user.xsd)."""
    body = _user_body(user, gname if gname is not None else user.gname)
    return f"<USER>{body}<DEFAULT_USER_QUOTAS/></USER>"


def user_pool_xml(users: Iterable[User], gnames: Mapping[int, str]) -> str:
    """<USER_POOL> of one.userpool.info (user_pool.xsd)."""
    inner = "".join(f"<USER>{_user_body(u, gnames.get(u.gid, u.gname))}</USER>" for u in users)
    return f"<USER_POOL>{inner}<DEFAULT_USER_QUOTAS/></USER_POOL>"


def _group_body(group: Group, members: Iterable[int]) -> str:
    return (
        f"<ID>{group.id}</ID><NAME>{esc(group.name)}</NAME>"
        f"{template_xml('TEMPLATE', redact(group.template))}"
        f"{ids_xml('USERS', members)}{ids_xml('ADMINS', [])}"
    )


def group_xml(group: Group, members: Iterable[int]) -> str:
    """The GROUP document of one.group.info (group.xsd)."""
    return (
        f"<GROUP>{_group_body(group, members)}<VLAN_RULES><ID>{group.id}</ID></VLAN_RULES>"
        "<DEFAULT_GROUP_QUOTAS/></GROUP>"
    )


def group_pool_xml(groups: Iterable[Group], members: Mapping[int, list[int]]) -> str:
    """<GROUP_POOL> of one.grouppool.info (group_pool.xsd)."""
    inner = "".join(f"<GROUP>{_group_body(g, members.get(g.id, []))}</GROUP>" for g in groups)
    return f"<GROUP_POOL>{inner}<DEFAULT_GROUP_QUOTAS/></GROUP_POOL>"


def group_members(users: Iterable[User]) -> dict[int, list[int]]:
    """Group id -> the ids of its users (primary and secondary membership)."""
    members: dict[int, list[int]] = {}
    for user in users:
        for gid in user.all_groups:
            members.setdefault(gid, []).append(user.id)
    return members


def acl_pool_xml(rules: Iterable[AclRule]) -> str:
    """<ACL_POOL> of one.acl.info (acl_pool.xsd): masks in hex, and oned's rule string."""
    inner = "".join(
        f"<ACL><ID>{r.id}</ID><USER>{hex_mask(r.user)}</USER>"
        f"<RESOURCE>{hex_mask(r.resource)}</RESOURCE><RIGHTS>{hex_mask(r.rights)}</RIGHTS>"
        f"<ZONE>{hex_mask(r.zone)}</ZONE><STRING>{esc(r.to_str())}</STRING></ACL>"
        for r in rules
    )
    return f"<ACL_POOL>{inner}</ACL_POOL>"
