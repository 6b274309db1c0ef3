"""State machines of hosts and VMs: tables plus one apply() each.

Hosts: `HOST_TABLE[(state, event)] -> new state`; `apply_host(state, event, has_capacity)`.

VMs have two tables, matching OpenNebula's split between the dispatch manager (what the API
accepts) and the life-cycle manager (what a driver operation leads to):

- `VM_ACTIONS[action]`: for each accepted (STATE, LCM_STATE) the state the VM enters at once.
  `apply_action()` raises ActionError with OpenNebula's text when the state does not allow it.
- `VM_STEPS[lcm_state]`: a transient LCM state names the driver operation that must run and
  where success and failure lead. The core "drives" a VM by looking its state up here until it
  reaches a stable state; a restarted controller does the same, so an interrupted step resumes.

`recover_target()` implements one.vm.recover's success/failure/retry rules on the same tables.

`VM_SYNC[(seen, (state, lcm), awaiting)]`: what a host's probe report (`Seen`: the domain's
state, or MISSING) does to a VM placed there; `sync_target()` looks it up for the monitor's
applier (core/applier.py).
The tables are rendered into docs/state-machines.md by scripts/render_state_tables.py
(tests/unit/test_docs_state_tables.py fails when the doc is out of date).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import ActionError
from .states import HostState, LcmState, RecoverOp, VmState, vm_state_name

# --------------------------------------------------------------------------------- hosts


class HostEvent(StrEnum):
    ENABLE = "enable"
    DISABLE = "disable"
    OFFLINE = "offline"
    MONITOR_OK = "monitor_ok"
    MONITOR_FAIL = "monitor_fail"


_LIVE = (
    HostState.INIT, HostState.MONITORED, HostState.ERROR, HostState.DISABLED, HostState.OFFLINE
)

HOST_TABLE: dict[tuple[HostState, HostEvent], HostState] = {}
for _s in _LIVE:
    HOST_TABLE[(_s, HostEvent.DISABLE)] = HostState.DISABLED
    HOST_TABLE[(_s, HostEvent.OFFLINE)] = HostState.OFFLINE
    HOST_TABLE[(_s, HostEvent.ENABLE)] = HostState.INIT  # DISABLED with capacity: see apply_host
for _s in (HostState.INIT, HostState.MONITORED, HostState.ERROR):
    HOST_TABLE[(_s, HostEvent.MONITOR_OK)] = HostState.MONITORED
    HOST_TABLE[(_s, HostEvent.MONITOR_FAIL)] = HostState.ERROR
# DISABLED hosts are still monitored but never enter ERROR (OpenNebula's Host::error);
# OFFLINE hosts are not monitored at all.
HOST_TABLE[(HostState.DISABLED, HostEvent.MONITOR_OK)] = HostState.DISABLED
HOST_TABLE[(HostState.DISABLED, HostEvent.MONITOR_FAIL)] = HostState.DISABLED


def apply_host(state: HostState, event: HostEvent, has_capacity: bool = False) -> HostState:
    """The host's next state; unchanged when the event does not apply (e.g. OFFLINE + probe)."""
    if event is HostEvent.ENABLE and state is HostState.DISABLED and has_capacity:
        return HostState.MONITORED
    return HOST_TABLE.get((state, event), state)


# ----------------------------------------------------------------------------------- VMs

A = VmState.ACTIVE
Pair = tuple[VmState, LcmState]
_I = LcmState.LCM_INIT


def _st(state: VmState) -> Pair:
    return (state, _I)


def _ac(lcm: LcmState) -> Pair:
    return (A, lcm)


RUNNING = _ac(LcmState.RUNNING)
UNKNOWN = _ac(LcmState.UNKNOWN)

