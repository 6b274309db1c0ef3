"""one.user.*, one.group.*, one.acl.* (api/users.py), login tokens (api/auth.py), the ACL
decision (domain/acl.py) and the documents against OpenNebula's XSDs."""

from __future__ import annotations

import pytest

from helpers.rbac import RoleWorld
from helpers.xsd import validate
from lazarus.domain import acl
from lazarus.domain.acl import (
    ADMIN,
    ALL_ID,
    GROUP_ID,
    INDIVIDUAL_ID,
    MANAGE,
    USE,
    AclRule,
    MalformedRule,
    ObjectAuth,
    Permissions,
)
from lazarus.domain.errors import ErrorCode


def ok(result: list[object]) -> object:
    assert result[0] is True, result
    return result[1]


def code(result: list[object]) -> int:
    assert result[0] is False, result
    return int(result[2])  # type: ignore[call-overload]


# -- the decision ------------------------------------------------------------------------
def test_rule_strings_are_as_oned_writes_them() -> None:
    rule = AclRule(
        0, GROUP_ID | 1, ALL_ID | acl.types("VM", "NET"), USE | MANAGE, INDIVIDUAL_ID | 0
    )
    assert rule.to_str() == "@1 VM+NET/* USE+MANAGE #0"
    assert AclRule(1, INDIVIDUAL_ID | 5, CLUSTER | acl.types("HOST") | 3, ADMIN).to_str() == (
        "#5 HOST/%3 ADMIN *"
    )


CLUSTER = acl.CLUSTER_ID


def test_owner_group_and_other_bits_and_rules() -> None:
    vm = ObjectAuth("VM", 7, uid=3, gid=1, cids=(0,), perms=Permissions(1, 1, 0, 1, 0, 0))
    assert acl.authorize(3, [1], vm, MANAGE, [])  # owner UM-
    assert not acl.authorize(3, [1], vm, ADMIN, [])
    assert acl.authorize(4, [1], vm, USE, [])  # group U--
    assert not acl.authorize(4, [1], vm, MANAGE, [])
    assert not acl.authorize(5, [2], vm, USE, [])  # other ---
    assert acl.authorize(
        5,
        [2],
        vm,
        USE | ADMIN,
        [AclRule(0, GROUP_ID | 2, acl.types("VM") | INDIVIDUAL_ID | 7, USE | ADMIN)],
    )
    assert not acl.authorize(
        5, [2], vm, USE, [AclRule(0, GROUP_ID | 2, acl.types("VM") | INDIVIDUAL_ID | 8, USE)]
    )
    assert acl.authorize(5, [2], vm, USE, [AclRule(0, ALL_ID, acl.types("VM") | CLUSTER, USE)])
    assert acl.authorize(
        5, [2], vm, USE, [AclRule(0, INDIVIDUAL_ID | 5, acl.types("VM") | GROUP_ID | 1, USE)]
    )
    assert not acl.authorize(
        5,
        [2],
        vm,
        USE,
        [  # another object type
            AclRule(0, ALL_ID, acl.types("HOST") | ALL_ID, USE)
        ],
    )
    assert not acl.authorize(
        5,
        [2],
        vm,
        USE,
        [  # another zone
            AclRule(0, ALL_ID, acl.types("VM") | ALL_ID, USE, INDIVIDUAL_ID | 1)
        ],
    )
    assert acl.authorize(9, [0], vm, ADMIN, [])  # the oneadmin group


@pytest.mark.parametrize(
    "masks",
    [
        (0, ALL_ID | acl.types("VM"), USE, ALL_ID),  # no user flag
        (ALL_ID | GROUP_ID | 1, ALL_ID | acl.types("VM"), USE, ALL_ID),  # two flags
        (ALL_ID, ALL_ID, USE, ALL_ID),  # no object type
        (ALL_ID, ALL_ID | acl.types("VM"), 0, ALL_ID),  # no rights
        (ALL_ID, ALL_ID | acl.types("VM"), 0x10, ALL_ID),  # unknown right
        (ALL_ID, ALL_ID | acl.types("VM"), USE, GROUP_ID | 1),  # zone by group
    ],
)
def test_malformed_rules_are_refused(masks: tuple[int, int, int, int]) -> None:
    with pytest.raises(MalformedRule):
        acl.check_rule(*masks)


