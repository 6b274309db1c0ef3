"""Secrets never leave the controller: API documents, hook $TEMPLATEs and logs get a copy of
an object's template with secret values replaced by "****".

A secret is any attribute (top level or inside a vector such as FENCE) whose name is
PASSWORD or ends in _PASSWORD, PASSWD, SECRET or TOKEN. Operators should prefer
PASSWORD_FILE (a path, not a secret) in FENCE vectors; a literal PASSWORD still works for the
fence agent but is masked everywhere it could be shown.
"""

from __future__ import annotations

from dataclasses import replace

from .entities import Host
from .template import Template, Vector

MASK = "****"


def is_secret(name: str) -> bool:
    name = name.upper()
    return name in ("PASSWORD", "PASSWD", "SECRET", "TOKEN") or name.endswith(
        ("_PASSWORD", "_PASSWD", "_SECRET", "_TOKEN")
    )


def redact(template: Template) -> Template:
    if not any(_has_secret(name, value) for name, value in template.items):
        return template
    items: list[tuple[str, str | Vector]] = []
    for name, value in template.items:
        if isinstance(value, Vector):
            items.append(
                (name, Vector([(k, MASK if is_secret(k) else v) for k, v in value.pairs]))
            )
        else:
            items.append((name, MASK if is_secret(name) else value))
    return Template(items)


def _has_secret(name: str, value: str | Vector) -> bool:
    if isinstance(value, Vector):
        return any(is_secret(k) for k, _ in value.pairs)
    return is_secret(name)


def public_host(host: Host) -> Host:
    """The host as it may be shown: same object when it holds no secret."""
    masked = redact(host.template)
    return host if masked is host.template else replace(host, template=masked)
