"""Mutation check of the simulator's oracles: does a deliberate fault in the core get caught?

Each mutant is one textual change to a copy of src/lazarus (in a temporary directory; the
work tree is never touched). For each, the scenario suite (tests/scenarios/*.toml) and then
fuzz seeds run against the mutated copy until something fails: a violated oracle or a
scenario expectation. A mutant nothing catches is a blind spot of the checks, and the run
exits 1.

    .venv/bin/python bench/mutants.py                # all mutants, 2 at a time
    .venv/bin/python bench/mutants.py --only skip-recount --seeds 100

Figures and the command that produced them: docs/simulator.md ("Mutation check").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str  # under src/lazarus
    old: str
    new: str


MUTANTS = [
    Mutant("drop-p-watch", "host_error does not wait -p cycles", "ha/host_error.py",
           "        cycles = self.options.pause\n", "        cycles = 0\n"),
    Mutant("skip-mass-guard", "the mass-failure guard never stops a fence", "ha/guard.py",
           "    def too_many(self, view: ClusterView) -> bool:\n        return ",
           "    def too_many(self, view: ClusterView) -> bool:\n        return False and "),
    Mutant("no-quiet-window", "the guard does not wait for a quiet cluster", "ha/guard.py",
           "        window = self.options.mass_failure_window\n", "        window = 0.0\n"),
    Mutant("forget-resched", "resched does not set the flag", "core/lifecycle.py",
           "                vm.resched = name == \"resched\"\n",
           "                vm.resched = False\n"),
    Mutant("start-before-fence", "a failed fence counts as proven off", "ha/host_error.py",
           "        if not ok:\n            return await self._unfenced(",
           "        if False:\n            return await self._unfenced("),
    Mutant("lose-hook-event", "every other event is not turned into hook jobs",
           "core/hooks.py",
           "                for hook in self.matching(event):\n",
           "                for hook in self.matching(event)[: 0 if event.id % 2 else None]:\n"),
    Mutant("double-deploy", "a deploy also starts the VM on another MONITORED host",
           "core/driver_ops.py",
           "            new_id = await within(driver.deploy(host, vm_spec(vm, ds)), timeout)\n",
           "            new_id = await within(driver.deploy(host, vm_spec(vm, ds)), timeout)\n"
           "            for other in store.hosts():\n"
           "                if other.id != host.id and other.state is HostState.MONITORED:\n"
           "                    await within(driver.deploy(other, vm_spec(vm, ds)), timeout)\n"
           "                    break\n"),
    Mutant("ignore-ha-no", "HA = NO is not honoured", "ha/vms.py",
           "            if ha in _OFF:\n",
           "            if False:\n"),
    Mutant("resume-aborted", "a run finding an ABORTED incident resumes it", "ha/host_error.py",
           "            if incident.state is St.ABORTED:",
           "            if incident.state is St.ABORTED:  # the old resume: on to the VMs\n"
           "                incident.state = St.RECOVERING\n"
           "            if False:"),
    Mutant("skip-recount", "a moved VM's hosts are not recounted", "core/lifecycle.py",
           "    for host_id in {vm.host_id, previous_host_id(vm)}:\n",
           "    for host_id in ():\n"),
    Mutant("no-restart-policy", "a failed recovery start is left alone", "core/restarts.py",
           "        rec = record(vm)\n        if rec is None or (rec.get(\"STATE\") or \"\") "
           "not in ACTIVE_STATES:\n            return\n        if vm.state is not VmState.ACTIVE",
           "        return\n        rec = record(vm)\n        if rec is None or (rec.get(\"STATE\")"
           " or \"\") not in ACTIVE_STATES:\n            return\n        if vm.state is not "
           "VmState.ACTIVE"),
    Mutant("poweroff-awaiting", "a VM waiting for room is given up to POWEROFF",
           "domain/transitions.py",
           "    awaiting = pair == UNKNOWN and resched\n",
           "    awaiting = False\n"),
    Mutant("trust-lying-bmc", "a BMC's OFF is believed while the heartbeat advances",
           "ha/host_error.py",
           "            if beat.counter >= start + 2:\n",
           "            if False:\n"),
    Mutant("isolated-is-dead", "an ISOLATED host (heartbeat advancing) is fenced at once",
           "ha/host_error.py",
           "        if beat is not None and beat.isolated:\n            incident.isolated",
           "        if False:\n            incident.isolated"),
    Mutant("watchdog-optional", "a stopped heartbeat proves death without a watchdog",
           "ha/evidence.py",
           "        return (self.watchdog > 0 and self.alive_at_failure()\n",
           "        return (self.alive_at_failure()\n"),
]

# Run inside the mutated copy: the scenarios first, then fuzz seeds; print what caught it.
_PROBE = r"""
import json, sys
from pathlib import Path
from lazarus.sim.runner import run_scenario
from lazarus.sim.scenario import load
from lazarus.sim.fuzz import fuzz_one
import tempfile
for path in sorted(Path(sys.argv[1]).glob("*.toml")):
    result = run_scenario(load(path))
    if not result.ok:
        why = [v.line() for v in result.violations] + result.failures
        print(json.dumps({"by": f"scenario {path.stem}", "why": why[0] if why else "?"}))
        sys.exit(0)
out = Path(tempfile.mkdtemp())
for seed in range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])):
    outcome = fuzz_one(seed, out)
    if not outcome.ok:
        why = [v.line() for v in outcome.result.violations] + outcome.result.failures
        print(json.dumps({"by": f"fuzz seed {seed}", "why": why[0] if why else "?"}))
        sys.exit(0)
print(json.dumps({"by": "", "why": "nothing caught it"}))
"""


def run_mutant(m: Mutant, seeds: int, start: int) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{m.name}-") as tmp:
        copy = Path(tmp) / "lazarus"
        shutil.copytree(ROOT / "src" / "lazarus", copy,
                        ignore=shutil.ignore_patterns("__pycache__"))
        target = copy / m.path
        text = target.read_text()
        if text.count(m.old) != 1:
            return {"name": m.name, "by": "", "why": f"mutation does not apply to {m.path}"}
        target.write_text(text.replace(m.old, m.new))
        env = {**os.environ, "PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        began = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, str(ROOT / "tests" / "scenarios"), str(start),
             str(seeds)],
            env=env, capture_output=True, text=True, timeout=1800, check=False,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        found = json.loads(lines[-1]) if lines else {"by": "", "why": proc.stderr[-300:]}
        return {"name": m.name, **found, "seconds": f"{time.monotonic() - began:.0f}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="mutant name (repeatable)")
    parser.add_argument("--seeds", type=int, default=200, help="fuzz seeds after the scenarios")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda m: run_mutant(m, args.seeds, args.start), chosen))
    missed = 0
    for m, r in zip(chosen, results, strict=True):
        caught = bool(r.get("by"))
        missed += not caught
        print(f"{m.name:20} {'caught by ' + r['by'] if caught else 'MISSED'}  "
              f"({r.get('seconds', '?')} s)\n{'':20} {m.what}; {r['why'][:150]}")
    print(f"{len(chosen) - missed} of {len(chosen)} mutants caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
