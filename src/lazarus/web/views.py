"""HTML of the dashboard's pages: plain functions from the API's data to text (escaped).

No template engine and no third-party JS/CSS: the pages are small, the stylesheet and the
live-update script (static/) are written by hand. Every value from the API goes through
`escape`; every form that acts carries the session's CSRF token.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

NAV = (("/ui/", "Overview"), ("/ui/vms", "VMs"), ("/ui/incidents", "Incidents"),
       ("/ui/hooks", "Hook executions"))


def page(title: str, body: str, user: str = "", csrf: str = "", live: bool = True) -> str:
    nav = ""
    if user:
        links = " ".join(f'<a href="{href}">{name}</a>' for href, name in NAV)
        nav = (f'<nav>{links}<span class="who">{escape(user)}</span>'
               f'<form method="post" action="/ui/logout" class="inline">'
               f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
               f'<button id="logout">Log out</button></form></nav>')
    script = '<script src="/ui/static/live.js" defer></script>' if live and user else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{escape(title)} - Lazarus</title>'
            f'<link rel="stylesheet" href="/ui/static/style.css">{script}</head>'
            f'<body><header><h1>Lazarus</h1>{nav}</header>'
            f'<main id="main"><h2>{escape(title)}</h2>{body}</main></body></html>')


def login(error: str = "", csrf: str = "") -> str:
    msg = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    return page("Log in", f'''{msg}<form method="post" action="/ui/login" class="login">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<label>User <input name="username" id="username" autocomplete="username" required></label>
<label>Password <input name="password" id="password" type="password"
 autocomplete="current-password" required></label>
<button id="login">Log in</button></form>''', live=False)


def _bar(used: int, total: int) -> str:
    share = 0 if total <= 0 else min(100, round(100 * used / total))
    return (f'<div class="bar" title="{used} / {total}"><div style="width:{share}%"></div>'
            f'</div><small>{share}%</small>')


def armed(host: dict[str, Any], has_error_hook: bool) -> tuple[bool, str]:
    """Whether HA is armed and effective for the host, and why not."""
    if not host["fence"]:
        return False, "no FENCE configured"
    if not has_error_hook:
        return False, "no host ERROR hook (ft/host_error)"
    if host["state"] not in ("MONITORED",):
        return False, f"host {host['state']}"
    inc = host["incident"]
    if inc and inc.get("STATE") not in ("DONE", "ABORTED"):
        return False, f"incident {inc.get('STATE')}"
    return True, "fence configured, host monitored"


def overview(hosts: list[dict[str, Any]], vms: list[dict[str, Any]], has_error_hook: bool,
             csrf: str) -> str:
    counts: dict[str, int] = {}
    for vm in vms:
        counts[vm["label"]] = counts.get(vm["label"], 0) + 1
    summary = " ".join(f'<span class="pill">{escape(k)} {v}</span>'
                       for k, v in sorted(counts.items()))
    rows = []
    for h in hosts:
        ok, why = armed(h, has_error_hook)
        action = "enable" if h["state"] in ("DISABLED", "OFFLINE") else "disable"
        on_host = sum(1 for vm in vms if vm["host_id"] == h["id"] and vm["state"] == "ACTIVE")
        rows.append(
            f'<tr id="host-{h["id"]}" class="state-{escape(h["state"])}">'
            f'<td>{h["id"]}</td><td>{escape(h["name"])}</td>'
            f'<td class="hstate">{escape(h["state"])}</td>'
            f'<td>{_bar(h["cpu_used"], h["cpu_total"])}</td>'
            f'<td>{_bar(h["mem_used"], h["mem_total"])}</td><td>{on_host}</td>'
            f'<td class="{"armed" if ok else "unarmed"}" title="{escape(why)}">'
            f'{"armed" if ok else "NOT armed"}: {escape(why)}</td>'
            f'<td><form method="post" action="/ui/hosts/{h["id"]}/{action}" class="inline">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<button class="act" id="{action}-{h["id"]}">{action}</button></form></td></tr>'
        )
    return (f'<p>{len(hosts)} hosts, {len(vms)} VMs: {summary}</p>'
            '<table><tr><th>ID</th><th>Host</th><th>State</th><th>CPU</th><th>Memory</th>'
            '<th>VMs</th><th>HA armed and effective</th><th></th></tr>'
            + "".join(rows) + "</table>")


def vm_list(vms: list[dict[str, Any]], state: str, host: str, name: str) -> str:
    states = sorted({vm["label"] for vm in vms})
    hosts = sorted({vm["host"] for vm in vms if vm["host"]})
    shown = [vm for vm in vms if (not state or vm["label"] == state)
             and (not host or vm["host"] == host) and (not name or name in vm["name"])]

    def options(values: list[str], chosen: str) -> str:
        return '<option value="">any</option>' + "".join(
            f'<option{" selected" if v == chosen else ""}>{escape(v)}</option>' for v in values)

    form = (f'<form method="get" class="filters"><label>State <select name="state">'
            f'{options(states, state)}</select></label> <label>Host <select name="host">'
            f'{options(hosts, host)}</select></label> <label>Name <input name="name" '
            f'value="{escape(name)}"></label> <button>Filter</button></form>')
    rows = "".join(
        f'<tr id="vm-{vm["id"]}"><td>{vm["id"]}</td><td>{escape(vm["name"])}</td>'
        f'<td>{escape(vm["label"])}</td><td>{escape(vm["state"])}</td>'
        f'<td>{escape(vm["lcm"])}</td><td>{escape(vm["host"])}</td></tr>' for vm in shown)
    return (form + f'<p>{len(shown)} of {len(vms)} VMs</p><table><tr><th>ID</th><th>Name</th>'
            '<th>Stat</th><th>State</th><th>LCM</th><th>Host</th></tr>' + rows + "</table>")


def _when(stamp: str | int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(stamp)))
    except (ValueError, OverflowError):
        return ""


def incidents(hosts: list[dict[str, Any]]) -> str:
    rows = []
    for h in hosts:
        inc = h["incident"]
        if not inc:
            continue
        rows.append(
            f'<tr id="incident-{h["id"]}"><td><a href="/ui/incidents/{h["id"]}">'
            f'{escape(h["name"])}</a></td><td>{escape(inc.get("KEY", ""))}</td>'
            f'<td class="istate">{escape(inc.get("STATE", ""))}</td>'
            f'<td>{_when(inc.get("STARTED", ""))}</td><td>{_when(inc.get("UPDATED", ""))}</td>'
            f'<td>{escape(inc.get("HANDLED", ""))}</td><td>{escape(inc.get("FAILED", ""))}</td>'
            "</tr>")
    if not rows:
        return '<p class="muted" id="no-incidents">No HA incident recorded on any host.</p>'
    return ('<table><tr><th>Host</th><th>Key</th><th>State</th><th>Started</th>'
            '<th>Updated</th><th>Handled VMs</th><th>Failed VMs</th></tr>'
            + "".join(rows) + "</table>")


def incident(host: dict[str, Any], chart: str, logs: list[dict[str, Any]], csrf: str) -> str:
    inc = host["incident"]
    fields = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
                     for k, v in inc.items())
    confirm = ""
    if host["state"] == "ERROR" and inc.get("STATE") == "FENCE_FAILED":
        confirm = (
            f'<section class="danger" id="confirm-section"><h3>Confirm the fence by hand</h3>'
            f'<p>Fencing could not prove that <b>{escape(host["name"])}</b> is powered off. '
            f'Confirming tells ft/host_error that it <b>is</b> off (recorded with your name '
            f'in FENCE_CONFIRMED); then retry the host_error execution below. Confirming a '
            f'host that still runs VMs can start them twice: look first.</p>'
            f'<form method="post" action="/ui/hosts/{host["id"]}/fenced">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<label><input type="checkbox" name="confirm" value="yes" id="confirm-off"> '
            f'I have checked that the host is powered off</label><br>'
            f'<label>Type the host name to confirm: <input name="name" id="confirm-name">'
            f'</label> <button class="act" id="confirm-fence">Confirm powered off</button>'
            f'</form></section>')
    if host["fence_confirmed"]:
        confirm += (f'<p id="fence-confirmed">Fence confirmed by hand: '
                    f'{escape(host["fence_confirmed"])}</p>')
    log_html = "".join(_record(r, csrf) for r in logs) or '<p class="muted">No log yet.</p>'
    return (f'<p>Host <b>{escape(host["name"])}</b> is <b class="hstate">'
            f'{escape(host["state"])}</b>; incident <b class="istate" id="istate">'
            f'{escape(inc.get("STATE", ""))}</b>.</p>'
            f'<section><h3>Timeline</h3><div id="timeline">{chart}</div></section>'
            f'{confirm}<section><h3>Record</h3><table>{fields}</table></section>'
            f'<section><h3>host_error log</h3>{log_html}</section>')


def _record(r: dict[str, Any], csrf: str, name: str = "") -> str:
    retry = (f'<form method="post" action="/ui/hooks/{r["hook_id"]}/{r["execution_id"]}/retry"'
             f' class="inline"><input type="hidden" name="csrf" value="{escape(csrf)}">'
             f'<button class="act" id="retry-{r["hook_id"]}-{r["execution_id"]}">Retry</button>'
             "</form>")
    return (f'<div class="record" id="exec-{r["hook_id"]}-{r["execution_id"]}">'
            f'<p><b>{escape(name) or "hook " + str(r["hook_id"])}</b> execution '
            f'{r["execution_id"]} at {_when(r["timestamp"])}, exit code '
            f'<b class="code">{r["code"]}</b> {retry}</p>'
            f'<p class="args">arguments: {escape(_short(r["arguments"]))}</p>'
            f'<pre class="stdout">{escape(r["stdout"])}</pre>'
            + (f'<pre class="stderr">{escape(r["stderr"])}</pre>' if r["stderr"] else "")
            + "</div>")


def _short(arguments: str) -> str:
    """The arguments with long words ($TEMPLATE's base64 document) shortened."""
    return " ".join(w if len(w) <= 40 else f"{w[:16]}...({len(w)} chars)"
                    for w in arguments.split())


def hooks(records: list[dict[str, Any]], names: dict[int, str], csrf: str) -> str:
    if not records:
        return '<p class="muted">No hook execution recorded.</p>'
    return "".join(_record(r, csrf, names.get(r["hook_id"], ""))
                   for r in sorted(records, key=lambda r: -r["timestamp"]))


def message(text: str, back: str = "/ui/") -> str:
    return f'<p class="error" id="error">{escape(text)}</p><p><a href="{escape(back)}">Back</a></p>'