# Failures of a step that starts a VM on its host (a deploy): the VM never ran there, so it
# can be restarted elsewhere. ft/host_error's -m reschedules VMs in these states when their
# host failed (OpenNebula refuses resched here and leaves them down: a deliberate
# difference), and the HA restart policy (core/restarts.py) retries or relocates them.
START_FAILURES = frozenset({
    LcmState.BOOT_FAILURE, LcmState.BOOT_MIGRATE_FAILURE, LcmState.PROLOG_FAILURE,
    LcmState.PROLOG_MIGRATE_FAILURE, LcmState.PROLOG_MIGRATE_UNKNOWN_FAILURE,
    LcmState.BOOT_STOPPED_FAILURE, LcmState.BOOT_UNDEPLOY_FAILURE,
    LcmState.PROLOG_RESUME_FAILURE, LcmState.PROLOG_UNDEPLOY_FAILURE,
})
_RESCHED_FROM = {RUNNING: RUNNING, UNKNOWN: UNKNOWN, (VmState.POWEROFF, LcmState.LCM_INIT):
                 (VmState.POWEROFF, LcmState.LCM_INIT),
                 **{(VmState.ACTIVE, f): (VmState.ACTIVE, f) for f in START_FAILURES}}

# action -> {(state, lcm) accepted: (state, lcm) entered}
VM_ACTIONS: dict[str, dict[Pair, Pair]] = {
    "deploy": {
        _st(VmState.PENDING): _ac(LcmState.PROLOG),
        _st(VmState.HOLD): _ac(LcmState.PROLOG),
        _st(VmState.STOPPED): _ac(LcmState.PROLOG_RESUME),
        _st(VmState.UNDEPLOYED): _ac(LcmState.PROLOG_UNDEPLOY),
    },
    "terminate": {
        RUNNING: _ac(LcmState.SHUTDOWN),
        UNKNOWN: _ac(LcmState.SHUTDOWN),
        _st(VmState.POWEROFF): _ac(LcmState.EPILOG),
        _st(VmState.SUSPENDED): _ac(LcmState.EPILOG),
        _st(VmState.STOPPED): _ac(LcmState.EPILOG),
        _st(VmState.UNDEPLOYED): _ac(LcmState.EPILOG),
        _st(VmState.PENDING): _st(VmState.DONE),
        _st(VmState.HOLD): _st(VmState.DONE),
    },
    "poweroff": {
        RUNNING: _ac(LcmState.SHUTDOWN_POWEROFF),
        UNKNOWN: _ac(LcmState.SHUTDOWN_POWEROFF),
    },
    "suspend": {RUNNING: _ac(LcmState.SAVE_SUSPEND)},
    "resume": {
        _st(VmState.POWEROFF): _ac(LcmState.BOOT_POWEROFF),
        _st(VmState.SUSPENDED): _ac(LcmState.BOOT_SUSPENDED),
        _st(VmState.STOPPED): _st(VmState.PENDING),
        _st(VmState.UNDEPLOYED): _st(VmState.PENDING),
        UNKNOWN: _ac(LcmState.BOOT_UNKNOWN),
    },
    "stop": {RUNNING: _ac(LcmState.SAVE_STOP), _st(VmState.SUSPENDED): _ac(LcmState.EPILOG_STOP)},
    "undeploy": {
        RUNNING: _ac(LcmState.SHUTDOWN_UNDEPLOY),
        _st(VmState.POWEROFF): _ac(LcmState.EPILOG_UNDEPLOY),
    },
    "hold": {_st(VmState.PENDING): _st(VmState.HOLD)},
    "release": {_st(VmState.HOLD): _st(VmState.PENDING)},
    "reboot": {RUNNING: RUNNING},
    # resched/unresched only flip the RESCHED flag; the scheduler does the rest.
    "resched": dict(_RESCHED_FROM),
    "unresched": dict(_RESCHED_FROM),
}
# The -hard variants are accepted in the same states; the driver operation differs.
for _base in ("terminate", "poweroff", "undeploy", "reboot"):
    VM_ACTIONS[f"{_base}-hard"] = VM_ACTIONS[_base]

