"""`lazarus host ...`: the hosts, like OpenNebula's `onehost`.

A thin shell over one.hostpool.info / one.host.* (cli/main.py mounts the group). Lists print
the `onehost list` columns; `--json` prints the same data as objects with state names and
numbers, for scripts.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

import click

from lazarus.domain.states import HostState, HostStatus

from .context import Api, pass_api, read_template
from .output import (
    CliError,
    integer,
    parse_xml,
    print_attributes,
    print_json,
    print_section,
    print_table,
    size_kib,
    template_dict,
    template_lines,
    text,
    timestamp,
)


def host_state(number: int) -> HostState | None:
    try:
        return HostState(number)
    except ValueError:
        return None


def host_record(host: Element) -> dict[str, Any]:
    """The JSON object of one HOST element (list and show)."""
    number = integer(host, "STATE")
    state = host_state(number)
    share = host.find("HOST_SHARE")
    share_values = {} if share is None else {
        key: integer(share, key)
        for key in ("CPU_USAGE", "MAX_CPU", "TOTAL_CPU", "MEM_USAGE", "MAX_MEM", "TOTAL_MEM",
                    "RUNNING_VMS")
    }
    return {
        "ID": integer(host, "ID"),
        "NAME": text(host, "NAME"),
        "STATE": number,
        "STATE_NAME": state.name if state is not None else str(number),
        "STAT": state.short if state is not None else "?",
        "CLUSTER_ID": integer(host, "CLUSTER_ID"),
        "CLUSTER": text(host, "CLUSTER"),
        "IM_MAD": text(host, "IM_MAD"),
        "VM_MAD": text(host, "VM_MAD"),
        **share_values,
        "VMS": [int(e.text) for e in host.findall("VMS/ID") if e.text and e.text.isdigit()],
    }


def _allocated(used: int, total: int, fmt: Any = str) -> str:
    if total <= 0:
        return "-"
    return f"{fmt(used)} / {fmt(total)} ({used * 100 // total}%)"


@click.group()
def host() -> None:
    """Manage hosts (like `onehost`).

    \b
    Example: lazarus host create node1 --vm-mad sim && lazarus host list
    """


@host.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the hosts as JSON objects.")
@pass_api
def list_(api: Api, as_json: bool) -> None:
    """List the hosts with their state and allocated capacity.

    STAT is OpenNebula's short state: init, on (MONITORED), err, dsbl, off.

    \b
    Example: lazarus host list --json
    """
    pool = parse_xml(api.call("one.hostpool.info", -2, -1, -1), "host pool")
    records = [host_record(h) for h in pool.findall("HOST")]
    if as_json:
        print_json(records)
        return
    rows = [
        (
            r["ID"], r["NAME"], r["CLUSTER"], r.get("RUNNING_VMS", 0),
            _allocated(r.get("CPU_USAGE", 0), r.get("TOTAL_CPU", 0)),
            _allocated(r.get("MEM_USAGE", 0), r.get("TOTAL_MEM", 0), size_kib),
            r["STAT"],
        )
        for r in records
    ]
    print_table(("ID", "NAME", "CLUSTER", "RVM", "ALLOCATED_CPU", "ALLOCATED_MEM", "STAT"),
                rows, right=("ID", "RVM", "ALLOCATED_CPU", "ALLOCATED_MEM"))


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the host as a JSON object.")
@pass_api
def show(api: Api, host_id: int, as_json: bool) -> None:
    """Show a host: state, drivers, capacity, its template and the VMs placed on it.

    \b
    Example: lazarus host show 0
    """
    elem = parse_xml(api.call("one.host.info", host_id), "host")
    record = host_record(elem)
    if as_json:
        record["TEMPLATE"] = template_dict(elem.find("TEMPLATE"))
        record["LAST_MONITORED"] = integer(elem, "MONITORING/TIMESTAMP", 0)
        print_json(record)
        return
    print_section(f"HOST {record['ID']} INFORMATION")
    print_attributes([
        ("ID", record["ID"]),
        ("NAME", record["NAME"]),
        ("CLUSTER", record["CLUSTER"]),
        ("STATE", record["STATE_NAME"]),
        ("IM_MAD", record["IM_MAD"]),
        ("VM_MAD", record["VM_MAD"]),
        ("LAST MONITORING TIME", timestamp(integer(elem, "MONITORING/TIMESTAMP", 0))),
    ])
    click.echo()
    print_section("HOST SHARES")
    print_attributes([
        ("RUNNING VMS", record.get("RUNNING_VMS", 0)),
        ("CPU (ALLOCATED)", _allocated(record.get("CPU_USAGE", 0), record.get("TOTAL_CPU", 0))),
        ("MEMORY (ALLOCATED)",
         _allocated(record.get("MEM_USAGE", 0), record.get("TOTAL_MEM", 0), size_kib)),
    ])
    click.echo()
    print_section("HOST TEMPLATE")
    for line in template_lines(elem.find("TEMPLATE")):
        click.echo(line)
    click.echo()
    print_section("VIRTUAL MACHINES")
    click.echo(" ".join(str(i) for i in record["VMS"]) or "-")


@host.command()
@click.argument("name")
@click.option("--im-mad", "-i", default=None, help="Information driver (default: the VM_MAD).")
@click.option("--vm-mad", "-v", default="kvm", show_default=True,
              help="Virtualization driver: kvm/qemu (libvirt) or sim (simulated machine).")
@click.option("--cluster", "-c", "cluster_id", type=int, default=-1, show_default=True,
              help="Cluster ID (-1: the default cluster).")
@pass_api
def create(api: Api, name: str, im_mad: str | None, vm_mad: str, cluster_id: int) -> None:
    """Register a host; prints its ID. It is monitored at once and goes INIT -> MONITORED.

    \b
    Example: lazarus host create node1 --vm-mad sim
    """
    new_id = api.call("one.host.allocate", name, im_mad or vm_mad, vm_mad, cluster_id)
    click.echo(f"ID: {new_id}")


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@pass_api
def delete(api: Api, host_id: int) -> None:
    """Remove a host (refused while VMs are placed on it).

    \b
    Example: lazarus host delete 3
    """
    api.call("one.host.delete", host_id)


def _status(api: Api, host_id: int, status: HostStatus) -> None:
    api.call("one.host.status", host_id, int(status))


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@pass_api
def enable(api: Api, host_id: int) -> None:
    """Enable a disabled or offline host (back to INIT, then MONITORED).

    \b
    Example: lazarus host enable 2
    """
    _status(api, host_id, HostStatus.ENABLED)


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@pass_api
def disable(api: Api, host_id: int) -> None:
    """Disable a host: still monitored, the scheduler places nothing new on it.

    \b
    Example: lazarus host disable 2
    """
    _status(api, host_id, HostStatus.DISABLED)


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@pass_api
def offline(api: Api, host_id: int) -> None:
    """Set a host offline: not monitored, no deployments, capacity reset.

    \b
    Example: lazarus host offline 2
    """
    _status(api, host_id, HostStatus.OFFLINE)


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--append", "-a", is_flag=True,
              help="Merge into the template instead of replacing it.")
@pass_api
def update(api: Api, host_id: int, source: str | None, append: bool) -> None:
    """Replace (or with --append, extend) a host's template from FILE or stdin.

    \b
    Example: echo 'FENCE=[AGENT="fence_sim"]' | lazarus host update 0 - --append
    """
    template = read_template(source)
    api.call("one.host.update", host_id, template, 1 if append else 0)


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@click.argument("name")
@pass_api
def rename(api: Api, host_id: int, name: str) -> None:
    """Give a host a new name.

    \b
    Example: lazarus host rename 0 node-a
    """
    api.call("one.host.rename", host_id, name)


__all__ = ["CliError", "host", "host_record"]


@host.command()
@click.argument("host_id", metavar="ID", type=int)
@click.option("--confirm", is_flag=True,
              help="Required: you state that the host is powered off (checked, not assumed).")
@pass_api
def fenced(api: Api, host_id: int, confirm: bool) -> None:
    """Confirm by hand that a host in ERROR is powered off, when fencing could not prove it.

    Like Pacemaker's manual fence confirmation: ft/host_error then treats the host as fenced
    for its current failure (recorded with time and user in FENCE_CONFIRMED). Retry the hook
    execution afterwards (`lazarus hook retry HOOK_ID EXEC_ID`). Confirming a host that still
    runs VMs can start them twice: look first.

    \b
    Example: lazarus host fenced 3 --confirm
    """
    if not confirm:
        raise click.UsageError("refusing without --confirm: this says the host is OFF")
    api.call("lazarus.host.fenced", host_id)
    click.echo(f"host {host_id}: confirmed powered off; retry the host_error hook execution")
