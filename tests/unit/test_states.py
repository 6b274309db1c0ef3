"""State numbers and short names, spot-checked against OpenNebula's tables (include/Host.h,
include/VirtualMachine.h, the recover ops) and the ACTION list in vm.xsd. Clients index their
own name lists by these numbers, so a renumbering here would silently break pyone and the Ruby
CLI."""

from __future__ import annotations

import pytest

from lazarus.domain.states import (
    HistoryAction,
    HostState,
    HostStatus,
    LcmState,
    RecoverOp,
    VmState,
    vm_state_label,
    vm_state_name,
)


def words(text: str) -> list[str]:
    return text.split()


# OpenNebula's LCM states in their order: number i has name LCM_NAMES[i]
LCM_NAMES = words("""LCM_INIT PROLOG BOOT RUNNING MIGRATE SAVE_STOP SAVE_SUSPEND SAVE_MIGRATE
PROLOG_MIGRATE PROLOG_RESUME EPILOG_STOP EPILOG SHUTDOWN CANCEL FAILURE CLEANUP_RESUBMIT
UNKNOWN HOTPLUG
SHUTDOWN_POWEROFF BOOT_UNKNOWN BOOT_POWEROFF BOOT_SUSPENDED BOOT_STOPPED CLEANUP_DELETE
HOTPLUG_SNAPSHOT HOTPLUG_NIC HOTPLUG_SAVEAS HOTPLUG_SAVEAS_POWEROFF HOTPLUG_SAVEAS_SUSPENDED
SHUTDOWN_UNDEPLOY EPILOG_UNDEPLOY PROLOG_UNDEPLOY BOOT_UNDEPLOY HOTPLUG_PROLOG_POWEROFF
HOTPLUG_EPILOG_POWEROFF BOOT_MIGRATE BOOT_FAILURE BOOT_MIGRATE_FAILURE PROLOG_MIGRATE_FAILURE
PROLOG_FAILURE EPILOG_FAILURE EPILOG_STOP_FAILURE EPILOG_UNDEPLOY_FAILURE PROLOG_MIGRATE_POWEROFF
PROLOG_MIGRATE_POWEROFF_FAILURE PROLOG_MIGRATE_SUSPEND PROLOG_MIGRATE_SUSPEND_FAILURE
BOOT_UNDEPLOY_FAILURE BOOT_STOPPED_FAILURE PROLOG_RESUME_FAILURE PROLOG_UNDEPLOY_FAILURE
DISK_SNAPSHOT_POWEROFF DISK_SNAPSHOT_REVERT_POWEROFF DISK_SNAPSHOT_DELETE_POWEROFF
DISK_SNAPSHOT_SUSPENDED DISK_SNAPSHOT_REVERT_SUSPENDED DISK_SNAPSHOT_DELETE_SUSPENDED DISK_SNAPSHOT
DISK_SNAPSHOT_REVERT DISK_SNAPSHOT_DELETE PROLOG_MIGRATE_UNKNOWN PROLOG_MIGRATE_UNKNOWN_FAILURE
DISK_RESIZE DISK_RESIZE_POWEROFF DISK_RESIZE_UNDEPLOYED HOTPLUG_NIC_POWEROFF HOTPLUG_RESIZE
HOTPLUG_SAVEAS_UNDEPLOYED HOTPLUG_SAVEAS_STOPPED BACKUP BACKUP_POWEROFF RESTORE""")

VM_NAMES = words("""INIT PENDING HOLD ACTIVE STOPPED SUSPENDED DONE FAILED POWEROFF UNDEPLOYED
CLONING CLONING_FAILURE""")
VM_SHORT = words("init pend hold actv stop susp done fail poff unde clon fail")

HOST_NAMES = words("""INIT MONITORING_MONITORED MONITORED ERROR DISABLED MONITORING_ERROR
MONITORING_INIT MONITORING_DISABLED OFFLINE""")
HOST_SHORT = words("init update on err dsbl retry init dsbl off")


def test_lcm_states_have_the_reference_numbers() -> None:
    assert [s.name for s in LcmState] == LCM_NAMES
    assert [s.value for s in LcmState] == list(range(72))


@pytest.mark.parametrize(
    ("number", "name"),
    [(3, "RUNNING"), (16, "UNKNOWN"), (15, "CLEANUP_RESUBMIT"), (23, "CLEANUP_DELETE"),
     (36, "BOOT_FAILURE"), (60, "PROLOG_MIGRATE_UNKNOWN"), (61, "PROLOG_MIGRATE_UNKNOWN_FAILURE"),
     (71, "RESTORE")],
)  # fmt: skip
def test_lcm_spot_checks(number: int, name: str) -> None:
    assert LcmState(number).name == name


