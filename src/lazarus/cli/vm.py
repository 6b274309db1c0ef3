"""`lazarus vm ...`: virtual machines, like OpenNebula's `onevm`.

A thin shell over one.vmpool.info / one.vm.* (cli/main.py mounts the group). `vm list` prints
the `onevm list` columns (STAT is the LCM short name while ACTIVE: runn, unkn, boot...);
`--json` prints objects with state names and numbers, the host and the history for scripts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.etree.ElementTree import Element

import click

from lazarus.domain.states import (
    HistoryAction,
    LcmState,
    RecoverOp,
    VmState,
    vm_state_label,
    vm_state_name,
)
from lazarus.drivers.clock import SystemClock

from .context import Api, pass_api, read_template
from .output import (
    duration,
    integer,
    parse_xml,
    print_attributes,
    print_json,
    print_section,
    print_table,
    size_mib,
    template_dict,
    template_lines,
    text,
    timestamp,
)

ALL_WITH_DONE = -2
ALL_BUT_DONE = -1


def _enum(cls: type[VmState] | type[LcmState], number: int) -> Any:
    try:
        return cls(number)
    except ValueError:
        return None


def history_record(hist: Element) -> dict[str, Any]:
    action = _enum_action(integer(hist, "ACTION", 0))
    return {
        "SEQ": integer(hist, "SEQ"),
        "HOST": text(hist, "HOSTNAME"),
        "HOST_ID": integer(hist, "HID"),
        "DS_ID": integer(hist, "DS_ID"),
        "VM_MAD": text(hist, "VM_MAD"),
        "ACTION": integer(hist, "ACTION", 0),
        "ACTION_NAME": action,
        "STIME": integer(hist, "STIME", 0),
        "ETIME": integer(hist, "ETIME", 0),
    }


def _enum_action(number: int) -> str:
    try:
        return HistoryAction(number).name.lower().replace("_", "-")
    except ValueError:
        return str(number)


def vm_record(vm: Element) -> dict[str, Any]:
    """The JSON object of one VM element (short or full body)."""
    state_no, lcm_no = integer(vm, "STATE"), integer(vm, "LCM_STATE", 0)
    state: VmState | None = _enum(VmState, state_no)
    lcm: LcmState | None = _enum(LcmState, lcm_no)
    if state is not None and lcm is not None:
        stat, label = vm_state_label(state, lcm), vm_state_name(state, lcm)
    else:
        stat, label = "?", f"{state_no}/{lcm_no}"
    history = vm.findall("HISTORY_RECORDS/HISTORY")
    last = history[-1] if history else None
    placed = last is not None and state not in (VmState.DONE, VmState.PENDING, VmState.HOLD)
    return {
        "ID": integer(vm, "ID"),
        "NAME": text(vm, "NAME"),
        "UID": integer(vm, "UID"),
        "UNAME": text(vm, "UNAME"),
        "STATE": state_no,
        "STATE_NAME": state.name if state is not None else str(state_no),
        "LCM_STATE": lcm_no,
        "LCM_STATE_NAME": lcm.name if lcm is not None else str(lcm_no),
        "STAT": stat,
        "STATE_LABEL": label,
        "RESCHED": integer(vm, "RESCHED", 0),
        "CPU": text(vm, "TEMPLATE/CPU"),
        "VCPU": text(vm, "TEMPLATE/VCPU"),
        "MEMORY": integer(vm, "TEMPLATE/MEMORY", 0),
        "HOST": text(last, "HOSTNAME") if placed and last is not None else "",
        "HOST_ID": integer(last, "HID") if placed and last is not None else -1,
        "DEPLOY_ID": text(vm, "DEPLOY_ID"),
        "STIME": integer(vm, "STIME", 0),
        "ETIME": integer(vm, "ETIME", 0),
    }


def parse_state(value: str) -> tuple[int, Callable[[int], bool] | None]:
    """--state: a VM state (PENDING, pend, 1, ...) -> server filter; an LCM state (RUNNING,
    runn, unkn, fail, ...) -> ACTIVE on the server plus an LCM check here."""
    word = value.strip()
    if word.lstrip("-").isdigit():
        return int(word), None
    upper, lower = word.upper().replace("-", "_"), word.lower()
    if upper in VmState.__members__:
        return VmState[upper].value, None
    if upper in LcmState.__members__:
        wanted = LcmState[upper].value
        return VmState.ACTIVE.value, lambda lcm: lcm == wanted
    vm_short = [s for s in VmState if s.short == lower and s is not VmState.ACTIVE]
    if len(vm_short) == 1 or (vm_short and lower != "fail"):
        return vm_short[0].value, None
    lcm_short = {s.value for s in LcmState if s.short == lower}
    if lcm_short:
        return VmState.ACTIVE.value, lambda lcm: lcm in lcm_short
    raise click.BadParameter(f"unknown VM state {value!r}", param_hint="--state")


@click.group()
def vm() -> None:
    """Manage virtual machines (like `onevm`).

    \b
    Example: echo 'NAME="web" CPU="1" MEMORY="512"' | lazarus vm create - && lazarus vm list
    """


@vm.command("list")
@click.option("--state", "-s", "state", default=None,
              help="Only VMs in this state: a VM state (pending, poweroff, done...) or an "
                   "LCM state of ACTIVE VMs (running, unknown, runn, unkn, fail...).")
@click.option("--all", "-a", "include_done", is_flag=True, help="Include DONE VMs.")
@click.option("--json", "as_json", is_flag=True, help="Print the VMs as JSON objects.")
@pass_api
def list_(api: Api, state: str | None, include_done: bool, as_json: bool) -> None:
    """List the VMs (not DONE ones unless --all) with state, size, host and age.

    \b
    Example: lazarus vm list --state unknown
    """
    server_state, lcm_ok = ALL_WITH_DONE if include_done else ALL_BUT_DONE, None
    if state is not None:
        server_state, lcm_ok = parse_state(state)
    pool = parse_xml(api.call("one.vmpool.info", -2, -1, -1, server_state), "VM pool")
    records = [vm_record(e) for e in pool.findall("VM")]
    if lcm_ok is not None:
        records = [r for r in records if lcm_ok(r["LCM_STATE"])]
    if as_json:
        print_json(records)
        return
    now = SystemClock().now()
    rows = []
    for r in records:
        end = r["ETIME"] or now
        rows.append((r["ID"], r["NAME"], r["STAT"], r["CPU"] or "-", size_mib(r["MEMORY"]),
                     r["HOST"] or "-", duration(end - r["STIME"]) if r["STIME"] else "-"))
    print_table(("ID", "NAME", "STAT", "CPU", "MEM", "HOST", "TIME"), rows,
                right=("ID", "CPU", "MEM", "TIME"))


@vm.command()
@click.argument("vm_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the VM as a JSON object.")
@pass_api
def show(api: Api, vm_id: int, as_json: bool) -> None:
    """Show a VM: states, host, its template and its placement history.

    \b
    Example: lazarus vm show 4
    """
    elem = parse_xml(api.call("one.vm.info", vm_id), "VM")
    record = vm_record(elem)
    history = [history_record(h) for h in elem.findall("HISTORY_RECORDS/HISTORY")]
    if as_json:
        record["TEMPLATE"] = template_dict(elem.find("TEMPLATE"))
        record["USER_TEMPLATE"] = template_dict(elem.find("USER_TEMPLATE"))
        record["HISTORY"] = history
        print_json(record)
        return
    print_section(f"VIRTUAL MACHINE {record['ID']} INFORMATION")
    print_attributes([
        ("ID", record["ID"]),
        ("NAME", record["NAME"]),
        ("USER", record["UNAME"]),
        ("STATE", record["STATE_NAME"]),
        ("LCM_STATE", record["LCM_STATE_NAME"]),
        ("RESCHED", "Yes" if record["RESCHED"] else "No"),
        ("HOST", record["HOST"] or "-"),
        ("START TIME", timestamp(record["STIME"])),
        ("END TIME", timestamp(record["ETIME"])),
        ("DEPLOY ID", record["DEPLOY_ID"] or "-"),
    ])
    sections = (("VIRTUAL MACHINE TEMPLATE", "TEMPLATE"), ("USER TEMPLATE", "USER_TEMPLATE"))
    for title, tag in sections:
        lines = template_lines(elem.find(tag))
        if lines or tag == "TEMPLATE":
            click.echo()
            print_section(title)
            for line in lines:
                click.echo(line)
    click.echo()
    print_section("VIRTUAL MACHINE HISTORY")
    now = SystemClock().now()
    rows = [
        (h["SEQ"], h["HOST"], h["ACTION_NAME"], h["DS_ID"], timestamp(h["STIME"]),
         duration((h["ETIME"] or now) - h["STIME"]) if h["STIME"] else "-")
        for h in history
    ]
    print_table(("SEQ", "HOST", "ACTION", "DS", "START", "TIME"), rows,
                right=("SEQ", "DS", "TIME"))


@vm.command()
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--hold", is_flag=True, help="Create it on HOLD: the scheduler leaves it alone.")
@pass_api
def create(api: Api, source: str | None, hold: bool) -> None:
    """Create a VM from a template (OpenNebula syntax or XML) in FILE or on stdin; prints its ID.

    \b
    Example: printf 'NAME="db"\\nCPU="2"\\nMEMORY="2048"\\n' | lazarus vm create -
    """
    template = read_template(source)
    new_id = api.call("one.vm.allocate", template, hold)
    click.echo(f"ID: {new_id}")


def _action_command(action: str, summary: str, hard: bool = False) -> None:
    """Registers `lazarus vm <action> ID... [--hard]` over one.vm.action."""

    def run(api: Api, vm_ids: tuple[int, ...], hard: bool = False) -> None:
        name = f"{action}-hard" if hard else action
        for vm_id in vm_ids:
            api.call("one.vm.action", name, vm_id)

    run.__doc__ = f"{summary}\n\n\bExample: lazarus vm {action} 4" + (" --hard" if hard else "")
    command: Any = pass_api(run)
    if hard:
        command = click.option("--hard", is_flag=True,
                               help="Do it at once, without asking the guest.")(command)
    command = click.argument("vm_ids", metavar="ID...", type=int, nargs=-1,
                             required=True)(command)
    vm.command(action)(command)


for _name, _summary, _hard in (
    ("terminate", "Shut a VM down and remove it from its host (it becomes DONE).", True),
    ("poweroff", "Power a VM off; it keeps its host (POWEROFF).", True),
    ("suspend", "Suspend a running VM, keeping its state on the host (SUSPENDED).", False),
    ("resume", "Resume a suspended, stopped, powered-off or undeployed VM.", False),
    ("stop", "Stop a VM: the guest is powered off and its host freed (STOPPED).", False),
    ("undeploy", "Shut a VM down and release its host, keeping its disks (UNDEPLOYED).", True),
    ("hold", "Hold a PENDING VM: the scheduler will not place it.", False),
    ("release", "Release a held VM back to PENDING.", False),
    ("reboot", "Reboot a running VM.", True),
    ("resched", "Ask the scheduler to move a running VM to another host.", False),
    ("unresched", "Cancel a pending resched request.", False),
):
    _action_command(_name, _summary, _hard)


@vm.command()
@click.argument("vm_id", metavar="ID", type=int)
@click.argument("host_id", metavar="HOST_ID", type=int)
@click.option("--enforce", is_flag=True, help="Ignore the host's capacity.")
@click.option("--datastore", "ds_id", type=int, default=-1, show_default=True,
              help="System datastore ID (-1: the default).")
@pass_api
def deploy(api: Api, vm_id: int, host_id: int, enforce: bool, ds_id: int) -> None:
    """Deploy a PENDING or HOLD VM on a host chosen by hand.

    \b
    Example: lazarus vm deploy 4 1
    """
    api.call("one.vm.deploy", vm_id, host_id, enforce, ds_id)


@vm.command()
@click.argument("vm_id", metavar="ID", type=int)
@click.argument("host_id", metavar="HOST_ID", type=int)
@click.option("--live", is_flag=True, help="Live-migrate a running VM.")
@click.option("--enforce", is_flag=True, help="Ignore the target host's capacity.")
@pass_api
def migrate(api: Api, vm_id: int, host_id: int, live: bool, enforce: bool) -> None:
    """Move a VM to another host (an UNKNOWN VM always moves cold).

    \b
    Example: lazarus vm migrate 4 2 --live
    """
    api.call("one.vm.migrate", vm_id, host_id, live, enforce)


RECOVER_FLAGS = {
    "success": (RecoverOp.SUCCESS, "Complete the pending action as if it worked (UNKNOWN -> "
                                   "RUNNING)."),
    "failure": (RecoverOp.FAILURE, "Fail the pending action."),
    "retry": (RecoverOp.RETRY, "Run the failed step again."),
    "delete": (RecoverOp.DELETE, "Clean up and delete the VM (DONE)."),
    "recreate": (RecoverOp.DELETE_RECREATE, "Clean up and resubmit the VM (PENDING, placed "
                                            "again)."),
    "delete_db": (RecoverOp.DELETE_DB, "Remove the VM from the database only; nothing is done "
                                       "on the host."),
}


def _recover_options(func: Any) -> Any:
    for key, (_op, help_text) in reversed(RECOVER_FLAGS.items()):
        func = click.option("--" + key.replace("_", "-"), key, is_flag=True,
                            help=help_text)(func)
    return func


@vm.command()
@click.argument("vm_id", metavar="ID", type=int)
@_recover_options
@pass_api
def recover(api: Api, vm_id: int, **flags: bool) -> None:
    """Recover a VM stuck after a failure (UNKNOWN when its host died, a failed boot...).

    Exactly one of --success, --failure, --retry, --delete, --recreate, --delete-db.

    \b
    Example: lazarus vm recover 4 --recreate
    """
    chosen = [RECOVER_FLAGS[key][0] for key, on in flags.items() if on]
    if len(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --success, --failure, --retry, --delete, --recreate, "
            "--delete-db"
        )
    api.call("one.vm.recover", vm_id, int(chosen[0]))
