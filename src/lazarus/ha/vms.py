"""ft/host_error's VM step: select the failed host's VMs, act on each, watch them start.

Selection: the VMs on the host's VMS list (each read with one.vm.info; OpenNebula's script
reads the whole vmpool, a 24 MB document at 40,000 VMs) whose last history record is on the
host, in the states the mode takes (ACTIVE, which includes the `*_FAILURE` states of a start
that failed there; with -m and -d also SUSPENDED and POWEROFF, with -r only with -f), HA not
"NO", higher HA_PRIORITY first.

Action per VM: -m `one.vm.action resched` (shared system datastore only; SUSPENDED VMs are
skipped), -r `one.vm.recover 4`, -d `one.vm.recover 3`. Each VM is read again when acted on:
an operator may have moved it since it was selected.

Watch: the VMs acted on are then followed (one.vm.info every second) until each has settled:
RUNNING on another host (or on this one, back after its fence), DONE, given up by the
controller's restart policy (HA_RECOVERY/STATE = GAVE_UP in the VM document), deleted or moved by an
operator; at most --watch seconds (120). What became of each is written into the incident
(VM_<id> = "RUNNING on node3 (1 restart)"), so the record tells the whole failover.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from lazarus.domain.errors import ApiError
from lazarus.domain.states import LcmState, VmState, vm_state_name
from lazarus.ports.clock import Clock

from . import xmldoc
from .incident import Incident
from .options import Api, Options

_OFF = ("NO", "FALSE", "0", "OFF")
_ACTED = "acted"
# Where a recovering VM passes on its way to RUNNING (or waits for room / a fence)
_UNDERWAY = {LcmState.LCM_INIT, LcmState.UNKNOWN, LcmState.CLEANUP_RESUBMIT,
             LcmState.CLEANUP_DELETE}


@dataclass
class VmStep:
    api: Api
    clock: Clock
    options: Options
    log: Callable[[str, str], None]
    poll: float = 1.0

    # ---------------------------------------------------------------------------- act
    def act(self, host_id: int, host_xml: str, incident: Incident,
            checkpoint: Callable[[], None]) -> tuple[int, list[int]]:
        """Act on every selected VM not yet HANDLED; (how many failed, ids acted on)."""
        mode = self.options.mode
        states = {VmState.ACTIVE}
        if mode != "recreate" or self.options.force:
            states |= {VmState.SUSPENDED, VmState.POWEROFF}
        self.log("states: " + ", ".join(str(int(s)) for s in sorted(states)), "I")
        shared = self._shared_datastores() if mode == "migrate" else {}
        selected: list[tuple[int, int]] = []
        for vm in self._placed_vms(host_xml):
            hist = vm.findall("HISTORY_RECORDS/HISTORY")
            if not hist or int(hist[-1].findtext("HID", "-1")) != host_id:
                continue
            if VmState(int(vm.findtext("STATE", "0"))) not in states:
                continue
            user = vm.find("USER_TEMPLATE")
            ha = (user.findtext("HA", "") if user is not None else "").strip().upper()
            vm_id = int(vm.findtext("ID", "-1"))
            if ha in _OFF:
                self.log(f"Skipping VM {vm_id}: HA = NO", "I")
                continue
            raw = user.findtext("HA_PRIORITY", "0") if user is not None else "0"
            priority = int(raw) if raw.lstrip("-").isdigit() else 0
            selected.append((priority, vm_id))
        selected.sort(key=lambda item: (-item[0], item[1]))
        self.log(f"vms: {[vm_id for _, vm_id in selected]}", "I")
        if not selected:
            self.log("No VMs found.", "I")
        failures, acted = 0, []
        for done, (_, vm_id) in enumerate(selected, 1):
            if vm_id in incident.handled:
                continue
            result = self._act_one(vm_id, host_id, shared)
            if result is not None:
                incident.handled.append(vm_id)
                if vm_id in incident.failed:
                    incident.failed.remove(vm_id)
                if result == _ACTED:
                    acted.append(vm_id)
                else:
                    incident.vms[vm_id] = result
            else:
                failures += 1
                if vm_id not in incident.failed:
                    incident.failed.append(vm_id)
            # The record is for operators and for skipping work on resume; a VM's own state
            # (RESCHED set, PENDING, DONE, moved) already makes handling it twice a no-op,
            # so it is saved every few VMs rather than after each one (and at the end).
            if done % 10 == 0:
                checkpoint()
        return failures, acted

    def _placed_vms(self, host_xml: str) -> list[Element]:
        root = xmldoc.parse(host_xml)
        vms = []
        for text in root.findall("VMS/ID"):
            vm_id = int(text.text or "-1")
            try:
                vms.append(xmldoc.parse(self.api.call("one.vm.info", vm_id, False)))
            except ApiError as exc:  # deleted meanwhile: nothing to recover
                self.log(f"VM {vm_id}: cannot read it: {exc}", "I")
        return vms

    def _shared_datastores(self) -> dict[int, str | None]:
        root = xmldoc.parse(self.api.call("one.datastorepool.info", -2, -1, -1))
        return {
            int(ds.findtext("ID", "-1")): ds.findtext("TEMPLATE/SHARED")
            for ds in root.findall("DATASTORE")
        }

    def _act_one(self, vm_id: int, host_id: int, shared: dict[int, str | None]) -> str | None:
        """_ACTED, or why the VM needed nothing (a line for the incident); None: failed."""
        try:  # read again when acting: an operator may have moved it since it was selected
            info = xmldoc.parse(self.api.call("one.vm.info", vm_id, False))
        except ApiError as exc:
            self.log(f"VM {vm_id}: cannot read it: {exc}", "E")
            return None
        hist = info.findall("HISTORY_RECORDS/HISTORY")
        if not hist or int(hist[-1].findtext("HID", "-1")) != host_id:
            self.log(f"VM {vm_id}: no longer on this host: already handled", "I")
            return "moved off the host meanwhile"
        locked = info.findtext("LOCK/LOCKED")
        if locked and locked != "0":
            # Every lock level refuses resched and recover (ADMIN operations): the operator
            # asked that nobody touch this VM. Left as it is, said in the log and the record.
            self.log(f"Skipping VM {vm_id}: locked (level {locked}); unlock it and recover "
                     "it by hand", "I")
            return f"skipped: locked (level {locked})"
        state = VmState(int(info.findtext("STATE", "0")))
        mode = self.options.mode
        try:
            if mode == "migrate":
                if info.findtext("RESCHED") == "1":
                    self.log(f"VM {vm_id}: already rescheduled", "I")
                    return _ACTED
                ds_id = int(hist[-1].findtext("DS_ID", "-1"))
                flag = shared.get(ds_id)
                if flag is None:
                    self.log(f"VM {vm_id}: could not get datastore {ds_id} or its SHARED flag",
                             "E")
                    return None
                if flag.strip().upper() != "YES":
                    self.log(f"Skipping VM {vm_id} deployed on non-shared datastore {ds_id}", "I")
                    return f"skipped: datastore {ds_id} is not shared"
                if state is VmState.SUSPENDED:
                    self.log(f"Skipping VM {vm_id}: SUSPENDED VMs cannot be rescheduled; use "
                             "-r -f", "I")
                    return "skipped: SUSPENDED (use -r -f)"
                self.api.call("one.vm.action", "resched", vm_id)
                self.log(f"resched {vm_id}", "I")
            elif mode == "recreate":
                self.api.call("one.vm.recover", vm_id, 4)
                self.log(f"recreate {vm_id}", "I")
            else:
                self.api.call("one.vm.recover", vm_id, 3)
                self.log(f"delete {vm_id}", "I")
        except ApiError as exc:
            self.log(f"VM {vm_id}: {mode} failed: {exc}", "E")
            return None
        return _ACTED

    # -------------------------------------------------------------------------- watch
    async def watch(self, host_id: int, acted: list[int], incident: Incident,
                    limit: float) -> list[int]:
        """Follow the VMs acted on until each settled or `limit` seconds passed; write each
        one's end into the incident. Returns the ids the restart policy gave up on."""
        waiting = [vm_id for vm_id in acted if vm_id not in incident.vms]
        deadline = self.clock.now() + limit
        gave_up: list[int] = []
        while waiting:
            for vm_id in list(waiting):
                settled, line = self._settled(vm_id, host_id)
                if settled:
                    incident.vms[vm_id] = line
                    waiting.remove(vm_id)
                    self.log(f"VM {vm_id}: {line}", "E" if line.startswith("GAVE_UP") else "I")
                    if line.startswith("GAVE_UP"):
                        gave_up.append(vm_id)
                elif self.clock.now() >= deadline:
                    incident.vms[vm_id] = line
                    waiting.remove(vm_id)
                    self.log(f"VM {vm_id}: {line} after {limit:g} s; the controller goes on", "I")
            if waiting:
                await self.clock.sleep(self.poll)
        return gave_up

    def _settled(self, vm_id: int, host_id: int) -> tuple[bool, str]:
        try:
            info = xmldoc.parse(self.api.call("one.vm.info", vm_id, False))
        except ApiError:
            return True, "deleted"
        state = VmState(int(info.findtext("STATE", "0")))
        lcm = LcmState(int(info.findtext("LCM_STATE", "0")))
        hist = info.findall("HISTORY_RECORDS/HISTORY")
        where = hist[-1].findtext("HOSTNAME", "") if hist else ""
        on_host = bool(hist) and int(hist[-1].findtext("HID", "-1")) == host_id
        record = info.find("TEMPLATE/HA_RECOVERY")  # where vm.xsd puts it: USER_TEMPLATE
        if record is None:
            record = info.find("USER_TEMPLATE/HA_RECOVERY")
        policy = record.findtext("STATE", "") if record is not None else ""
        counts = ""
        if record is not None:
            restarts = int(record.findtext("RESTARTS", "0") or 0)
            relocations = int(record.findtext("RELOCATIONS", "0") or 0)
            if restarts or relocations:
                counts = f" ({restarts} restart(s) here, {relocations} relocation(s))"
        if state is VmState.DONE:
            return True, "DONE"
        if (state, lcm) == (VmState.ACTIVE, LcmState.RUNNING):
            own = " (its own host, back after the fence)" if on_host else ""
            return True, f"RUNNING on {where}{own}{counts}"
        if policy == "GAVE_UP":
            reason = record.findtext("REASON", "") if record is not None else ""
            return True, f"GAVE_UP in {vm_state_name(state, lcm)}{counts}: {reason}"
        underway = state is VmState.PENDING or (state is VmState.ACTIVE and (
            lcm in _UNDERWAY or lcm.name.startswith(("PROLOG", "BOOT"))
            or policy in ("RECOVERING", "WAITING_HOST", "RESTART", "RELOCATE")))
        name = vm_state_name(state, lcm)
        if underway:
            why = {"WAITING_HOST": "waiting for its new host's fence",
                   "RESTART": "restarting", "RELOCATE": "relocating"}.get(policy, "")
            if not why and (state is VmState.PENDING or lcm is LcmState.UNKNOWN):
                why = "waiting for room"
            return False, f"not running yet: {name}" + (f", {why}" if why else "")
        return True, f"{name} on {where or 'no host'}"
