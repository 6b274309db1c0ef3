"""The lab: real qemu/libvirt hosts in network namespaces on one machine (root only).

Test and demo infrastructure, not part of the controller: `lazarus lab` (cli/lab.py), the lab
tests (tests/lab/) and the end-to-end scenarios use it; nothing under core/ or drivers/ does.

    guest.py   the tiny guest image (a counting boot sector) and its domain XML
    netns.py   the bridge namespace, host veths, the root-netns link
    hosts.py   one host: persistent mount/UTS namespaces, private files, its libvirtd
    lab.py     `Lab`: up / status / down / fail / repair / power_on / power_off
    proc.py    process helpers and `LabError`
    bmc.py     emulated BMCs (sushy-tools Redfish, virtualbmc IPMI) on chassis-power domains
"""

from lazarus.lab.lab import FAIL_MODES, FailMode, HostStatus, Lab, LabStatus, missing_requirements
from lazarus.lab.proc import LabError

__all__ = [
    "FAIL_MODES",
    "FailMode",
    "HostStatus",
    "Lab",
    "LabError",
    "LabStatus",
    "missing_requirements",
]
