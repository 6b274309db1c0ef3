"""Micro-benchmark of the XML renderers (not a test: prints figures, asserts nothing).

    .venv/bin/python bench/bench_xml.py [N]

Builds N (default 10,000) typical VMs (CPU/MEMORY/VCPU, a DISK, a NIC, GRAPHICS, CONTEXT, OS, a
user template, two history records, monitoring), then N minimal ones (CPU, MEMORY, one DISK),
and prints microseconds per VM for vm_short_xml and vm_xml, and the time for the whole pool
documents. Best of 5 runs, to keep scheduler noise out.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from lazarus.domain.entities import VM, History
from lazarus.domain.states import LcmState, VmState
from lazarus.domain.template import Template
from lazarus.domain.xml import vm_pool_extended_xml, vm_pool_xml, vm_short_xml, vm_xml

TEMPLATE = """
CPU = "0.5"
MEMORY = "512"
VCPU = "1"
DISK = [ IMAGE = "debian12", IMAGE_ID = "3", DATASTORE_ID = "1", DISK_ID = "0", SIZE = "2048",
         TARGET = "vda", TYPE = "FILE", CLONE = "YES" ]
NIC = [ NETWORK = "public", NETWORK_ID = "0", IP = "10.0.0.7", MAC = "02:00:0a:00:00:07",
        NIC_ID = "0", BRIDGE = "br0" ]
GRAPHICS = [ TYPE = "VNC", LISTEN = "0.0.0.0", PORT = "5907" ]
CONTEXT = [ NETWORK = "YES", SSH_PUBLIC_KEY = "ssh-ed25519 AAAA... user@host" ]
OS = [ ARCH = "x86_64" ]
TM_MAD_SYSTEM = "shared"
"""


MINIMAL = 'CPU = "1"\nMEMORY = "128"\nDISK = [ IMAGE = "tiny", DISK_ID = "0" ]\n'


def make_vms(n: int, text: str = TEMPLATE) -> list[VM]:
    base = Template.parse(text)
    vms = []
    for i in range(n):
        vm = VM(
            id=i,
            name=f"vm-{i}",
            state=VmState.ACTIVE,
            lcm_state=LcmState.RUNNING,
            stime=1_700_000_000 + i,
            deploy_id=f"one-{i}",
            template=base.copy(),
            user_template=Template.parse('HA = "YES"\nHA_PRIORITY = "5"\nDESCRIPTION = "web"'),
            history=[
                History(oid=i, seq=0, hostname="node1", hid=1, stime=1_700_000_000),
                History(oid=i, seq=1, hostname="node2", hid=2, stime=1_700_000_500),
            ],
            monitoring={"CPU": "2.5", "MEMORY": "524288", "NETRX": "1000", "STATE": "a"},
        )
        vms.append(vm)
    return vms


def per_vm(render: Callable[[VM], str], vms: list[VM], runs: int = 7, chunk: int = 500) -> float:
    """Seconds per VM: each chunk of VMs timed `runs` times, the best time of each chunk summed.

    Taking the minimum per small chunk keeps out the pauses that other processes on a busy
    machine cause, which a single best-of over the whole list would still include.
    """
    total = 0.0
    for start in range(0, len(vms), chunk):
        part = vms[start : start + chunk]
        best = float("inf")
        for _ in range(runs):
            began = time.perf_counter()
            for vm in part:
                render(vm)
            best = min(best, time.perf_counter() - began)
        total += best
    return total / len(vms)


def best_of(runs: int, render: Callable[[list[VM]], str], vms: list[VM]) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        render(vms)
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(f"{n} VMs, Python {sys.version.split()[0]}")
    for label, text in (("typical", TEMPLATE), ("minimal", MINIMAL)):
        print(f"-- {label} VM template")
        measure(make_vms(n, text))


def measure(vms: list[VM]) -> None:
    print(f"vm_short_xml          {per_vm(vm_short_xml, vms) * 1e6:7.2f} us/VM")
    print(f"vm_xml                {per_vm(vm_xml, vms) * 1e6:7.2f} us/VM")
    size = len(vm_pool_xml(vms)) / 1e6
    print(f"vm_pool_xml           {best_of(5, vm_pool_xml, vms) * 1e3:7.1f} ms ({size:.1f} MB)")
    print(f"vm_pool_extended_xml  {best_of(5, vm_pool_extended_xml, vms) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
