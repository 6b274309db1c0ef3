"""The permission matrix: every role x every method -> allowed, or refused with OpenNebula's
AUTHORIZATION code (0x200) and nothing done (api/rights.py over domain/acl.py).

Roles (api/roles.py): oneadmin (group oneadmin), reader (group readonly), ha (the hooks'
user lazarus-ha, with its login token), alice (group users, owner of VMs 0 and 1), bob (group
users, owns nothing). Each role gets a fresh world and makes every call of `CALLS` in order;
the calls that change something come after the reads and use objects of their own, so an
allowed call does not change what a later one finds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from helpers.rbac import FENCE_KEY, ROLES, RoleWorld
from lazarus.api.rights import RIGHTS
from lazarus.domain.errors import ErrorCode
from lazarus.domain.xml.templates import EMPTY_POOLS

ALL = frozenset(ROLES)
READERS = frozenset({"oneadmin", "reader"})
ADMIN = frozenset({"oneadmin"})
HA = frozenset({"oneadmin", "ha"})
HOST_READERS = frozenset({"oneadmin", "reader", "ha"})
OWNERS = frozenset({"oneadmin", "alice"})
VM_TPL = 'NAME = "new"\nCPU = "0.1"\nMEMORY = "16"\n'
HOOK_TPL = 'NAME = "h{role}"\nTYPE = "api"\nCOMMAND = "/bin/true"\nCALL = "one.vm.deploy"\n'
Params = Callable[[RoleWorld, str], tuple[Any, ...]]


def fixed(*params: Any) -> Params:
    return lambda world, role: params


# (method, parameters, roles allowed); reads first, then changes on objects of their own.
CALLS: list[tuple[str, Params, frozenset[str]]] = [
    ("one.system.version", fixed(), ALL),
    ("one.system.config", fixed(), ALL),
    ("one.hostpool.info", fixed(-2, -1, -1), ALL),
    ("one.host.info", fixed(0), HOST_READERS),
    ("one.vmpool.info", fixed(-2, -1, -1, -1), ALL),
    ("one.vmpool.infoextended", fixed(-2, -1, -1, -1), ALL),
    ("one.vm.info", fixed(0), HOST_READERS | {"alice"}),
    ("one.datastorepool.info", fixed(-2, -1, -1), ALL),
    ("one.datastore.info", fixed(0), HOST_READERS),
    ("one.cluster.info", fixed(0), READERS),
    ("one.clusterpool.info", fixed(-2, -1, -1), ALL),
    ("one.hook.info", fixed(0), READERS),
    ("one.hookpool.info", fixed(-2, -1, -1), ALL),
    ("one.hooklog.info", fixed(-1, -1, -1, 0), READERS),
    ("one.user.info", fixed(-1), ALL),
    ("one.user.info", lambda w, r: (w.uid["alice"],), READERS | {"alice"}),
    ("one.userpool.info", fixed(), ALL),
    ("one.group.info", fixed(1), ALL - {"ha"}),
    ("one.group.info", fixed(0), READERS),
    ("one.grouppool.info", fixed(), ALL),
    ("one.acl.info", fixed(), READERS),
    ("one.host.monitoring", fixed(0), HOST_READERS),
    ("one.hostpool.monitoring", fixed(-1), ALL),
    ("one.vm.monitoring", fixed(0), HOST_READERS | {"alice"}),
    ("one.vmpool.monitoring", fixed(-2, -1), ALL),
    ("one.vmpool.accounting", fixed(-2, -1, -1), ALL),
    ("one.templatepool.info", fixed(-2, -1, -1), ALL),
    ("one.template.info", fixed(0), READERS),
    ("one.zone.info", fixed(0), ALL),
    ("one.zonepool.info", fixed(), ALL),
    *[(method, fixed(-2, -1, -1), ALL) for method in EMPTY_POOLS],
    # changes
    ("lazarus.host.fencecreds", fixed(0, FENCE_KEY), HA),
    ("lazarus.host.fenced", fixed(0), HA),
    ("one.host.update", fixed(0, 'NOTE = "x"', 1), HA),
    ("one.host.rename", fixed(0, "renamed"), HA),
    ("one.host.status", fixed(0, 0), HA),
    ("one.host.allocate", lambda w, r: (f"new-{r}", "sim", "sim", -1), ADMIN),
    ("one.vm.allocate", fixed(VM_TPL, True), {"oneadmin", "alice", "bob"}),
    ("one.vm.action", fixed("resched", 0), HA),
    ("one.vm.deploy", fixed(0, 0), HA),
    ("one.vm.migrate", fixed(0, 1, False), HA),
    ("one.vm.recover", fixed(0, 2), HA),
    ("one.vm.action", fixed("poweroff", 0), {"oneadmin", "alice"}),
    ("one.vm.update", fixed(0, 'HA = "NO"', 1), OWNERS),
    ("one.vm.rename", fixed(0, "a0b"), OWNERS),
    ("one.vm.resize", fixed(0, 'MEMORY = "32"', False), OWNERS),
    ("one.vm.chmod", fixed(0, 1, 1, 0, 1, 0, 0, 0, 0, 0), OWNERS),
    ("one.vm.chmod", fixed(0, -1, -1, 1, -1, -1, -1, -1, -1, -1), ADMIN),  # an ADMIN bit
    ("one.vm.chown", fixed(0, -1, 1), OWNERS),  # to a group of one's own
    ("one.vm.chown", lambda w, r: (1, w.uid["bob"], -1), ADMIN),  # MANAGE on the new owner
    ("one.vm.lock", fixed(0, 3), OWNERS),
    ("one.vm.unlock", fixed(0), OWNERS),
    ("one.vm.action", fixed("terminate-hard", 1), OWNERS),
    ("one.template.allocate", fixed(VM_TPL), {"oneadmin", "alice", "bob"}),
    ("one.template.update", fixed(0, 'X = "1"', 1), ADMIN),
    ("one.template.rename", fixed(0, "t0b"), ADMIN),
    ("one.template.clone", fixed(0, "copy"), ADMIN),  # USE on the source
    ("one.template.instantiate", fixed(0, "", True, "", False), ADMIN),
    ("one.cluster.addhost", fixed(0, 1), ADMIN),
    ("one.cluster.delhost", fixed(0, 1), ADMIN),
    ("one.datastore.allocate", fixed('NAME = "d"\nTYPE = "SYSTEM_DS"\nTM_MAD = "shared"\n'), ADMIN),
    ("one.hook.allocate", lambda w, r: (HOOK_TPL.format(role=r),), ADMIN),
    ("one.hook.update", fixed(0, 'ARGUMENTS = "x"', 1), ADMIN),
    ("one.hook.rename", fixed(0, "h0b"), ADMIN),
    ("one.hook.lock", fixed(0, 1), ADMIN),
    ("one.hook.unlock", fixed(0), ADMIN),
    ("one.hook.retry", fixed(0, 0), ADMIN),
    ("one.user.passwd", lambda w, r: (-1, w.sessions[r].partition(":")[2]), ALL),
    ("one.user.passwd", lambda w, r: (w.uid["alice"], "alicepw"), {"oneadmin", "alice"}),
    ("one.user.login", fixed("alice", "", 60, -1), {"oneadmin", "alice"}),
    ("one.user.update", lambda w, r: (w.uid["alice"], 'X = "1"', 1), {"oneadmin", "alice"}),
    ("one.user.allocate", lambda w, r: (f"u-{r}", "pw", "core", []), ADMIN),
    ("one.user.chgrp", lambda w, r: (w.uid["bob"], 1), ADMIN),
    ("one.user.addgroup", lambda w, r: (w.uid["bob"], w.roles.readonly_gid), ADMIN),
    ("one.user.delgroup", lambda w, r: (w.uid["bob"], w.roles.readonly_gid), ADMIN),
    ("one.group.allocate", lambda w, r: (f"g-{r}",), ADMIN),
    ("one.group.update", fixed(1, 'X = "1"', 1), ADMIN),
    ("one.acl.addrule", fixed("200000001", "2000000000", "1", "400000000"), ADMIN),
    ("one.acl.delrule", fixed(5), ADMIN),
    ("one.user.delete", lambda w, r: (w.uid["bob"],), ADMIN),
    ("one.group.delete", lambda w, r: (w.roles.readonly_gid + 2,), ADMIN),
    ("one.hook.delete", fixed(0), ADMIN),
    ("one.template.delete", fixed(0), ADMIN),
    ("one.host.delete", fixed(1), HA),
]


def test_every_registered_method_has_a_right_and_a_row_in_the_matrix() -> None:
    with RoleWorld() as world:
        names = set(world.dispatcher.registry.names())
    assert names <= set(RIGHTS), sorted(names - set(RIGHTS))
    assert names == {method for method, _, _ in CALLS}, sorted(
        names ^ {method for method, _, _ in CALLS}
    )


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(role: str) -> None:
    with RoleWorld() as world:
        # the group the one.group.delete row deletes
        assert world.call("oneadmin", "one.group.allocate", "spare")[0] is True
        for method, params, allowed in CALLS:
            args = params(world, role)
            result = world.call(role, method, *args)
            refused = result[0] is False and result[2] == ErrorCode.AUTHORIZATION
            if role in allowed:
                assert not refused, (method, args, result)
            else:
                assert refused, (method, args, result)
                assert "Not authorized" in result[1]


def test_a_refused_change_changes_nothing() -> None:
    with RoleWorld() as world:
        before = world.call("oneadmin", "one.vm.info", 0)[1]
        host_before = world.call("oneadmin", "one.host.info", 0)[1]
        for role in ("reader", "bob"):
            assert world.call(role, "one.vm.action", "poweroff", 0)[2] == 0x200
            assert world.call(role, "one.host.update", 0, 'X = "1"', 1)[2] == 0x200
        assert world.call("ha", "one.vm.action", "poweroff", 0)[2] == 0x200
        assert world.call("oneadmin", "one.vm.info", 0)[1] == before
        assert world.call("oneadmin", "one.host.info", 0)[1] == host_before


def test_pools_list_only_what_the_caller_may_use() -> None:
    with RoleWorld() as world:
        world.run_fn(
            lambda: world.controller.lifecycle.allocate(
                world.controller.store.vm(0).template.copy(), True, 0
            )
        )

        def vm_ids(role: str, flt: int = -2) -> list[int]:
            doc = world.call(role, "one.vmpool.info", flt, -1, -1, -1)[1]
            return [int(part.split("</ID>")[0]) for part in doc.split("<VM><ID>")[1:]]

        assert vm_ids("oneadmin") == [0, 1, 2]
        assert vm_ids("reader") == [0, 1, 2] and vm_ids("ha") == [0, 1, 2]
        assert vm_ids("alice") == [0, 1] and vm_ids("alice", -3) == [0, 1]
        assert vm_ids("bob") == [] and vm_ids("bob", -1) == []
        assert "<HOST>" not in world.call("bob", "one.hostpool.info")[1]
        assert world.call("ha", "one.hostpool.info")[1].count("<HOST>") == 2
        users = world.call("bob", "one.userpool.info")[1]
        assert users.count("<USER>") == 1 and "<NAME>bob</NAME>" in users
        assert world.call("reader", "one.userpool.info")[1].count("<USER>") == 5


def test_an_unknown_id_is_no_exists_before_authorization() -> None:
    with RoleWorld() as world:
        for role in ("bob", "reader"):
            assert world.call(role, "one.vm.info", 99)[2] == ErrorCode.NO_EXISTS
            assert world.call(role, "one.host.update", 99, "X=1", 1)[2] == ErrorCode.NO_EXISTS


def test_only_the_admin_and_ha_groups_get_the_ha_lane() -> None:
    from lazarus.api.xmlrpc import CallContext

    seen: list[str] = []
    with RoleWorld() as world:
        registry = world.dispatcher.registry
        original = registry.get("one.system.version")
        assert original is not None

        def spy(ctx: CallContext) -> str:
            seen.append(ctx.lane)
            return "x"

        registry._methods["one.system.version"] = dataclasses.replace(original, fn=spy)
        for role in ("oneadmin", "ha", "reader", "alice"):
            world.dispatcher.call("one.system.version", [world.sessions[role]], lane="ha")
    assert seen == ["ha", "ha", "", ""]
