"""bench/mutants.py's deliberate faults still apply to the code (each edits exactly one place),
so the mutation check cannot rot into mutating nothing. Running the mutants is bench work
(docs/simulator.md), not part of the suite."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_mutant_applies_to_exactly_one_place() -> None:
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "bench" / "mutants.py")
    assert spec is not None and spec.loader is not None
    mutants = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = mutants  # dataclasses look their module up there
    spec.loader.exec_module(mutants)
    assert len(mutants.MUTANTS) >= 8
    for m in mutants.MUTANTS:
        text = (ROOT / "src" / "lazarus" / m.path).read_text()
        assert text.count(m.old) == 1, f"mutant {m.name} does not apply to {m.path}"
