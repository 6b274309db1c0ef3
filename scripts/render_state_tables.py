#!/usr/bin/env python3
"""Render the state tables of src/lazarus/domain/transitions.py (and the HA incident's, in
src/lazarus/ha/incident.py) into docs/state-machines.md.

The doc keeps its prose; only the part between the two marker lines is generated:

    <!-- BEGIN GENERATED STATE TABLES (scripts/render_state_tables.py) -->
    ...
    <!-- END GENERATED STATE TABLES -->

Usage (from the repository root):

    .venv/bin/python scripts/render_state_tables.py          # rewrite the section
    .venv/bin/python scripts/render_state_tables.py --check  # exit 1 if the doc is stale

tests/unit/test_docs_state_tables.py runs the same comparison, so a change to the tables
without a re-render fails the suite. Only the transition tables are read: nothing here
decides anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from lazarus.domain.errors import ActionError
from lazarus.domain.states import HostState, LcmState, RecoverOp, VmState, vm_state_name
from lazarus.domain.transitions import (
    HOLDS_CAPACITY,
    MIGRATE_FROM,
    RETRY_OF,
    UNKNOWN,
    VM_ACTIONS,
    VM_STEPS,
    VM_SYNC,
    HostEvent,
    Pair,
    Seen,
    apply_host,
    apply_migrate,
    recover_target,
)
from lazarus.ha.incident import TRANSITIONS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "state-machines.md"
BEGIN = "<!-- BEGIN GENERATED STATE TABLES (scripts/render_state_tables.py) -->"
END = "<!-- END GENERATED STATE TABLES -->"

LIVE_HOST_STATES = (
    HostState.INIT,
    HostState.MONITORED,
    HostState.ERROR,
    HostState.DISABLED,
    HostState.OFFLINE,
)


def _name(pair: Pair) -> str:
    return vm_state_name(*pair)


def _code(text: str) -> str:
    return f"`{text}`"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def host_table() -> list[str]:
    events = list(HostEvent)
    rows = []
    for state in LIVE_HOST_STATES:
        cells = [f"{state.name} ({int(state)})"]
        for event in events:
            plain = apply_host(state, event, has_capacity=False)
            with_capacity = apply_host(state, event, has_capacity=True)
            cell = "=" if plain is state else plain.name
            if with_capacity is not plain:
                cell += f" ({with_capacity.name} if it has capacity)"
            cells.append(cell)
        rows.append(cells)
    lines = ["### Host: state x event -> next state", ""]
    lines += _table(["state"] + [_code(e.value) for e in events], rows)
    lines += ["", "`=` means the event leaves the state unchanged."]
    return lines


def vm_action_table() -> list[str]:
    lines = ["### VM: API actions (one.vm.action, one.vm.deploy)", ""]
    groups: dict[str, list[str]] = {}  # actions with identical tables share rows
    for action in sorted(VM_ACTIONS):
        same = [a for a in groups if VM_ACTIONS[a] == VM_ACTIONS[action]]
        groups.setdefault(same[0] if same else action, []).append(action)
    rows = []
    for first, names in groups.items():
        label = " ".join(_code(name) for name in names)
        for source, target in VM_ACTIONS[first].items():
            rows.append([label, _name(source), _name(target)])
    lines += _table(["action", "accepted in", "enters at once"], rows)
    lines += [
        "",
        "Any other (action, state) pair is refused with ACTION (0x800) "
        "\"This action is not available for state X\".",
    ]
    return lines


def migrate_table() -> list[str]:
    lines = ["### VM: one.vm.migrate", ""]
    rows = []
    for source in MIGRATE_FROM:
        cold = apply_migrate(source[0], source[1], live=False)
        live = apply_migrate(source[0], source[1], live=True)
        rows.append([_name(source), _name(cold), _name(live)])
    lines += _table(["accepted in", "cold (live = false)", "live = true"], rows)
    lines += [
        "",
        "Any other state is refused with \"Migrate action is not available for state X\".",
    ]
    return lines


def steps_table() -> list[str]:
    lines = ["### VM: driver steps of transient LCM states", ""]
    rows = []
    for lcm in sorted(VM_STEPS):
        step = VM_STEPS[lcm]
        rows.append(
            [f"{lcm.name} ({int(lcm)})", _code(step.op.value), _name(step.success),
             _name(step.failure)]
        )
    lines += _table(["LCM state", "driver operation", "on success", "on failure"], rows)
    return lines


def _recover_cell(op: RecoverOp, state: VmState, lcm: LcmState) -> str:
    try:
        target = recover_target(op, state, lcm)
    except ActionError:
        return "refused"
    return "no change" if target is None else _name(target)


def recover_table() -> list[str]:
    wanted = {LcmState.RUNNING, LcmState.UNKNOWN, LcmState.LCM_INIT}
    wanted |= set(VM_STEPS) | set(RETRY_OF)
    rows = []
    for lcm in sorted(wanted):
        ops = (RecoverOp.FAILURE, RecoverOp.SUCCESS, RecoverOp.RETRY)
        rows.append([f"ACTIVE/{lcm.name}", *(_recover_cell(op, VmState.ACTIVE, lcm) for op in ops)])
    lines = ["### VM: one.vm.recover ops 0, 1 and 2 by state", ""]
    lines += _table(["state", "0 `--failure`", "1 `--success`", "2 `--retry`"], rows)
    lines += [
        "",
        "VMs that are not ACTIVE (or CLONING_FAILURE) refuse ops 0..2 with \"Recover action "
        "is not available for state X\". Ops 3..5 are described above the tables.",
    ]
    return lines


def retry_table() -> list[str]:
    lines = ["### VM: failure state -> state `--retry` enters", ""]
    rows = [[f"{lcm.name} ({int(lcm)})", target.name] for lcm, target in sorted(RETRY_OF.items())]
    lines += _table(["failure state", "retried as"], rows)
    return lines


def vm_sync_table() -> list[str]:
    groups: dict[tuple[Seen, Pair], list[str]] = {}
    for (seen, stored, awaiting), target in VM_SYNC.items():
        if stored == UNKNOWN and (seen, stored, not awaiting) not in VM_SYNC:
            label = _name(stored) + (" with RESCHED" if awaiting else " without RESCHED")
        elif stored == UNKNOWN and awaiting:
            continue  # the same as without RESCHED: listed once
        else:
            label = _name(stored)
        groups.setdefault((seen, target), []).append(label)
    rows = []
    for (seen, target), labels in groups.items():
        shown = _name(target)
        if seen is Seen.MISSING:
            shown += " (ACTIVE/UNKNOWN with `MISSING_VM_STATE = UNKNOWN`)"
        rows.append([_code(seen.value), ", ".join(labels), shown])
    lines = ["### VM: a probe's report x stored state -> state (the monitor's VM sync)", ""]
    lines += _table(["the host reports", "VM state before", "VM state after"], rows)
    lines += [
        "",
        "Any other combination leaves the VM alone. `MISSING`: the host does not list the "
        "VM's domain. An ACTIVE/UNKNOWN VM with RESCHED set was rescheduled off the host by "
        "an HA recovery and waits for room: it is not given up to POWEROFF.",
    ]
    return lines


def capacity_line() -> list[str]:
    names = ", ".join(s.name for s in sorted(HOLDS_CAPACITY))
    return ["### Capacity", "", f"A VM holds its host's CPU and memory while in: {names}."]


def incident_table() -> list[str]:
    lines = ["### HA incident (ft/host_error): state -> states it may move to", "",
             "`Incident.advance()` refuses every other move; a state with no move is final.",
             ""]
    rows = [[state.name, ", ".join(t.name for t in sorted(targets)) or "(final)"]
            for state, targets in TRANSITIONS.items()]
    lines += _table(["state", "may move to"], rows)
    return lines


def render() -> str:
    """The generated section, markers included."""
    parts = [host_table(), vm_action_table(), migrate_table(), steps_table(), recover_table(),
             retry_table(), vm_sync_table(), capacity_line(), incident_table()]
    note = "<!-- Do not edit by hand: run scripts/render_state_tables.py -->"
    body: list[str] = [BEGIN, "", note]
    for part in parts:
        body += ["", *part]
    body += ["", END]
    return "\n".join(body)


def splice(document: str, section: str) -> str:
    """`document` with the text between (and including) the markers replaced by `section`."""
    start = document.find(BEGIN)
    stop = document.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing or out of order")
    return document[:start] + section + document[stop + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is stale")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document to update")
    args = parser.parse_args(argv)
    current = args.doc.read_text(encoding="utf-8")
    wanted = splice(current, render())
    if args.check:
        if wanted != current:
            print(f"{args.doc} is out of date: run scripts/render_state_tables.py", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        args.doc.write_text(wanted, encoding="utf-8")
        print(f"updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
