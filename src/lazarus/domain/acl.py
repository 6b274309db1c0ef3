"""OpenNebula's authorization model: ACL rules, object permissions, and the decision.

A rule is four 64-bit masks, as oned keeps them (include/AclRule.h, src/acl/AclManager.cc):

    USER      who: one of INDIVIDUAL_ID | uid ("#5"), GROUP_ID | gid ("@1"), ALL_ID ("*")
    RESOURCE  what: object type bits (VM, HOST, ...) combined with one of INDIVIDUAL_ID | oid,
              GROUP_ID | gid (objects of that group), CLUSTER_ID | cid (objects in that
              cluster), ALL_ID
    RIGHTS    USE 0x1, MANAGE 0x2, ADMIN 0x4, CREATE 0x8
    ZONE      INDIVIDUAL_ID | zone id, or ALL_ID

A request (user uid in groups G asks for right R on an object) is granted when, in the order
oned tries them (rules for everyone, for the uid, for each group), a rule grants every bit of R
on the object's type with ALL, its id, its group or its cluster. Before the ACL rules come
three implicit rules from the object's permissions (owner, group, other: the chmod bits):
the owner rule applies to the owner's uid, the group rule to members of the object's group,
the other rule to everybody. Members of the oneadmin group (gid 0) are never asked: they may
do everything (`is_admin`).

Pure: no I/O. api/rights.py applies it to every API call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# -- masks --------------------------------------------------------------------------------
INDIVIDUAL_ID = 0x0000000100000000
GROUP_ID = 0x0000000200000000
ALL_ID = 0x0000000400000000
CLUSTER_ID = 0x0000000800000000
NONE_ID = 0x1000000000000000
ID_MASK = 0x00000000FFFFFFFF
_FLAGS = INDIVIDUAL_ID | GROUP_ID | ALL_ID | CLUSTER_ID

USE = 0x1
MANAGE = 0x2
ADMIN = 0x4
CREATE = 0x8
RIGHTS = {"USE": USE, "MANAGE": MANAGE, "ADMIN": ADMIN, "CREATE": CREATE}

# PoolObjectSQL::ObjectType
OBJECT_TYPES: dict[str, int] = {
    "VM": 0x0000001000000000,
    "HOST": 0x0000002000000000,
    "NET": 0x0000004000000000,
    "IMAGE": 0x0000008000000000,
    "USER": 0x0000010000000000,
    "TEMPLATE": 0x0000020000000000,
    "GROUP": 0x0000040000000000,
    "ACL": 0x0000080000000000,
    "DATASTORE": 0x0000100000000000,
    "CLUSTER": 0x0000200000000000,
    "DOCUMENT": 0x0000400000000000,
    "ZONE": 0x0000800000000000,
    "SECGROUP": 0x0001000000000000,
    "VDC": 0x0002000000000000,
    "VROUTER": 0x0004000000000000,
    "MARKETPLACE": 0x0008000000000000,
    "MARKETPLACEAPP": 0x0010000000000000,
    "VMGROUP": 0x0020000000000000,
    "VNTEMPLATE": 0x0040000000000000,
    "HOOK": 0x0080000000000000,
    "BACKUPJOB": 0x0100000000000000,
}
_TYPES_MASK = 0
for _bit in OBJECT_TYPES.values():
    _TYPES_MASK |= _bit

ONEADMIN_GID = 0
USERS_GID = 1
ONEADMIN_UID = 0


class MalformedRule(ValueError):
    """A rule oned would refuse (the message says which part)."""


@dataclass(frozen=True)
class AclRule:
    id: int
    user: int
    resource: int
    rights: int
    zone: int = ALL_ID

    def key(self) -> tuple[int, int, int, int]:
        return (self.user, self.resource, self.rights, self.zone)

    def to_str(self) -> str:
        """oned's STRING: "@1 VM+NET/* CREATE *"."""
        return " ".join(
            (_who(self.user), _what(self.resource), _rights_str(self.rights), _zone(self.zone))
        )


