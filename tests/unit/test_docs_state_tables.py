"""docs/state-machines.md carries the state tables of domain/transitions.py, rendered by
scripts/render_state_tables.py; this test fails when the doc is out of date."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "render_state_tables.py"
DOC = ROOT / "docs" / "state-machines.md"


@pytest.fixture(scope="module")
def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_state_tables", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("render_state_tables", module)
    spec.loader.exec_module(module)
    return module


def test_state_tables_in_the_doc_are_current(renderer: ModuleType) -> None:
    current = DOC.read_text(encoding="utf-8")
    wanted = renderer.splice(current, renderer.render())
    assert wanted == current, "docs/state-machines.md is stale: run scripts/render_state_tables.py"


def test_every_table_entry_is_rendered(renderer: ModuleType) -> None:
    from lazarus.domain.transitions import RETRY_OF, VM_ACTIONS, VM_STEPS

    section = renderer.render()
    for action in VM_ACTIONS:
        assert f"`{action}`" in section
    for lcm in VM_STEPS:
        assert f"| {lcm.name} ({int(lcm)}) |" in section
    for lcm in RETRY_OF:
        assert f"| {lcm.name} ({int(lcm)}) |" in section


def test_check_mode_reports_a_stale_doc(renderer: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "doc.md"
    stale.write_text(f"intro\n{renderer.BEGIN}\nold table\n{renderer.END}\noutro\n")
    assert renderer.main(["--check", "--doc", str(stale)]) == 1
    assert renderer.main(["--doc", str(stale)]) == 0
    fixed = stale.read_text()
    assert fixed.startswith("intro\n") and fixed.endswith("outro\n")
    assert renderer.main(["--check", "--doc", str(stale)]) == 0


def test_missing_markers_are_an_error(renderer: ModuleType) -> None:
    with pytest.raises(ValueError, match="markers"):
        renderer.splice("no markers here", renderer.render())