# -- users ---------------------------------------------------------------------------------
def test_user_allocate_info_passwd_delete_and_their_errors() -> None:
    with RoleWorld() as w:
        uid = ok(w.call("oneadmin", "one.user.allocate", "carol", "pw1", "core", [1, 2]))
        doc = ok(w.call("oneadmin", "one.user.info", uid))
        assert "<NAME>carol</NAME>" in doc and "<GROUPS><ID>1</ID><ID>2</ID></GROUPS>" in doc
        assert "pw1" not in doc and "<PASSWORD>****</PASSWORD>" in doc
        validate("user.xsd", doc)
        validate("user_pool.xsd", ok(w.call("oneadmin", "one.userpool.info")))
        assert code(w.call("oneadmin", "one.user.allocate", "carol", "x")) == ErrorCode.ALLOCATE
        assert code(w.call("oneadmin", "one.user.allocate", "a b", "x")) == ErrorCode.ALLOCATE
        assert code(w.call("oneadmin", "one.user.allocate", "d", "a b")) == ErrorCode.ALLOCATE
        assert code(w.call("oneadmin", "one.user.allocate", "d", "x", "ldap")) == 0x4000
        assert code(w.call("oneadmin", "one.user.allocate", "d", "x", "core", [77])) == 0x400
        assert code(w.call("oneadmin", "one.user.allocate", "d", "x", "core", ["1"])) == 0x1000
        assert code(w.call("oneadmin", "one.user.info", 99)) == ErrorCode.NO_EXISTS
        ok(w.call("oneadmin", "one.user.passwd", uid, "pw2"))
        w.sessions["carol"] = "carol:pw2"
        assert ok(w.call("carol", "one.user.info", -1)).count("<NAME>carol</NAME>") == 1
        w.sessions["carol-old"] = "carol:pw1"
        assert code(w.call("carol-old", "one.user.info", -1)) == ErrorCode.AUTHENTICATION
        assert code(w.call("oneadmin", "one.user.delete", 0)) == ErrorCode.ACTION
        assert code(w.call("oneadmin", "one.user.delete", w.roles.ha_uid)) == ErrorCode.ACTION
        assert code(w.call("oneadmin", "one.user.delete", 99)) == ErrorCode.NO_EXISTS
        ok(w.call("oneadmin", "one.user.delete", uid))
        assert code(w.call("carol", "one.user.info", -1)) == ErrorCode.AUTHENTICATION


def test_chgrp_addgroup_delgroup() -> None:
    with RoleWorld() as w:
        bob = w.uid["bob"]
        ok(w.call("oneadmin", "one.user.chgrp", bob, w.roles.readonly_gid))
        doc = ok(w.call("oneadmin", "one.user.info", bob))
        assert "<GID>2</GID>" in doc and "<GNAME>readonly</GNAME>" in doc
        assert ok(w.call("bob", "one.host.info", 0))  # bob reads hosts now
        assert code(w.call("oneadmin", "one.user.chgrp", bob, 99)) == ErrorCode.NO_EXISTS
        ok(w.call("oneadmin", "one.user.addgroup", bob, 1))
        assert "<GROUPS><ID>2</ID><ID>1</ID></GROUPS>" in ok(w.call("bob", "one.user.info", -1))
        assert code(w.call("oneadmin", "one.user.delgroup", bob, 2)) == ErrorCode.ACTION
        assert code(w.call("oneadmin", "one.user.delgroup", bob, 0)) == ErrorCode.ACTION
        ok(w.call("oneadmin", "one.user.delgroup", bob, 1))


def test_login_tokens_sessions_expiry_and_revocation() -> None:
    with RoleWorld() as w:
        token = ok(w.call("alice", "one.user.login", "alice", "", 60, -1))
        assert isinstance(token, str) and len(token) == 40
        doc = ok(w.call("alice", "one.user.info", -1))
        assert token not in doc and "<LOGIN_TOKEN>" in doc  # only its sha256 is kept
        validate("user.xsd", doc)
        w.sessions["alice-token"] = f"alice:{token}"
        assert ok(w.call("alice-token", "one.vm.info", 0))
        w.loop.run_until_complete(w.clock.sleep(61))  # virtual time: the token expires
        assert code(w.call("alice-token", "one.vm.info", 0)) == ErrorCode.AUTHENTICATION
        forever = ok(w.call("oneadmin", "one.user.login", "alice", "", -1, -1))
        w.sessions["alice-token"] = f"alice:{forever}"
        w.loop.run_until_complete(w.clock.sleep(10**6))
        assert ok(w.call("alice-token", "one.vm.info", 0))
        assert ok(w.call("alice", "one.user.login", "alice", forever, 0, -1)) == forever
        assert code(w.call("alice-token", "one.vm.info", 0)) == ErrorCode.AUTHENTICATION
        assert code(w.call("bob", "one.user.login", "alice", "", 60, -1)) == 0x200
        assert code(w.call("alice", "one.user.login", "nobody", "", 60, -1)) == 0x400
        assert code(w.call("alice", "one.user.login", "alice", "", -5, -1)) == 0x1000
        assert code(w.call("alice", "one.user.login", "alice", "", 60, 0)) == 0x800  # EGID
        assert code(w.call("alice", "one.user.login", "alice", "x" * 40, 60, -1)) == 0x800


def test_a_token_with_an_effective_group_acts_in_that_group_only() -> None:
    with RoleWorld() as w:
        carol = ok(
            w.call(
                "oneadmin", "one.user.allocate", "carol", "pw", "core", [1, w.roles.readonly_gid]
            )
        )
        w.sessions["carol"] = "carol:pw"
        assert ok(w.call("carol", "one.host.info", 0))  # readonly as a secondary group
        token = ok(w.call("carol", "one.user.login", "carol", "", 60, 1))
        w.sessions["carol-users"] = f"carol:{token}"
        assert code(w.call("carol-users", "one.host.info", 0)) == ErrorCode.AUTHORIZATION
        assert carol


