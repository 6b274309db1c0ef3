"""ft/host_error: recover the VMs of a host in ERROR, after proving the host is off.

Command line compatible with OpenNebula's share/hooks/ft/host_error.rb: the hook
passes "<base64 HOST XML> <options>" on stdin (ARGUMENTS_STDIN=yes) or as arguments.

    -m/--migrate   resched VMs on SHARED=YES system datastores (others skipped, logged)
    -r/--recreate  one.vm.recover(id, 4): back to PENDING, disks recreated
    -d/--delete    one.vm.recover(id, 3)
    -f/--force     with -r, also SUSPENDED and POWEROFF VMs (as OpenNebula)
    -p/--pause N   wait N monitoring cycles first, watching the host (default 2)
    -u/--no-fencing  do not fence (logged as a warning in the incident)

What it fixes over the original, each with a test (tests/unit/test_host_error.py):
- the host is matched by ID, never by name;
- during the -p wait the host is watched the whole time; if it comes back MONITORED the run
  ends with exit 0 having touched nothing. N cycles are N further failed probes of the host
  (the monitor publishes MONITOR_FAILURES), or N x MONITORING_INTERVAL_HOST, whichever
  comes first;
- a per-host lock and an incident record in the host's template (incident.py) make a second
  or concurrent run for the same failure a no-op, and a run after a crash resume;
- a mass failure (more than --mass-failure-share, default 50%, of the cluster's hosts in
  ERROR) stops it
  before fencing: the controller is more likely cut off than the hosts dead;
- fencing must prove the host off (or an operator must confirm it with `lazarus host fenced
  ID --confirm`) before any VM is touched; a host fenced --max-fences-per-hour times (3) in
  the last hour is flapping and is not fenced again without an operator (HA_FENCES keeps the
  times in its template);
- VMs with HA = "NO" are skipped, HA_PRIORITY (higher first) orders the work, every action's
  result is checked, and the exit code is 0 only if every selected VM was handled.

The logic is `HostErrorRun`; ports are injected (API client, clock, fencer, lock, log sink)
so the simulator runs it in-process in virtual time. app/host_error.py is the script.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import getopt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET

from lazarus.domain.errors import ApiError, LazarusError
from lazarus.domain.states import HostState, VmState
from lazarus.domain.template import Template
from lazarus.domain.xml import template_from_element
from lazarus.ports.clock import Clock

from . import xmldoc
from .incident import LOCK_WAIT, HostLock, Incident, acquire_within, incident_key

EXIT_OK = 0
EXIT_FAILED = 1  # some selected VM was not handled
EXIT_ERROR = 255  # refused to act (bad input, fence failed, mass failure, API error)

FENCE_CONFIRMED = "FENCE_CONFIRMED"
FENCE_HISTORY = "HA_FENCES"  # times of this host's recent fences (seconds since the epoch)


class Api(Protocol):
    def call(self, method: str, *params: object) -> Any: ...


# fencer(host XML) -> (fenced?, output lines)
Fencer = Callable[[str], Awaitable[tuple[bool, str]]]


class UsageError(LazarusError):
    pass


@dataclass
class Options:
    mode: str = ""
    force: bool = False
    pause: int = 2
    fencing: bool = True
    ignore_mass_failure: bool = False
    mass_failure_share: float = 0.5
    # seconds the cluster must be quiet (no host newly failing) before a fence; keep it at
    # most the controller's MONITOR_ALERT_WINDOW, during which peers are probed every second
    mass_failure_window: float = 6.0
    max_fences_per_hour: int = 3  # 0: no limit


def parse_args(argv: list[str]) -> tuple[str, Options]:
    """(base64 host XML, options); UsageError with a clear message otherwise."""
    try:
        opts, args = getopt.gnu_getopt(
            argv,
            "mrdfp:u",
            ["migrate", "recreate", "delete", "force", "pause=", "no-fencing",
             "ignore-mass-failure", "mass-failure-share=", "max-fences-per-hour=",
             "mass-failure-window="],
        )
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    options = Options()
    modes = {"-m": "migrate", "--migrate": "migrate", "-r": "recreate", "--recreate": "recreate",
             "-d": "delete", "--delete": "delete"}
    for flag, value in opts:
        if flag in modes:
            if options.mode and options.mode != modes[flag]:
                raise UsageError(
                    f"only one mode may be given (got {options.mode} and {modes[flag]})"
                )
            options.mode = modes[flag]
        elif flag in ("-f", "--force"):
            options.force = True
        elif flag in ("-u", "--no-fencing"):
            options.fencing = False
        elif flag == "--ignore-mass-failure":
            options.ignore_mass_failure = True
        elif flag == "--max-fences-per-hour":
            if not value.isdigit():
                raise UsageError(f"--max-fences-per-hour needs a whole number, not {value!r}")
            options.max_fences_per_hour = int(value)
        elif flag == "--mass-failure-window":
            try:
                options.mass_failure_window = float(value)
            except ValueError:
                options.mass_failure_window = -1.0
            if not 0 <= options.mass_failure_window <= 3600:
                raise UsageError(f"--mass-failure-window needs seconds (0-3600), not {value!r}")
        elif flag == "--mass-failure-share":
            try:
                options.mass_failure_share = float(value)
            except ValueError:
                raise UsageError(f"--mass-failure-share needs a number, not {value!r}") from None
        else:
            try:
                options.pause = int(value)
            except ValueError:
                raise UsageError(f"-p needs a whole number of cycles, not {value!r}") from None
    if not options.mode:
        raise UsageError("A mode must be supplied (-m, -r or -d).")
    if not args:
        raise UsageError("missing the base64 HOST document ($TEMPLATE)")
    return args[0], options


def host_id_from_template(b64: str) -> tuple[int, str]:
    """(HOST/ID, HOST/TEMPLATE/ERROR) from the hook's $TEMPLATE."""
    try:
        root = SafeET.fromstring(base64.b64decode(b64, validate=True))
        host_id = int(root.findtext("ID", ""))
    except (binascii.Error, ValueError, SafeET.ParseError) as exc:
        raise UsageError(f"the first argument is not a base64 HOST document: {exc}") from None
    except Exception as exc:  # defusedxml's refusals (DTDs, entities)
        raise UsageError(f"refused HOST document: {exc}") from None
    return host_id, root.findtext("TEMPLATE/ERROR", "") or ""


