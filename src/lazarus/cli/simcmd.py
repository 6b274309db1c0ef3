"""`lazarus sim run` and `lazarus sim fuzz`: the discrete-event simulator (lazarus.sim).

Unlike the other `sim` commands these need no daemon: they build the real controller core in
this process on a virtual clock (sim/world.py) and run a scenario file or random fault
schedules against it. Mounted on the `sim` group by cli/sim.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from lazarus.sim.fuzz import fuzz_one
from lazarus.sim.runner import run_scenario
from lazarus.sim.scenario import ScenarioError, load

from .output import CliError


@click.command("run")
@click.argument("scenario_file", metavar="SCENARIO",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the scenario's event jitter (same seed, same timeline).")
@click.option("--json", "as_json", is_flag=True, help="Print the result and timeline as JSON.")
@click.option("--timeline", "timeline_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the timeline to FILE (JSON if it ends in .json).")
@click.option("--verbose", "-v", is_flag=True, help="Show the core's log records on stderr.")
def run(scenario_file: Path, seed: int, as_json: bool, timeline_file: Path | None,
        verbose: bool) -> None:
    """Run a scenario file on the real controller core in virtual time.

    Prints the timeline (per incident and VM: detection, hook start, fence, placement,
    RUNNING) and any oracle violation or unmet expectation; exits 1 if there is one.

    \b
    Example: lazarus sim run tests/scenarios/power-loss-migrate.toml --timeline out.json
    """
    if not verbose:
        logging.disable(logging.CRITICAL)
    try:
        scenario = load(scenario_file)
    except ScenarioError as exc:
        raise CliError(str(exc)) from None
    result = run_scenario(scenario, seed)
    data = result.to_json()
    text = result.timeline.render_text() if result.timeline is not None else ""
    if timeline_file is not None:
        body = json.dumps(data, indent=2) if timeline_file.suffix == ".json" else text + "\n"
        timeline_file.write_text(body, encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(text)
        for v in result.expected:
            click.echo(f"expected violation {v.line()}")
        for v in result.violations:
            click.echo(f"VIOLATION {v.line()}")
        for failure in result.failures:
            click.echo(f"FAILED {failure}")
        click.echo(result.summary())
    if not result.ok:
        raise SystemExit(1)


@click.command("fuzz")
@click.option("--seeds", type=click.IntRange(1), default=100, show_default=True,
              help="How many random fault schedules to run.")
@click.option("--start", type=int, default=0, show_default=True, help="The first seed.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("sim-fuzz"), show_default=True,
              help="Where a violation's minimal scenario and timeline are written.")
@click.option("--controllers", type=click.IntRange(0, 9), default=1, show_default=True,
              help="Controllers per schedule: 1 = the one-controller schedules; 2 or more "
                   "adds leader kills, freezes and coordination cuts; 0 = three for about a "
                   "third of the seeds, one for the rest.")
def fuzz(seeds: int, start: int, out: Path, controllers: int | None) -> None:
    """Run seeded random fault schedules under every oracle; shrink what breaks.

    Each violation writes OUT/seed-N.toml (a minimal reproducing scenario for `lazarus sim
    run`) and OUT/seed-N.timeline.txt. Exits 1 if any seed broke an invariant.

    \b
    Example: lazarus sim fuzz --seeds 500 --start 1000 --out /tmp/fuzz --controllers 3
    """
    logging.disable(logging.CRITICAL)
    broken = 0
    for seed in range(start, start + seeds):
        outcome = fuzz_one(seed, out, controllers=controllers or None)
        if outcome.ok:
            continue
        broken += 1
        lines = [v.line() for v in outcome.result.violations] + outcome.result.failures
        click.echo(f"seed {seed}: {lines[0] if lines else 'failed'}")
        for path in outcome.files:
            click.echo(f"  wrote {path}")
    click.echo(f"{seeds} seed(s) from {start}: {broken} broke an invariant")
    if broken:
        raise SystemExit(1)
