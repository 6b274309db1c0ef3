"""Incident steps from the hosts' HA_INCIDENT records, as the journal reports their updates.

ft/host_error writes its incident record into the failed host's template (ha/incident.py)
with one.host.update, so every step is a host TEMPLATE event. `IncidentWatch.seen(host)`
compares the host's latest record with the one seen before and returns what happened: the
record's new state (a step), and for a fence that ended (FENCING -> FENCED / FENCE_FAILED /
FENCE_SKIPPED) its agent and duration, measured between the events' times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lazarus.domain.entities import Host
from lazarus.ha.incident import FINAL, Incident, IncidentState

FENCE_ENDS = {
    IncidentState.FENCED: "off",
    IncidentState.FENCE_FAILED: "failed",
    IncidentState.FENCE_SKIPPED: "skipped",
}


@dataclass(frozen=True)
class Step:
    host_id: int
    host: str
    key: str
    state: IncidentState
    previous: IncidentState | None
    incident: Incident
    fence_agent: str = ""
    fence_result: str = ""
    fence_seconds: float | None = None

    @property
    def outcome(self) -> str:
        """For a final or failed-fence step: done, partial (some VMs failed), aborted,
        fence_failed; "" otherwise."""
        if self.state is IncidentState.DONE:
            return "partial" if self.incident.failed else "done"
        if self.state is IncidentState.ABORTED:
            return "aborted"
        if self.state is IncidentState.FENCE_FAILED:
            return "fence_failed"
        return ""


_AGENT = re.compile(r"\b(fence_[A-Za-z0-9_-]+)")
_TOOK = re.compile(r"\bin ([0-9]+(?:\.[0-9]+)?) ?s\b")


def fence_agent(fence: str) -> str:
    """The agent the record's FENCE text names ("fence_host host node1: fenced, power proven
    off by level 1 (fence_sim node1) in 0.57s": fence_sim), else its first word (a script)."""
    for name in _AGENT.findall(fence):
        if name != "fence_host":
            return str(name)
    word = fence.split(" ", 1)[0].strip(":;,")
    return word if word and word.replace("_", "").replace("-", "").isalnum() else "unknown"


def fence_took(fence: str) -> float | None:
    """The duration the fence's own text gives ("... in 0.57s"), if any."""
    m = _TOOK.search(fence)
    return float(m.group(1)) if m else None


class IncidentWatch:
    def __init__(self) -> None:
        self._last: dict[int, Incident] = {}
        self._fencing_since: dict[tuple[int, str], float] = {}

    def prime(self, hosts: list[Host]) -> None:
        """Remember the records that exist at start, so they are not counted again."""
        for host in hosts:
            incident = Incident.from_template(host.template)
            if incident is not None:
                self._last[host.id] = incident

    def open_count(self) -> int:
        return sum(1 for incident in self._last.values() if incident.state not in FINAL)

    def seen(self, host: Host, now: float) -> Step | None:
        incident = Incident.from_template(host.template)
        if incident is None:
            return None
        before = self._last.get(host.id)
        if before == incident:
            return None  # another template change, or the same record written again
        previous = before.state if before is not None and before.key == incident.key else None
        self._last[host.id] = incident
        mark = (host.id, incident.key)
        if incident.state is IncidentState.FENCING:
            self._fencing_since.setdefault(mark, now)
            return Step(host.id, host.name, incident.key, incident.state, previous, incident)
        if incident.state in FENCE_ENDS and previous in (
            IncidentState.FENCING, IncidentState.FENCE_FAILED
        ):
            since = self._fencing_since.pop(mark, None)
            took = fence_took(incident.fence)
            if took is None and since is not None:
                took = max(0.0, now - since)  # the record's own times: the controller's view
            return Step(
                host.id, host.name, incident.key, incident.state, previous, incident,
                fence_agent=fence_agent(incident.fence),
                fence_result=FENCE_ENDS[incident.state],
                fence_seconds=took,
            )
        if incident.state in FINAL:
            self._fencing_since.pop(mark, None)
        return Step(host.id, host.name, incident.key, incident.state, previous, incident)
