"""What import-linter cannot see: `asyncio.create_subprocess_*`, `os.fork`, `os.system` and
friends come with `import asyncio` / `import os`, so the "processes only in drivers/, app/ and
lab/" contract (pyproject.toml) is completed here by reading the source."""

from __future__ import annotations

import ast
from pathlib import Path

import lazarus

SRC = Path(lazarus.__file__).resolve().parent
ALLOWED = ("drivers", "app", "lab")  # the packages that may start processes
CALLS = {
    ("asyncio", "create_subprocess_exec"), ("asyncio", "create_subprocess_shell"),
    ("os", "system"), ("os", "popen"), ("os", "fork"), ("os", "forkpty"),
    ("os", "posix_spawn"), ("os", "posix_spawnp"),
}


def _process_call(node: ast.AST) -> str | None:
    """"os.fork" for an attribute that starts a process, else None."""
    if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name):
        return None
    module, attr = node.value.id, node.attr
    if (module, attr) in CALLS or (module == "os" and attr.startswith(("exec", "spawn"))):
        return f"{module}.{attr}"
    return None


def test_processes_are_started_only_by_drivers_app_and_lab() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        package = path.relative_to(SRC).parts[0]
        if package in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if call := _process_call(node):
                offenders.append(f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)} {call}")
    assert offenders == []
