"""The HA restart policy: a recovery start that fails is retried, then relocated, then stopped.

A *recovery* begins when a VM is moved off a failed host: `resched` of a VM whose host is in
ERROR or OFFLINE (ft/host_error -m, after the fence), or `recover --delete-recreate` of one
(-r). From then on the VM carries a record in its template, visible in `lazarus vm show`,
in its XML (USER_TEMPLATE/HA_RECOVERY: vm.xsd leaves TEMPLATE no room) and so in every hook
that receives it:

    HA_RECOVERY = [ STATE = "RELOCATE", FROM = "0", TRIED = "0 1", RESTARTS = "1",
                    RELOCATIONS = "1", NEXT = "1767225612", REASON = "deploy: node2: ..." ]

If a start step of a recovering VM fails (it lands in one of transitions.START_FAILURES,
e.g. BOOT_FAILURE), the policy decides, per VM:

1. its host is not MONITORED (it failed too, or is unreachable): WAITING_HOST. Nothing is
   started elsewhere until that host's own ft/host_error has proven it off and rescheduled
   the VM (resched is accepted in START_FAILURES for this); if the host comes back instead,
   the decision is made again.
2. fewer than HA_MAX_RESTARTS restarts on this host (default 1): RESTART there after
   HA_RESTART_DELAY seconds (doubling with each restart).
3. fewer than HA_MAX_RELOCATIONS relocations (default 2), and a MONITORED host it has not
   tried exists: RELOCATE. The domain is destroyed
   and undefined on the host first (it may have started despite the error); only when that
   succeeded does the VM go back to PENDING, and the scheduler places it on a host it has not
   tried (TRIED). A cleanup that fails is tried again later; no start elsewhere meanwhile.
4. otherwise GAVE_UP: the VM stays in its failure state, with the reason in the record and
   in an event; the state change that ended there carries the record to VM state hooks.

When the VM reaches RUNNING the record says RUNNING and where. Per-VM limits in the VM's
template (HA_MAX_RESTARTS, HA_MAX_RELOCATIONS) override the settings. Timers are not kept
across a controller restart: `resume()` re-arms them from NEXT.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from lazarus.domain.entities import VM
from lazarus.domain.errors import NoExistsError
from lazarus.domain.states import HostState, LcmState, VmState
from lazarus.domain.template import Vector
from lazarus.domain.transitions import RETRY_OF, START_FAILURES, Op

from .waits import VmTimers

if TYPE_CHECKING:
    from .journal import Tx
    from .lifecycle import Lifecycle

log = logging.getLogger("lazarus.restarts")

RECORD = "HA_RECOVERY"
ACTIVE_STATES = ("RECOVERING", "WAITING_HOST", "RESTART", "RELOCATE")
_OFF = ("NO", "FALSE", "0", "OFF")


def record(vm: VM) -> Vector | None:
    vectors = vm.template.vectors(RECORD)
    return vectors[-1] if vectors else None


def recovering(vm: VM) -> bool:
    rec = record(vm)
    return rec is not None and (rec.get("STATE") or "") in ACTIVE_STATES


def tried_hosts(vm: VM) -> set[int]:
    """Hosts a recovering VM must not be placed on again."""
    rec = record(vm)
    if rec is None or (rec.get("STATE") or "") not in ACTIVE_STATES:
        return set()
    return {int(x) for x in (rec.get("TRIED") or "").split() if x.isdigit()}


def _int(rec: Vector, key: str) -> int:
    raw = rec.get(key) or "0"
    return int(raw) if raw.isdigit() else 0


class RestartPolicy:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lc = lifecycle
        self._timers = VmTimers("restart policy", log, lifecycle.clock)

    # ------------------------------------------------------------------- called in a tx
    def begin(self, t: Tx, vm: VM, reason: str) -> None:
        """A recovery of `vm` off its failed host starts (resched / recreate)."""
        if (vm.user_template.get("HA") or vm.template.get("HA") or "").strip().upper() in _OFF:
            return
        if vm.state is not VmState.ACTIVE:
            return  # a POWEROFF or SUSPENDED VM moved off the host stays so: nothing to start
        host_id = vm.host_id
        rec = record(vm)
        if rec is not None and (rec.get("STATE") or "") in ACTIVE_STATES:
            tried = (rec.get("TRIED") or "").split()  # a second failed host: keep the counts
            if host_id is not None and str(host_id) not in tried:
                rec.set("TRIED", " ".join([*tried, str(host_id)]))
        else:
            rec = Vector([("FROM", str(host_id if host_id is not None else -1)),
                          ("TRIED", str(host_id) if host_id is not None else ""),
                          ("RESTARTS", "0"), ("RELOCATIONS", "0")])
            vm.template.remove(RECORD)
            vm.template.set(RECORD, rec)
        rec.set("STATE", "RECOVERING")
        rec.set("REASON", reason[:200])
        t.store.save_vm(vm)

    def started(self, vm: VM) -> None:
        """`vm` is entering RUNNING (saved by the caller)."""
        rec = record(vm)
        if rec is None or (rec.get("STATE") or "") not in ACTIVE_STATES:
            return
        rec.set("STATE", "RUNNING")
        rec.set("HOST", vm.last.hostname if vm.last is not None else "")
        rec.set("NEXT", "")
        self._cancel(vm.id)

    def failed(self, t: Tx, vm: VM, detail: str) -> None:
        """`vm` just entered a START_FAILURES state: decide what comes next."""
        rec = record(vm)
        if rec is None or (rec.get("STATE") or "") not in ACTIVE_STATES:
            return
        if vm.state is not VmState.ACTIVE or vm.lcm_state not in START_FAILURES:
            return
        now = self.lc.clock.now()
        delay = self.lc.settings.ha_restart_delay
        host = t.store.host(vm.host_id) if vm.host_id is not None else None
        restarts, relocations = _int(rec, "RESTARTS"), _int(rec, "RELOCATIONS")
        max_restarts = self._limit(vm, "HA_MAX_RESTARTS", self.lc.settings.ha_max_restarts)
        max_relocations = self._limit(
            vm, "HA_MAX_RELOCATIONS", self.lc.settings.ha_max_relocations
        )
        rec.set("REASON", detail[:200])
        if host is None or host.state is not HostState.MONITORED:
            where = host.name if host is not None else "no host"
            state = host.state.name if host is not None else "gone"
            rec.set("STATE", "WAITING_HOST")
            when = now + delay
            text = (f"HA recovery: start failed on {where}, which is {state}: waiting for it to "
                    "be fenced (its host_error reschedules the VM) or to come back")
        elif restarts < max_restarts:
            rec.set("RESTARTS", str(restarts + 1))
            rec.set("STATE", "RESTART")
            when = now + delay * 2 ** restarts
            text = (f"HA recovery: start failed on {host.name}; restart {restarts + 1} of "
                    f"{max_restarts} there in {when - now:g} s")
        elif relocations < max_relocations and self._untried(t, vm, rec):
            rec.set("RELOCATIONS", str(relocations + 1))
            rec.set("RESTARTS", "0")  # restarts are counted per host, as Proxmox's max_restart
            rec.set("STATE", "RELOCATE")
            when = now
            text = (f"HA recovery: start failed on {host.name}; relocation {relocations + 1} of "
                    f"{max_relocations}: cleaning up there, then another host")
        else:
            why = "" if relocations >= max_relocations else " (no host left to try)"
            rec.set("STATE", "GAVE_UP")
            rec.set("NEXT", "")
            t.store.save_vm(vm)
            t.note(vm, f"HA recovery gave up after {restarts} restart(s) and "
                       f"{relocations} relocation(s){why}: {detail}")
            return
        rec.set("NEXT", str(int(when)))
        t.store.save_vm(vm)
        t.note(vm, text)
        self._arm(vm.id, when)

    # -------------------------------------------------------------------------- timers
    def resume(self) -> int:
        """Re-arm the timers of recovering VMs after a restart; returns how many."""
        count = 0
        for vm in self.lc.store.vms(states=[VmState.ACTIVE]):
            rec = record(vm)
            if vm.lcm_state in START_FAILURES and rec is not None and (
                rec.get("STATE") or ""
            ) in ("WAITING_HOST", "RESTART", "RELOCATE"):
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
        relocate = False
        with self.lc.journal.tx() as t:
            vm = self._current(t, vm_id)
            if vm is None:
                return
            rec = record(vm)
            assert rec is not None
            host = t.store.host(vm.host_id) if vm.host_id is not None else None
            state = rec.get("STATE") or ""
            if host is None or host.state is not HostState.MONITORED:
                if state != "WAITING_HOST":
                    rec.set("STATE", "WAITING_HOST")
                    t.store.save_vm(vm)
                self._arm(vm_id, self.lc.clock.now() + self.lc.settings.ha_restart_delay)
                return
            if state == "WAITING_HOST":  # the host came back: decide again
                self.failed(t, vm, rec.get("REASON") or "start failed")
                return
            if state == "RESTART":
                rec.set("STATE", "RECOVERING")
                self.lc.enter(t, vm, (VmState.ACTIVE, RETRY_OF[vm.lcm_state]),
                              f"HA restart {rec.get('RESTARTS')}")
            elif state == "RELOCATE":
                relocate = True
        if relocate:
            await self._relocate(vm_id)
        else:
            self.lc.kick(vm_id)

    def _current(self, t: Tx, vm_id: int) -> VM | None:
        try:
            vm = t.store.vm(vm_id)
        except NoExistsError:
            return None
        if vm.state is not VmState.ACTIVE or vm.lcm_state not in START_FAILURES:
            return None  # moved meanwhile (an operator, host_error): its new state decides
        return vm if recovering(vm) else None

    async def _relocate(self, vm_id: int) -> None:
        vm = self.lc.store.vm(vm_id)
        lcm, host_id = vm.lcm_state, vm.host_id
        outcome = await self.lc.perform(Op.CLEANUP, vm)
        with self.lc.journal.tx() as t:
            current = self._current(t, vm_id)
            if current is None or (current.lcm_state, current.host_id) != (lcm, host_id):
                return
            rec = record(current)
            assert rec is not None
            host = t.store.host(host_id) if host_id is not None else None
            if not outcome.ok or host is None or host.state is not HostState.MONITORED:
                rec.set("REASON", f"cleanup before relocation: {outcome.detail}"[:200])
                t.store.save_vm(current)
                t.note(current, f"HA recovery: cannot relocate yet ({outcome.detail}); "
                                "nothing starts elsewhere until the domain is gone")
                self._arm(vm_id, self.lc.clock.now() + self.lc.settings.ha_restart_delay)
                return
            tried = (rec.get("TRIED") or "").split()
            if str(host.id) not in tried:
                rec.set("TRIED", " ".join([*tried, str(host.id)]))
            rec.set("STATE", "RECOVERING")
            self.lc.enter(t, current, (VmState.PENDING, LcmState.LCM_INIT),
                          f"HA relocation {rec.get('RELOCATIONS')}: off {host.subject}")

    @staticmethod
    def _untried(t: Tx, vm: VM, rec: Vector) -> bool:
        """Some MONITORED host the VM has not been tried on is left to relocate it to."""
        tried = {int(x) for x in (rec.get("TRIED") or "").split() if x.isdigit()}
        tried.add(vm.host_id if vm.host_id is not None else -1)
        return any(h.state is HostState.MONITORED and h.id not in tried for h in t.store.hosts())

    @staticmethod
    def _limit(vm: VM, key: str, default: int) -> int:
        raw = (vm.user_template.get(key) or vm.template.get(key) or "").strip()
        return int(raw) if raw.isdigit() else default
