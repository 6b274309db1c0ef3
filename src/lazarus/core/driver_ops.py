"""Driver operations of the VM life cycle: one call to the VM's hypervisor driver per step.

core/lifecycle.py looks a VM's transient state up in domain/transitions.py VM_STEPS and runs
the step's operation here (`perform`); the result is an `Outcome` the life cycle applies.
PROLOG needs no driver (shared storage); a cleanup is skipped on a host in ERROR or OFFLINE
(dead or fenced: the monitor removes the stale definition when it returns).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from lazarus.domain.entities import VM
from lazarus.domain.errors import DriverError, NoExistsError
from lazarus.domain.states import HistoryAction, HostState, LcmState
from lazarus.domain.transitions import Op
from lazarus.ports.hypervisor import Hypervisor
from lazarus.ports.store import Store

from .placement import previous_host_id, vm_spec
from .settings import Settings
from .waits import within

log = logging.getLogger("lazarus.lifecycle")

_HARD = {HistoryAction.TERMINATE_HARD, HistoryAction.POWEROFF_HARD, HistoryAction.UNDEPLOY_HARD}


@dataclass
class Outcome:
    ok: bool
    detail: str
    deploy_id: str | None = None


async def perform(
    op: Op,
    vm: VM,
    store: Store,
    drivers: Mapping[str, Hypervisor],
    settings: Settings,
    hard: bool | None = None,
) -> Outcome:
    """Run the driver operation `op` for `vm` where its placement says, bounded by
    DRIVER_TIMEOUT (CLEANUP_TIMEOUT for a cleanup); failures are an Outcome, never an
    exception."""
    if op is Op.PROLOG:
        return Outcome(True, "prolog ok")  # shared storage: nothing to transfer
    host_id = vm.host_id
    if host_id is None:
        return Outcome(False, "VM has no placement")
    try:
        host = store.host(host_id)
        source_id = previous_host_id(vm)
        if op in (Op.SAVE, Op.LIVE_MIGRATE) and vm.lcm_state in (
            LcmState.SAVE_MIGRATE,
            LcmState.MIGRATE,
        ):
            if source_id is None:
                return Outcome(False, "migration without a source host")
            source = store.host(source_id)
        else:
            source = host
        driver = drivers.get(host.vm_mad)
        if driver is None:
            return Outcome(False, f"no driver for VM_MAD {host.vm_mad!r}")
        deploy_id = vm.deploy_id or f"one-{vm.id}"
        timeout = settings.driver_timeout
        if op is Op.DEPLOY:
            ds = store.datastore(vm.last.ds_id) if vm.last else None
            new_id = await within(driver.deploy(host, vm_spec(vm, ds)), timeout)
            return Outcome(True, f"deploy ok on {host.subject}", new_id)
        if op is Op.SHUTDOWN or op is Op.SAVE:
            if hard is None:
                hard = vm.last is not None and vm.last.action in _HARD
            await within(driver.shutdown(source, deploy_id, hard), timeout)
            return Outcome(True, f"shutdown ok on {source.subject}")
        if op is Op.SUSPEND:
            await within(driver.suspend(host, deploy_id), timeout)
            return Outcome(True, "suspend ok")
        if op is Op.RESUME:
            await within(driver.resume(host, deploy_id), timeout)
            return Outcome(True, "resume ok")
        if op is Op.EPILOG:
            await within(driver.cleanup(host, deploy_id), timeout)
            return Outcome(True, f"epilog ok on {host.subject}")
        if op is Op.LIVE_MIGRATE:
            ds = store.datastore(vm.last.ds_id) if vm.last else None
            new_id = await within(
                driver.migrate(source, host, deploy_id, vm_spec(vm, ds)), timeout
            )
            return Outcome(True, f"live migration ok to {host.subject}", new_id)
        if op is Op.CLEANUP:
            if host.state in (HostState.ERROR, HostState.OFFLINE):
                return Outcome(True, f"cleanup skipped: {host.subject} is {host.state.name}")
            await within(
                driver.cleanup(host, deploy_id), settings.cleanup_timeout
            )
            return Outcome(True, f"cleanup ok on {host.subject}")
    except TimeoutError:
        return Outcome(False, f"{op.value} timed out")
    except (DriverError, NoExistsError) as exc:
        return Outcome(False, f"{op.value}: {exc}")
    except Exception as exc:  # a driver bug must not kill the controller
        log.exception("vm/%d: %s crashed", vm.id, op.value)
        return Outcome(False, f"{op.value}: internal error: {exc}")
    return Outcome(False, f"unknown operation {op.value}")
