"""The simulator itself: the safety switch is caught by the oracles, runs are deterministic,
the timeline has every step, the CLI runs a scenario, and the simulator runs the very core
modules the daemon runs (no simulator-only copies of core logic)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lazarus.cli.main import lazarus
from lazarus.sim.runner import run_scenario
from lazarus.sim.scenario import Scenario, ScenarioError, from_dict, load
from lazarus.sim.world import World

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "scenarios"


def test_breaking_fencing_on_purpose_is_caught_by_the_oracles() -> None:
    scenario = load(SCENARIOS / "network-isolation-migrate.toml")
    assert run_scenario(scenario).ok
    broken = run_scenario(scenario, break_fencing=True)
    fired = {v.oracle for v in broken.violations}
    assert {"split_brain", "unfenced_start"} <= fired
    assert not broken.ok


def test_a_power_loss_with_fencing_broken_is_caught_as_unfenced_start() -> None:
    """Power loss means no VM runs twice, but a fence that was never made is still caught when
    the host merely hangs: the VMs keep running there."""
    broken = run_scenario(load(SCENARIOS / "host-hang.toml"), break_fencing=True)
    assert "unfenced_start" in {v.oracle for v in broken.violations}


def test_a_healthy_host_sent_to_error_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The false_error oracle can fire: a monitor that takes good probes of node2 for failed
    ones once a store fault began (a plausible bug: a refused write read as a dead host)
    sends a healthy host to ERROR."""
    from lazarus.core.monitor import Monitor

    scenario = load(SCENARIOS / "store-fault-host-dies.toml")
    assert run_scenario(scenario).ok
    from lazarus.domain.errors import TemporaryDriverError

    real = Monitor._finish
    seen = {"node2": 0}

    def broken(self: Monitor, host: Any, result: Any, cursor: int, started: float) -> None:
        seen["node2"] += host.name == "node2"
        if host.name == "node2" and seen["node2"] > 4:
            result = TemporaryDriverError("write refused, counted as a failed probe")
        real(self, host, result, cursor, started)

    monkeypatch.setattr(Monitor, "_finish", broken)
    result = run_scenario(scenario)
    assert "false_error" in {v.oracle for v in result.violations}, result.summary()


def test_same_seed_same_timeline() -> None:
    scenario = load(SCENARIOS / "controller-crash-during-wait.toml")
    scenario.jitter = 3.0
    first = run_scenario(scenario, seed=7).to_json()
    again = run_scenario(scenario, seed=7).to_json()
    assert json.dumps(first) == json.dumps(again)
    other = run_scenario(scenario, seed=8).to_json()
    assert json.dumps(first) != json.dumps(other)


def test_timeline_has_every_step_in_virtual_seconds_since_the_fault() -> None:
    result = run_scenario(load(SCENARIOS / "power-loss-migrate.toml"))
    assert result.timeline is not None
    (incident,) = result.timeline.to_json()["incidents"]
    assert incident["fault"] == "power_off" and incident["at"] == 10.0
    steps = [incident[k] for k in ("detection", "hook_start", "fence", "hook_end")]
    assert all(s is not None for s in steps) and steps == sorted(steps)
    assert incident["fence_ok"] is True and incident["hook_code"] == 0
    for vm in incident["vms"]:
        assert vm["unknown"] <= vm["placement"] <= vm["running"] < 60
        assert vm["host"] in ("node2", "node3")
    text = result.timeline.render_text()
    assert "incident 1: power_off node1 at t=10.0" in text and "fence fence_sim off" in text


def test_the_simulator_runs_the_daemons_core() -> None:
    """The same classes, from the same modules, as app/daemon.py builds."""
    from lazarus.core import controller, hooks, lifecycle, monitor, scheduler
    from lazarus.ha import host_error
    from lazarus.sim.hostexec import HostErrorExecutor

    world = World(Scenario(name="probe"))
    try:
        c = world.controller
        assert type(c) is controller.Controller
        assert type(c.monitor) is monitor.Monitor and type(c.scheduler) is scheduler.Scheduler
        assert type(c.lifecycle) is lifecycle.Lifecycle and type(c.hooks) is hooks.HookManager
        assert isinstance(world.executor, HostErrorExecutor)
        assert world.executor.break_fencing is False
        assert issubclass(host_error.HostErrorRun, object)
    finally:
        world.close()
    daemon = ast.parse((ROOT / "src/lazarus/app/daemon.py").read_text())
    daemon_imports = {n.module for n in ast.walk(daemon) if isinstance(n, ast.ImportFrom)}
    assert "lazarus.core.controller" in daemon_imports
    core_names = {"Controller", "Monitor", "Scheduler", "Lifecycle", "Journal", "Inventory",
                  "HookManager", "HostErrorRun"}
    for path in (ROOT / "src/lazarus/sim").glob("*.py"):
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        assert not defined & core_names, f"{path.name} redefines core classes"
        bases = {b.id for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                 for b in n.bases if isinstance(b, ast.Name)}
        # the one subclass is the safety switch, off unless a test turns it on
        assert bases & core_names <= {"HostErrorRun"}


def test_bad_scenarios_are_refused_with_the_field_named() -> None:
    with pytest.raises(ScenarioError, match="unknown action"):
        from_dict({"events": [{"at": 1, "action": "explode"}]})
    with pytest.raises(ScenarioError, match="unknown host node9"):
        from_dict({"events": [{"at": 1, "action": "power_off", "host": "node9"}]})
    with pytest.raises(ScenarioError, match="not a Settings field"):
        from_dict({"settings": {"bogus": 1}})


def test_cli_run_prints_the_timeline_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    result = CliRunner().invoke(
        lazarus, ["sim", "run", str(SCENARIOS / "power-loss-migrate.toml"), "--timeline",
                  str(out)])
    assert result.exit_code == 0, result.output
    assert "incident 1: power_off node1" in result.output and ": ok," in result.output
    data = json.loads(out.read_text())
    assert data["ok"] is True and data["incidents"][0]["host"] == "node1"


def test_cli_run_exits_1_on_unmet_expectations(tmp_path: Path) -> None:
    path = tmp_path / "wrong.toml"
    text = (SCENARIOS / "blip-shorter-than-detection.toml").read_text()
    path.write_text(text.replace('not_fenced = ["node1"]', 'fenced = ["node1"]'))
    result = CliRunner().invoke(lazarus, ["sim", "run", str(path)])
    assert result.exit_code == 1
    assert "FAILED expect.fenced: node1 was never fenced" in result.output


def test_cli_fuzz(tmp_path: Path) -> None:
    result = CliRunner().invoke(lazarus, ["sim", "fuzz", "--seeds", "2", "--out",
                                          str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 seed(s) from 0: 0 broke an invariant" in result.output