@pytest.mark.parametrize(
    ("state", "short"),
    [(LcmState.RUNNING, "runn"), (LcmState.UNKNOWN, "unkn"), (LcmState.BOOT, "boot"),
     (LcmState.BOOT_UNKNOWN, "boot"), (LcmState.BOOT_MIGRATE, "boot"), (LcmState.PROLOG, "prol"),
     (LcmState.PROLOG_MIGRATE_UNKNOWN, "prol"), (LcmState.BOOT_FAILURE, "fail"),
     (LcmState.PROLOG_MIGRATE_UNKNOWN_FAILURE, "fail"), (LcmState.EPILOG, "epil"),
     (LcmState.SHUTDOWN_POWEROFF, "shut"), (LcmState.CLEANUP_RESUBMIT, "clea"),
     (LcmState.MIGRATE, "migr"), (LcmState.SAVE_MIGRATE, "save"), (LcmState.HOTPLUG_NIC, "hotp"),
     (LcmState.DISK_SNAPSHOT_POWEROFF, "snap"), (LcmState.DISK_RESIZE, "drsz"),
     (LcmState.BACKUP_POWEROFF, "back"), (LcmState.RESTORE, "rest"), (LcmState.LCM_INIT, "init")],
    ids=lambda x: getattr(x, "name", x),
)  # fmt: skip
def test_lcm_short_names(state: LcmState, short: str) -> None:
    assert state.short == short


def test_every_lcm_short_name_is_one_the_cli_uses() -> None:
    cli = {"init", "runn", "unkn", "boot", "prol", "migr", "epil", "shut", "clea", "fail", "hotp",
           "snap", "save", "drsz", "back", "rest", "canc"}  # fmt: skip
    assert {s.short for s in LcmState} <= cli
    # FAILURE (14, obsolete) also shows "fail" but is not one of the recoverable *_FAILURE states
    assert all(s.is_failure == (s.short == "fail") for s in LcmState if s is not LcmState.FAILURE)


def test_vm_states_and_short_names() -> None:
    assert [s.name for s in VmState] == VM_NAMES
    assert [s.value for s in VmState] == list(range(12))
    assert [s.short for s in VmState] == VM_SHORT


def test_host_states_and_short_names() -> None:
    assert [s.name for s in HostState] == HOST_NAMES
    assert [s.value for s in HostState] == list(range(9))
    assert [s.short for s in HostState] == HOST_SHORT
    live = (HostState.MONITORED, HostState.ERROR, HostState.DISABLED, HostState.OFFLINE,
            HostState.INIT)  # fmt: skip
    assert [s.short for s in live] == ["on", "err", "dsbl", "off", "init"]


def test_host_status_and_recover_ops() -> None:
    assert [(s.name, s.value) for s in HostStatus] == [("ENABLED", 0), ("DISABLED", 1),
                                                       ("OFFLINE", 2)]  # fmt: skip
    assert [s.value for s in RecoverOp] == [0, 1, 2, 3, 4, 5]
    assert (RecoverOp.DELETE, RecoverOp.DELETE_RECREATE) == (3, 4)


def test_history_actions_match_vm_xsd() -> None:
    assert [a.value for a in HistoryAction] == list(range(45))
    assert (HistoryAction.MIGRATE, HistoryAction.DELETE, HistoryAction.DELETE_RECREATE,
            HistoryAction.RESCHED, HistoryAction.DEPLOY, HistoryAction.RECOVER,
            HistoryAction.MONITOR) == (1, 13, 14, 17, 30, 42, 44)  # fmt: skip


def test_labels_and_long_names() -> None:
    assert vm_state_label(VmState.ACTIVE, LcmState.UNKNOWN) == "unkn"
    assert vm_state_label(VmState.POWEROFF, LcmState.LCM_INIT) == "poff"
    assert vm_state_name(VmState.ACTIVE, LcmState.RUNNING) == "ACTIVE/RUNNING"
    assert vm_state_name(VmState.PENDING, LcmState.LCM_INIT) == "PENDING"


def test_states_format_as_numbers() -> None:
    # The XML renderer writes them with :d; IntEnum must never render its name into a document.
    assert f"{LcmState.UNKNOWN:d}|{VmState.ACTIVE:d}|{HostState.ERROR:d}" == "16|3|3"
