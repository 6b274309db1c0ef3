"""OpenNebula's state numbers, kept exactly (include/Host.h, include/VirtualMachine.h).

Clients such as pyone and the Ruby OCA index their own name lists by these numbers, so the
obsolete values (host 1/5/6/7, VM 7, LCM 13/14/55/58) stay reserved and are never produced.
Each enum carries the short name the OpenNebula CLI prints.
"""

from __future__ import annotations

from enum import IntEnum


class HostState(IntEnum):
    INIT = 0
    MONITORING_MONITORED = 1  # obsolete
    MONITORED = 2
    ERROR = 3
    DISABLED = 4
    MONITORING_ERROR = 5  # obsolete, still treated as "failed" by host_error
    MONITORING_INIT = 6  # obsolete
    MONITORING_DISABLED = 7  # obsolete
    OFFLINE = 8

    @property
    def short(self) -> str:
        return _HOST_SHORT[self]


_HOST_SHORT = {
    HostState.INIT: "init",
    HostState.MONITORING_MONITORED: "update",
    HostState.MONITORED: "on",
    HostState.ERROR: "err",
    HostState.DISABLED: "dsbl",
    HostState.MONITORING_ERROR: "retry",
    HostState.MONITORING_INIT: "init",
    HostState.MONITORING_DISABLED: "dsbl",
    HostState.OFFLINE: "off",
}


class HostStatus(IntEnum):
    """The `status` argument of one.host.status."""

    ENABLED = 0
    DISABLED = 1
    OFFLINE = 2


class VmState(IntEnum):
    INIT = 0
    PENDING = 1
    HOLD = 2
    ACTIVE = 3
    STOPPED = 4
    SUSPENDED = 5
    DONE = 6
    FAILED = 7  # obsolete
    POWEROFF = 8
    UNDEPLOYED = 9
    CLONING = 10
    CLONING_FAILURE = 11

    @property
    def short(self) -> str:
        return _VM_SHORT[self]


_VM_SHORT = {
    VmState.INIT: "init",
    VmState.PENDING: "pend",
    VmState.HOLD: "hold",
    VmState.ACTIVE: "actv",
    VmState.STOPPED: "stop",
    VmState.SUSPENDED: "susp",
    VmState.DONE: "done",
    VmState.FAILED: "fail",
    VmState.POWEROFF: "poff",
    VmState.UNDEPLOYED: "unde",
    VmState.CLONING: "clon",
    VmState.CLONING_FAILURE: "fail",
}


class LcmState(IntEnum):
    LCM_INIT = 0
    PROLOG = 1
    BOOT = 2
    RUNNING = 3
    MIGRATE = 4
    SAVE_STOP = 5
    SAVE_SUSPEND = 6
    SAVE_MIGRATE = 7
    PROLOG_MIGRATE = 8
    PROLOG_RESUME = 9
    EPILOG_STOP = 10
    EPILOG = 11
    SHUTDOWN = 12
    CANCEL = 13  # obsolete
    FAILURE = 14  # obsolete
    CLEANUP_RESUBMIT = 15
    UNKNOWN = 16
    HOTPLUG = 17
    SHUTDOWN_POWEROFF = 18
    BOOT_UNKNOWN = 19
    BOOT_POWEROFF = 20
    BOOT_SUSPENDED = 21
    BOOT_STOPPED = 22
    CLEANUP_DELETE = 23
    HOTPLUG_SNAPSHOT = 24
    HOTPLUG_NIC = 25
    HOTPLUG_SAVEAS = 26
    HOTPLUG_SAVEAS_POWEROFF = 27
    HOTPLUG_SAVEAS_SUSPENDED = 28
    SHUTDOWN_UNDEPLOY = 29
    EPILOG_UNDEPLOY = 30
    PROLOG_UNDEPLOY = 31
    BOOT_UNDEPLOY = 32
    HOTPLUG_PROLOG_POWEROFF = 33
    HOTPLUG_EPILOG_POWEROFF = 34
    BOOT_MIGRATE = 35
    BOOT_FAILURE = 36
    BOOT_MIGRATE_FAILURE = 37
    PROLOG_MIGRATE_FAILURE = 38
    PROLOG_FAILURE = 39
    EPILOG_FAILURE = 40
    EPILOG_STOP_FAILURE = 41
    EPILOG_UNDEPLOY_FAILURE = 42
    PROLOG_MIGRATE_POWEROFF = 43
    PROLOG_MIGRATE_POWEROFF_FAILURE = 44
    PROLOG_MIGRATE_SUSPEND = 45
    PROLOG_MIGRATE_SUSPEND_FAILURE = 46
    BOOT_UNDEPLOY_FAILURE = 47
    BOOT_STOPPED_FAILURE = 48
    PROLOG_RESUME_FAILURE = 49
    PROLOG_UNDEPLOY_FAILURE = 50
    DISK_SNAPSHOT_POWEROFF = 51
    DISK_SNAPSHOT_REVERT_POWEROFF = 52
    DISK_SNAPSHOT_DELETE_POWEROFF = 53
    DISK_SNAPSHOT_SUSPENDED = 54
    DISK_SNAPSHOT_REVERT_SUSPENDED = 55  # obsolete
    DISK_SNAPSHOT_DELETE_SUSPENDED = 56
    DISK_SNAPSHOT = 57
    DISK_SNAPSHOT_REVERT = 58  # obsolete
    DISK_SNAPSHOT_DELETE = 59
    PROLOG_MIGRATE_UNKNOWN = 60
    PROLOG_MIGRATE_UNKNOWN_FAILURE = 61
    DISK_RESIZE = 62
    DISK_RESIZE_POWEROFF = 63
    DISK_RESIZE_UNDEPLOYED = 64
    HOTPLUG_NIC_POWEROFF = 65
    HOTPLUG_RESIZE = 66
    HOTPLUG_SAVEAS_UNDEPLOYED = 67
    HOTPLUG_SAVEAS_STOPPED = 68
    BACKUP = 69
    BACKUP_POWEROFF = 70
    RESTORE = 71

    @property
    def short(self) -> str:
        name = self.name
        if name.endswith("_FAILURE"):
            return "fail"
        for prefix, short in _LCM_SHORT_PREFIXES:
            if name.startswith(prefix):
                return short
        return "init" if self is LcmState.LCM_INIT else name[:4].lower()

    @property
    def is_failure(self) -> bool:
        return self.name.endswith("_FAILURE")