def _id_str(mask: int) -> str:
    if mask & ALL_ID:
        return "*"
    if mask & INDIVIDUAL_ID:
        return f"#{mask & ID_MASK}"
    if mask & GROUP_ID:
        return f"@{mask & ID_MASK}"
    if mask & CLUSTER_ID:
        return f"%{mask & ID_MASK}"
    return "??"


def _who(user: int) -> str:
    return _id_str(user)


def _what(resource: int) -> str:
    names = [name for name, bit in OBJECT_TYPES.items() if resource & bit]
    return "+".join(names) + "/" + _id_str(resource)


def _rights_str(rights: int) -> str:
    return "+".join(name for name, bit in RIGHTS.items() if rights & bit)


def _zone(zone: int) -> str:
    return _id_str(zone)


def _one_flag(mask: int, allowed: int) -> bool:
    flags = mask & _FLAGS
    return flags != 0 and flags & (flags - 1) == 0 and flags & ~allowed == 0


def check_rule(user: int, resource: int, rights: int, zone: int) -> None:
    """Refuse what oned's AclRule::malformed refuses; MalformedRule names the part."""
    if not _one_flag(user, INDIVIDUAL_ID | GROUP_ID | ALL_ID):
        raise MalformedRule("[user] must be one of: a user id (#), a group id (@) or all (*)")
    if user & ~(_FLAGS | ID_MASK) or (user & ALL_ID and user & ID_MASK):
        raise MalformedRule("[user] has unknown bits")
    if not _one_flag(resource, _FLAGS):
        raise MalformedRule(
            "[resource] must be one of: an object id (#), a group id (@), a cluster id (%) "
            "or all (*)"
        )
    if resource & _TYPES_MASK == 0:
        raise MalformedRule("[resource] names no object type")
    if resource & ~(_FLAGS | ID_MASK | _TYPES_MASK) or (resource & ALL_ID and resource & ID_MASK):
        raise MalformedRule("[resource] has unknown bits")
    if rights == 0 or rights & ~(USE | MANAGE | ADMIN | CREATE):
        raise MalformedRule("[rights] must be a combination of USE, MANAGE, ADMIN, CREATE")
    if not _one_flag(zone, INDIVIDUAL_ID | ALL_ID) or zone & ~(_FLAGS | ID_MASK):
        raise MalformedRule("[zone] must be a zone id (#) or all (*)")


def parse_mask(text: str, part: str) -> int:
    """A rule part as the API sends it: a hexadecimal string ("0x100000000" or "100000000")."""
    raw = text.strip().lower()
    raw = raw[2:] if raw.startswith("0x") else raw
    try:
        value = int(raw, 16)
    except ValueError as exc:
        raise MalformedRule(f"[{part}] is not a hexadecimal number: {text[:40]!r}") from exc
    if not 0 <= value < 1 << 64:
        raise MalformedRule(f"[{part}] is out of range")
    return value


def hex_mask(value: int) -> str:
    """A mask as oned writes it in ACL_POOL: lowercase hex without 0x."""
    return f"{value:x}"


# -- object permissions ------------------------------------------------------------------


@dataclass(frozen=True)
class Permissions:
    """The chmod bits of an object: owner, group, other x use, manage, admin."""

    owner_u: int = 1
    owner_m: int = 1
    owner_a: int = 0
    group_u: int = 0
    group_m: int = 0
    group_a: int = 0
    other_u: int = 0
    other_m: int = 0
    other_a: int = 0

    def octal(self) -> str:
        def digit(u: int, m: int, a: int) -> str:
            return str(u * 4 + m * 2 + a)

        return (
            digit(self.owner_u, self.owner_m, self.owner_a)
            + digit(self.group_u, self.group_m, self.group_a)
            + digit(self.other_u, self.other_m, self.other_a)
        )

    @classmethod
    def from_octal(cls, text: str) -> Permissions:
        bits: list[int] = []
        for ch in text:
            n = int(ch)
            bits += [n >> 2 & 1, n >> 1 & 1, n & 1]
        return cls(*bits)

    def values(self) -> tuple[int, ...]:
        return (
            self.owner_u,
            self.owner_m,
            self.owner_a,
            self.group_u,
            self.group_m,
            self.group_a,
            self.other_u,
            self.other_m,
            self.other_a,
        )

    def changed(self, values: Sequence[int]) -> Permissions:
        """one.*.chmod: nine values, -1 keeps the current bit; others must be 0 or 1."""
        current = self.values()
        new = [c if v == -1 else v for c, v in zip(current, values, strict=True)]
        if any(v not in (0, 1) for v in new):
            raise ValueError("permission values must be -1, 0 or 1")
        return Permissions(*new)


