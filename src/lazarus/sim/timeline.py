"""The timeline of a simulator run: what happened when, per incident and per VM.

An incident starts at each host failure the scenario injects (power_off, network_cut, hang,
a controller-host partition). For it the timeline notes, in virtual seconds since the fault:
detection (HOST => ERROR), hook start (host_error began), fence (proven off, or failed), hook
end (exit code); and for every VM placed on the host at the fault: UNKNOWN, placement (the
first PROLOG/BOOT state: the scheduler or recover acted), RUNNING and where. The log keeps
every fault, journal line, host_error line and fence-agent run with its virtual time.

`render_text()` and `to_json()` are what `lazarus sim run` prints and --timeline writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lazarus.domain.entities import Event, EventKind
from lazarus.domain.states import VmState
from lazarus.ha.host_error import Options
from lazarus.ports.fence import AgentResult

from . import scenario as sc
from .world import World

FAILURES = ("power_off", "network_cut", "hang", "partition")


@dataclass
class VmTrack:
    id: int
    name: str
    unknown: float | None = None
    placement: float | None = None
    running: float | None = None
    host: str = ""


@dataclass
class Incident:
    host: str
    host_id: int
    fault: str
    at: float  # seconds since the scenario's time zero
    detection: float | None = None  # the rest: seconds since `at`
    hook_start: float | None = None
    fence: float | None = None
    fence_ok: bool | None = None
    hook_end: float | None = None
    hook_code: int | None = None
    vms: dict[int, VmTrack] = field(default_factory=dict)

    def since(self, now: float) -> float:
        return round(now - self.at, 3)


class Timeline:
    def __init__(self, world: World) -> None:
        self.world = world
        self.log: list[tuple[float, str, str]] = []
        self.incidents: list[Incident] = []
        world.observers.journal.append(self.on_journal)
        world.observers.fence.append(self.on_agent)
        world.observers.fenced.append(self.on_fenced)
        world.observers.runs.append(self)
        world.observers.faults.append(self.on_fault)
        world.leader_listeners.append(lambda line: self.add("ctl", line))

    def now(self) -> float:
        return round(self.world.now(), 3)

    def add(self, source: str, line: str) -> None:
        self.log.append((self.now(), source, line))

    def _open(self, host_id: int) -> list[Incident]:
        """The host's newest incident (a later detection, hook run or fence belongs to it, not
        to every earlier incident of the same host)."""
        mine = [i for i in self.incidents if i.host_id == host_id]
        return mine[-1:]

    # -- observers -------------------------------------------------------------------------------
    def on_fault(self, e: sc.Event) -> None:
        self.add("fault", e.describe())
        host = e.host
        if e.action == "partition":
            if "controller" not in e.parties or "storage" in e.parties:
                return  # controller<->storage is no host's fault (the heartbeats' channel)
            host = next((p for p in e.parties if p != "controller"), "")
        elif e.action not in FAILURES:
            return
        host_id = self.world.host_id(host)
        incident = Incident(host, host_id, e.action, self.now())
        for vm in self.world.store.vms(host_id=host_id):
            if vm.host_id == host_id and vm.state is not VmState.DONE:
                incident.vms[vm.id] = VmTrack(vm.id, vm.name)
        self.incidents.append(incident)

    def on_journal(self, events: list[Event]) -> None:
        now = self.now()
        for event in events:
            if event.kind != EventKind.FLAG:
                self.add("core", event.line)
            if event.kind != EventKind.STATE:
                continue
            if event.obj == "HOST" and event.state == "ERROR":
                for inc in self._open(event.obj_id):
                    if inc.detection is None:
                        inc.detection = inc.since(now)
            elif event.obj == "VM":
                self._vm_event(event, now)

    def _vm_event(self, event: Event, now: float) -> None:
        for inc in self.incidents:
            track = inc.vms.get(event.obj_id)
            if track is None or track.running is not None:
                continue
            lcm = event.lcm_state or ""
            if lcm == "UNKNOWN" and track.unknown is None:
                track.unknown = inc.since(now)
            elif (lcm.startswith("PROLOG") or lcm.startswith("BOOT")) and track.placement is None:
                if inc.detection is not None:
                    track.placement = inc.since(now)
            elif lcm == "RUNNING" and (inc.detection is not None or track.unknown is not None):
                track.running = inc.since(now)
                last = self.world.store.vm(event.obj_id).last
                track.host = last.hostname if last is not None else ""

    def on_agent(self, plug: str, action: str, result: AgentResult) -> None:
        if action == "off-start":
            return
        verdict = "timed out" if result.timed_out else f"rc={result.rc}"
        self.add("fence", f"fence_sim {action} plug={plug}: {verdict}")

    def on_fenced(self, host: str, ok: bool, output: str) -> None:
        mine = [i for i in self.incidents if i.host == host]
        for inc in mine[-1:]:
            if inc.fence is None and inc.hook_start is not None:
                inc.fence = inc.since(self.now())
                inc.fence_ok = ok

    def hook_started(self, host_id: int, options: Options, event_id: int) -> None:
        self.add("hook", f"host_error started for host {host_id} (event {event_id})")
        for inc in self._open(host_id):
            if inc.hook_start is None and inc.detection is not None:
                inc.hook_start = inc.since(self.now())

    def hook_line(self, host_id: int, line: str) -> None:
        self.add("hook", line)

    def hook_finished(self, host_id: int, code: int, lines: list[str]) -> None:
        self.add("hook", f"host_error for host {host_id} exited {code}")
        for inc in self._open(host_id):
            if inc.hook_start is not None and inc.hook_end is None:
                inc.hook_end = inc.since(self.now())
                inc.hook_code = code

    # -- reports ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        incidents = []
        for inc in self.incidents:
            data = asdict(inc)
            data["vms"] = [asdict(v) for v in inc.vms.values()]
            incidents.append(data)
        return {
            "incidents": incidents,
            "log": [{"t": t, "source": s, "line": line} for t, s, line in self.log],
        }

    def render_text(self, with_log: bool = True) -> str:
        def fmt(value: float | None) -> str:
            return "-" if value is None else f"+{value:.1f}s"

        out = []
        for n, inc in enumerate(self.incidents, start=1):
            fence = fmt(inc.fence) + ("" if inc.fence_ok is None else
                                      (" ok" if inc.fence_ok else " FAILED"))
            out.append(f"incident {n}: {inc.fault} {inc.host} at t={inc.at:.1f}")
            out.append(f"  detection {fmt(inc.detection)}  hook start {fmt(inc.hook_start)}  "
                       f"fence {fence}  hook end {fmt(inc.hook_end)}"
                       + ("" if inc.hook_code is None else f" (exit {inc.hook_code})"))
            for v in inc.vms.values():
                where = f" on {v.host}" if v.host else ""
                out.append(f"  vm {v.id} {v.name}: unknown {fmt(v.unknown)}  placement "
                           f"{fmt(v.placement)}  running {fmt(v.running)}{where}")
        if with_log:
            out.append("log:")
            out += [f"  t={t:8.2f} {source:5} {line}" for t, source, line in self.log]
        return "\n".join(out)
