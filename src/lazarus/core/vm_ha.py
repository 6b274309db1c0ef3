"""VM HA: a guest that fails on a healthy host is restarted, in place, then elsewhere, then left.

Host-level HA (ft/host_error) handles hosts that die. This handles the other kind of failure
OpenNebula's HA page names, a VM that crashes while its host is fine: its qemu died (kill -9,
segfault, the OOM killer), the guest panicked (pvpanic) or hung (its i6300esb watchdog fired,
the domain is paused by it). The driver's domain events wake the host for an immediate probe
(core/monitor.py); the probe is what counts: it shows the domain FAILURE, VM_SYNC moves the
RUNNING VM to UNKNOWN, and in that same transaction `crashed()` decides, per VM:

1. VM_HA_MAX_RESTARTS (3) restarts already in the last VM_HA_WINDOW (3600 s): GAVE_UP. The
   VM stays UNKNOWN (OpenNebula's state for a crashed VM); the record rides on the state
   change, so a VM state hook on LCM_STATE = UNKNOWN sees VM_HA/STATE = GAVE_UP.
2. fewer than VM_HA_RESTARTS_IN_PLACE (2) restarts on this host (or no other host to go to):
   RESTART there, after VM_HA_RESTART_DELAY (0 s): the domain is destroyed (a paused or
   preserved crashed domain would otherwise "already run"), then BOOT_UNKNOWN boots it.
3. otherwise RELOCATE: the domain is destroyed and undefined on the host, and only once that
   succeeded the VM goes back to PENDING; the scheduler places it on a host not in AVOID.

Nothing is done while the VM's host is not MONITORED or its last probes failed: a VM on a
failing or ERROR host belongs to host-level HA, and this policy never races ft/host_error.
A due restart then waits (WAITING = YES in the record, checked every HA_RESTART_DELAY s):
if host_error reschedules or recovers the VM, the restart is CANCELLED; if the host comes
back with the VM still UNKNOWN there, the restart goes ahead.

A guest that shuts itself down is POWEROFF (VM_SYNC) and never restarted: only FAILURE is a
crash. An operator action wins: when a restart is due, the VM must still be UNKNOWN (or
SUSPENDED, for an I/O error) without RESCHED, else the restart is CANCELLED. A restart whose
boot fails is decided again like a crash (`restart_failed()`), within the same budget.

I/O-error pauses (the domain paused because its storage failed) follow VM_HA_IO_ERROR:
RESUME (default: resume after VM_HA_IO_RETRY s, doubling per attempt up to 300 s; a guest
whose storage still fails pauses again, and the next attempt waits longer), RESTART (as a
crash, within the budget) or NONE (stays SUSPENDED, OpenNebula's behaviour).

The record, in the VM's template (USER_TEMPLATE in its XML, as HA_RECOVERY), visible in
`lazarus vm show` and in every hook that gets the VM:

    VM_HA = [ STATE = "RUNNING", RESTARTS = "1767225600 1767225630", HOST_ID = "1",
              HOST_RESTARTS = "1", RELOCATIONS = "0", AVOID = "", REASON = "...",
              HOST = "node2", NEXT = "" ]

STATE: RESTART | RELOCATE (due at NEXT), RESTARTING | RELOCATING (its driver call runs),
RUNNING, IO_PAUSED, HOST_FAILED (the host record is gone), CANCELLED, GAVE_UP. RESTARTS:
when each restart in the window was decided. Per VM: VM_HA = "NO" (or HA = "NO") turns it
off; VM_HA_MAX_RESTARTS, VM_HA_WINDOW, VM_HA_RESTARTS_IN_PLACE, VM_HA_RESTART_DELAY,
VM_HA_IO_ERROR and VM_HA_IO_RETRY override the settings.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from lazarus.domain.entities import VM, Host
from lazarus.domain.errors import NoExistsError
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Vector
from lazarus.domain.transitions import Op

from .waits import VmTimers

if TYPE_CHECKING:
    from .journal import Tx
    from .lifecycle import Lifecycle

log = logging.getLogger("lazarus.vm_ha")

RECORD = "VM_HA"
_OFF = ("NO", "FALSE", "0", "OFF")
_DUE = ("RESTART", "RELOCATE", "IO_PAUSED")
IO_RETRY_CAP = 300.0
_CRASHED_STATES = (LcmState.UNKNOWN,)
_DOING = {"RESTART": "RESTARTING", "RELOCATE": "RELOCATING"}
_DONE = {doing: due for due, doing in _DOING.items()}


def record(vm: VM) -> Vector | None:
    vectors = vm.template.vectors(RECORD)
    return vectors[-1] if vectors else None


def avoided(vm: VM) -> set[int]:
    """Hosts a VM relocated by VM HA must not be placed on (where it crashed)."""
    rec = record(vm)
    if rec is None or (rec.get("STATE") or "") not in ("RELOCATING", "RELOCATE"):
        return set()
    return {int(x) for x in (rec.get("AVOID") or "").split() if x.isdigit()}


def _int(rec: Vector, key: str) -> int:
    raw = rec.get(key) or "0"
    return int(raw) if raw.isdigit() else 0


def healthy(host: Host | None) -> bool:
    """MONITORED with no failed probe since the last good one: not host-level HA's."""
    return (host is not None and host.state is HostState.MONITORED
            and not host.template.get("MONITOR_FAILURES"))