# migrate: the state entered depends on live/cold; the accepted states are these.
MIGRATE_FROM: dict[Pair, Pair] = {
    RUNNING: _ac(LcmState.SAVE_MIGRATE),  # cold (live: MIGRATE)
    UNKNOWN: _ac(LcmState.PROLOG_MIGRATE_UNKNOWN),  # never touches the dead source host
    _st(VmState.POWEROFF): _ac(LcmState.PROLOG_MIGRATE_POWEROFF),
    _st(VmState.SUSPENDED): _ac(LcmState.PROLOG_MIGRATE_SUSPEND),
    # a start that failed on a host that then failed (and was fenced): like UNKNOWN
    **{_ac(f): _ac(LcmState.PROLOG_MIGRATE_UNKNOWN) for f in START_FAILURES},
}


def apply_action(action: str, state: VmState, lcm: LcmState) -> Pair:
    """The (state, lcm) an accepted API action enters; ActionError otherwise."""
    table = VM_ACTIONS.get(action)
    if table is None:
        raise ActionError(f"Virtual machine action \"{action}\" is not supported")
    key = (state, lcm if state is A else _I)
    if key not in table:
        raise ActionError(f"This action is not available for state {vm_state_name(state, lcm)}")
    return table[key]


def apply_migrate(state: VmState, lcm: LcmState, live: bool) -> Pair:
    key = (state, lcm if state is A else _I)
    if key not in MIGRATE_FROM:
        raise ActionError(
            f"Migrate action is not available for state {vm_state_name(state, lcm)}"
        )
    if live and key == RUNNING:
        return _ac(LcmState.MIGRATE)
    return MIGRATE_FROM[key]


class Op(StrEnum):
    """Driver operations a transient state needs. Where: on the VM's current placement
    (`host`), or the previous one (`prev`) during a migration."""

    PROLOG = "prolog"  # stage disks (shared storage: nothing to copy)
    DEPLOY = "deploy"
    SHUTDOWN = "shutdown"
    SAVE = "save"  # stop / cold migrate: Lazarus powers the guest off cleanly (no checkpoint)
    SUSPEND = "suspend"
    RESUME = "resume"
    EPILOG = "epilog"  # undefine the domain on its host
    LIVE_MIGRATE = "live_migrate"
    CLEANUP = "cleanup"  # destroy + undefine; result ignored (recover delete / recreate)


@dataclass(frozen=True)
class Step:
    op: Op
    success: Pair
    failure: Pair


