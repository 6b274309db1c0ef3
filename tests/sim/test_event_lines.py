"""An event's line is output only: rewording every journal line changes no behaviour.

Each scenario runs twice on the real core, once as is and once with every journal line
rewritten (reversed, behind a marker) as it is recorded. Listeners (monitor, scheduler, hook
manager, the simulator's oracles and timeline) decide on the typed fields (EventKind, ObjType,
obj_id, flag and value), so the second run must do exactly what the first did: the same
oracle results and the same timeline, entry for entry and instant for instant, once the
reworded lines are read back. The scenarios were picked to cross each listener's decisions
that used to read lines: a RESCHED flag (scheduler), an operator's fence confirmation
(oracles), a host's template update and a stale-domain cleanup note (monitor).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lazarus.core import journal
from lazarus.sim.runner import RunResult, run_scenario
from lazarus.sim.scenario import load

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
MARK = "~reworded~ "
PICKED = [
    "power-loss-migrate",  # resched: the scheduler wakes on the RESCHED flag
    "operator-confirms-fence",  # the oracle's fence confirmation
    "host-returns-after-recovery",  # stale domains: monitor notes about a host
    "capacity-added-later",  # new hosts and capacity while VMs wait
    "network-isolation-recreate",
]


def _run(name: str) -> RunResult:
    return run_scenario(load(SCENARIOS / f"{name}.toml"))


def _log(result: RunResult) -> list[tuple[float, str, str]]:
    assert result.timeline is not None
    return [
        (t, source, line[len(MARK):][::-1] if line.startswith(MARK) else line)
        for t, source, line in result.timeline.log
    ]


@pytest.mark.parametrize("name", PICKED)
def test_reworded_lines_change_nothing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _run(name)
    masked = journal.mask_words
    monkeypatch.setattr(journal, "mask_words", lambda line: MARK + masked(line)[::-1])
    reworded = _run(name)
    assert reworded.timeline is not None
    assert any(line.startswith(MARK) for _, _, line in reworded.timeline.log)  # it did bite
    assert plain.ok and reworded.ok, reworded.summary()
    assert [v.line() for v in reworded.expected] == [v.line() for v in plain.expected]
    assert reworded.virtual_seconds == plain.virtual_seconds
    assert _log(reworded) == _log(plain)