def test_the_ha_token_is_replaced_at_every_issue() -> None:
    from lazarus.api.roles import issue_ha_token

    with RoleWorld() as w:
        assert ok(w.call("ha", "one.host.info", 0))
        old = w.sessions["ha"]
        w.sessions["ha"] = issue_ha_token(w.store)
        assert ok(w.call("ha", "one.host.info", 0))
        w.sessions["ha-old"] = old
        assert code(w.call("ha-old", "one.host.info", 0)) == ErrorCode.AUTHENTICATION


# -- groups --------------------------------------------------------------------------------
def test_groups_allocate_info_update_delete() -> None:
    with RoleWorld() as w:
        gid = ok(w.call("oneadmin", "one.group.allocate", "ops"))
        assert code(w.call("oneadmin", "one.group.allocate", "ops")) == ErrorCode.ALLOCATE
        assert code(w.call("oneadmin", "one.group.allocate", "a:b")) == ErrorCode.ALLOCATE
        ok(w.call("oneadmin", "one.group.update", gid, 'DESCRIPTION = "operators"', 0))
        doc = ok(w.call("oneadmin", "one.group.info", gid))
        assert "operators" in doc
        validate("group.xsd", doc)
        users = ok(w.call("oneadmin", "one.group.info", 1))
        assert f"<USERS><ID>{w.uid['alice']}</ID><ID>{w.uid['bob']}</ID></USERS>" in users
        validate("group_pool.xsd", ok(w.call("oneadmin", "one.grouppool.info")))
        assert code(w.call("oneadmin", "one.group.delete", 1)) == ErrorCode.ACTION  # system
        assert code(w.call("oneadmin", "one.group.delete", w.roles.ha_gid)) == 0x800  # members
        assert code(w.call("oneadmin", "one.group.delete", 99)) == ErrorCode.NO_EXISTS
        ok(w.call("oneadmin", "one.group.delete", gid))
        assert code(w.call("oneadmin", "one.group.info", gid)) == ErrorCode.NO_EXISTS
        pool = ok(w.call("bob", "one.grouppool.info"))
        assert pool.count("<GROUP>") == 1 and "<NAME>users</NAME>" in pool


# -- ACL -----------------------------------------------------------------------------------
def test_acl_rules_added_enforced_and_deleted() -> None:
    with RoleWorld() as w:
        doc = ok(w.call("oneadmin", "one.acl.info"))
        validate("acl_pool.xsd", doc)
        assert "<STRING>@3 VM+HOST/* USE+ADMIN *</STRING>" in doc
        bob = w.uid["bob"]
        assert code(w.call("bob", "one.host.info", 0)) == ErrorCode.AUTHORIZATION
        user = f"{INDIVIDUAL_ID | bob:x}"
        host0 = f"{acl.types('HOST') | INDIVIDUAL_ID:x}"
        rule = ok(w.call("oneadmin", "one.acl.addrule", user, host0, "1"))
        assert ok(w.call("bob", "one.host.info", 0))
        assert code(w.call("bob", "one.host.info", 1)) == ErrorCode.AUTHORIZATION
        assert "<HOST><ID>0</ID>" in ok(w.call("bob", "one.hostpool.info"))
        assert (
            code(
                w.call(
                    "oneadmin",
                    "one.acl.addrule",
                    user,
                    f"{acl.types('HOST') | INDIVIDUAL_ID:x}",
                    "1",
                )
            )
            == ErrorCode.ALLOCATE
        )
        for bad in (("zz", "1", "1"), ("0", "2000000000", "1"), (user, "0", "1")):
            assert code(w.call("oneadmin", "one.acl.addrule", *bad)) == ErrorCode.ACTION
        ok(w.call("oneadmin", "one.acl.delrule", rule))
        assert code(w.call("bob", "one.host.info", 0)) == ErrorCode.AUTHORIZATION
        assert code(w.call("oneadmin", "one.acl.delrule", rule)) == ErrorCode.NO_EXISTS


def test_a_user_creator_outside_oneadmin_needs_manage_on_the_groups_it_names() -> None:
    with RoleWorld() as w:
        carol = ok(w.call("oneadmin", "one.user.allocate", "carol", "pw", "core", [1]))
        w.sessions["carol"] = "carol:pw"
        rule = f"{INDIVIDUAL_ID | int(carol):x}"  # type: ignore[call-overload]
        ok(w.call("oneadmin", "one.acl.addrule", rule, f"{ALL_ID | acl.types('USER'):x}", "8"))
        assert code(w.call("carol", "one.user.allocate", "mal", "pw", "core", [0])) == 0x200
        new = ok(w.call("carol", "one.user.allocate", "dan", "pw", "core", []))
        assert "<GID>1</GID>" in str(ok(w.call("oneadmin", "one.user.info", new)))
