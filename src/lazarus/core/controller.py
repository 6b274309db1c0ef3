"""The controller: one object that owns the core services and their background loops.

Built by a composition root (app/daemon.py in production, sim/ in the simulator, tests) with
a Store, a Clock, the hypervisor drivers by VM_MAD, and Settings. Everything here runs on one
asyncio loop; the API server calls in through app/runtime.py.

    controller = Controller(store, clock, {"sim": SimHypervisor(cluster)}, Settings())
    await controller.start()      # bootstrap defaults, resume interrupted work, start loops
    ...
    await controller.stop()       # or abort(): a crash, for the simulator
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from lazarus.domain.errors import InternalError
from lazarus.ports.clock import Clock
from lazarus.ports.heartbeat import HeartbeatSource
from lazarus.ports.hooks import HookExecutor
from lazarus.ports.hypervisor import Hypervisor
from lazarus.ports.store import Store

from .heartbeats import Heartbeats
from .hooks import HookManager, is_hook_store
from .inventory import Inventory, bootstrap
from .journal import Journal
from .lifecycle import Lifecycle
from .monitor import Monitor
from .monitoring_records import MonitoringRecorder
from .scheduler import Scheduler
from .settings import Settings
from .vm_admin import VmAdmin

log = logging.getLogger("lazarus.controller")

Service = Callable[[], Awaitable[None]]


class Controller:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        drivers: Mapping[str, Hypervisor],
        settings: Settings | None = None,
        datastore_root: str = "/var/lib/lazarus/datastores",
        hook_executor: HookExecutor | None = None,
        heartbeats: HeartbeatSource | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.drivers = dict(drivers)
        self.settings = settings or Settings()
        self.datastore_root = datastore_root
        self.journal = Journal(store, clock)
        self.lifecycle = Lifecycle(store, self.journal, clock, self.drivers, self.settings)
        self.inventory = Inventory(self.journal, clock, self.drivers.keys())
        self.vm_admin = VmAdmin(self.journal)  # one.vm.update/rename/lock/chown/chmod/resize
        bootstrap(self.journal, self.datastore_root)  # idempotent: first start only
        self.monitor = Monitor(
            store, self.journal, clock, self.drivers, self.settings, self.lifecycle
        )
        self.scheduler = Scheduler(store, self.journal, clock, self.lifecycle, self.settings)
        # Background loops, supervised by start(); more services (hooks) register here.
        self.records = MonitoringRecorder(store, clock, self.settings)
        self.services: dict[str, Service] = {
            "monitor": self.monitor.run,
            "scheduler": self.scheduler.run,
            "monitoring records": self.records.run,  # core/monitoring_records.py
        }
        # Storage heartbeats of the host agents (core/heartbeats.py), when a source is given
        self.heartbeats: Heartbeats | None = None
        if heartbeats is not None:
            self.heartbeats = Heartbeats(store, self.journal, clock, self.settings, heartbeats)
            self.services["heartbeats"] = self.heartbeats.run
        # Hooks (core/hooks.py) run when an executor is given and the store keeps hooks.
        self.hooks: HookManager | None = None
        if hook_executor is not None:
            if not is_hook_store(store):
                raise TypeError("hooks need a store that implements ports.hooks.HookStore")
            self.hooks = HookManager(store, clock, hook_executor, self.settings, self.store)
            self.journal.listeners.append(self.hooks.notify)
            self.services["hooks"] = self.hooks.run
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        resumed = self.lifecycle.resume()
        if resumed:
            log.info("controller: resuming %d VM(s) left in transient states", resumed)
        loop = asyncio.get_running_loop()
        for name, service in self.services.items():
            task = loop.create_task(self._supervise(name, service), name=name)
            self._tasks.append(task)

    async def _supervise(self, name: str, service: Service) -> None:
        """Run a service loop; a crash is logged and the loop restarted after a pause."""
        while True:
            try:
                await service()
                return
            except asyncio.CancelledError:
                raise
            except InternalError as exc:  # the store fails (PostgreSQL away): no traceback
                log.error("controller: service %s stopped, the store fails (%s); restarting "
                          "in 1 s", name, exc)  # fmt: skip
                await self.clock.sleep(1.0)
            except Exception:
                log.exception("controller: service %s crashed; restarting in 1 s", name)
                await self.clock.sleep(1.0)

    async def abort(self) -> None:
        """End this controller as SIGKILL ends its process: every task (service loops, VM driver
        steps, restart timers, hook runs) is cancelled at once, nothing is closed in order, and
        no journal listener hears of anything after. The store stays as it is, for a new
        Controller to resume from (the simulator's controller crash, sim/world.py)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        tasks += self.lifecycle.abort()
        if self.hooks is not None:
            tasks += self.hooks.abort()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self.journal.listeners.clear()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.lifecycle.close()