L = LcmState
VM_STEPS: dict[LcmState, Step] = {
    L.PROLOG: Step(Op.PROLOG, _ac(L.BOOT), _ac(L.PROLOG_FAILURE)),
    L.BOOT: Step(Op.DEPLOY, RUNNING, _ac(L.BOOT_FAILURE)),
    L.SHUTDOWN: Step(Op.SHUTDOWN, _ac(L.EPILOG), RUNNING),
    L.EPILOG: Step(Op.EPILOG, _st(VmState.DONE), _ac(L.EPILOG_FAILURE)),
    L.SHUTDOWN_POWEROFF: Step(Op.SHUTDOWN, _st(VmState.POWEROFF), RUNNING),
    L.SAVE_SUSPEND: Step(Op.SUSPEND, _st(VmState.SUSPENDED), RUNNING),
    L.BOOT_POWEROFF: Step(Op.DEPLOY, RUNNING, _st(VmState.POWEROFF)),
    L.BOOT_SUSPENDED: Step(Op.RESUME, RUNNING, _st(VmState.SUSPENDED)),
    L.BOOT_UNKNOWN: Step(Op.DEPLOY, RUNNING, UNKNOWN),
    L.SAVE_STOP: Step(Op.SAVE, _ac(L.EPILOG_STOP), RUNNING),
    L.EPILOG_STOP: Step(Op.EPILOG, _st(VmState.STOPPED), _ac(L.EPILOG_STOP_FAILURE)),
    L.SHUTDOWN_UNDEPLOY: Step(Op.SHUTDOWN, _ac(L.EPILOG_UNDEPLOY), RUNNING),
    L.EPILOG_UNDEPLOY: Step(Op.EPILOG, _st(VmState.UNDEPLOYED), _ac(L.EPILOG_UNDEPLOY_FAILURE)),
    L.PROLOG_RESUME: Step(Op.PROLOG, _ac(L.BOOT_STOPPED), _ac(L.PROLOG_RESUME_FAILURE)),
    L.BOOT_STOPPED: Step(Op.DEPLOY, RUNNING, _ac(L.BOOT_STOPPED_FAILURE)),
    L.PROLOG_UNDEPLOY: Step(Op.PROLOG, _ac(L.BOOT_UNDEPLOY), _ac(L.PROLOG_UNDEPLOY_FAILURE)),
    L.BOOT_UNDEPLOY: Step(Op.DEPLOY, RUNNING, _ac(L.BOOT_UNDEPLOY_FAILURE)),
    L.MIGRATE: Step(Op.LIVE_MIGRATE, RUNNING, RUNNING),
    L.SAVE_MIGRATE: Step(Op.SAVE, _ac(L.PROLOG_MIGRATE), RUNNING),
    L.PROLOG_MIGRATE: Step(Op.PROLOG, _ac(L.BOOT_MIGRATE), _ac(L.PROLOG_MIGRATE_FAILURE)),
    L.BOOT_MIGRATE: Step(Op.DEPLOY, RUNNING, _ac(L.BOOT_MIGRATE_FAILURE)),
    L.PROLOG_MIGRATE_UNKNOWN: Step(
        Op.PROLOG, _ac(L.BOOT), _ac(L.PROLOG_MIGRATE_UNKNOWN_FAILURE)
    ),
    L.PROLOG_MIGRATE_POWEROFF: Step(
        Op.PROLOG, _st(VmState.POWEROFF), _ac(L.PROLOG_MIGRATE_POWEROFF_FAILURE)
    ),
    L.PROLOG_MIGRATE_SUSPEND: Step(
        Op.PROLOG, _st(VmState.SUSPENDED), _ac(L.PROLOG_MIGRATE_SUSPEND_FAILURE)
    ),
    # Both outcomes lead on: a dead host must not block a recovery (OpenNebula does the same).
    L.CLEANUP_RESUBMIT: Step(Op.CLEANUP, _st(VmState.PENDING), _st(VmState.PENDING)),
    L.CLEANUP_DELETE: Step(Op.CLEANUP, _st(VmState.DONE), _st(VmState.DONE)),
}

# X_FAILURE -> X, for recover --retry (and success/failure on a failure state).
RETRY_OF: dict[LcmState, LcmState] = {
    lcm: LcmState[lcm.name.removesuffix("_FAILURE")]
    for lcm in LcmState
    if lcm.is_failure and lcm.name.removesuffix("_FAILURE") in LcmState.__members__
}

# States whose VM keeps its host capacity (OpenNebula releases it on STOPPED/UNDEPLOYED/DONE).
HOLDS_CAPACITY = frozenset({VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED})


def recover_target(op: RecoverOp, state: VmState, lcm: LcmState) -> Pair | None:
    """Where one.vm.recover op 0/1/2 leads; None = nothing to do. Ops 3..5 are handled by the
    lifecycle (they need cleanup decisions), see core/lifecycle.py."""
    name = vm_state_name(state, lcm)
    if state is not A and state is not VmState.CLONING_FAILURE:
        raise ActionError(f"Recover action is not available for state {name}")
    if op in (RecoverOp.SUCCESS, RecoverOp.FAILURE):
        if lcm is L.UNKNOWN:
            return RUNNING
        if lcm in (L.RUNNING, L.LCM_INIT):
            return None
        if lcm is L.CLEANUP_DELETE:
            return _st(VmState.DONE)
        if lcm is L.CLEANUP_RESUBMIT:
            return _st(VmState.PENDING)
        step = VM_STEPS.get(lcm) or (VM_STEPS.get(RETRY_OF[lcm]) if lcm in RETRY_OF else None)
        if step is None:
            raise ActionError(f"Recover action is not available for state {name}")
        if op is RecoverOp.SUCCESS:
            return step.success
        return None if lcm.is_failure else step.failure
    if op is RecoverOp.RETRY:
        if lcm not in RETRY_OF:
            raise ActionError(f"Retry action is not available for state {name}")
        return _ac(RETRY_OF[lcm])
    raise ActionError("Wrong recovery operation code")


