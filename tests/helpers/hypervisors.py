"""Hypervisor backends for tests: every Hypervisor implementation the project ships, set up.

Used by the contract suite (the `hv_backend` fixture of tests/contract/test_hypervisor.py)
and by any test that wants to run against several drivers.
`make_backend(kind, stack, tmp_path)` with kind:
- "sim": SimHypervisor over a SimCluster, on a virtual-time loop (no real waiting);
- "libvirt-test": LibvirtHypervisor on in-process "test:///<tmp>/hostN.xml" URIs, one node
  file per host (private state per connection);
- "libvirtd": LibvirtHypervisor against test-only libvirtd daemons (root; tests/helpers).
Each backend offers two reachable hosts, one unreachable host, the capacity the first host
must report, and `run(coro)` to drive a coroutine on the right kind of loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lazarus.domain.entities import Host
from lazarus.domain.template import Template
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor
from lazarus.ports.hypervisor import Hypervisor

from .libvirtd import Libvirtd, free_port, require_libvirtd

NODE_CPUS = 4
NODE_MEM_KIB = 4 * 1024 * 1024
# What libvirt's built-in test:///default node reports (the daemons serve that node).
DEFAULT_NODE_CPUS = 16
DEFAULT_NODE_MEM_KIB = 3 * 1024 * 1024


@dataclass
class HvBackend:
    name: str
    hypervisor: Hypervisor
    hosts: list[Host]
    unreachable: Host
    total_cpu: int
    total_mem: int
    can_migrate: bool
    run: Callable[[Coroutine[Any, Any, Any]], Any]
    extra: dict[str, Any] = field(default_factory=dict)


def make_host(host_id: int, name: str, uri: str | None = None) -> Host:
    template = Template()
    if uri is not None:
        template.set("LIBVIRT_URI", uri)
    return Host(id=host_id, name=name, vm_mad="sim" if uri is None else "kvm", template=template)


def node_xml(cpus: int = NODE_CPUS, memory_kib: int = NODE_MEM_KIB) -> str:
    return (
        "<node><cpu><nodes>1</nodes><sockets>1</sockets>"
        f"<cores>{cpus}</cores><threads>1</threads><active>{cpus}</active>"
        "<mhz>2000</mhz><model>x86_64</model></cpu>"
        f"<memory>{memory_kib}</memory></node>"
    )


def _real_runner() -> tuple[Callable[[Coroutine[Any, Any, Any]], Any], Callable[[], None]]:
    loop = asyncio.new_event_loop()
    return loop.run_until_complete, loop.close


def _sim_backend(stack: ExitStack) -> HvBackend:
    loop = VirtualEventLoop()
    stack.callback(loop.close)
    cluster = SimCluster(VirtualClock(loop))
    for name in ("hv1", "hv2"):
        cluster.add_host(name, cpu=NODE_CPUS * 100, memory_kib=NODE_MEM_KIB)
    return HvBackend(
        name="sim",
        hypervisor=SimHypervisor(cluster),
        hosts=[make_host(0, "hv1"), make_host(1, "hv2")],
        unreachable=make_host(9, "nowhere"),
        total_cpu=NODE_CPUS * 100,
        total_mem=NODE_MEM_KIB,
        can_migrate=True,
        run=loop.run_until_complete,
        extra={"cluster": cluster},
    )


def _libvirt_test_backend(stack: ExitStack, tmp_path: Path) -> HvBackend:
    pytest.importorskip("libvirt")
    from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

    hosts = []
    for index, name in enumerate(("hv1", "hv2")):
        path = tmp_path / f"{name}.xml"
        path.write_text(node_xml())
        hosts.append(make_host(index, name, f"test://{path}"))
    hypervisor = LibvirtHypervisor()
    stack.callback(hypervisor.close)
    run, close = _real_runner()
    stack.callback(close)
    return HvBackend(
        name="libvirt-test",
        hypervisor=hypervisor,
        hosts=hosts,
        unreachable=make_host(9, "nowhere", f"test+tcp://127.0.0.1:{free_port()}/default"),
        total_cpu=NODE_CPUS * 100,
        total_mem=NODE_MEM_KIB,
        can_migrate=False,
        run=run,
    )


def _libvirtd_backend(stack: ExitStack, tmp_path: Path) -> HvBackend:
    require_libvirtd()
    from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

    daemons = [stack.enter_context(Libvirtd(tmp_path / name)) for name in ("hv1", "hv2")]
    hypervisor = LibvirtHypervisor()
    stack.callback(hypervisor.close)  # runs before the daemons stop (ExitStack is LIFO)
    run, close = _real_runner()
    stack.callback(close)
    return HvBackend(
        name="libvirtd",
        hypervisor=hypervisor,
        hosts=[
            make_host(0, "hv1", daemons[0].uri),
            make_host(1, "hv2", daemons[1].unix_uri),  # one over TCP, one over the unix socket
        ],
        unreachable=make_host(9, "nowhere", f"test+tcp://127.0.0.1:{free_port()}/default"),
        total_cpu=DEFAULT_NODE_CPUS * 100,
        total_mem=DEFAULT_NODE_MEM_KIB,
        can_migrate=False,
        run=run,
        extra={"daemons": daemons},
    )


BACKENDS = ("sim", "libvirt-test", "libvirtd")


def make_backend(kind: str, stack: ExitStack, tmp_path: Path) -> HvBackend:
    """Build a backend whose resources `stack` releases; "libvirtd" skips unless root."""
    if kind == "sim":
        return _sim_backend(stack)
    if kind == "libvirt-test":
        return _libvirt_test_backend(stack, tmp_path)
    if kind == "libvirtd":
        return _libvirtd_backend(stack, tmp_path)
    raise ValueError(f"unknown hypervisor backend {kind!r}")