@dataclass(frozen=True)
class ObjectAuth:
    """What the decision needs of an object (oned's PoolObjectAuth): uid/gid -1 = no owner."""

    obj_type: str
    oid: int = -1
    uid: int = -1
    gid: int = -1
    cids: tuple[int, ...] = ()
    perms: Permissions = field(default_factory=lambda: Permissions(0, 0, 0, 0, 0, 0))
    locked: int = 0  # the object's lock level (0 none, 1 use, 2 manage, 3 admin, 4 all)


# The lock level an operation is refused at: a lock of level L refuses operations of level L
# and above (use 1 < manage 2 < admin 3); level 4 refuses every operation.
OP_LEVELS = {USE: 1, MANAGE: 2, ADMIN: 3, CREATE: 3}


def lock_refuses(locked: int, op: int) -> bool:
    return bool(locked) and (locked == 4 or OP_LEVELS.get(op, 3) >= locked)


def is_admin(groups: Iterable[int]) -> bool:
    return ONEADMIN_GID in set(groups)


def _perm_rights(u: int, m: int, a: int) -> int:
    return (USE if u else 0) | (MANAGE if m else 0) | (ADMIN if a else 0)


def authorize(
    uid: int, groups: Iterable[int], obj: ObjectAuth, op: int, rules: Iterable[AclRule]
) -> bool:
    """True when `uid` (member of `groups`) may exercise `op` on `obj` under `rules`."""
    groups = set(groups)
    if ONEADMIN_GID in groups:
        return True
    type_bit = OBJECT_TYPES[obj.obj_type]
    p = obj.perms
    implicit: list[tuple[int, int]] = []  # (user mask, rights) of the permission rules
    if obj.oid >= 0:
        if obj.uid >= 0:
            owner = _perm_rights(p.owner_u, p.owner_m, p.owner_a)
            implicit.append((INDIVIDUAL_ID | obj.uid, owner))
        if obj.gid >= 0:
            implicit.append((GROUP_ID | obj.gid, _perm_rights(p.group_u, p.group_m, p.group_a)))
        implicit.append((ALL_ID, _perm_rights(p.other_u, p.other_m, p.other_a)))
    who = {ALL_ID, INDIVIDUAL_ID | uid} | {GROUP_ID | g for g in groups}
    for user_mask, rights in implicit:
        if user_mask in who and rights & op == op:
            return True
    for rule in rules:
        if rule.user not in who or rule.rights & op != op:
            continue
        if not (rule.zone & ALL_ID or rule.zone == INDIVIDUAL_ID | 0):
            continue
        if _resource_matches(rule.resource, type_bit, obj):
            return True
    return False


def _resource_matches(resource: int, type_bit: int, obj: ObjectAuth) -> bool:
    if not resource & type_bit:
        return False
    target = resource & ID_MASK
    if resource & ALL_ID:
        return True
    if resource & INDIVIDUAL_ID:
        return obj.oid >= 0 and target == obj.oid
    if resource & GROUP_ID:
        return obj.gid >= 0 and target == obj.gid
    if resource & CLUSTER_ID:
        return target in obj.cids
    return False


def rule_text(user: int, resource: int, rights: int, zone: int = ALL_ID) -> str:
    return AclRule(-1, user, resource, rights, zone).to_str()


def types(*names: str) -> int:
    mask = 0
    for name in names:
        mask |= OBJECT_TYPES[name]
    return mask
