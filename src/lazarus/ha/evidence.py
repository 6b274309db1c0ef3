"""The evidence ft/host_error weighs before any VM of a failed host starts elsewhere.

Signals, as the host's template carries them (written by the controller, core/heartbeats.py;
the fence outcome from ha/fencing.py; the operator's `lazarus host fenced ID --confirm`):

    BMC off done + status OFF, no agent              proves it dead (as before)
    BMC OFF, then the heartbeat stopped               proves it dead
    BMC OFF, the heartbeat keeps advancing            a lying device: nothing moved, alert
    BMC fails, heartbeat stopped > watchdog safe time proves it dead (the watchdog reset it)
    BMC fails, heartbeat stopped, no watchdog         only shown to the operator
    the agent stopped its VMs (isolation response)    its VMs may start elsewhere, no fence
    an operator's confirmation                        the operator's word
    probes fail but the heartbeat advances            alive: ISOLATED

"Stopped for" counts from the later of the heartbeat's last advance and the first failed
probe of the streak (FAILING_SINCE), both on the controller's clock: an agent that could
still reach the controller kept feeding its watchdog until then. And the heartbeat must
still have advanced when the probes began to fail: a beat that stopped long before (the
agent stopped or crashed earlier) proves nothing about this failure.
"""

from __future__ import annotations

from dataclasses import dataclass

from lazarus.domain.template import Template

ATTRIBUTE = "HA_HEARTBEAT"


def _num(raw: str | None) -> float:
    try:
        return float(raw or "0")
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Heartbeat:
    status: str  # ADVANCING | STOPPED | UNREADABLE
    counter: int
    seen: float
    period: float
    watchdog: float  # the agent's safe time; 0: no watchdog
    vms_stopped: bool
    failing_since: float

    @classmethod
    def of(cls, template: Template) -> Heartbeat | None:
        """The host's published heartbeat; None when it has no agent."""
        vectors = template.vectors(ATTRIBUTE)
        if not vectors:
            return None
        v = vectors[-1]
        return cls(
            status=v.get("STATUS") or "UNREADABLE",
            counter=int(_num(v.get("COUNTER"))),
            seen=_num(v.get("SEEN")),
            period=_num(v.get("PERIOD")) or 1.0,
            watchdog=_num(v.get("WATCHDOG")),
            vms_stopped=v.get("VMS") == "STOPPED",
            failing_since=_num(template.get("FAILING_SINCE")),
        )

    @property
    def advancing(self) -> bool:
        return self.status == "ADVANCING"

    @property
    def isolated(self) -> bool:
        """Alive after it stopped answering: a beat seen after the first failed probe."""
        return self.advancing and self.seen > self.failing_since

    def stopped_for(self, now: float) -> float:
        """Seconds the host has been silent on both channels (0 unless STOPPED)."""
        if self.status != "STOPPED":
            return 0.0
        return max(0.0, now - max(self.seen, self.failing_since))

    def alive_at_failure(self) -> bool:
        """The heartbeat still advanced when the probes began to fail (within a settle time):
        the agent was running then, so its watchdog bound applies to this failure. A beat
        that had stopped long before (an agent stopped or crashed earlier) says nothing
        about this failure."""
        return self.seen >= self.failing_since - self.settle_time()

    def proves_dead(self, now: float) -> bool:
        """Stopped longer than the watchdog's safe time, counted from when the host was
        lost on both channels: its watchdog has reset it."""
        return (self.watchdog > 0 and self.alive_at_failure()
                and self.stopped_for(now) > self.watchdog)

    def settle_time(self) -> float:
        """How long after a fence the heartbeat must be watched to tell STOPPED from a lie:
        the controller calls it STOPPED after 3 periods and a read interval (defaults)."""
        return 4 * self.period + 2.0

    def describe(self, now: float) -> str:
        if self.status == "ADVANCING":
            return f"heartbeat advancing (counter {self.counter}, {now - self.seen:.1f} s ago)"
        if self.status == "STOPPED":
            wd = f"watchdog safe time {self.watchdog:g} s" if self.watchdog > 0 else "no watchdog"
            return (
                f"heartbeat stopped for {self.stopped_for(now):.1f} s (counter "
                f"{self.counter}; {wd})"
            )
        return "heartbeat unreadable by the controller"
