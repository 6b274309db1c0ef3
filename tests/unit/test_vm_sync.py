"""The VM sync table (domain/transitions.py VM_SYNC) as a matrix: every observed domain state
x every stored state a probe looks at x the RESCHED flag x MISSING_VM_STATE, against the rules
as docs/monitoring.md ("VM state sync") states them, written out independently here."""

from __future__ import annotations

import pytest

from lazarus.domain.states import LcmState, VmState
from lazarus.domain.transitions import SYNCED_STATES, VM_SYNC, Seen, sync_target

S, L = VmState, LcmState
RUNNING, UNKNOWN = (S.ACTIVE, L.RUNNING), (S.ACTIVE, L.UNKNOWN)
POWEROFF, SUSPENDED = (S.POWEROFF, L.LCM_INIT), (S.SUSPENDED, L.LCM_INIT)
BOOTING = {L.BOOT, L.BOOT_UNKNOWN, L.BOOT_POWEROFF, L.BOOT_SUSPENDED, L.BOOT_STOPPED,
           L.BOOT_UNDEPLOY, L.BOOT_MIGRATE}
SHUTTING = {L.SHUTDOWN, L.SHUTDOWN_POWEROFF, L.SHUTDOWN_UNDEPLOY}

STORED = [(S.ACTIVE, lcm) for lcm in LcmState if lcm is not L.LCM_INIT] + [POWEROFF, SUSPENDED]


def documented(
    seen: Seen, stored: tuple[VmState, LcmState], resched: bool, missing_unknown: bool
) -> tuple[VmState, LcmState] | None:
    state, lcm = stored
    awaiting = stored == UNKNOWN and resched  # rescheduled off the host by an HA recovery
    if seen is Seen.RUNNING:
        return RUNNING if lcm in {L.UNKNOWN} | BOOTING or state in (S.POWEROFF, S.SUSPENDED) \
            else None
    if seen is Seen.POWEROFF:
        return POWEROFF if lcm in {L.RUNNING, L.UNKNOWN} | SHUTTING and not awaiting else None
    if seen is Seen.FAILURE:
        return UNKNOWN if stored == RUNNING else None
    if seen is Seen.SUSPENDED:
        return SUSPENDED if stored == RUNNING else None
    if stored not in (RUNNING, UNKNOWN) or awaiting:
        return None
    target = UNKNOWN if missing_unknown else POWEROFF
    return None if target == stored else target


CASES = [
    (seen, stored, resched, missing)
    for seen in Seen
    for stored in STORED
    for resched in (False, True)
    for missing in (False, True)
]


def _id(case: tuple[Seen, tuple[VmState, LcmState], bool, bool]) -> str:
    seen, (state, lcm), resched, missing = case
    name = f"ACTIVE/{lcm.name}" if state is S.ACTIVE else state.name
    return (f"{seen.value}-{name}{'-resched' if resched else ''}"
            f"{'-missing_unknown' if missing else ''}")


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_sync_matrix(case: tuple[Seen, tuple[VmState, LcmState], bool, bool]) -> None:
    seen, (state, lcm), resched, missing = case
    assert sync_target(seen, state, lcm, resched, missing) == documented(*case)


def test_an_unknown_vm_awaiting_its_resched_is_not_given_up_to_poweroff() -> None:
    for seen in (Seen.MISSING, Seen.POWEROFF):
        assert sync_target(seen, S.ACTIVE, L.UNKNOWN, resched=True) is None
        assert sync_target(seen, S.ACTIVE, L.UNKNOWN, resched=False) == POWEROFF
    assert sync_target(Seen.RUNNING, S.ACTIVE, L.UNKNOWN, resched=True) == RUNNING


def test_the_table_only_holds_changes_of_synced_states() -> None:
    assert VM_SYNC  # and every entry moves the VM somewhere else
    for (_, stored, awaiting), target in VM_SYNC.items():
        assert stored[0] in SYNCED_STATES and target != stored
        assert not awaiting or stored == UNKNOWN