# ------------------------------------------------------------------------------- VM sync


class Seen(StrEnum):
    """What a host's probe says of a VM placed there (ports/hypervisor.py DomainState, by
    value), or MISSING when the host does not list its domain at all."""

    RUNNING = "RUNNING"
    POWEROFF = "POWEROFF"  # defined but shut off
    SUSPENDED = "SUSPENDED"  # paused or saved
    FAILURE = "FAILURE"  # crashed
    MISSING = "MISSING"


# Where MISSING leads depends on MISSING_VM_STATE; the table names this placeholder.
MISSING_TARGET: Pair = (VmState.POWEROFF, _I)
MISSING_UNKNOWN: Pair = UNKNOWN  # MISSING_VM_STATE = UNKNOWN

SYNCED_STATES = frozenset({VmState.ACTIVE, VmState.POWEROFF, VmState.SUSPENDED})
"""The VMs a probe is compared with: placed on the host in one of these states."""

_BOOTING = frozenset({L.BOOT, L.BOOT_UNKNOWN, L.BOOT_POWEROFF, L.BOOT_SUSPENDED,
                      L.BOOT_STOPPED, L.BOOT_UNDEPLOY, L.BOOT_MIGRATE})
_SHUTTING = frozenset({L.SHUTDOWN, L.SHUTDOWN_POWEROFF, L.SHUTDOWN_UNDEPLOY})


def _sync_rule(seen: Seen, pair: Pair, awaiting: bool) -> Pair | None:
    """OpenNebula's VM report rules (reference 3.4), as the monitor applied them."""
    state, lcm = pair
    active = state is A
    if seen is Seen.MISSING:
        return MISSING_TARGET if active and lcm in (L.RUNNING, L.UNKNOWN) and not awaiting else None
    if seen is Seen.RUNNING:
        if (active and (lcm is L.UNKNOWN or lcm in _BOOTING)) or state in (
            VmState.POWEROFF, VmState.SUSPENDED
        ):
            return RUNNING
        return None
    if seen is Seen.POWEROFF:
        if active and (lcm in (L.RUNNING, L.UNKNOWN) or lcm in _SHUTTING) and not awaiting:
            return _st(VmState.POWEROFF)
        return None
    if seen is Seen.FAILURE:
        return UNKNOWN if active and lcm is L.RUNNING else None
    return _st(VmState.SUSPENDED) if active and lcm is L.RUNNING else None  # SUSPENDED


def _synced_pairs() -> list[Pair]:
    pairs = [(A, lcm) for lcm in LcmState if lcm is not _I]
    return [*pairs, _st(VmState.POWEROFF), _st(VmState.SUSPENDED)]


# (seen, stored (state, lcm), awaiting) -> target, for every combination that changes the VM.
# `awaiting`: the VM is ACTIVE/UNKNOWN with RESCHED set, i.e. rescheduled off this host by an
# HA recovery and still waiting for room; a host that returns without it (or with its domain
# shut off) does not give it up to POWEROFF: the scheduler boots it elsewhere. It is False for
# every other state.
VM_SYNC: dict[tuple[Seen, Pair, bool], Pair] = {
    (seen, pair, awaiting): target
    for seen in Seen
    for pair in _synced_pairs()
    for awaiting in ((False, True) if pair == UNKNOWN else (False,))
    if (target := _sync_rule(seen, pair, awaiting)) is not None and target != pair
}


def sync_target(
    seen: Seen, state: VmState, lcm: LcmState, resched: bool, missing_unknown: bool = False
) -> Pair | None:
    """The state a probe's report moves a placed VM to; None: leave it alone.
    `missing_unknown`: MISSING_VM_STATE = UNKNOWN (a VM its host no longer lists)."""
    pair = (state, lcm if state is A else _I)
    awaiting = pair == UNKNOWN and resched
    target = VM_SYNC.get((seen, pair, awaiting))
    if seen is Seen.MISSING and target is not None and missing_unknown:
        return None if pair == MISSING_UNKNOWN else MISSING_UNKNOWN
    return target
