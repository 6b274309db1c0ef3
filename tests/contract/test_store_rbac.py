"""Contract of the Store port's users, groups, ACL rules (migration 5), monitoring records
(migration 6) and VM templates (migration 7), against every store factory of
tests/contract/test_store.py (a PostgreSQL adapter adds its factory there)."""

from __future__ import annotations

import pytest
from test_store import store  # noqa: F401  (the parametrized fixture)

from lazarus.domain.acl import ALL_ID, GROUP_ID, USE, AclRule
from lazarus.domain.entities import Group, LoginToken, User, VmTemplate
from lazarus.domain.errors import AllocateError, NoExistsError
from lazarus.domain.template import Template
from lazarus.ports.store import Store


def test_users_groups_round_trip(store: Store) -> None:  # noqa: F811
    with store.transaction() as tx:
        g = tx.add_group(Group(id=-1, name="ops", template=Template.parse('A = "1"')))
        u = tx.add_user(
            User(
                id=-1,
                name="u",
                password_hash="h",
                gid=g.id,
                gname="ops",
                groups=[7],
                tokens=[LoginToken("d" * 64, 100, -1)],
            )
        )
    assert (g.id, u.id) == (0, 0)
    user = store.user(u.id)
    assert user.groups == [7] and user.tokens == [LoginToken("d" * 64, 100, -1)]
    assert user.all_groups == [g.id, 7] and store.users() == [user]
    assert store.group(g.id).template.get("A") == "1" and store.group_by_name("ops") == g
    with pytest.raises(AllocateError, match="GROUP 0"), store.transaction() as tx:
        tx.add_group(Group(id=-1, name="ops"))
    with store.transaction() as tx:
        tx.delete_user(u.id)
        tx.delete_group(g.id)
    with pytest.raises(NoExistsError):
        store.user(u.id)
    with pytest.raises(NoExistsError):
        store.group(g.id)
    assert store.group_by_name("ops") is None


def test_acl_rules_keep_64_bit_masks_and_are_unique(store: Store) -> None:  # noqa: F811
    rule = AclRule(-1, GROUP_ID | 3, ALL_ID | 0x0100000000000000, USE, ALL_ID)
    with store.transaction() as tx:
        added = tx.add_acl_rule(rule)
    assert store.acl_rules() == [added] and added.key() == rule.key()
    with pytest.raises(AllocateError, match="Rule already exists"), store.transaction() as tx:
        tx.add_acl_rule(rule)
    with store.transaction() as tx:
        tx.delete_acl_rule(added.id)
    assert store.acl_rules() == []
    with pytest.raises(NoExistsError), store.transaction() as tx:
        tx.delete_acl_rule(added.id)


def test_monitoring_records(store: Store) -> None:  # noqa: F811
    with store.transaction() as tx:
        tx.add_monitoring_records("host", [(1, 10, "<a/>"), (1, 20, "<b/>"), (2, 15, "<c/>")])
        tx.add_monitoring_records("host", [(1, 20, "<again/>")])  # kept as it was
        tx.add_monitoring_records("vm", [(5, 10, "<v/>")])
    assert store.monitoring_records("host") == [(1, 10, "<a/>"), (1, 20, "<b/>"), (2, 15, "<c/>")]
    assert store.monitoring_records("host", 1, since=15) == [(1, 20, "<b/>")]
    assert store.last_monitoring_records("host") == [(1, 20, "<b/>"), (2, 15, "<c/>")]
    with store.transaction() as tx:
        assert tx.prune_monitoring_records("host", 16) == 2
        tx.delete_monitoring_records("vm", 5)
    assert store.monitoring_records("host") == [(1, 20, "<b/>")]
    assert store.monitoring_records("vm") == []


def test_vm_templates(store: Store) -> None:  # noqa: F811
    with store.transaction() as tx:
        t = tx.add_vm_template(
            VmTemplate(id=-1, name="web", uid=3, perms="640", template=Template.parse('CPU = "1"'))
        )
    got = store.vm_template(t.id)
    assert got == t and store.vm_templates() == [t]
    got.name = "web2"
    with store.transaction() as tx:
        tx.save_vm_template(got)
    assert store.vm_template(t.id).name == "web2"
    with store.transaction() as tx:
        tx.delete_vm_template(t.id)
    with pytest.raises(NoExistsError):
        store.vm_template(t.id)
