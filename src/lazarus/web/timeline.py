"""The incident page's per-VM timeline as a server-rendered SVG (no chart library).

Input: the event stream's records (telemetry/events.py) for one incident: the host's ERROR,
the incident steps (WAITING = hook started, FENCED, DONE ...) and each VM's state events
after the fault. Per VM one row: marks for "detected" (host ERROR), "hook" (incident
opened), "fenced", "placed" (the VM's first PROLOG/BOOT elsewhere) and "RUNNING", on a
shared time axis in seconds since the detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

MARKS = ("detected", "hook", "fenced", "placed", "running")
COLORS = {"detected": "#c0392b", "hook": "#8e44ad", "fenced": "#d35400",
          "placed": "#2980b9", "running": "#27ae60"}


@dataclass
class Timeline:
    t0: float | None = None
    host: dict[str, float] = field(default_factory=dict)  # detected, hook, fenced
    vms: dict[int, dict[str, float]] = field(default_factory=dict)


def build(records: list[dict[str, Any]], host_id: int, key: str) -> Timeline:
    """The marks of the incident `key` of host `host_id` from the stream's records.

    The VMs are those the incident handled or failed, and those seen UNKNOWN on the host
    after its ERROR; their marks count from the host's detection on."""
    tl = Timeline()
    ours = [r for r in records if r.get("type") == "incident" and r.get("host_id") == host_id
            and r.get("key") == key]
    vm_ids = {int(v) for r in ours for v in [*r.get("handled", []), *r.get("failed", [])]}
    for r in records:
        t = float(r.get("time", 0.0))
        if r.get("type") == "event" and r.get("obj") == "HOST" and r.get("obj_id") == host_id:
            if r.get("kind") == "state" and r.get("state") == "ERROR" and (
                not ours or t <= float(ours[0].get("time", t))
            ):
                tl.host["detected"] = t  # the last ERROR before this incident opened
                tl.t0 = t
                tl.vms.clear()
        elif r.get("type") == "incident" and r in ours:
            tl.host.setdefault("hook", t)
            if r.get("state") in ("FENCED", "FENCE_SKIPPED"):
                tl.host.setdefault("fenced", t)
        elif r.get("type") == "event" and r.get("obj") == "VM" and r.get("kind") == "state":
            if tl.t0 is None:
                continue
            vm = int(r.get("obj_id", -1))
            lcm = str(r.get("lcm_state", ""))
            if lcm == "UNKNOWN" and r.get("host_id") == host_id:
                vm_ids.add(vm)
            if vm not in vm_ids:
                continue
            marks = tl.vms.setdefault(vm, {})
            if lcm in ("PROLOG", "BOOT", "PROLOG_MIGRATE_UNKNOWN", "BOOT_UNKNOWN"):
                marks.setdefault("placed", t)
            elif r.get("state") == "ACTIVE" and lcm == "RUNNING":
                marks.setdefault("running", t)
    for vm in vm_ids:
        tl.vms.setdefault(vm, {})
    if tl.t0 is None and tl.host:
        tl.t0 = min(tl.host.values())
    return tl


def svg(tl: Timeline, names: dict[int, str]) -> str:
    if tl.t0 is None:
        return '<p class="muted">No events of this incident since the daemon started.</p>'
    rows = sorted(tl.vms)
    times = [*tl.host.values(), *(t for m in tl.vms.values() for t in m.values())]
    span = max(1.0, max(times) - tl.t0)
    left, width, row_h = 160, 640, 26
    height = 40 + row_h * (len(rows) + 1)

    def x(t: float) -> float:
        return left + (t - tl.t0) / span * width  # type: ignore[operator]

    parts = [f'<svg class="timeline" viewBox="0 0 {left + width + 40} {height}" '
             f'width="{left + width + 40}" height="{height}" role="img" '
             f'aria-label="per-VM recovery timeline">']
    for i in range(6):  # axis
        t = span * i / 5
        xi = left + width * i / 5
        parts.append(f'<line x1="{xi:.1f}" y1="20" x2="{xi:.1f}" y2="{height - 10}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{xi:.1f}" y="14" font-size="11" text-anchor="middle">'
                     f'{t:.1f} s</text>')

    def row(y: int, label: str, marks: dict[str, float], cls: str) -> None:
        parts.append(f'<text x="4" y="{y + 4}" font-size="12">{escape(label)}</text>')
        if marks:
            xs = sorted(x(t) for t in marks.values())
            parts.append(f'<line x1="{xs[0]:.1f}" y1="{y}" x2="{xs[-1]:.1f}" y2="{y}" '
                         'stroke="#999" stroke-width="2"/>')
        for name in MARKS:
            if name in marks:
                parts.append(
                    f'<circle class="{cls} mark-{name}" cx="{x(marks[name]):.1f}" cy="{y}" '
                    f'r="5" fill="{COLORS[name]}"><title>{name} at '
                    f'{marks[name] - tl.t0:.2f} s</title></circle>'  # type: ignore[operator]
                )

    row(36, "host", tl.host, "host")
    for i, vm in enumerate(rows, start=1):
        row(36 + row_h * i, f"VM {vm} {names.get(vm, '')}"[:24], tl.vms[vm], "vm")
    parts.append("</svg>")
    legend = " ".join(f'<span class="legend" style="color:{COLORS[m]}">&#9679; {m}</span>'
                      for m in MARKS)
    return "".join(parts) + f'<p class="legend-row">{legend}</p>'
