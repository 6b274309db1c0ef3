"""Users, groups and ACL rules of the SQLite store (migration 5, "groups and acl").

`AuthQueries` and `AuthWrites` are mixed into the reader and transaction classes of
store/sqlite.py, as store/hooks.py's are, so any adapter with the same `_all`, `_write` and
`_next_id` (the PostgreSQL one) can mix in the same classes. The SQL is portable: TEXT and
INTEGER columns, JSON bodies encoded in Python (store/codec.py), ids from `counters`.

Tables (users exists since migration 1):
    groups     (id, name UNIQUE, body JSON {name, template})
    acl_rules  (id, user_mask, resource, rights, zone): the four masks as lowercase hex TEXT
               (64-bit values do not fit every SQL dialect's INTEGER), UNIQUE over the four,
               as oned's acl(oid, user, resource, rights, zone)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lazarus.domain.acl import AclRule, hex_mask
from lazarus.domain.entities import Group, User
from lazarus.domain.errors import NoExistsError

from . import codec

_Row = tuple[Any, ...]

SCHEMA = """
CREATE TABLE groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE TABLE acl_rules (
    id INTEGER PRIMARY KEY,
    user_mask TEXT NOT NULL,
    resource TEXT NOT NULL,
    rights TEXT NOT NULL,
    zone TEXT NOT NULL
);
CREATE UNIQUE INDEX acl_rules_unique ON acl_rules (user_mask, resource, rights, zone);
"""

_ACL_COLUMNS = "id, user_mask, resource, rights, zone"


def _rule(row: _Row) -> AclRule:
    i, user, resource, rights, zone = row
    return AclRule(int(i), int(user, 16), int(resource, 16), int(rights, 16), int(zone, 16))


class AuthQueries:
    """The user, group and ACL reads; `_all` is the host class's query runner."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        raise NotImplementedError

    def user(self, user_id: int) -> User:
        rows = self._all("SELECT id, body FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise NoExistsError(f"Error getting user [{user_id}].", user_id)
        return codec.decode_user(rows[0][0], rows[0][1])

    def users(self) -> list[User]:
        rows = self._all("SELECT id, body FROM users ORDER BY id")
        return [codec.decode_user(i, b) for i, b in rows]

    def group(self, group_id: int) -> Group:
        rows = self._all("SELECT id, body FROM groups WHERE id = ?", (group_id,))
        if not rows:
            raise NoExistsError(f"Error getting group [{group_id}].", group_id)
        return codec.decode_group(rows[0][0], rows[0][1])

    def group_by_name(self, name: str) -> Group | None:
        rows = self._all("SELECT id, body FROM groups WHERE name = ?", (name,))
        return codec.decode_group(rows[0][0], rows[0][1]) if rows else None

    def groups(self) -> list[Group]:
        rows = self._all("SELECT id, body FROM groups ORDER BY id")
        return [codec.decode_group(i, b) for i, b in rows]

    def acl_rules(self) -> list[AclRule]:
        return [_rule(r) for r in self._all(f"SELECT {_ACL_COLUMNS} FROM acl_rules ORDER BY id")]


class AuthWrites:
    """The user, group and ACL writes; `_all`, `_write`, `_next_id` are the transaction's."""

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        raise NotImplementedError

    def _next_id(self, kind: str) -> int:
        raise NotImplementedError

    def delete_user(self, user_id: int) -> None:
        if not self._write("DELETE FROM users WHERE id = ?", (user_id,), _no_unique):
            raise NoExistsError(f"Error getting user [{user_id}].", user_id)

    def _group_taken(self, name: str) -> Callable[[], str]:
        def message() -> str:
            rows = self._all("SELECT id FROM groups WHERE name = ?", (name,))
            return f"NAME is already taken by GROUP {rows[0][0] if rows else '?'}."

        return message

    def add_group(self, group: Group) -> Group:
        group_id = self._next_id("group")
        self._write(
            "INSERT INTO groups (id, name, body) VALUES (?, ?, ?)",
            (group_id, group.name, codec.encode_group(group)),
            self._group_taken(group.name),
        )
        group.id = group_id
        return group

    def save_group(self, group: Group) -> None:
        changed = self._write(
            "UPDATE groups SET name = ?, body = ? WHERE id = ?",
            (group.name, codec.encode_group(group), group.id),
            self._group_taken(group.name),
        )
        if not changed:
            raise NoExistsError(f"Error getting group [{group.id}].", group.id)

    def delete_group(self, group_id: int) -> None:
        if not self._write("DELETE FROM groups WHERE id = ?", (group_id,), _no_unique):
            raise NoExistsError(f"Error getting group [{group_id}].", group_id)

    def add_acl_rule(self, rule: AclRule) -> AclRule:
        rule_id = self._next_id("acl")
        self._write(
            f"INSERT INTO acl_rules ({_ACL_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (
                rule_id,
                hex_mask(rule.user),
                hex_mask(rule.resource),
                hex_mask(rule.rights),
                hex_mask(rule.zone),
            ),
            lambda: "Rule already exists",
        )
        return AclRule(rule_id, rule.user, rule.resource, rule.rights, rule.zone)

    def delete_acl_rule(self, rule_id: int) -> None:
        if not self._write("DELETE FROM acl_rules WHERE id = ?", (rule_id,), _no_unique):
            raise NoExistsError(f"Rule {rule_id} does not exist", rule_id)


def _no_unique() -> str:
    return "Store constraint violated."
