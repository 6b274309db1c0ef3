"""`lazarus hook ...`: state and API hooks, like OpenNebula's `onehook`.

A thin shell over one.hook.* / one.hookpool.info / one.hooklog.info (cli/main.py mounts the
group when this module imports). `show -e` decodes the base64 tokens of an execution's
ARGUMENTS and its STDOUT/STDERR, which is how an operator reads what ft/host_error got and
said. Lists take `--json`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from typing import Any
from xml.etree.ElementTree import Element

import click

from lazarus.domain.errors import TemplateSyntaxError
from lazarus.domain.template import Template

from .context import Api, pass_api, read_template
from .output import (
    CliError,
    integer,
    parse_xml,
    print_attributes,
    print_json,
    print_section,
    print_table,
    template_dict,
    template_lines,
    text,
    timestamp,
)

_B64 = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
LOCK_LEVELS = {"use": 1, "manage": 2, "admin": 3, "all": 4}


def decode_b64(data: str) -> str:
    """base64 text (line breaks allowed) -> UTF-8 text (undecodable bytes replaced)."""
    raw = base64.b64decode("".join(data.split()), validate=True)
    return raw.decode("utf-8", errors="replace")


def decode_tokens(arguments: str) -> str:
    """ARGUMENTS with each base64 token that holds UTF-8 text decoded (others kept), one
    token per line."""
    out = []
    for token in arguments.split():
        shown = token
        if _B64.fullmatch(token) and len(token) % 4 == 0:
            try:
                shown = base64.b64decode(token, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                shown = token
        out.append(shown)
    return "\n".join(out)


def execution(rec: Element) -> dict[str, Any]:
    result = rec.find("EXECUTION_RESULT")
    code = integer(rec, "EXECUTION_RESULT/CODE", -1) if result is not None else -1
    return {
        "HOOK_ID": integer(rec, "HOOK_ID"),
        "EXECUTION_ID": integer(rec, "EXECUTION_ID"),
        "TIMESTAMP": integer(rec, "TIMESTAMP", 0),
        "ARGUMENTS": text(rec, "ARGUMENTS"),
        "COMMAND": text(rec, "EXECUTION_RESULT/COMMAND"),
        "CODE": code,
        "RESULT": "SUCCESS" if code == 0 else "INTERRUPTED" if code == -1 else "ERROR",
        "STDOUT": text(rec, "EXECUTION_RESULT/STDOUT"),
        "STDERR": text(rec, "EXECUTION_RESULT/STDERR"),
        "REMOTE_HOST": text(rec, "REMOTE_HOST"),
        "RETRY": text(rec, "RETRY").lower() == "yes",
    }


def hook_record(elem: Element) -> dict[str, Any]:
    return {
        "ID": integer(elem, "ID"),
        "NAME": text(elem, "NAME"),
        "TYPE": text(elem, "TYPE"),
        "LOCK": integer(elem, "LOCK/LOCKED", 0),
        "TEMPLATE": template_dict(elem.find("TEMPLATE")),
    }


def _b64_field(value: str) -> str:
    try:
        return decode_b64(value)
    except (binascii.Error, ValueError):
        return value


@click.group()
def hook() -> None:
    """State and API hooks: commands run when a host or VM changes state, or after an API
    call (OpenNebula's onehook).

    \b
    Example: lazarus hook create share/examples/host_hooks/error_hook
    """


@hook.command()
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--dry", is_flag=True, help="Print the parsed template; create nothing.")
@pass_api
def create(api: Api, source: str | None, dry: bool) -> None:
    """Create a hook from an OpenNebula hook template in FILE (or stdin); prints its ID.

    \b
    Example: lazarus hook create share/examples/host_hooks/error_hook
    """
    body = read_template(source, "hook template")
    if dry:
        try:
            click.echo(Template.parse(body).render(), nl=False)
        except TemplateSyntaxError as exc:
            raise CliError(f"the hook template does not parse: {exc}") from exc
        return
    click.echo(f"ID: {api.call('one.hook.allocate', body)}")


@hook.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON objects.")
@pass_api
def list_hooks(api: Api, as_json: bool) -> None:
    """List the hooks (ID, NAME, TYPE, and what triggers each).

    \b
    Example: lazarus hook list
    """
    pool = parse_xml(api.call("one.hookpool.info", -2, -1, -1), "hook pool")
    hooks = [hook_record(h) for h in pool.findall("HOOK")]
    if as_json:
        print_json(hooks)
        return
    rows = []
    for h in hooks:
        t = h["TEMPLATE"]
        on = t.get("CALL") or "/".join(
            v for v in (t.get("RESOURCE", ""), t.get("STATE", ""), t.get("LCM_STATE", "")) if v
        )
        rows.append((h["ID"], h["NAME"], h["TYPE"], on, t.get("COMMAND", "")))
    print_table(("ID", "NAME", "TYPE", "ON", "COMMAND"), rows, right=("ID",))


@hook.command()
@click.argument("hook_id", metavar="ID", type=int)
@click.option("-e", "--execution", "exec_id", type=int, default=None,
              help="Show one execution record, base64 decoded.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_api
def show(api: Api, hook_id: int, exec_id: int | None, as_json: bool) -> None:
    """Show a hook with its execution log, or one execution (-e) with its arguments,
    stdout and stderr decoded.

    \b
    Example: lazarus hook show 0 -e 2
    """
    elem = parse_xml(api.call("one.hook.info", hook_id), "hook")
    records = [execution(r) for r in elem.findall("HOOKLOG/HOOK_EXECUTION_RECORD")]
    if exec_id is not None:
        found = [r for r in records if r["EXECUTION_ID"] == exec_id]
        if not found:
            raise CliError(f"hook {hook_id} has no execution record {exec_id}")
        _show_execution(found[0], as_json)
        return
    data = hook_record(elem)
    if as_json:
        print_json({**data, "HOOKLOG": records})
        return
    print_section(f"HOOK {data['ID']} INFORMATION")
    print_attributes([("ID", data["ID"]), ("NAME", data["NAME"]), ("TYPE", data["TYPE"]),
                      ("LOCK", data["LOCK"] or "None")])
    click.echo()
    print_section("HOOK TEMPLATE")
    for line in template_lines(elem.find("TEMPLATE")):
        click.echo(line)
    click.echo()
    print_section("EXECUTION LOG")
    print_table(("ID", "TIMESTAMP", "RC", "EXECUTION"),
                [(r["EXECUTION_ID"], timestamp(r["TIMESTAMP"]), r["CODE"],
                  r["RESULT"] + (" (retry)" if r["RETRY"] else "")) for r in records],
                right=("ID", "RC"))


def _show_execution(record: dict[str, Any], as_json: bool) -> None:
    decoded = {
        **record,
        "ARGUMENTS_DECODED": decode_tokens(record["ARGUMENTS"]),
        "STDOUT": _b64_field(record["STDOUT"]),
        "STDERR": _b64_field(record["STDERR"]),
    }
    if as_json:
        print_json(decoded)
        return
    print_section("HOOK EXECUTION RECORD")
    print_attributes([
        ("EXECUTION ID", record["EXECUTION_ID"]),
        ("TIMESTAMP", timestamp(record["TIMESTAMP"])),
        ("COMMAND", record["COMMAND"]),
        ("REMOTE HOST", record["REMOTE_HOST"] or "-"),
        ("RETRY", "yes" if record["RETRY"] else "no"),
        ("EXIT CODE", f"{record['CODE']} ({record['RESULT']})"),
    ])
    click.echo()
    print_section("ARGUMENTS")
    click.echo(decoded["ARGUMENTS_DECODED"])
    click.echo()
    print_section("EXECUTION STDOUT")
    click.echo(decoded["STDOUT"], nl=not decoded["STDOUT"].endswith("\n"))
    click.echo()
    print_section("EXECUTION STDERR")
    click.echo(decoded["STDERR"], nl=not decoded["STDERR"].endswith("\n"))


def _epoch(value: str | None, option: str) -> int:
    if value is None:
        return -1
    if value.strip().lstrip("-").isdigit():
        return int(value)
    try:
        return int(datetime.datetime.fromisoformat(value).timestamp())
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give epoch seconds or an ISO date (2026-01-31 or 2026-01-31T12:00)",
            param_hint=option,
        ) from None


@hook.command(name="log")
@click.option("--since", default=None, help="Only records after this date (ISO or epoch).")
@click.option("--until", default=None, help="Only records before this date (ISO or epoch).")
@click.option("--hook-id", type=int, default=-1, help="Only this hook's records.")
@click.option("--success", "rc", flag_value=1, help="Only successful executions.")
@click.option("--error", "rc", flag_value=-1, help="Only failed executions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON objects.")
@pass_api
def log_cmd(api: Api, since: str | None, until: str | None, hook_id: int, rc: int | None,
            as_json: bool) -> None:
    """The execution log of every hook (one.hooklog.info), newest hooks first.

    \b
    Example: lazarus hook log --error --since 2026-01-31
    """
    answer = api.call("one.hooklog.info", _epoch(since, "--since"), _epoch(until, "--until"),
                      hook_id, rc or 0)
    records = [execution(r) for r in parse_xml(answer, "hook log").findall(
        "HOOK_EXECUTION_RECORD")]
    if as_json:
        print_json(records)
        return
    print_table(("HOOK", "ID", "TIMESTAMP", "RC", "EXECUTION"),
                [(r["HOOK_ID"], r["EXECUTION_ID"], timestamp(r["TIMESTAMP"]), r["CODE"],
                  r["RESULT"]) for r in records], right=("HOOK", "ID", "RC"))


@hook.command()
@click.argument("hook_id", metavar="ID", type=int)
@click.argument("exec_id", metavar="EXEC_ID", type=int)
@pass_api
def retry(api: Api, hook_id: int, exec_id: int) -> None:
    """Run an execution again with its recorded arguments and the hook's current command
    (a new record marked RETRY).

    \b
    Example: lazarus hook retry 0 3
    """
    api.call("one.hook.retry", hook_id, exec_id)


@hook.command()
@click.argument("hook_id", metavar="ID", type=int)
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--append", "-a", is_flag=True, help="Merge into the template.")
@pass_api
def update(api: Api, hook_id: int, source: str | None, append: bool) -> None:
    """Replace (or with --append, extend) a hook's template from FILE or stdin.

    \b
    Example: echo 'TIMEOUT = 600' | lazarus hook update 0 - --append
    """
    api.call("one.hook.update", hook_id, read_template(source), 1 if append else 0)


@hook.command()
@click.argument("hook_id", metavar="ID", type=int)
@click.argument("name")
@pass_api
def rename(api: Api, hook_id: int, name: str) -> None:
    """Give a hook a new name.

    \b
    Example: lazarus hook rename 0 ha
    """
    api.call("one.hook.rename", hook_id, name)


@hook.command()
@click.argument("hook_ids", metavar="ID...", type=int, nargs=-1, required=True)
@pass_api
def delete(api: Api, hook_ids: tuple[int, ...]) -> None:
    """Delete hooks (and their execution logs).

    \b
    Example: lazarus hook delete 0 1
    """
    for hook_id in hook_ids:
        api.call("one.hook.delete", hook_id)


@hook.command()
@click.argument("hook_ids", metavar="ID...", type=int, nargs=-1, required=True)
@click.option("--level", type=click.Choice(list(LOCK_LEVELS)), default="use",
              show_default=True, help="What the lock blocks (OpenNebula's lock levels).")
@pass_api
def lock(api: Api, hook_ids: tuple[int, ...], level: str) -> None:
    """Lock hooks against changes.

    \b
    Example: lazarus hook lock 0 --level all
    """
    for hook_id in hook_ids:
        api.call("one.hook.lock", hook_id, LOCK_LEVELS[level], False)


@hook.command()
@click.argument("hook_ids", metavar="ID...", type=int, nargs=-1, required=True)
@pass_api
def unlock(api: Api, hook_ids: tuple[int, ...]) -> None:
    """Unlock hooks.

    \b
    Example: lazarus hook unlock 0
    """
    for hook_id in hook_ids:
        api.call("one.hook.unlock", hook_id)


__all__ = ["decode_tokens", "hook"]
