"""A module-scoped fixture body for emulated BMCs (lazarus.lab.bmc), cleaned up always."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from helpers.env import require_root
from lazarus.lab.bmc import BmcSet

BMC_BINARIES = ("libvirtd", "virsh", "openssl", "ipmitool", "fence_redfish", "fence_ipmilan")


def bmc_set(workdir: Path, hosts: list[str]) -> Iterator[BmcSet]:
    require_root(*BMC_BINARIES)
    bmcs = BmcSet.start(workdir, hosts)
    try:
        yield bmcs
    finally:
        bmcs.stop()
