"""The state tables: every allowed and every refused transition of the API actions.

The expectations are written out here from OpenNebula's rules (host status, recover, resched,
migrate), independently of domain/transitions.py, and checked over every VM state and the LCM
states a VM can rest in.
"""

from __future__ import annotations

import pytest

from lazarus.domain.errors import ActionError
from lazarus.domain.states import HostState, LcmState, RecoverOp, VmState
from lazarus.domain.transitions import (
    VM_STEPS,
    HostEvent,
    apply_action,
    apply_host,
    apply_migrate,
    recover_target,
)

S, L = VmState, LcmState
A = S.ACTIVE

# The (state, lcm) pairs a VM rests in, plus transient ones the API must refuse.
RESTING = [
    (S.PENDING, L.LCM_INIT), (S.HOLD, L.LCM_INIT), (S.STOPPED, L.LCM_INIT),
    (S.SUSPENDED, L.LCM_INIT), (S.DONE, L.LCM_INIT), (S.POWEROFF, L.LCM_INIT),
    (S.UNDEPLOYED, L.LCM_INIT), (A, L.RUNNING), (A, L.UNKNOWN), (A, L.BOOT), (A, L.PROLOG),
    (A, L.SHUTDOWN), (A, L.BOOT_FAILURE), (A, L.PROLOG_MIGRATE_UNKNOWN), (A, L.EPILOG),
]

EXPECTED: dict[str, dict[tuple[VmState, LcmState], tuple[VmState, LcmState]]] = {
    "deploy": {
        (S.PENDING, L.LCM_INIT): (A, L.PROLOG),
        (S.HOLD, L.LCM_INIT): (A, L.PROLOG),
        (S.STOPPED, L.LCM_INIT): (A, L.PROLOG_RESUME),
        (S.UNDEPLOYED, L.LCM_INIT): (A, L.PROLOG_UNDEPLOY),
    },
    "terminate": {
        (A, L.RUNNING): (A, L.SHUTDOWN),
        (A, L.UNKNOWN): (A, L.SHUTDOWN),
        (S.POWEROFF, L.LCM_INIT): (A, L.EPILOG),
        (S.SUSPENDED, L.LCM_INIT): (A, L.EPILOG),
        (S.STOPPED, L.LCM_INIT): (A, L.EPILOG),
        (S.UNDEPLOYED, L.LCM_INIT): (A, L.EPILOG),
        (S.PENDING, L.LCM_INIT): (S.DONE, L.LCM_INIT),
        (S.HOLD, L.LCM_INIT): (S.DONE, L.LCM_INIT),
    },
    "poweroff": {
        (A, L.RUNNING): (A, L.SHUTDOWN_POWEROFF),
        (A, L.UNKNOWN): (A, L.SHUTDOWN_POWEROFF),
    },
    "suspend": {(A, L.RUNNING): (A, L.SAVE_SUSPEND)},
    "resume": {
        (S.POWEROFF, L.LCM_INIT): (A, L.BOOT_POWEROFF),
        (S.SUSPENDED, L.LCM_INIT): (A, L.BOOT_SUSPENDED),
        (S.STOPPED, L.LCM_INIT): (S.PENDING, L.LCM_INIT),
        (S.UNDEPLOYED, L.LCM_INIT): (S.PENDING, L.LCM_INIT),
        (A, L.UNKNOWN): (A, L.BOOT_UNKNOWN),
    },
    "stop": {(A, L.RUNNING): (A, L.SAVE_STOP), (S.SUSPENDED, L.LCM_INIT): (A, L.EPILOG_STOP)},
    "undeploy": {
        (A, L.RUNNING): (A, L.SHUTDOWN_UNDEPLOY),
        (S.POWEROFF, L.LCM_INIT): (A, L.EPILOG_UNDEPLOY),
    },
    "hold": {(S.PENDING, L.LCM_INIT): (S.HOLD, L.LCM_INIT)},
    "release": {(S.HOLD, L.LCM_INIT): (S.PENDING, L.LCM_INIT)},
    "reboot": {(A, L.RUNNING): (A, L.RUNNING)},
    "resched": {
        (A, L.RUNNING): (A, L.RUNNING),
        (A, L.UNKNOWN): (A, L.UNKNOWN),
        (S.POWEROFF, L.LCM_INIT): (S.POWEROFF, L.LCM_INIT),
        # a deliberate difference: a start that failed can be moved off its failed host
        (A, L.BOOT_FAILURE): (A, L.BOOT_FAILURE),
    },
}
EXPECTED["unresched"] = EXPECTED["resched"]
for _base in ("terminate", "poweroff", "undeploy", "reboot"):
    EXPECTED[f"{_base}-hard"] = EXPECTED[_base]

CASES = [
    pytest.param(action, state, lcm, id=f"{action}-{state.name}-{lcm.name}")
    for action in sorted(EXPECTED)
    for state, lcm in RESTING
]


@pytest.mark.parametrize(("action", "state", "lcm"), CASES)
def test_action_table(action: str, state: VmState, lcm: LcmState) -> None:
    expected = EXPECTED[action].get((state, lcm))
    if expected is None:
        with pytest.raises(ActionError, match=r"This action is not available for state "):
            apply_action(action, state, lcm)
    else:
        assert apply_action(action, state, lcm) == expected


def test_refusal_text_names_the_state() -> None:
    with pytest.raises(ActionError) as err:
        apply_action("suspend", S.ACTIVE, L.UNKNOWN)
    assert str(err.value) == "This action is not available for state ACTIVE/UNKNOWN"
    with pytest.raises(ActionError, match=r"POWEROFF$"):
        apply_action("suspend", S.POWEROFF, L.LCM_INIT)


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ActionError, match="not supported"):
        apply_action("explode", A, L.RUNNING)


