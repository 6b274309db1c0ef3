"""The Hypervisor port's contract, run against every driver (fixture hv_backend).

What the core may rely on, whichever driver serves a host: a probe reports capacity and the
domains with their VM ids; deploy is idempotent; shutdown/cleanup of a missing domain succeed;
suspend/resume round-trip; an unreachable host raises TemporaryDriverError; other refusals
raise PermanentDriverError; a migration either moves the domain or leaves it where it was.

`hv_backend` runs each test once per driver: "sim" (virtual time), "libvirt-test" (in-process
test:/// URIs) and "libvirtd" (root: test-only daemons); see tests/helpers/hypervisors.py. The
fixture lives here, not in tests/contract/conftest.py: a conftest.py below tests/ would shadow
the top-level `conftest` module.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from helpers.hypervisors import HvBackend, make_backend
from lazarus.domain.errors import PermanentDriverError, TemporaryDriverError
from lazarus.ports.hypervisor import DomainInfo, DomainState, HostProbe, VmSpec

T = TypeVar("T")
MEM = 64 * 1024


@pytest.fixture(params=["sim", "libvirt-test", pytest.param("libvirtd", marks=pytest.mark.root)])
def hv_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HvBackend]:
    with ExitStack() as stack:
        yield make_backend(request.param, stack, tmp_path)


def spec(vm_id: int, memory_kib: int = MEM) -> VmSpec:
    return VmSpec(vm_id=vm_id, name=f"one-{vm_id}", vcpu=1, cpu=100, memory_kib=memory_kib)


def ours(probe: HostProbe) -> dict[str, DomainInfo]:
    """The probe's "one-<id>" domains (the test driver's node has its own "test" domain)."""
    return {d.deploy_id: d for d in probe.domains if d.vm_id is not None}


def run(backend: HvBackend, coro: Coroutine[Any, Any, T]) -> T:
    return cast(T, backend.run(coro))


def probe(backend: HvBackend, index: int = 0) -> HostProbe:
    return run(backend, backend.hypervisor.probe(backend.hosts[index]))


def deploy(backend: HvBackend, vm_id: int, index: int = 0) -> str:
    return run(backend, backend.hypervisor.deploy(backend.hosts[index], spec(vm_id)))


def test_probe_reports_capacity(hv_backend: HvBackend) -> None:
    result = probe(hv_backend)
    assert (result.total_cpu, result.total_mem) == (hv_backend.total_cpu, hv_backend.total_mem)
    assert result.info["HOSTNAME"]
    assert ours(result) == {}


def test_deploy_then_probe_shows_running_domain_with_vm_id(hv_backend: HvBackend) -> None:
    assert deploy(hv_backend, 7) == "one-7"
    domain = ours(probe(hv_backend))["one-7"]
    assert (domain.state, domain.vm_id) == (DomainState.RUNNING, 7)
    assert domain.memory_kib == MEM
    assert probe(hv_backend).used_mem >= MEM


def test_deploy_is_idempotent(hv_backend: HvBackend) -> None:
    assert deploy(hv_backend, 3) == deploy(hv_backend, 3) == "one-3"
    domains = ours(probe(hv_backend))
    assert list(domains) == ["one-3"]
    assert domains["one-3"].state is DomainState.RUNNING


def test_hosts_have_separate_state(hv_backend: HvBackend) -> None:
    deploy(hv_backend, 1, index=0)
    deploy(hv_backend, 2, index=1)
    assert list(ours(probe(hv_backend, 0))) == ["one-1"]
    assert list(ours(probe(hv_backend, 1))) == ["one-2"]


@pytest.mark.parametrize("hard", [False, True], ids=["acpi", "hard"])
def test_shutdown_stops_domain_and_deploy_restarts_it(hv_backend: HvBackend, hard: bool) -> None:
    host = hv_backend.hosts[0]
    deploy(hv_backend, 4)
    run(hv_backend, hv_backend.hypervisor.shutdown(host, "one-4", hard))
    # Persistent definitions stay, shut off, until cleanup (like a power loss leaves them).
    assert ours(probe(hv_backend))["one-4"].state is DomainState.POWEROFF
    run(hv_backend, hv_backend.hypervisor.shutdown(host, "one-4", hard))  # already off: fine
    assert deploy(hv_backend, 4) == "one-4"
    assert ours(probe(hv_backend))["one-4"].state is DomainState.RUNNING


@pytest.mark.parametrize("hard", [False, True], ids=["acpi", "hard"])
def test_shutdown_of_missing_domain_succeeds(hv_backend: HvBackend, hard: bool) -> None:
    run(hv_backend, hv_backend.hypervisor.shutdown(hv_backend.hosts[0], "one-404", hard))


def test_suspend_and_resume(hv_backend: HvBackend) -> None:
    host, hv = hv_backend.hosts[0], hv_backend.hypervisor
    deploy(hv_backend, 5)
    run(hv_backend, hv.suspend(host, "one-5"))
    assert ours(probe(hv_backend))["one-5"].state is DomainState.SUSPENDED
    run(hv_backend, hv.resume(host, "one-5"))
    assert ours(probe(hv_backend))["one-5"].state is DomainState.RUNNING


def test_suspend_or_resume_of_missing_domain_is_permanent(hv_backend: HvBackend) -> None:
    host, hv = hv_backend.hosts[0], hv_backend.hypervisor
    with pytest.raises(PermanentDriverError):
        run(hv_backend, hv.suspend(host, "one-404"))
    with pytest.raises(PermanentDriverError):
        run(hv_backend, hv.resume(host, "one-404"))


def test_resume_of_running_domain_is_permanent(hv_backend: HvBackend) -> None:
    deploy(hv_backend, 6)
    with pytest.raises(PermanentDriverError):
        run(hv_backend, hv_backend.hypervisor.resume(hv_backend.hosts[0], "one-6"))


def test_cleanup_removes_running_domain_and_missing_is_fine(hv_backend: HvBackend) -> None:
    host, hv = hv_backend.hosts[0], hv_backend.hypervisor
    deploy(hv_backend, 8)
    run(hv_backend, hv.cleanup(host, "one-8"))
    assert ours(probe(hv_backend)) == {}
    run(hv_backend, hv.cleanup(host, "one-8"))
    run(hv_backend, hv.cleanup(host, "one-404"))


def test_unreachable_host_is_temporary(hv_backend: HvBackend) -> None:
    hv, host = hv_backend.hypervisor, hv_backend.unreachable
    with pytest.raises(TemporaryDriverError):
        run(hv_backend, hv.probe(host))
    with pytest.raises(TemporaryDriverError):
        run(hv_backend, hv.deploy(host, spec(1)))
    with pytest.raises(TemporaryDriverError):
        run(hv_backend, hv.cleanup(host, "one-1"))


def test_migrate_moves_the_domain_or_leaves_it_in_place(hv_backend: HvBackend) -> None:
    source, target = hv_backend.hosts
    deploy(hv_backend, 9)
    coro = hv_backend.hypervisor.migrate(source, target, "one-9", spec(9))
    if hv_backend.can_migrate:
        assert run(hv_backend, coro) == "one-9"
        assert "one-9" not in ours(probe(hv_backend, 0))
        assert ours(probe(hv_backend, 1))["one-9"].state is DomainState.RUNNING
    else:
        with pytest.raises(PermanentDriverError, match="cannot migrate"):
            run(hv_backend, coro)
        assert ours(probe(hv_backend, 0))["one-9"].state is DomainState.RUNNING
        assert "one-9" not in ours(probe(hv_backend, 1))
