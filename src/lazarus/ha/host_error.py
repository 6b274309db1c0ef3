"""ft/host_error: recover the VMs of a host in ERROR, after proving the host is off.

Command line compatible with OpenNebula's share/hooks/ft/host_error.rb: the hook passes
"<base64 HOST XML> <options>" on stdin (ARGUMENTS_STDIN=yes) or as arguments (ha/options.py
parses them).

    -m/--migrate   resched VMs on SHARED=YES system datastores (others skipped, logged)
    -r/--recreate  one.vm.recover(id, 4): back to PENDING, disks recreated
    -d/--delete    one.vm.recover(id, 3)
    -f/--force     with -r, also SUSPENDED and POWEROFF VMs (as OpenNebula)
    -p/--pause N   wait N monitoring cycles first, watching the host (default 2)
    -u/--no-fencing  do not fence (logged as a warning in the incident)
    --mass-failure-share S, --mass-failure-window S, --ignore-mass-failure  (ha/guard.py)
    --max-fences-per-hour N (3), --watch S (120: how long the VMs are followed)
    --fence-isolated-after S  fence an ISOLATED host after S s (default: never)

The run is the incident's state machine (ha/incident.py): one step per state, each returning
the next state and, when the run ends there, its exit code; the record is saved once at the
loop's edge, after every step.

    WAITING       the -p wait, watching the host (back: ABORTED, exit 0), then the
                  mass-failure guard (mass failure: stay, exit 255) -> FENCING, or
                  ISOLATED when its storage heartbeat still advances (ha/evidence.py)
    ISOLATED      alive but cut off: wait until its heartbeat stops or
                  --fence-isolated-after passes (-> FENCING), its agent says it stopped
                  its VMs or an operator confirms (-> FENCED), or it answers (-> ABORTED)
    FENCING,      prove the host off (or an operator's `lazarus host fenced ID --confirm`),
    FENCE_FAILED  while the guard keeps watching -> FENCED; -u -> FENCE_SKIPPED; not proven,
                  flapping or a mass failure meanwhile -> FENCE_FAILED, exit 255
    FENCED,       -> RECOVERING
    FENCE_SKIPPED
    RECOVERING    act on each VM (ha/vms.py), then follow them until each runs, is given up
                  or --watch passes -> DONE (exit 0; 1 if the restart policy gave one up);
                  a VM whose action failed -> stay RECOVERING, exit 1 (a retry goes on)
    DONE, ABORTED final: a second run for the same failure ends at once, exit 0

What it fixes over the original, each with a test (tests/unit/test_host_error.py and the
simulator's scenarios):
- the host is matched by ID, never by name;
- during the -p wait the host is watched the whole time; if it comes back (MONITORED, or
  DISABLED with a good probe since) the run ends with exit 0 having touched nothing. N cycles
  are N further failed probes of the host (the monitor publishes MONITOR_FAILURES), or N x
  MONITORING_INTERVAL_HOST, whichever comes first. A host an operator disabled or set
  offline during the wait is still failed: the recovery goes on;
- a per-host lock and the incident record make a second or concurrent run for the same
  failure wait or end, and a run after a crash resume; a retry of a run that ended "host
  came back" touches nothing;
- the mass-failure guard (ha/guard.py) stops it before fencing, and during the fence;
- fencing must prove the host off (or an operator must confirm it) before any VM is touched;
  a host fenced --max-fences-per-hour times (3) in the last hour is flapping and is not fenced
  again without an operator (HA_FENCES keeps the times in its template);
- VMs with HA = "NO" are skipped, HA_PRIORITY (higher first) orders the work, every action's
  result is checked, VMs in `*_FAILURE` states of a start are recovered too, and the incident
  says what became of each VM.

The logic is `HostErrorRun`; ports are injected (API client, clock, fencer, lock, log sink)
so the simulator runs it in-process in virtual time. app/host_error.py is the script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lazarus.domain.errors import ApiError
from lazarus.domain.states import HostState
from lazarus.domain.template import Template
from lazarus.domain.xml import template_from_element
from lazarus.ports.clock import Clock

from . import xmldoc
from .evidence import Heartbeat
from .guard import BACK, MassFailureGuard
from .incident import (
    LOCK_WAIT,
    HostLock,
    Incident,
    IncidentState,
    acquire_within,
    incident_key,
)
from .options import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    FENCE_CONFIRMED,
    FENCE_HISTORY,
    Api,
    Fencer,
    Options,
    UsageError,
    host_id_from_template,
    parse_args,
)
from .vms import VmStep

__all__ = [
    "EXIT_ERROR", "EXIT_FAILED", "EXIT_OK", "Api", "Fencer", "HostErrorRun", "Options",
    "StepOutcome", "UsageError", "host_id_from_template", "parse_args",
]

St = IncidentState


@dataclass
class _Host:
    id: int
    name: str
    state: HostState
    cluster_id: int
    template: Template
    xml: str


def _came_back(host: _Host) -> bool:
    """The host answers its probes again. MONITORED says so; a host an operator DISABLED
    during the wait ("schedule nothing there") is still probed but never leaves DISABLED, so
    only a good probe since (MONITOR_FAILURES cleared) says it is back. OFFLINE, INIT (just
    enabled, not yet probed) and ERROR are not back: the recovery goes on."""
    if host.state is HostState.MONITORED:
        return True
    return host.state is HostState.DISABLED and host.template.get("MONITOR_FAILURES") is None


@dataclass
class StepOutcome:
    """A step's end: the state to move to, and the exit code when the run ends there."""

    state: IncidentState
    code: int | None = None
    extra: Template | None = None  # attributes saved with the record (HA_FENCES)