class VmHa:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lc = lifecycle
        self._timers = VmTimers("VM HA", log, lifecycle.clock)
        self._busy: set[int] = set()  # VMs whose restart's driver call runs now

    # ------------------------------------------------------------------------ settings
    def enabled(self, vm: VM) -> bool:
        """VM_HA (or HA) = NO in the VM: off; VM_HA = YES: on; else the VM_HA setting."""
        values = {key: (vm.user_template.get(key) or vm.template.get(key) or "").strip().upper()
                  for key in ("HA", "VM_HA")}  # fmt: skip
        if any(value in _OFF for value in values.values()):
            return False
        if values["VM_HA"] in ("YES", "TRUE", "1", "ON"):
            return True
        return self.lc.settings.vm_ha.strip().upper() not in _OFF

    def _setting(self, vm: VM, key: str, default: float) -> float:
        raw = (vm.user_template.get(key) or vm.template.get(key) or "").strip()
        try:
            value = float(raw)
        except ValueError:
            return default
        return value if value >= 0 else default

    def _io_mode(self, vm: VM) -> str:
        raw = (vm.user_template.get("VM_HA_IO_ERROR") or vm.template.get("VM_HA_IO_ERROR")
               or self.lc.settings.vm_ha_io_error).strip().upper()
        return raw if raw in ("RESUME", "RESTART", "NONE") else "RESUME"

    def busy(self, vm_id: int) -> bool:
        """A restart or relocation of this VM has its driver call in flight: the monitor's
        VM sync leaves the VM alone (the destroyed domain must not read as a guest that
        shut down)."""
        return vm_id in self._busy

    # ------------------------------------------------------------ called in a transaction
    def crashed(self, t: Tx, host: Host, vm: VM, why: str) -> None:
        """A good probe of `host` shows RUNNING `vm`'s domain failed (`why`: crashed,
        panicked, watchdog...); the caller then moves it to UNKNOWN, which saves the VM and
        carries the record to state hooks."""
        if self.enabled(vm):
            self._decide(t, host, vm, f"{why} on {host.name}")

    def io_paused(self, t: Tx, host: Host, vm: VM) -> None:
        """A good probe shows RUNNING `vm` paused on an I/O error; the caller then moves it
        to SUSPENDED (and saves it)."""
        if not self.enabled(vm):
            return
        mode = self._io_mode(vm)
        if mode == "RESTART":
            self._decide(t, host, vm, f"paused on an I/O error on {host.name}")
            return
        rec = self._record(vm, host)
        now = self.lc.clock.now()
        rec.set("REASON", f"paused on an I/O error on {host.name}")
        if mode == "NONE" or not healthy(host):
            rec.set("STATE", "IO_PAUSED" if mode == "NONE" else "HOST_FAILED")
            rec.set("NEXT", "")
            t.note(vm, f"VM HA: paused on an I/O error on {host.name}; VM_HA_IO_ERROR = "
                       f"{mode}: left SUSPENDED")
            return
        last = float(rec.get("IO_LAST") or 0)
        attempts = _int(rec, "IO_ATTEMPTS") if now - last < 2 * IO_RETRY_CAP else 0
        retry = self._setting(vm, "VM_HA_IO_RETRY", self.lc.settings.vm_ha_io_retry)
        delay = min(IO_RETRY_CAP, retry * 2**attempts)
        rec.set("IO_ATTEMPTS", str(attempts + 1))
        rec.set("IO_LAST", f"{now:.0f}")
        rec.set("STATE", "IO_PAUSED")
        rec.set("NEXT", f"{now + delay:.0f}")
        t.note(vm, f"VM HA: paused on an I/O error on {host.name}; resume attempt "
                   f"{attempts + 1} in {delay:g} s")
        self._arm(vm.id, now + delay)

    def restart_failed(self, t: Tx, vm: VM, detail: str) -> None:
        """The boot of a VM HA restart failed (the VM is about to return to UNKNOWN): decide
        again, within the same budget."""
        rec = record(vm)
        if rec is None or (rec.get("STATE") or "") != "RESTARTING":
            return
        host = _host(t, vm.host_id)
        if host is None:
            rec.set("STATE", "HOST_FAILED")
            return
        self._decide(t, host, vm, f"restart failed: {detail}")

    def started(self, vm: VM) -> None:
        """`vm` is entering RUNNING (saved by the caller)."""
        rec = record(vm)
        if rec is None or (rec.get("STATE") or "") not in ("RESTARTING", "RELOCATING",
                                                            "RESTART", "RELOCATE", "IO_PAUSED"):
            return
        if vm.host_id is not None and str(vm.host_id) != (rec.get("HOST_ID") or ""):
            rec.set("HOST_ID", str(vm.host_id))
            rec.set("HOST_RESTARTS", "0")  # counted per host, as Proxmox's max_restart
        rec.set("STATE", "RUNNING")
        rec.set("HOST", vm.last.hostname if vm.last is not None else "")
        rec.set("NEXT", "")
        self._cancel(vm.id)

    # ------------------------------------------------------------------------ decisions
    def _record(self, vm: VM, host: Host) -> Vector:
        rec = record(vm)
        if rec is None:
            rec = Vector([("STATE", ""), ("RESTARTS", ""), ("HOST_ID", str(host.id)),
                          ("HOST_RESTARTS", "0"), ("RELOCATIONS", "0")])
            vm.template.remove(RECORD)
            vm.template.set(RECORD, rec)
        elif (rec.get("HOST_ID") or "") != str(host.id):
            rec.set("HOST_ID", str(host.id))
            rec.set("HOST_RESTARTS", "0")
        return rec

    def _decide(self, t: Tx, host: Host, vm: VM, why: str) -> None:
        settings = self.lc.settings
        rec = self._record(vm, host)
        now = self.lc.clock.now()
        window = self._setting(vm, "VM_HA_WINDOW", settings.vm_ha_window)
        budget = int(self._setting(vm, "VM_HA_MAX_RESTARTS", settings.vm_ha_max_restarts))
        in_place = int(self._setting(vm, "VM_HA_RESTARTS_IN_PLACE",
                                     settings.vm_ha_restarts_in_place))
        times = [float(x) for x in (rec.get("RESTARTS") or "").split()
                 if x.replace(".", "", 1).isdigit() and now - float(x) < window]
        rec.set("REASON", why[:200])
        rec.set("RESTARTS", " ".join(f"{x:.0f}" for x in times))
        if len(times) >= budget:
            rec.set("STATE", "GAVE_UP")
            rec.set("NEXT", "")
            t.note(vm, f"VM HA gave up: {why}, after {len(times)} restart(s) in "
                       f"{window:g} s (VM_HA_MAX_RESTARTS = {budget}); "
                       "recover it by hand (docs/ha.md, VM failures)")
            log.warning("%s: VM HA gave up: %s", vm.subject, why)
            return
        here = _int(rec, "HOST_RESTARTS")
        delay = self._setting(vm, "VM_HA_RESTART_DELAY", settings.vm_ha_restart_delay)
        times.append(now)
        rec.set("RESTARTS", " ".join(f"{x:.0f}" for x in times))
        if here < in_place or not self._other_host(t, vm, host):
            rec.set("HOST_RESTARTS", str(here + 1))
            rec.set("STATE", "RESTART")
            text = (f"VM HA: {why}; restart {len(times)} of {budget} (in {window:g} s), "
                    f"in place on {host.name}")
        else:
            rec.set("RELOCATIONS", str(_int(rec, "RELOCATIONS") + 1))
            rec.set("STATE", "RELOCATE")
            avoid = (rec.get("AVOID") or "").split()
            if str(host.id) not in avoid:
                rec.set("AVOID", " ".join([*avoid, str(host.id)]))
            text = (f"VM HA: {why}; restart {len(times)} of {budget} (in {window:g} s), "
                    f"relocated off {host.name} after {here} restart(s) there")
        rec.set("NEXT", f"{now + delay:.0f}")
        t.note(vm, text)
        self._arm(vm.id, now + delay)

    @staticmethod
    def _other_host(t: Tx, vm: VM, host: Host) -> bool:
        raw = (record(vm) or Vector()).get("AVOID") or ""
        avoid = {int(x) for x in raw.split() if x.isdigit()}
        avoid.add(host.id)
        return any(healthy(h) and h.id not in avoid for h in t.store.hosts())

    # --------------------------------------------------------------------------- timers
    def resume(self) -> int:
        """Re-arm the due restarts after a controller restart; returns how many."""
        count = 0
        for vm in self.lc.store.vms(states=[VmState.ACTIVE, VmState.SUSPENDED]):
            rec = record(vm)
            state = (rec.get("STATE") or "") if rec is not None else ""
            if rec is not None and state in (*_DUE, "RESTARTING", "RELOCATING"):
                if state in _DONE and vm.lcm_state is not LcmState.UNKNOWN and (
                    vm.state is not VmState.SUSPENDED
                ):
                    continue  # its boot (or placement) is under way: the lifecycle drives it
                if state in _DONE:  # interrupted before its boot: do it again
                    rec.set("STATE", _DONE[state])
                    with self.lc.journal.tx() as t:
                        t.store.save_vm(vm)
                self._arm(vm.id, float(_int(rec, "NEXT")))
                count += 1
        return count

    def abort(self) -> list[asyncio.Task[None]]:
        """Cancel the timers without waiting (a crash: Controller.abort awaits them)."""
        return self._timers.abort()

    async def close(self) -> None:
        await self._timers.close()

    def _arm(self, vm_id: int, when: float) -> None:
        self._timers.arm(vm_id, when, self._fire)

    def _cancel(self, vm_id: int) -> None:
        self._timers.cancel(vm_id)

    async def _fire(self, vm_id: int) -> None:
        """The VM's timer is due (no longer pending: a decision below may arm the next)."""
        with self.lc.journal.tx() as t:
            vm = _vm(t, vm_id)
            rec = record(vm) if vm is not None else None
            state = (rec.get("STATE") or "") if rec is not None else ""
            if vm is None or rec is None or state not in _DUE:
                return
            expected = (VmState.SUSPENDED,) if state == "IO_PAUSED" else (
                VmState.ACTIVE, VmState.SUSPENDED)
            crashed = vm.state is VmState.SUSPENDED or vm.lcm_state in _CRASHED_STATES
            if vm.state not in expected or not crashed or vm.resched:
                rec.set("STATE", "CANCELLED")
                rec.set("NEXT", "")
                t.store.save_vm(vm)
                t.note(vm, f"VM HA: {state.lower()} cancelled: the VM is "
                           f"{vm.state.name}/{vm.lcm_state.name} now (an operator or "
                           "host-level HA acted)")
                return
            host = _host(t, vm.host_id)
            if host is None:
                rec.set("STATE", "HOST_FAILED")
                rec.set("NEXT", "")
                t.store.save_vm(vm)
                return
            if not healthy(host):  # host-level HA's: it may move the VM (then CANCELLED)
                retry = max(1.0, self.lc.settings.ha_restart_delay)
                if rec.get("WAITING") != "YES":
                    rec.set("WAITING", "YES")
                    t.store.save_vm(vm)
                    t.note(vm, f"VM HA: {host.subject} is {host.state.name} or failing: "
                               "waiting; host-level HA decides (the restart follows only "
                               "if the host comes back with the VM still here)")
                self._arm(vm_id, self.lc.clock.now() + retry)
                return
            rec.pairs = [(k, v) for k, v in rec.pairs if k != "WAITING"]
            if state == "IO_PAUSED":
                attempt = rec.get("IO_ATTEMPTS") or "1"
                self.lc.enter(t, vm, (VmState.ACTIVE, LcmState.BOOT_SUSPENDED),
                              f"VM HA: resume after an I/O error (attempt {attempt})")
                resumed = True
            else:
                rec.set("STATE", _DOING[state])
                rec.set("NEXT", "")
                t.store.save_vm(vm)
                resumed = False
            lcm, host_id = (vm.state, vm.lcm_state), vm.host_id
        if resumed:
            self.lc.kick(vm_id)
            return
        self._busy.add(vm_id)
        try:
            await self._act(vm_id, vm, state, lcm, host_id)
        finally:
            self._busy.discard(vm_id)

    async def _act(self, vm_id: int, vm: VM, state: str, lcm: tuple[VmState, LcmState],
                   host_id: int | None) -> None:  # fmt: skip
        relocate = state == "RELOCATE"
        if relocate:
            outcome = await self.lc.perform(Op.CLEANUP, vm)
        else:  # a paused (watchdog) or preserved crashed domain "runs": destroy it first
            outcome = await self.lc.perform(Op.SHUTDOWN, vm, hard=True)
        with self.lc.journal.tx() as t:
            current = _vm(t, vm_id)
            rec = record(current) if current is not None else None
            if (current is None or rec is None or (current.state, current.lcm_state) != lcm
                    or current.host_id != host_id or rec.get("STATE") != _DOING[state]):
                return  # moved meanwhile (an operator): its new state decides
            host = _host(t, host_id)
            if not outcome.ok or not healthy(host):
                rec.set("STATE", state)
                retry = max(1.0, self.lc.settings.ha_restart_delay)
                rec.set("NEXT", f"{self.lc.clock.now() + retry:.0f}")
                t.store.save_vm(current)
                t.note(current, f"VM HA: {state.lower()} not possible yet "
                                f"({outcome.detail or 'host failing'}); trying again")
                self._arm(vm_id, self.lc.clock.now() + retry)
                return
            assert host is not None
            if relocate:
                self.lc.enter(t, current, (VmState.PENDING, LcmState.LCM_INIT),
                              f"VM HA relocation {rec.get('RELOCATIONS')}: off {host.subject}")
            else:
                self.lc.enter(t, current, (VmState.ACTIVE, LcmState.BOOT_UNKNOWN),
                              f"VM HA restart on {host.subject}")
        self.lc.kick(vm_id)


def _host(t: Tx, host_id: int | None) -> Host | None:
    if host_id is None:
        return None
    try:
        return t.store.host(host_id)
    except NoExistsError:
        return None


def _vm(t: Tx, vm_id: int) -> VM | None:
    try:
        return t.store.vm(vm_id)
    except NoExistsError:
        return None
