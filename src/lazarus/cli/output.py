"""Output of the `lazarus` CLI: XML parsing, tables, JSON, attribute lists and error lines.

Who uses it: every command module of the CLI (host.py, vm.py, datastore.py, sim.py). The
daemon's answers are parsed with defusedxml (no entities, no external references); tables are
drawn with rich, without colour when stdout is not a terminal; `--json` prints plain JSON.
Every error a command can meet ends as one line on stderr, "lazarus: <message>", and exit
code 1 (`CliError`); click's own usage errors keep exit code 2.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any
from xml.etree.ElementTree import Element

import click
from defusedxml import ElementTree as SafeET
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

PROG = "lazarus"


class CliError(click.ClickException):
    """A failed command: one line "lazarus: <message>" on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        stream = file if file is not None else sys.stderr
        line = " ".join(self.format_message().split())  # one line, whatever the server sent
        click.echo(f"{PROG}: {line}", file=stream)


def parse_xml(text: str, what: str = "answer") -> Element:
    """The root element of an XML document from the daemon; CliError when it does not parse."""
    try:
        root: Element = SafeET.fromstring(text)
    except Exception as exc:  # defusedxml raises several types; all mean "bad document"
        raise CliError(f"the daemon sent an unreadable {what}: {exc}") from exc
    return root


def text(elem: Element, path: str, default: str = "") -> str:
    """The text of the first element at `path` below `elem` ("" when absent or empty)."""
    found = elem.find(path)
    if found is None or found.text is None:
        return default
    return found.text


def integer(elem: Element, path: str, default: int = -1) -> int:
    """The integer at `path`, or `default` when it is absent or not an integer."""
    raw = text(elem, path).strip()
    try:
        return int(raw)
    except ValueError:
        return default


def template_dict(elem: Element | None) -> dict[str, Any]:
    """A TEMPLATE element as JSON-friendly data: values are strings, vectors are dicts, and
    an attribute given several times becomes a list."""
    result: dict[str, Any] = {}
    if elem is None:
        return result
    for child in elem:
        value: Any = {s.tag: s.text or "" for s in child} if len(child) else child.text or ""
        if child.tag in result:
            previous = result[child.tag]
            many = previous if isinstance(previous, list) else [previous]
            result[child.tag] = [*many, value]
        else:
            result[child.tag] = value
    return result


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def template_lines(elem: Element | None) -> list[str]:
    """A TEMPLATE element in OpenNebula's template syntax, one attribute (or vector) a line."""
    lines: list[str] = []
    if elem is None:
        return lines
    for child in elem:
        if len(child):
            inner = ",\n  ".join(f"{sub.tag}={_quote(sub.text or '')}" for sub in child)
            lines.append(f"{child.tag}=[\n  {inner} ]")
        else:
            lines.append(f"{child.tag}={_quote(child.text or '')}")
    return lines


def console(width: int | None = None) -> Console:
    """A console on stdout; no colour, markup or highlighting when stdout is not a terminal."""
    return Console(highlight=False, soft_wrap=False, width=width)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]],
                right: Iterable[str] = ()) -> None:
    """A borderless table like OpenNebula's list commands (header row, aligned columns).

    Never truncated: a table wider than the terminal gets the width it needs (the terminal
    wraps the lines), so no column is ever dropped or cut, on a tty or in a pipe."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    right_set = set(right)
    for name in columns:
        table.add_column(name, justify="right" if name in right_set else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(str(cell)) for cell in row))
    out = console()
    needed = Measurement.get(out, out.options.update_width(10_000), table).maximum
    if needed > out.width:
        out = console(needed)
    with out.capture() as capture:
        out.print(table)
    for line in capture.get().splitlines():
        click.echo(line.rstrip())


def print_section(title: str) -> None:
    click.echo(title)


def print_attributes(pairs: Sequence[tuple[str, object]]) -> None:
    """Left-aligned 'NAME   : value' lines, as `onehost show` / `onevm show` print them."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        click.echo(f"{name.ljust(width)} : {value}")


def print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def size_mib(mib: int) -> str:
    """512 -> '512M', 2048 -> '2G', 1536 -> '1.5G' (OpenNebula's CLI unit style)."""
    if mib < 1024:
        return f"{mib}M"
    value = mib / 1024
    if value < 1024:
        return f"{value:.1f}G".replace(".0G", "G")
    return f"{value / 1024:.1f}T".replace(".0T", "T")


def size_kib(kib: int) -> str:
    return size_mib(kib // 1024)


def duration(seconds: float) -> str:
    """'3d 04h05' like `onevm list`'s TIME column."""
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours:02d}h{minutes:02d}"


def timestamp(epoch: int) -> str:
    """An epoch as local 'YYYY-MM-DD HH:MM:SS', or '-' for 0 (never)."""
    if epoch <= 0:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")
