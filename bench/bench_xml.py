"""Micro-benchmark of the XML renderers (not a test: prints figures, asserts nothing).

    .venv/bin/python bench/bench_xml.py [N]

Builds N (default 10,000) typical VMs (a short template with a DISK and a NIC, a user template,
two history records, monitoring) and prints microseconds per VM for vm_short_xml, vm_xml and
the whole vm_pool_xml document. Best of 5 runs, to keep scheduler noise out.
"""

from __future__ import annotations

import sys
import time

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


def make_vms(n: int) -> list[VM]:
    base = Template.parse(TEMPLATE)
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


def best_of(runs: int, fn: object, *args: object) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    vms = make_vms(n)

    def each(render: object) -> None:
        for vm in vms:
            render(vm)  # type: ignore[operator]

    short = best_of(5, each, vm_short_xml)
    full = best_of(5, each, vm_xml)
    pool = best_of(5, vm_pool_xml, vms)
    extended = best_of(5, vm_pool_extended_xml, vms)
    size = len(vm_pool_xml(vms))
    print(f"{n} VMs, Python {sys.version.split()[0]}")
    print(f"vm_short_xml          {short / n * 1e6:7.2f} us/VM")
    print(f"vm_xml                {full / n * 1e6:7.2f} us/VM")
    print(f"vm_pool_xml           {pool * 1e3:7.1f} ms total ({size / 1e6:.1f} MB)")
    print(f"vm_pool_extended_xml  {extended * 1e3:7.1f} ms total")


if __name__ == "__main__":
    main()
