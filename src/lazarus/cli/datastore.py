"""`lazarus datastore ...`: the datastores, like OpenNebula's `onedatastore`.

A thin shell over one.datastorepool.info / one.datastore.* (cli/main.py mounts the group).
The HA flow cares about one attribute most: SHARED (host_error's -m resched needs shared
system datastores), so the list shows it.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

import click

from .context import Api, pass_api, read_template
from .output import (
    integer,
    parse_xml,
    print_attributes,
    print_json,
    print_section,
    print_table,
    template_dict,
    template_lines,
    text,
)

DS_TYPES = {0: "img", 1: "sys", 2: "fil"}


def datastore_record(ds: Element) -> dict[str, Any]:
    """The JSON object of one DATASTORE element."""
    kind = integer(ds, "TYPE")
    return {
        "ID": integer(ds, "ID"),
        "NAME": text(ds, "NAME"),
        "TYPE": kind,
        "TYPE_NAME": DS_TYPES.get(kind, str(kind)),
        "DS_MAD": text(ds, "DS_MAD"),
        "TM_MAD": text(ds, "TM_MAD"),
        "SHARED": text(ds, "TEMPLATE/SHARED"),
        "BASE_PATH": text(ds, "BASE_PATH"),
        "STATE": integer(ds, "STATE", 0),
        "CLUSTERS": [int(e.text) for e in ds.findall("CLUSTERS/ID") if e.text and e.text.isdigit()],
        "TOTAL_MB": integer(ds, "TOTAL_MB", 0),
        "FREE_MB": integer(ds, "FREE_MB", 0),
    }


@click.group()
def datastore() -> None:
    """Manage datastores (like `onedatastore`).

    \b
    Example: lazarus datastore list
    """


@datastore.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the datastores as JSON objects.")
@pass_api
def list_(api: Api, as_json: bool) -> None:
    """List the datastores with their type, drivers and whether they are shared.

    \b
    Example: lazarus datastore list --json
    """
    pool = parse_xml(api.call("one.datastorepool.info", -2, -1, -1), "datastore pool")
    records = [datastore_record(d) for d in pool.findall("DATASTORE")]
    if as_json:
        print_json(records)
        return
    rows = [
        (r["ID"], r["NAME"], r["TYPE_NAME"], r["DS_MAD"], r["TM_MAD"], r["SHARED"] or "-",
         ",".join(str(c) for c in r["CLUSTERS"]) or "-")
        for r in records
    ]
    print_table(("ID", "NAME", "TYPE", "DS", "TM", "SHARED", "CLUSTERS"), rows, right=("ID",))


@datastore.command()
@click.argument("ds_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the datastore as a JSON object.")
@pass_api
def show(api: Api, ds_id: int, as_json: bool) -> None:
    """Show a datastore and its template.

    \b
    Example: lazarus datastore show 0
    """
    elem = parse_xml(api.call("one.datastore.info", ds_id), "datastore")
    record = datastore_record(elem)
    if as_json:
        record["TEMPLATE"] = template_dict(elem.find("TEMPLATE"))
        print_json(record)
        return
    print_section(f"DATASTORE {record['ID']} INFORMATION")
    print_attributes([
        ("ID", record["ID"]),
        ("NAME", record["NAME"]),
        ("TYPE", record["TYPE_NAME"]),
        ("DS_MAD", record["DS_MAD"]),
        ("TM_MAD", record["TM_MAD"]),
        ("BASE PATH", record["BASE_PATH"]),
        ("SHARED", record["SHARED"] or "-"),
        ("CLUSTERS", ",".join(str(c) for c in record["CLUSTERS"]) or "-"),
    ])
    click.echo()
    print_section("DATASTORE TEMPLATE")
    for line in template_lines(elem.find("TEMPLATE")):
        click.echo(line)


@datastore.command()
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--cluster", "-c", "cluster_id", type=int, default=-1, show_default=True,
              help="Cluster ID (-1: the default cluster).")
@pass_api
def create(api: Api, source: str | None, cluster_id: int) -> None:
    """Create a datastore from a template in FILE or on stdin; prints its ID.

    \b
    Example: printf 'NAME="ha"\\nTYPE="SYSTEM_DS"\\nTM_MAD="shared"\\n' | lazarus datastore create -
    """
    template = read_template(source)
    new_id = api.call("one.datastore.allocate", template, cluster_id)
    click.echo(f"ID: {new_id}")
