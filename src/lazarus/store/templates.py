"""VM templates of the SQLite store (migration 7, "vm templates"), as store/hooks.py: a mixin
for the reader and the transaction classes, portable SQL, the body JSON encoded here.

    vm_templates (id, name, body JSON {name, uid, gid, uname, gname, perms, regtime, template})
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from lazarus.domain.entities import VmTemplate
from lazarus.domain.errors import NoExistsError
from lazarus.domain.template import Template

_Row = tuple[Any, ...]

SCHEMA = """
CREATE TABLE vm_templates (id INTEGER PRIMARY KEY, name TEXT NOT NULL, body TEXT NOT NULL);
"""


def encode_vm_template(t: VmTemplate) -> str:
    return json.dumps(
        {
            "name": t.name,
            "uid": t.uid,
            "gid": t.gid,
            "uname": t.uname,
            "gname": t.gname,
            "perms": t.perms,
            "regtime": t.regtime,
            "template": t.template.to_json(),
        },
        separators=(",", ":"),
        ensure_ascii=True,
    )


def decode_vm_template(template_id: int, body: str) -> VmTemplate:
    d = json.loads(body)
    return VmTemplate(
        id=template_id,
        name=str(d["name"]),
        uid=int(d["uid"]),
        gid=int(d["gid"]),
        uname=str(d["uname"]),
        gname=str(d["gname"]),
        perms=str(d["perms"]),
        regtime=int(d["regtime"]),
        template=Template.from_json(d["template"]),
    )


def _missing(template_id: int) -> NoExistsError:
    return NoExistsError(f"Error getting template [{template_id}].", template_id)


class TemplateQueries:
    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        raise NotImplementedError

    def vm_template(self, template_id: int) -> VmTemplate:
        rows = self._all("SELECT id, body FROM vm_templates WHERE id = ?", (template_id,))
        if not rows:
            raise _missing(template_id)
        return decode_vm_template(rows[0][0], rows[0][1])

    def vm_templates(self) -> list[VmTemplate]:
        rows = self._all("SELECT id, body FROM vm_templates ORDER BY id")
        return [decode_vm_template(i, b) for i, b in rows]


class TemplateWrites:
    def _write(self, sql: str, params: Sequence[Any], unique: Callable[[], str]) -> int:
        raise NotImplementedError

    def _next_id(self, kind: str) -> int:
        raise NotImplementedError

    def add_vm_template(self, t: VmTemplate) -> VmTemplate:
        t.id = self._next_id("vm_template")
        self._write(
            "INSERT INTO vm_templates (id, name, body) VALUES (?, ?, ?)",
            (t.id, t.name, encode_vm_template(t)),
            _no_unique,
        )
        return t

    def save_vm_template(self, t: VmTemplate) -> None:
        if not self._write(
            "UPDATE vm_templates SET name = ?, body = ? WHERE id = ?",
            (t.name, encode_vm_template(t), t.id),
            _no_unique,
        ):
            raise _missing(t.id)

    def delete_vm_template(self, template_id: int) -> None:
        if not self._write("DELETE FROM vm_templates WHERE id = ?", (template_id,), _no_unique):
            raise _missing(template_id)


def _no_unique() -> str:
    return "Store constraint violated."