_BACK = "\0back"  # _mass_failure: the host answers again
_SETTLE_LIMIT = 10  # windows a never-quiet cluster is waited for before its share decides


def _number(raw: str | None, default: float) -> float:
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        return default
    return value if value == value else default  # NaN


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
        config = self._config()
        interval = float(config.get("MONITORING_INTERVAL_HOST") or 60)
        host = self._host()
        self.log(f"hostname: {host.name}")
        key = incident_key(host.template.get("ERROR") or self.error_text, host.id)
        incident = Incident.from_template(host.template)
        if incident is not None and incident.key == key:
            if incident.state == "DONE":
                self.outcome = "already handled"
                self.log("Exiting: this failure was already handled (incident DONE).")
                return EXIT_OK
            self.log(f"Resuming incident {key} (state {incident.state}).")
        else:
            now = int(self.clock.now())
            incident = Incident(key, "WAITING", now, now, self.options.mode)
            self._save(incident)

        if incident.state == "WAITING":
            came_back = await self._wait(host, interval, incident)
            if came_back:
                self.outcome = "host came back"
                incident.state = "ABORTED"
                self._save(incident)
                self.log("Exiting. Host came back after waiting.")
                return EXIT_OK
            host = self._host()
            guard = await self._mass_failure(host)
            if guard == _BACK:
                self.outcome = "host came back"
                incident.state = "ABORTED"
                self._save(incident)
                self.log("Exiting. Host came back while the cluster settled.")
                return EXIT_OK
            if guard:
                return self.fail(guard)
            incident.state = "FENCING"
            self._save(incident)

        if incident.state in ("FENCING", "FENCE_FAILED"):
            code = await self._fence(host, incident)
            if code != EXIT_OK:
                return code

        incident.state = "RECOVERING"
        self._save(incident)
        code = self._recover_vms(host, incident)
        incident.state = "DONE" if code == EXIT_OK else "RECOVERING"
        self._save(incident)
        self.log("Hook finished" if code == EXIT_OK else "Hook finished with errors")
        return code

    # ------------------------------------------------------------------------- steps
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

    async def _mass_failure(self, host: _Host) -> str:
        """'' when fencing may go on; a message when the guard stops it; _BACK when the host
        came back meanwhile.

        A host counts as failed when it is in ERROR or its last probes failed
        (MONITOR_FAILURES). More than --mass-failure-share of the cluster (OFFLINE hosts
        aside) failed: stop, the controller is more likely cut off than the hosts dead. And
        the cluster must have been quiet for --mass-failure-window seconds: no host (this one
        included) started failing (FAILING_SINCE) more recently, so that a loss reaching the
        hosts one by one (a switch stack rebooting member by member) is seen whole before
        any of them is fenced. The monitor probes a cluster's hosts every second while it is
        in alert, so each next host of such a loss is seen within about a second of its cut.
        A cluster that never settles (a flapping host) is judged on its share after
        _SETTLE_LIMIT windows."""
        if self.options.ignore_mass_failure:
            return ""
        override = (host.template.get("HA_IGNORE_MASS_FAILURE") or "").strip().upper()
        if override in ("YES", "TRUE", "1"):
            self.log("Mass-failure guard overridden by HA_IGNORE_MASS_FAILURE on the host.")
            return ""
        window = self.options.mass_failure_window
        share = self.options.mass_failure_share
        started = self.clock.now()
        said = ""
        while True:
            peers, failed, onset, back = self._cluster(host)
            if back:
                return _BACK
            if peers and failed / peers > share:
                return self._mass_message(host, peers, failed)
            now = self.clock.now()
            quiet = now - onset
            if quiet >= window or now - started >= _SETTLE_LIMIT * max(window, 1.0):
                if said:
                    self.log(f"Cluster {host.cluster_id} settled: {failed} of {peers} hosts "
                             "failed; fencing.")
                return ""
            seen = f"{failed}/{peers}@{onset:g}"
            if seen != said:  # once per new onset, not every poll
                self.log(f"Waiting for cluster {host.cluster_id} to settle: a host started "
                         f"failing {quiet:.1f} s ago ({failed} of {peers} failed; window "
                         f"{window:g} s).")
                said = seen
            await self.clock.sleep(min(self.poll, window - quiet))

    def _cluster(self, host: _Host) -> tuple[int, int, float, bool]:
        """(hosts of its cluster not OFFLINE, of those in ERROR or failing, the latest
        FAILING_SINCE among those, whether this host answers again)."""
        root = xmldoc.parse(self.api.call("one.hostpool.info"))
        peers, failed, onset, back = 0, 0, 0.0, False
        for h in root.findall("HOST"):
            state = int(h.findtext("STATE", "0"))
            if int(h.findtext("CLUSTER_ID", "0")) != host.cluster_id or (
                state == HostState.OFFLINE
            ):
                continue
            peers += 1
            failures = _number(h.findtext("TEMPLATE/MONITOR_FAILURES"), 0.0)
            if int(h.findtext("ID", "-1")) == host.id and state in (
                HostState.MONITORED, HostState.DISABLED
            ) and failures == 0:
                back = True
            if state == HostState.ERROR or failures > 0:
                failed += 1
                onset = max(onset, _number(h.findtext("TEMPLATE/FAILING_SINCE"), 0.0))
        return peers, failed, onset, back

    def _mass_message(self, host: _Host, peers: int, failed: int) -> str:
        share = self.options.mass_failure_share
        return (
            f"Mass failure: {failed} of {peers} hosts in cluster {host.cluster_id} are "
            f"in ERROR or failing (more than {share:.0%}). The controller is more likely "
            "cut off than the hosts dead: not fencing, not moving VMs. If they really "
            f"are down, set HA_IGNORE_MASS_FAILURE = YES on host {host.id} (`lazarus "
            f"host update {host.id} FILE --append`) and retry this hook execution "
            "(`lazarus hook retry`); or run it with --ignore-mass-failure."
        )

    async def _guard_during_fence(self, host: _Host) -> str:
        """Keep judging the cluster's share while the fence runs (its retries may take a
        minute); returns the guard's message when a mass failure develops meanwhile."""
        if self.options.ignore_mass_failure or (
            host.template.get("HA_IGNORE_MASS_FAILURE") or ""
        ).strip().upper() in ("YES", "TRUE", "1"):
            await asyncio.Event().wait()  # never: the guard is off for this host
        while True:
            await self.clock.sleep(self.poll)
            peers, failed, _onset, _back = self._cluster(host)
            if peers and failed / peers > self.options.mass_failure_share:
                return self._mass_message(host, peers, failed)

    async def _fence(self, host: _Host, incident: Incident) -> int:
        host = self._host()
        if not self.options.fencing:
            self.log("WARNING: Fencing disabled (-u): VMs may still run on the failed host.")
            incident.fence = "SKIPPED (-u)"
            incident.state = "FENCE_SKIPPED"
            self._save(incident)
            return EXIT_OK
        confirmed = host.template.vectors(FENCE_CONFIRMED)
        if confirmed:
            c = confirmed[-1]
            when = int(c.get("TIME") or "0")
            if when >= incident.started:
                self.log(f"Fencing confirmed by operator {c.get('USER')} at {when}: skipping.")
                incident.fence = f"confirmed by {c.get('USER')}"
                incident.state = "FENCED"
                self._save(incident)
                return EXIT_OK
        now = int(self.clock.now())
        recent = [
            int(t) for t in (host.template.get(FENCE_HISTORY) or "").split()
            if t.isdigit() and now - int(t) < 3600
        ]
        limit = self.options.max_fences_per_hour
        if limit and len(recent) >= limit:
            incident.state = "FENCE_FAILED"
            incident.fence = f"refused: fenced {len(recent)} times in the last hour"
            self._save(incident)
            return self.fail(
                f"Host {self.host_id} was fenced {len(recent)} times in the last hour (limit "
                f"{limit}): it is flapping, and power-cycling it again will not help; no VM was "
                "touched. Find out why it fails; when it is off, run `lazarus host fenced "
                f"{self.host_id} --confirm` and retry this hook execution (or raise "
                "--max-fences-per-hour)."
            )
        self.log("Fencing enabled")
        fencing = asyncio.ensure_future(self.fencer(host.xml))
        guard = asyncio.ensure_future(self._guard_during_fence(host))
        try:
            await asyncio.wait({fencing, guard}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (fencing, guard):
                task.cancel()
        if not fencing.done() or fencing.cancelled():
            await asyncio.gather(fencing, return_exceptions=True)
            incident.state = "FENCE_FAILED"
            incident.fence = "stopped: mass failure during the fence"
            self._save(incident)
            return self.fail(guard.result() + " (The fence of this host was stopped.)")
        await asyncio.gather(guard, return_exceptions=True)
        ok, output = fencing.result()
        for line in output.splitlines():
            if line.strip():
                self.log(line.strip(), "I" if ok else "E")
        if not ok:
            incident.state = "FENCE_FAILED"
            incident.fence = "failed"
            self._save(incident)
            return self.fail(
                "Fencing error: the host is not proven off; no VM was touched. When you know it "
                f"is off, run `lazarus host fenced {self.host_id} --confirm`, then retry this "
                "hook execution (`lazarus hook retry`)."
            )
        self.log("Fencing success")
        incident.fence = (output.strip().splitlines() or ["ok"])[-1][:200]
        incident.state = "FENCED"
        history = " ".join(map(str, [*recent, now]))
        self._save(incident, Template([(FENCE_HISTORY, history)]))
        return EXIT_OK

    def _recover_vms(self, host: _Host, incident: Incident) -> int:
        states = {VmState.ACTIVE}
        if self.options.mode != "recreate" or self.options.force:
            states |= {VmState.SUSPENDED, VmState.POWEROFF}
        self.log("states: " + ", ".join(str(int(s)) for s in sorted(states)))
        shared = self._shared_datastores() if self.options.mode == "migrate" else {}
        selected: list[tuple[int, int, Element]] = []
        for vm in self._placed_vms(host):
            hist = vm.findall("HISTORY_RECORDS/HISTORY")
            if not hist or int(hist[-1].findtext("HID", "-1")) != host.id:
                continue
            if VmState(int(vm.findtext("STATE", "0"))) not in states:
                continue
            user = vm.find("USER_TEMPLATE")
            ha = (user.findtext("HA", "") if user is not None else "").strip().upper()
            vm_id = int(vm.findtext("ID", "-1"))
            if ha in ("NO", "FALSE", "0", "OFF"):
                self.log(f"Skipping VM {vm_id}: HA = NO")
                continue
            raw = user.findtext("HA_PRIORITY", "0") if user is not None else "0"
            priority = int(raw) if raw.lstrip("-").isdigit() else 0
            selected.append((priority, vm_id, vm))
        selected.sort(key=lambda item: (-item[0], item[1]))
        self.log(f"vms: {[vm_id for _, vm_id, _ in selected]}")
        if not selected:
            self.log("No VMs found.")
        failures = 0
        for done, (_, vm_id, vm) in enumerate(selected, 1):
            if vm_id in incident.handled:
                continue
            if self._recover_one(vm_id, vm, host, shared):
                incident.handled.append(vm_id)
                if vm_id in incident.failed:
                    incident.failed.remove(vm_id)
            else:
                failures += 1
                if vm_id not in incident.failed:
                    incident.failed.append(vm_id)
            # The record is for operators and for skipping work on resume; a VM's own state
            # (RESCHED set, PENDING, DONE, moved) already makes handling it twice a no-op,
            # so it is saved every few VMs rather than after each one (and at the end).
            if done % 10 == 0:
                self._save(incident)
        return EXIT_OK if failures == 0 else self.fail(f"{failures} VM(s) not handled", EXIT_FAILED)

    def _placed_vms(self, host: _Host) -> list[Element]:
        """The VMs placed on the host: its VMS list (every VM holding capacity there: ACTIVE,
        POWEROFF, SUSPENDED), each read with one.vm.info. OpenNebula's script reads the whole
        vmpool instead; with 40,000 VMs that is a 24 MB document to parse per failed host."""
        root = xmldoc.parse(self._host().xml)  # now, not when the run started
        vms = []
        for text in root.findall("VMS/ID"):
            vm_id = int(text.text or "-1")
            try:
                vms.append(xmldoc.parse(self.api.call("one.vm.info", vm_id, False)))
            except ApiError as exc:  # deleted meanwhile: nothing to recover
                self.log(f"VM {vm_id}: cannot read it: {exc}")
        return vms

    def _shared_datastores(self) -> dict[int, str | None]:
        root = xmldoc.parse(self.api.call("one.datastorepool.info", -2, -1, -1))
        return {
            int(ds.findtext("ID", "-1")): ds.findtext("TEMPLATE/SHARED")
            for ds in root.findall("DATASTORE")
        }

    def _recover_one(
        self, vm_id: int, vm: Element, host: _Host, shared: dict[int, str | None]
    ) -> bool:
        """One VM; True when handled (or skipped on purpose)."""
        try:  # read again when acting: an operator may have moved it since it was selected
            info = xmldoc.parse(self.api.call("one.vm.info", vm_id, False))
        except ApiError as exc:
            self.log(f"VM {vm_id}: cannot read it: {exc}", "E")
            return False
        hist = info.findall("HISTORY_RECORDS/HISTORY")
        if not hist or int(hist[-1].findtext("HID", "-1")) != host.id:
            self.log(f"VM {vm_id}: no longer on this host: already handled")
            return True
        state = VmState(int(info.findtext("STATE", "0")))
        mode = self.options.mode
        try:
            if mode == "migrate":
                if info.findtext("RESCHED") == "1":
                    self.log(f"VM {vm_id}: already rescheduled")
                    return True
                ds_id = int(hist[-1].findtext("DS_ID", "-1"))
                flag = shared.get(ds_id)
                if flag is None:
                    self.log(f"VM {vm_id}: could not get datastore {ds_id} or its SHARED flag", "E")
                    return False
                if flag.strip().upper() != "YES":
                    self.log(f"Skipping VM {vm_id} deployed on non-shared datastore {ds_id}")
                    return True
                if state is VmState.SUSPENDED:
                    self.log(f"Skipping VM {vm_id}: SUSPENDED VMs cannot be rescheduled; use -r -f")
                    return True
                self.api.call("one.vm.action", "resched", vm_id)
                self.log(f"resched {vm_id}")
            elif mode == "recreate":
                self.api.call("one.vm.recover", vm_id, 4)
                self.log(f"recreate {vm_id}")
            else:
                self.api.call("one.vm.recover", vm_id, 3)
                self.log(f"delete {vm_id}")
        except ApiError as exc:
            self.log(f"VM {vm_id}: {mode} failed: {exc}", "E")
            return False
        return True