MIGRATE = {
    ((A, L.RUNNING), False): (A, L.SAVE_MIGRATE),
    ((A, L.RUNNING), True): (A, L.MIGRATE),
    ((A, L.UNKNOWN), False): (A, L.PROLOG_MIGRATE_UNKNOWN),
    ((A, L.UNKNOWN), True): (A, L.PROLOG_MIGRATE_UNKNOWN),  # never live from UNKNOWN
    ((S.POWEROFF, L.LCM_INIT), False): (A, L.PROLOG_MIGRATE_POWEROFF),
    ((S.SUSPENDED, L.LCM_INIT), False): (A, L.PROLOG_MIGRATE_SUSPEND),
    ((A, L.BOOT_FAILURE), False): (A, L.PROLOG_MIGRATE_UNKNOWN),  # like UNKNOWN: never live
}


@pytest.mark.parametrize("live", [False, True])
@pytest.mark.parametrize(("state", "lcm"), RESTING, ids=[f"{s.name}-{c.name}" for s, c in RESTING])
def test_migrate_table(state: VmState, lcm: LcmState, live: bool) -> None:
    expected = MIGRATE.get(((state, lcm), live)) or MIGRATE.get(((state, lcm), False))
    if expected is None:
        with pytest.raises(ActionError, match="Migrate action is not available for state"):
            apply_migrate(state, lcm, live)
    else:
        assert apply_migrate(state, lcm, live) == expected


def test_unknown_vm_migrates_without_touching_the_source() -> None:
    target = apply_migrate(A, L.UNKNOWN, live=False)
    step = VM_STEPS[target[1]]
    assert step.op.value == "prolog"  # no save/shutdown on the dead source
    assert step.success == (A, L.BOOT)


@pytest.mark.parametrize(
    ("op", "state", "lcm", "expected"),
    [
        (RecoverOp.SUCCESS, A, L.UNKNOWN, (A, L.RUNNING)),
        (RecoverOp.FAILURE, A, L.UNKNOWN, (A, L.RUNNING)),  # OpenNebula's surprise, kept
        (RecoverOp.SUCCESS, A, L.RUNNING, None),
        (RecoverOp.SUCCESS, A, L.BOOT, (A, L.RUNNING)),
        (RecoverOp.FAILURE, A, L.BOOT, (A, L.BOOT_FAILURE)),
        (RecoverOp.FAILURE, A, L.PROLOG_MIGRATE_UNKNOWN, (A, L.PROLOG_MIGRATE_UNKNOWN_FAILURE)),
        (RecoverOp.SUCCESS, A, L.CLEANUP_RESUBMIT, (S.PENDING, L.LCM_INIT)),
        (RecoverOp.SUCCESS, A, L.CLEANUP_DELETE, (S.DONE, L.LCM_INIT)),
        (RecoverOp.RETRY, A, L.BOOT_FAILURE, (A, L.BOOT)),
        (RecoverOp.RETRY, A, L.PROLOG_MIGRATE_UNKNOWN_FAILURE, (A, L.PROLOG_MIGRATE_UNKNOWN)),
        (RecoverOp.RETRY, A, L.EPILOG_FAILURE, (A, L.EPILOG)),
        (RecoverOp.SUCCESS, A, L.BOOT_FAILURE, (A, L.RUNNING)),
        (RecoverOp.FAILURE, A, L.BOOT_FAILURE, None),
    ],
)
def test_recover_success_failure_retry(
    op: RecoverOp, state: VmState, lcm: LcmState, expected: object
) -> None:
    assert recover_target(op, state, lcm) == expected


@pytest.mark.parametrize("state", [S.PENDING, S.POWEROFF, S.DONE, S.STOPPED])
def test_recover_needs_an_active_vm(state: VmState) -> None:
    with pytest.raises(ActionError, match="Recover action is not available"):
        recover_target(RecoverOp.SUCCESS, state, L.LCM_INIT)


def test_retry_needs_a_failure_state() -> None:
    with pytest.raises(ActionError, match="Retry action is not available"):
        recover_target(RecoverOp.RETRY, A, L.RUNNING)


HOST_CASES = [
    (HostState.INIT, HostEvent.MONITOR_OK, False, HostState.MONITORED),
    (HostState.MONITORED, HostEvent.MONITOR_FAIL, False, HostState.ERROR),
    (HostState.ERROR, HostEvent.MONITOR_OK, False, HostState.MONITORED),
    (HostState.DISABLED, HostEvent.MONITOR_FAIL, False, HostState.DISABLED),
    (HostState.DISABLED, HostEvent.MONITOR_OK, False, HostState.DISABLED),
    (HostState.OFFLINE, HostEvent.MONITOR_OK, False, HostState.OFFLINE),
    (HostState.OFFLINE, HostEvent.MONITOR_FAIL, False, HostState.OFFLINE),
    (HostState.DISABLED, HostEvent.ENABLE, True, HostState.MONITORED),
    (HostState.DISABLED, HostEvent.ENABLE, False, HostState.INIT),
    (HostState.MONITORED, HostEvent.ENABLE, True, HostState.INIT),
    (HostState.OFFLINE, HostEvent.ENABLE, True, HostState.INIT),
    (HostState.ERROR, HostEvent.DISABLE, False, HostState.DISABLED),
    (HostState.MONITORED, HostEvent.OFFLINE, False, HostState.OFFLINE),
]


@pytest.mark.parametrize(("state", "event", "capacity", "expected"), HOST_CASES)
def test_host_table(
    state: HostState, event: HostEvent, capacity: bool, expected: HostState
) -> None:
    assert apply_host(state, event, capacity) is expected
