"""The KEY=VALUE filter of one.vmpool.info / infoextended (`onevm list --search`).

OpenNebula's form: one or more `KEY=VALUE` pairs joined by `&`, every pair must hold. KEY is
the path of an element of the VM document, from the root: `VM.NAME`, `VM.UNAME`,
`VM.TEMPLATE.CPU`, `VM.USER_TEMPLATE.HA`, `VM.TEMPLATE.NIC[0].IP`, `VM.TEMPLATE.DISK[*].IMAGE`
(`[n]`: the n-th element of that name, `[*]` or no index: any of them). VALUE is compared
with the element's text exactly. A query that is not of this form is refused (RPC_API) rather
than ignored: a filter that silently returns every VM is how `onevm terminate $(onevm list
--search ...)` goes wrong.

OpenNebula answers from a full-text index of each VM; Lazarus reads the VM documents (masked,
as served), which is the same answer for these queries, at the cost of rendering the VMs the
pool filters left (docs/api.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET

from lazarus.domain.entities import VM
from lazarus.domain.errors import RpcApiError
from lazarus.domain.xml import vm_xml

_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_\-]*)(?:\[(\*|\d+)\])?")
MAX_QUERY_CHARS = 4096


@dataclass(frozen=True)
class Condition:
    steps: tuple[tuple[str, int | None], ...]  # (element name, index or None for any)
    value: str


def parse_query(text: str) -> list[Condition]:
    if len(text) > MAX_QUERY_CHARS:
        raise RpcApiError(f"Filter is too long: the limit is {MAX_QUERY_CHARS} characters.")
    conditions: list[Condition] = []
    for pair in text.split("&"):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RpcApiError(f"Filter {pair[:80]!r} is not in KEY=VALUE format.")
        parts = key.split(".")
        if parts[0].upper() != "VM" or len(parts) < 2:
            raise RpcApiError(f"Filter key {key[:80]!r} must be a path from VM, e.g. VM.NAME.")
        steps: list[tuple[str, int | None]] = []
        for part in parts[1:]:
            match = _STEP.fullmatch(part)
            if match is None:
                raise RpcApiError(f"Filter key {key[:80]!r}: {part[:40]!r} is not an element.")
            index = match.group(2)
            steps.append((match.group(1).upper(), None if index in (None, "*") else int(index)))
        conditions.append(Condition(tuple(steps), value))
    return conditions


def _holds(root: Element, condition: Condition) -> bool:
    nodes = [root]
    for name, index in condition.steps:
        found: list[Element] = []
        for node in nodes:
            children = [child for child in node if child.tag == name]
            if index is None:
                found.extend(children)
            elif index < len(children):
                found.append(children[index])
        nodes = found
        if not nodes:
            return False
    return any((node.text or "") == condition.value for node in nodes if len(node) == 0)


def matching(vms: Iterable[VM], conditions: list[Condition]) -> list[VM]:
    """The VMs whose document meets every condition, in order."""
    kept = []
    for vm in vms:
        root = SafeET.fromstring(vm_xml(vm))
        if all(_holds(root, c) for c in conditions):
            kept.append(vm)
    return kept
