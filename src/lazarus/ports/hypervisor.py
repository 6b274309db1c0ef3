"""Hypervisor (VMM) port: what the core asks of a virtualization driver.

A driver serves every host whose VM_MAD names it ("sim", "kvm"/"libvirt", ...). Every method
is a coroutine: blocking drivers (libvirt) run their calls in a worker thread inside the
adapter. Drivers raise `TemporaryDriverError` / `PermanentDriverError` (domain.errors) and
nothing else. A driver never decides anything: the core says what to do and where.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from lazarus.domain.entities import Host
from lazarus.domain.template import Template


class DomainState(StrEnum):
    """What a hypervisor reports for one domain, mapped to OpenNebula's VM report states."""

    RUNNING = "RUNNING"
    POWEROFF = "POWEROFF"  # defined but shut off
    SUSPENDED = "SUSPENDED"  # paused or saved
    FAILURE = "FAILURE"  # crashed / error


@dataclass(frozen=True)
class DiskSpec:
    path: str
    target: str = "vda"
    format: str = "raw"
    readonly: bool = False


@dataclass(frozen=True)
class VmSpec:
    """Everything a driver needs to create a domain for a VM on a host."""

    vm_id: int
    name: str  # the domain name, "one-<id>" as OpenNebula names them
    vcpu: int
    cpu: int  # 1/100 cores
    memory_kib: int
    disks: tuple[DiskSpec, ...] = ()
    template: Template = field(default_factory=Template)
    serial_path: str = ""


@dataclass(frozen=True)
class DomainInfo:
    deploy_id: str
    state: DomainState
    vm_id: int | None = None  # parsed from the domain name when it is "one-<id>"
    cpu_used: int = 0  # 1/100 cores
    memory_kib: int = 0
    # why the domain is in its state, when the hypervisor says and it matters to VM HA:
    # one of DomainReason's values ("" = nothing to say)
    reason: str = ""


class DomainReason(StrEnum):
    """Why a domain stopped or paused (libvirt's state reasons, the ones VM HA acts on)."""

    CRASHED = "crashed"  # the qemu process died (kill -9, segfault, OOM killer)
    PANICKED = "panicked"  # the guest panicked (pvpanic)
    WATCHDOG = "watchdog"  # the guest's watchdog (i6300esb) fired: a hung guest
    IO_ERROR = "io_error"  # paused on a disk I/O error (storage went away)
    SHUTDOWN = "shutdown"  # the guest shut itself down


@dataclass(frozen=True)
class HostProbe:
    """One successful monitoring probe of a host."""

    total_cpu: int  # 1/100 cores
    total_mem: int  # KiB
    used_cpu: int = 0
    used_mem: int = 0
    domains: tuple[DomainInfo, ...] = ()
    info: dict[str, str] = field(default_factory=dict)  # HOSTNAME, HYPERVISOR, ARCH, ...


class Hypervisor(Protocol):
    async def probe(self, host: Host) -> HostProbe:
        """Capacity and the domains the hypervisor runs. Raises when the host cannot be reached."""
        ...

    async def deploy(self, host: Host, spec: VmSpec) -> str:
        """Define and start the domain; return its deploy id. Idempotent for the same spec."""
        ...

    async def shutdown(self, host: Host, deploy_id: str, hard: bool) -> None:
        """Stop the domain (ACPI, or destroy when hard). A missing domain counts as stopped."""
        ...

    async def suspend(self, host: Host, deploy_id: str) -> None: ...

    async def resume(self, host: Host, deploy_id: str) -> None: ...

    async def migrate(self, source: Host, target: Host, deploy_id: str, spec: VmSpec) -> str:
        """Live-migrate a running domain; return the deploy id on the target."""
        ...

    async def cleanup(self, host: Host, deploy_id: str) -> None:
        """Destroy and undefine whatever is left of the domain. Missing is fine."""
        ...


@runtime_checkable
class LossReporting(Protocol):
    """Optional: a driver that learns a host's connection dropped (libvirt's close callback
    and keepalive) reports the host's name, from any thread, so the monitor probes it now."""

    def set_loss_listener(self, listener: Callable[[str], None] | None) -> None: ...


@runtime_checkable
class DomainEventReporting(Protocol):
    """Optional: a driver that learns of domain events (libvirt's domain event callbacks: a
    domain stopped, crashed, was paused on an I/O error, its watchdog fired, its guest
    panicked) reports `(host name, deploy id, what)` from any thread, so the monitor probes
    that host now. The event only wakes the host: the probe that follows is what counts."""

    def set_domain_listener(self, listener: Callable[[str, str, str], None] | None) -> None: ...


ProbeResult = tuple[Host, HostProbe | Exception]
BatchResult = tuple[Host, HostProbe | Exception | None]


@runtime_checkable
class BatchProbing(Protocol):
    """Optional: a driver that probes many hosts in one call (the simulated cluster answers a
    whole monitoring round after one shared delay instead of one timer per host).

    Yields one `(host, result)` per host: the HostProbe, or the exception the host's own
    `probe()` would have raised, or None to have that host probed on its own with `probe()`
    (a host the batch cannot answer plainly: down, hung, ...); hand those back first, before
    waiting, so their probes start at once. The caller bounds the round with its probe
    timeout and closes the iterator. Drivers without it are probed one task per host."""

    def probe_many(self, hosts: Sequence[Host]) -> AsyncGenerator[BatchResult, None]: ...