_Step = Callable[["_Host", Incident], Awaitable[StepOutcome]]


@dataclass
class HostErrorRun:
    api: Api
    clock: Clock
    fencer: Fencer
    lock: HostLock
    emit: Callable[[str], None]  # one finished log line
    options: Options
    host_id: int
    error_text: str = ""
    poll: float = 0.5  # how often the host is looked at during the wait
    lock_wait: float = LOCK_WAIT  # for another run's lock (incident.acquire_within)
    outcome: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.guard = MassFailureGuard(self.api, self.clock, self.options, self.log, self.poll)
        self.vms = VmStep(self.api, self.clock, self.options, self.log, max(self.poll, 1.0))

    # ------------------------------------------------------------------------ logging
    def log(self, message: str, level: str = "I") -> None:
        stamp = datetime.fromtimestamp(self.clock.now(), UTC).strftime("%Y-%m-%d %H:%M:%S")
        self.emit(f"[{stamp}][HOST {self.host_id}][{level}] {message}")

    def fail(self, message: str, code: int = EXIT_ERROR) -> int:
        self.log(message, "E")
        self.outcome = message
        return code

    # ---------------------------------------------------------------------- main flow
    async def run(self) -> int:
        self.log("Hook launched")
        if not await acquire_within(self.lock, self.host_id, self.clock, self.lock_wait):
            return self.fail(
                f"Another host_error run still holds this host's lock after "
                f"{self.lock_wait:g} s: this run did nothing and the incident is not finished "
                "by it (retry it: lazarus hook retry)."
            )
        try:
            return await self._run_locked()
        except ApiError as exc:
            return self.fail(f"API error: {exc}")
        finally:
            self.lock.release(self.host_id)

    async def _run_locked(self) -> int:
        host = self._host()
        self.log(f"hostname: {host.name}")
        key = incident_key(host.template.get("ERROR") or self.error_text, host.id)
        incident = Incident.from_template(host.template)
        if incident is not None and incident.key == key:
            if incident.state is St.DONE:
                self.outcome = "already handled"
                self.log("Exiting: this failure was already handled (incident DONE).")
                return EXIT_OK
            if incident.state is St.ABORTED:
                self.outcome = "host came back"
                self.log("Exiting: the host came back during this failure's wait (incident "
                         "ABORTED); nothing to do. A new failure has a new incident.")
                return EXIT_OK
            self.log(f"Resuming incident {key} (state {incident.state}).")
        else:
            now = int(self.clock.now())
            incident = Incident(key, St.WAITING, now, now, self.options.mode)
            self._save(incident)
        steps: dict[IncidentState, _Step] = {
            St.WAITING: self._step_wait,
            St.ISOLATED: self._step_isolated,
            St.FENCING: self._step_fence,
            St.FENCE_FAILED: self._step_fence,
            St.FENCED: self._step_begin,
            St.FENCE_SKIPPED: self._step_begin,
            St.RECOVERING: self._step_recover,
        }
        while True:
            outcome = await steps[incident.state](host, incident)
            incident.advance(outcome.state)
            self._save(incident, outcome.extra)
            if outcome.code is not None:
                return outcome.code
            host = self._host()

    # ------------------------------------------------------------------------- steps
    async def _step_wait(self, host: _Host, incident: Incident) -> StepOutcome:
        config = self._config()
        interval = float(config.get("MONITORING_INTERVAL_HOST") or 60)
        if await self._wait(host, interval, incident):
            self.outcome = "host came back"
            self.log("Exiting. Host came back after waiting.")
            return StepOutcome(St.ABORTED, EXIT_OK)
        host = self._host()
        guard = await self.guard.settle(host.id, host.cluster_id, host.template)
        if guard == BACK:
            self.outcome = "host came back"
            self.log("Exiting. Host came back while the cluster settled.")
            return StepOutcome(St.ABORTED, EXIT_OK)
        if guard:
            return StepOutcome(St.WAITING, self.fail(guard))
        beat = await self._settled_beat()
        if beat is not None and beat.isolated:
            incident.isolated = int(self.clock.now())
            incident.evidence = f"ISOLATED: {beat.describe(self.clock.now())}"
            self.log(f"Host ISOLATED: its probes fail but its {incident.evidence[10:]}: "
                     "it is alive; its VMs are not recovered while its heartbeat advances.")
            return StepOutcome(St.ISOLATED)
        return StepOutcome(St.FENCING)

    async def _settled_beat(self) -> Heartbeat | None:
        """The heartbeat, once it says something about this failure: a beat after the first
        failed probe (ISOLATED), or STOPPED. A dead host's last beats may still count as
        ADVANCING for a few seconds: wait for them to settle (at most the settle time)."""
        beat = Heartbeat.of(self._host().template)
        if beat is None or not beat.advancing or beat.isolated:
            return beat
        deadline = self.clock.now() + beat.settle_time()
        while self.clock.now() < deadline:
            await self.clock.sleep(self.poll)
            beat = Heartbeat.of(self._host().template)
            if beat is None or not beat.advancing or beat.isolated:
                break
        return beat

    async def _step_isolated(self, host: _Host, incident: Incident) -> StepOutcome:
        after = self.options.fence_isolated_after
        since = incident.isolated or int(self.clock.now())
        while True:
            if _came_back(host):
                self.outcome = "host came back"
                self.log("Exiting. The isolated host answers its probes again.")
                return StepOutcome(St.ABORTED, EXIT_OK)
            now = self.clock.now()
            who = self._confirmed(host, incident)
            if who:
                incident.fence = f"confirmed by {who}"
                incident.evidence = f"OPERATOR: {who} confirmed the host off (was ISOLATED)"
                self.log(f"Fencing confirmed by operator {who}: skipping.")
                return StepOutcome(St.FENCED)
            beat = Heartbeat.of(host.template)
            if beat is None or not beat.advancing:
                what = "gone" if beat is None else beat.describe(now)
                self.log(f"The isolated host's heartbeat no longer advances ({what}): fencing.")
                return StepOutcome(St.FENCING)
            if beat.vms_stopped:
                incident.fence = "not fenced: its agent stopped its VMs (isolation response)"
                incident.evidence = (f"AGENT: the isolated host's agent reports its VMs "
                                     f"stopped (counter {beat.counter}); host left running")
                self.log(incident.evidence)
                return StepOutcome(St.FENCED)
            if after is not None and now - since >= after:
                self.log(f"The host has been ISOLATED for {now - since:.0f} s "
                         f"(--fence-isolated-after {after:g}): fencing it.")
                return StepOutcome(St.FENCING)
            await self.clock.sleep(self.poll)
            host = self._host()

    def _confirmed(self, host: _Host, incident: Incident) -> str:
        """The operator who confirmed the host off during this incident, or ''."""
        confirmed = host.template.vectors(FENCE_CONFIRMED)
        if confirmed:
            c = confirmed[-1]
            if int(c.get("TIME") or "0") >= incident.started:
                return c.get("USER") or "?"
        return ""

    async def _step_fence(self, host: _Host, incident: Incident) -> StepOutcome:
        if not self.options.fencing:
            self.log("WARNING: Fencing disabled (-u): VMs may still run on the failed host.")
            incident.fence = "SKIPPED (-u)"
            return StepOutcome(St.FENCE_SKIPPED)
        who = self._confirmed(host, incident)
        if who:
            self.log(f"Fencing confirmed by operator {who}: skipping.")
            incident.fence = f"confirmed by {who}"
            beat = Heartbeat.of(host.template)
            seen = f"; {beat.describe(self.clock.now())}" if beat is not None else ""
            incident.evidence = f"OPERATOR: {who} confirmed the host off{seen}"
            return StepOutcome(St.FENCED)
        now = int(self.clock.now())
        recent = [
            int(t) for t in (host.template.get(FENCE_HISTORY) or "").split()
            if t.isdigit() and now - int(t) < 3600
        ]
        limit = self.options.max_fences_per_hour
        if limit and len(recent) >= limit:
            incident.fence = f"refused: fenced {len(recent)} times in the last hour"
            return StepOutcome(St.FENCE_FAILED, self.fail(
                f"Host {self.host_id} was fenced {len(recent)} times in the last hour (limit "
                f"{limit}): it is flapping, and power-cycling it again will not help; no VM was "
                "touched. Find out why it fails; when it is off, run `lazarus host fenced "
                f"{self.host_id} --confirm` and retry this hook execution (or raise "
                "--max-fences-per-hour)."
            ))
        self.log("Fencing enabled")
        fencing = asyncio.ensure_future(self.fencer(host.xml))
        guard = asyncio.ensure_future(
            self.guard.during_fence(host.id, host.cluster_id, host.template)
        )
        try:
            await asyncio.wait({fencing, guard}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (fencing, guard):
                task.cancel()
        if not fencing.done() or fencing.cancelled():
            await asyncio.gather(fencing, return_exceptions=True)
            incident.fence = "stopped: mass failure during the fence"
            return StepOutcome(St.FENCE_FAILED,
                            self.fail(guard.result() + " (The fence of this host was stopped.)"))
        await asyncio.gather(guard, return_exceptions=True)
        ok, output = fencing.result()
        for line in output.splitlines():
            if line.strip():
                self.log(line.strip(), "I" if ok else "E")
        summary = (output.strip().splitlines() or ["ok" if ok else "failed"])[-1][:200]
        history = Template([(FENCE_HISTORY, " ".join(map(str, [*recent, now])))])
        if not ok:
            return await self._unfenced(incident, summary)
        incident.fence = summary
        return await self._after_fence(incident, summary, history)

    async def _after_fence(
        self, incident: Incident, summary: str, history: Template
    ) -> StepOutcome:
        """The BMC says OFF. Without an agent that is the proof; with one, its heartbeat must
        stop too: a heartbeat that keeps advancing means the device lies."""
        host = self._host()
        beat = Heartbeat.of(host.template)
        if beat is None or beat.status == "UNREADABLE":
            incident.evidence = "BMC: OFF" + (
                "" if beat is None else "; heartbeat unreadable by the controller")
            self.log("Fencing success")
            return StepOutcome(St.FENCED, extra=history)
        start = beat.counter
        deadline = self.clock.now() + 2 * beat.settle_time()
        while True:
            now = self.clock.now()
            if beat.counter >= start + 2:
                alert = (f"LYING DEVICE: the BMC says host {host.name} is OFF but its heartbeat "
                         f"keeps advancing (counter {start} -> {beat.counter} after the fence): "
                         "the device does not control this host. No VM was moved. Check the "
                         "host's FENCE attribute (which plug/BMC it names) and the device.")
                incident.fence = "LYING DEVICE: BMC OFF while the heartbeat advances"
                incident.evidence = alert[:400]
                extra = Template([*history.items, ("HA_ALERT", alert)])
                return StepOutcome(St.FENCE_FAILED, self.fail(alert), extra=extra)
            if beat.status == "STOPPED":
                incident.evidence = f"BMC: OFF; {beat.describe(now)}, after the fence"
                self.log(f"Fencing success, confirmed by the heartbeat ({beat.describe(now)})")
                return StepOutcome(St.FENCED, extra=history)
            if now >= deadline:
                incident.fence = "BMC OFF, heartbeat not settled"
                incident.evidence = f"BMC: OFF; {beat.describe(now)}"
                return StepOutcome(St.FENCE_FAILED, self.fail(
                    f"The BMC says OFF but the heartbeat did not stop within "
                    f"{2 * beat.settle_time():g} s ({beat.describe(now)}): not proven off; "
                    "no VM was touched."), extra=history)
            await self.clock.sleep(self.poll)
            beat = Heartbeat.of(self._host().template) or beat

    async def _unfenced(self, incident: Incident, summary: str) -> StepOutcome:
        """The fence did not prove the host off: the heartbeat may, when the agent runs a
        watchdog and has been silent longer than its safe time."""
        incident.fence = "failed"
        beat = Heartbeat.of(self._host().template)
        while beat is not None and beat.status == "STOPPED":
            now = self.clock.now()
            if beat.proves_dead(now):
                incident.fence = "proven by the heartbeat and the agent's watchdog"
                incident.evidence = (f"BMC: not proven ({summary[:120]}); {beat.describe(now)}:"
                                     " longer than the safe time, the watchdog has reset it")
                self.log(f"Fencing: the BMC did not prove the host off, but its "
                         f"{beat.describe(now)}: past the safe time its watchdog has reset "
                         "it. Proven dead.")
                return StepOutcome(St.FENCED)
            if beat.watchdog <= 0:
                break  # no watchdog: no silence, however long, proves it
            await self.clock.sleep(self.poll)
            beat = Heartbeat.of(self._host().template)
        now = self.clock.now()
        seen = "no agent heartbeat" if beat is None else beat.describe(now)
        incident.evidence = f"BMC: not proven ({summary[:120]}); {seen}"
        hint = ""
        if beat is not None and beat.status == "STOPPED":
            hint = (" Its heartbeat stopped, but its agent runs no watchdog, so that is "
                    "evidence for you, not proof.")
        elif beat is not None and beat.advancing:
            hint = " Its heartbeat still advances: the host is alive."
        return StepOutcome(St.FENCE_FAILED, self.fail(
            f"Fencing error: the host is not proven off ({seen}); no VM was touched.{hint} "
            f"When you know it is off, run `lazarus host fenced {self.host_id} --confirm`, "
            "then retry this hook execution (`lazarus hook retry`)."
        ))

    async def _step_begin(self, host: _Host, incident: Incident) -> StepOutcome:
        return StepOutcome(St.RECOVERING)

    async def _step_recover(self, host: _Host, incident: Incident) -> StepOutcome:
        failures, acted = self.vms.act(
            host.id, host.xml, incident, checkpoint=lambda: self._save(incident)
        )
        if failures:
            self.log("Hook finished with errors")
            return StepOutcome(St.RECOVERING,
                            self.fail(f"{failures} VM(s) not handled", EXIT_FAILED))
        self._save(incident)  # progress: every VM handed over, before the (long) watch
        gave_up = await self.vms.watch(host.id, acted, incident, self.options.watch)
        if gave_up:
            self.log("Hook finished with errors")
            return StepOutcome(St.DONE, self.fail(
                f"VM(s) {', '.join(map(str, gave_up))} could not be started anywhere: the "
                "restart policy gave up (see each VM's HA_RECOVERY and its events)",
                EXIT_FAILED,
            ))
        self.log("Hook finished")
        return StepOutcome(St.DONE, EXIT_OK)

    # ----------------------------------------------------------------------- helpers
    def _config(self) -> dict[str, str]:
        root = xmldoc.parse(self.api.call("one.system.config"))
        return {child.tag: (child.text or "") for child in root}

    def _host(self) -> _Host:
        xml = self.api.call("one.host.info", self.host_id, False)
        root = xmldoc.parse(xml)
        template_elem = root.find("TEMPLATE")
        return _Host(
            id=int(root.findtext("ID", "-1")),
            name=root.findtext("NAME", ""),
            state=HostState(int(root.findtext("STATE", "0"))),
            cluster_id=int(root.findtext("CLUSTER_ID", "0")),
            template=template_from_element(template_elem) if template_elem is not None
            else Template(),
            xml=xml,
        )

    def _save(self, incident: Incident, extra: Template | None = None) -> None:
        incident.updated = int(self.clock.now())
        template = incident.to_template()
        if extra is not None:
            template.items.extend(extra.items)
        self.api.call("one.host.update", self.host_id, template.render(), 1)

    async def _wait(self, host: _Host, interval: float, incident: Incident) -> bool:
        """True when the host came back during the -p wait."""
        cycles = self.options.pause
        if cycles <= 0:
            return False
        deadline = incident.started + cycles * interval
        start_failures = host.template.get_int("MONITOR_FAILURES", 0)
        self.log(f"Wait {cycles} cycles (at most {cycles * interval:g} seconds).")
        while True:
            current = self._host()
            if _came_back(current):
                return True
            failures = current.template.get_int("MONITOR_FAILURES", 0)
            if failures >= start_failures + cycles:
                self.log(f"Host still failing after {failures - start_failures} more probes.")
                return False
            if self.clock.now() >= deadline:
                self.log(f"Host still failing after {cycles * interval:g} seconds.")
                return False
            await self.clock.sleep(self.poll)
