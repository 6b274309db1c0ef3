"""ft/host_error's mass-failure guard: never fence when the controller is more likely cut off.

A host counts as failed when it is in ERROR or its last probes failed (MONITOR_FAILURES).
More than --mass-failure-share of the failed host's cluster (OFFLINE hosts aside) failed:
stop, touching nothing. And the cluster must have been quiet for --mass-failure-window
seconds: no host (the failed one included) started failing (FAILING_SINCE, written by the
monitor) more recently, so that a loss reaching the hosts one by one (a switch stack
rebooting member by member) is seen whole before any of them is fenced. The monitor probes a
cluster's hosts every MONITOR_ALERT_INTERVAL while it is in alert, so each next host of such
a loss is seen within about a second of its cut: a loss whose hosts are cut within
window - alert interval (4 s) of each other never fences (docs/ha.md, section 6). A cluster
that never settles (a flapping host) is judged on its share after SETTLE_LIMIT windows.

While the fence runs (its retries may take a minute), `during_fence` keeps judging the share
and returns the guard's message when a mass failure develops meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from lazarus.domain.states import HostState
from lazarus.domain.template import Template
from lazarus.ports.clock import Clock

from . import xmldoc
from .options import Api, Options

BACK = "\0back"  # settle(): the failed host answers again
SETTLE_LIMIT = 10  # windows a never-quiet cluster is waited for before its share decides
_YES = ("YES", "TRUE", "1")


def number(raw: str | None, default: float) -> float:
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        return default
    return value if value == value else default  # NaN


@dataclass(frozen=True)
class ClusterView:
    peers: int  # hosts of the cluster that are not OFFLINE
    failed: int  # of those, in ERROR or failing
    onset: float  # the latest FAILING_SINCE among the failed ones (epoch seconds)
    back: bool  # the failed host itself answers again


@dataclass
class MassFailureGuard:
    api: Api
    clock: Clock
    options: Options
    log: Callable[[str], None]
    poll: float = 0.5

    def overridden(self, template: Template) -> bool:
        if self.options.ignore_mass_failure:
            return True
        return (template.get("HA_IGNORE_MASS_FAILURE") or "").strip().upper() in _YES

    def view(self, host_id: int, cluster_id: int) -> ClusterView:
        root = xmldoc.parse(self.api.call("one.hostpool.info"))
        peers, failed, onset, back = 0, 0, 0.0, False
        for h in root.findall("HOST"):
            state = int(h.findtext("STATE", "0"))
            if int(h.findtext("CLUSTER_ID", "0")) != cluster_id or state == HostState.OFFLINE:
                continue
            peers += 1
            failures = number(h.findtext("TEMPLATE/MONITOR_FAILURES"), 0.0)
            if int(h.findtext("ID", "-1")) == host_id and state in (
                HostState.MONITORED, HostState.DISABLED
            ) and failures == 0:
                back = True
            if state == HostState.ERROR or failures > 0:
                failed += 1
                onset = max(onset, number(h.findtext("TEMPLATE/FAILING_SINCE"), 0.0))
        return ClusterView(peers, failed, onset, back)

    def too_many(self, view: ClusterView) -> bool:
        return view.peers > 0 and view.failed / view.peers > self.options.mass_failure_share

    def message(self, host_id: int, cluster_id: int, view: ClusterView) -> str:
        share = self.options.mass_failure_share
        return (
            f"Mass failure: {view.failed} of {view.peers} hosts in cluster {cluster_id} are "
            f"in ERROR or failing (more than {share:.0%}). The controller is more likely "
            "cut off than the hosts dead: not fencing, not moving VMs. If they really "
            f"are down, set HA_IGNORE_MASS_FAILURE = YES on host {host_id} (`lazarus "
            f"host update {host_id} FILE --append`) and retry this hook execution "
            "(`lazarus hook retry`); or run it with --ignore-mass-failure."
        )

    async def settle(self, host_id: int, cluster_id: int, template: Template) -> str:
        """'' when fencing may go on; the guard's message when it stops it; BACK when the
        host came back meanwhile."""
        if self.overridden(template):
            if not self.options.ignore_mass_failure:
                self.log("Mass-failure guard overridden by HA_IGNORE_MASS_FAILURE on the host.")
            return ""
        window = self.options.mass_failure_window
        started = self.clock.now()
        said = ""
        while True:
            view = self.view(host_id, cluster_id)
            if view.back:
                return BACK
            if self.too_many(view):
                return self.message(host_id, cluster_id, view)
            now = self.clock.now()
            quiet = now - view.onset
            if quiet >= window or now - started >= SETTLE_LIMIT * max(window, 1.0):
                if said:
                    self.log(f"Cluster {cluster_id} settled: {view.failed} of {view.peers} "
                             "hosts failed; fencing.")
                return ""
            seen = f"{view.failed}/{view.peers}@{view.onset:g}"
            if seen != said:  # once per new onset, not every poll
                self.log(f"Waiting for cluster {cluster_id} to settle: a host started "
                         f"failing {quiet:.1f} s ago ({view.failed} of {view.peers} failed; "
                         f"window {window:g} s).")
                said = seen
            await self.clock.sleep(min(self.poll, window - quiet))

    async def during_fence(self, host_id: int, cluster_id: int, template: Template) -> str:
        """Returns the guard's message once the share passes the threshold (never when the
        guard is overridden): the caller stops the fence then."""
        if self.overridden(template):
            await asyncio.Event().wait()
        while True:
            await self.clock.sleep(self.poll)
            view = self.view(host_id, cluster_id)
            if self.too_many(view):
                return self.message(host_id, cluster_id, view)
