"""The scenario suite: every file in tests/scenarios/ runs on the real core in virtual time,
under every oracle, and must meet its own expectations (docs/simulator.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lazarus.sim.runner import run_scenario
from lazarus.sim.scenario import dumps, from_dict, load

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


def test_the_suite_is_large_enough() -> None:
    assert len(SCENARIOS) >= 40


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    result = run_scenario(load(path))
    report = "\n".join([v.line() for v in result.violations] + result.failures)
    assert result.ok, f"{result.summary()}\n{report}"


@pytest.mark.parametrize("path", SCENARIOS[:10], ids=[p.stem for p in SCENARIOS[:10]])
def test_scenario_files_round_trip(path: Path) -> None:
    import tomllib

    scenario = load(path)
    again = from_dict(tomllib.loads(dumps(scenario)))
    assert again == scenario
