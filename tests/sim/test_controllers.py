"""Several controllers in the simulator (sim/controllers.py): hand-overs in virtual time, the
one_actor oracle, and that it can fire. The ha-*.toml scenarios themselves run in
test_scenarios.py with every oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import lazarus.sim.controllers as controllers
from lazarus.cluster.leadership import LeaseTiming
from lazarus.sim.runner import RunResult, run_scenario
from lazarus.sim.scenario import ScenarioError, from_dict, load

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
T = LeaseTiming()


def run(name: str) -> RunResult:
    result = run_scenario(load(SCENARIOS / f"{name}.toml"))
    assert result.ok, "\n".join([v.line() for v in result.violations] + result.failures)
    return result


def changes(result: RunResult) -> list[tuple[str, str, int]]:
    return [(c["change"], c["node"], c["epoch"]) for c in result.leadership]


def test_a_killed_leader_is_replaced_within_its_lease_and_a_campaign() -> None:
    result = run("ha-leader-killed-during-wait")
    kill = 17.0
    (elected,) = [c for c in result.leadership if c["change"] == "elected" and c["epoch"] > 1]
    assert 0 < elected["t"] - kill <= T.ttl + T.campaign_every
    first, stop, then = changes(result)
    assert (first, stop) == (("elected", "ctl0", 1), ("stopped", "ctl0", 1))
    assert then[0] == "elected" and then[1] != "ctl0" and then[2] == 2


@pytest.mark.parametrize("name", ["ha-leader-frozen-past-lease", "ha-leader-frozen-during-fence",
                                  "ha-leader-cut-from-coordination"])
def test_a_leader_that_cannot_renew_stops_acting_before_the_next_is_elected(name: str) -> None:
    result = run(name)
    stopped = [c for c in result.leadership if c["change"] == "stopped" and c["node"] == "ctl0"]
    elected = [c for c in result.leadership if c["change"] == "elected" and c["epoch"] > 1]
    assert stopped and elected
    assert stopped[0]["acted_until"] <= elected[0]["t"] - T.margin
    assert elected[0]["epoch"] == 2 and elected[0]["node"] != "ctl0"


def test_a_brief_freeze_or_a_standby_loss_changes_no_leader() -> None:
    for name in ("ha-leader-frozen-briefly", "ha-standby-killed"):
        assert not [c for c in run(name).leadership if c["change"] == "stopped"], name


def _unfenced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken build: the leader's store is not epoch-fenced."""

    def plain(inner: Any, epoch: int, still_leader: Any = None) -> Any:
        return inner

    monkeypatch.setattr(controllers, "FencedStore", plain)


def _not_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken build: a deposed leader's controller keeps running."""

    async def keep_running(self: controllers.Node, term: Any, why: str) -> None:
        self.world.leader_changed(None, deposed=self)

    monkeypatch.setattr(controllers.Node, "_deposed", keep_running)


@pytest.mark.parametrize("name", ["ha-leader-frozen-past-lease", "ha-leader-frozen-during-fence"])
def test_the_one_actor_oracle_catches_a_resumed_leader_that_acts(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unfenced(monkeypatch)
    _not_stopped(monkeypatch)
    result = run_scenario(load(SCENARIOS / f"{name}.toml"))
    assert "one_actor" in {v.oracle for v in result.violations}
    assert not result.ok


@pytest.mark.parametrize("name", ["ha-leader-frozen-past-lease", "ha-leader-frozen-during-fence"])
def test_epoch_fencing_alone_stops_a_deposed_controller_that_keeps_running(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: even when the deposed controller is not stopped, the store refuses
    every write of its epoch, so it can start nothing (its intents never commit)."""
    _not_stopped(monkeypatch)
    run(name)


def test_freeze_and_coordination_cut_need_several_controllers() -> None:
    base: dict[str, Any] = {"cluster": {"hosts": 2}}
    for action in ("controller_freeze", "coordination_cut"):
        with pytest.raises(ScenarioError, match="controllers >= 2"):
            from_dict({**base, "events": [{"at": 1, "action": action, "down": 2}]})
    with pytest.raises(ScenarioError, match="unknown controller ctl5"):
        from_dict({"cluster": {"hosts": 2, "controllers": 3}, "events": [
            {"at": 1, "action": "controller_crash", "controller": "ctl5"}]})
    with pytest.raises(ScenarioError, match=r"cluster\.controllers"):
        from_dict({"cluster": {"hosts": 2, "controllers": 0}})


def test_an_event_aimed_at_the_leader_while_nobody_leads_does_nothing() -> None:
    """Fuzz seed 123108 (and five more): a freeze, cut or kill of "the leader" in the second
    between a leader's death and its successor's election was an event error."""
    scenario = from_dict({
        "cluster": {"hosts": 3, "controllers": 3, "vms": [{"name": "web", "host": "node2"}]},
        "events": [
            {"at": 5, "action": "controller_crash", "down": 10.0},
            {"at": 5.5, "action": "controller_freeze", "down": 2.0},
            {"at": 5.6, "action": "coordination_cut", "down": 2.0},
            {"at": 5.7, "action": "controller_crash", "down": 1.0},
        ],
        "duration": 40,
    })
    result = run_scenario(scenario)
    assert result.ok, result.failures
    assert [c["change"] for c in result.leadership].count("elected") == 2


def test_the_fuzzer_adds_controller_events_without_changing_the_rest() -> None:
    from lazarus.sim.fuzz import generate

    mixed = [generate(seed, None) for seed in range(60)]
    assert {s.controllers for s in mixed} == {1, 3}
    for seed in range(30):
        one, three = generate(seed, 1), generate(seed, 3)
        assert one.controllers == 1 and three.controllers == 3
        added = [e for e in three.events if e not in one.events]
        assert added and all(e.action.startswith(("controller", "coordination")) for e in added)
        assert [e for e in three.events if e in one.events] == one.events