_LCM_SHORT_PREFIXES = (
    ("RUNNING", "runn"),
    ("UNKNOWN", "unkn"),
    ("BOOT", "boot"),
    ("PROLOG", "prol"),
    ("MIGRATE", "migr"),
    ("SAVE", "save"),
    ("EPILOG", "epil"),
    ("SHUTDOWN", "shut"),
    ("CLEANUP", "clea"),
    ("HOTPLUG", "hotp"),
    ("DISK_SNAPSHOT", "snap"),
    ("DISK_RESIZE", "drsz"),
    ("BACKUP", "back"),
    ("RESTORE", "rest"),
    ("CANCEL", "canc"),
)


class RecoverOp(IntEnum):
    """one.vm.recover operation codes, OpenNebula's numbers (0..5)."""

    FAILURE = 0
    SUCCESS = 1
    RETRY = 2
    DELETE = 3
    DELETE_RECREATE = 4
    DELETE_DB = 5


class HistoryAction(IntEnum):
    """The ACTION of a HISTORY record: the index into OpenNebula's history action list."""

    NONE = 0
    MIGRATE = 1
    LIVE_MIGRATE = 2
    SHUTDOWN = 3
    SHUTDOWN_HARD = 4
    UNDEPLOY = 5
    UNDEPLOY_HARD = 6
    HOLD = 7
    RELEASE = 8
    STOP = 9
    SUSPEND = 10
    RESUME = 11
    BOOT = 12
    DELETE = 13
    DELETE_RECREATE = 14
    REBOOT = 15
    REBOOT_HARD = 16
    RESCHED = 17
    UNRESCHED = 18
    POWEROFF = 19
    POWEROFF_HARD = 20
    DISK_ATTACH = 21
    DISK_DETACH = 22
    NIC_ATTACH = 23
    NIC_DETACH = 24
    DISK_SNAPSHOT_CREATE = 25
    DISK_SNAPSHOT_DELETE = 26
    TERMINATE = 27
    TERMINATE_HARD = 28
    DISK_RESIZE = 29
    DEPLOY = 30
    CHOWN = 31
    CHMOD = 32
    UPDATECONF = 33
    RENAME = 34
    RESIZE = 35
    UPDATE = 36
    SNAPSHOT_RESIZE = 37
    SNAPSHOT_DELETE = 38
    SNAPSHOT_REVERT = 39
    DISK_SAVEAS = 40
    DISK_SNAPSHOT_REVERT = 41
    RECOVER = 42
    RETRY = 43
    MONITOR = 44


def vm_state_label(state: VmState, lcm: LcmState) -> str:
    """What `onevm list` prints in its STAT column: the LCM short name while ACTIVE."""
    return lcm.short if state is VmState.ACTIVE else state.short


def vm_state_name(state: VmState, lcm: LcmState) -> str:
    """The long form used in error messages and logs, e.g. "ACTIVE/UNKNOWN" or "POWEROFF"."""
    return f"{state.name}/{lcm.name}" if state is VmState.ACTIVE else state.name
