"""Randomized fault schedules: a few hundred seeds under every oracle (lazarus.sim.fuzz).

Any number more on demand: `lazarus sim fuzz --seeds 1000 --start 5000 --out /tmp/fuzz`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from lazarus.sim.fuzz import fuzz_one, generate, shrink
from lazarus.sim.runner import run_scenario
from lazarus.sim.scenario import Event, HostSpec, Scenario, VmSpec, dumps, load

CHUNK = 25
CHUNKS = 8  # 200 seeds


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("chunk", range(CHUNKS), ids=lambda c: f"seeds-{c * CHUNK}")
def test_random_fault_schedules_keep_every_invariant(chunk: int, tmp_path: Path) -> None:
    broken = []
    for seed in range(chunk * CHUNK, (chunk + 1) * CHUNK):
        outcome = fuzz_one(seed, tmp_path)
        if not outcome.ok:
            lines = [v.line() for v in outcome.result.violations] + outcome.result.failures
            broken.append(f"seed {seed}: {lines[:3]} -> {[str(p) for p in outcome.files]}")
    assert not broken, "\n".join(broken)


def test_generation_is_deterministic() -> None:
    assert generate(42) == generate(42)
    assert generate(42) != generate(43)


def test_a_violation_is_shrunk_and_written_as_a_runnable_scenario(tmp_path: Path) -> None:
    """With fencing broken on purpose, a schedule that cuts a host off fails; shrinking drops
    the events that do not matter, and the written scenario reproduces the violation."""
    scenario = Scenario(
        name="shrink-me",
        hosts=[HostSpec("node1"), HostSpec("node2"), HostSpec("node3")],
        vms=[VmSpec("web", host="node1", count=2), VmSpec("db", host="node3")],
        events=[
            Event(at=5, action="capacity", host="node2", memory=16384),
            Event(at=10, action="network_cut", host="node1"),
            Event(at=20, action="vm_crash", vm="db"),
            Event(at=30, action="controller_crash", down=1.0),
        ],
    )
    result = run_scenario(scenario, break_fencing=True)
    assert result.violations
    minimal, again = shrink(scenario, 0, result, break_fencing=True)
    assert [e.action for e in minimal.events] == ["network_cut"]
    assert result.violations[0].oracle in {v.oracle for v in again.violations}
    path = tmp_path / "min.toml"
    path.write_text(dumps(minimal))
    replay = run_scenario(load(path), break_fencing=True)
    assert {v.oracle for v in replay.violations} == {v.oracle for v in again.violations}
