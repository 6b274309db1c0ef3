"""`lazarus serve`: the composition root of the production controller.

Builds the store the DB setting names (store/url.py open_store: SQLite in the data directory by
default, or PostgreSQL), the real clock, the hypervisor drivers named in
the VM_MAD setting (the in-process simulated cluster for sim, with its `lazarus.sim.*` methods;
libvirt for kvm/qemu/libvirt when libvirt-python is installed), the controller core and the
XML-RPC API (api/stack.py), then runs until
SIGTERM/SIGINT. On first start it generates the oneadmin credentials into a one_auth file
(mode 0600) and prints its path; the CLI and hook scripts find it through $LAZARUS_AUTH,
$ONE_AUTH or the default path.

With `ha` (`lazarus serve --ha`, app/standby.py) it opens the shared store, stands by until
etcd elects it, then claims its epoch and runs as above over an epoch-fenced store; when it
stops leading it aborts the controller and exits EXIT_DEPOSED for its supervisor to restart.
"""

from __future__ import annotations

import asyncio
import faulthandler
import importlib.util
import io
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lazarus.api import auth
from lazarus.api.roles import ensure_roles, issue_ha_token
from lazarus.api.stack import build_dispatcher
from lazarus.api.xmlrpc import Limits, XmlRpcServer
from lazarus.core.controller import Controller
from lazarus.core.settings import Settings
from lazarus.domain.errors import InternalError
from lazarus.domain.secrets import mask_db_url
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.heartbeat import FileBeats
from lazarus.drivers.hooks.lifeline import GroupRecords
from lazarus.drivers.hooks.subprocess import SubprocessHookExecutor
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor
from lazarus.ports.hypervisor import Hypervisor
from lazarus.ports.store import Store
from lazarus.store.url import kind, open_store, sqlite_path
from lazarus.store.url import validate as validate_store_url
from lazarus.telemetry.events import EventFeed
from lazarus.telemetry.hooks import TimedHookExecutor
from lazarus.telemetry.metrics import Metrics
from lazarus.telemetry.routes import routes
from lazarus.web.app import build_app
from lazarus.web.server import WebServer

from . import ready as ready_lines
from .credentials import ensure_admin
from .datadir import DataDirLock
from .runtime import Runtime
from .sim_api import SimApi
from .standby import EXIT_DEPOSED, HaOptions, Standby

log = logging.getLogger("lazarus.daemon")

LIBVIRT_NAMES = ("kvm", "qemu", "libvirt")


def hypervisors(sim: SimCluster, vm_mad: str) -> dict[str, Hypervisor]:
    """The VMM drivers named in VM_MAD (Settings.vm_mad) that can run here."""
    wanted = vm_mad.replace(",", " ").split()
    drivers: dict[str, Hypervisor] = {}
    if "sim" in wanted:
        drivers["sim"] = SimHypervisor(sim)
    libvirt_names = [name for name in LIBVIRT_NAMES if name in wanted]
    if libvirt_names and importlib.util.find_spec("libvirt") is not None:
        from lazarus.drivers.vmm.libvirt import LibvirtHypervisor

        real = LibvirtHypervisor()
        for name in libvirt_names:
            drivers[name] = real
    for name in wanted:
        if name != "sim" and name not in LIBVIRT_NAMES:
            log.warning("lazarus: VM_MAD %s: no such driver; hosts with it fail their probes",
                        name)
    return drivers


@dataclass
class Daemon:
    settings: Settings
    data_dir: Path
    auth_file: Path | None = None
    on_ready: Callable[[str, Path, str], None] | None = None
    ha: HaOptions | None = None
    sim: SimCluster = field(init=False)
    url: str = field(init=False, default="")
    dashboard_url: str = field(init=False, default="")
    exit_code: int = field(init=False, default=0)

    async def run(self, stop: asyncio.Event | None = None) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = DataDirLock(self.data_dir)
        lock.acquire()  # DataDirBusy: another daemon drives this data directory
        try:
            await self._run(stop)
        finally:
            lock.release()
        return self.exit_code

    async def _run(self, stop: asyncio.Event | None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)  # `kill -USR2`: every task's stack
        clock = SystemClock()
        store = open_store(
            self.settings.db,
            data_dir=self.data_dir,
            password_file=_password_file(self.settings),
            statement_timeout_s=self.settings.db_statement_timeout,
        )
        log.info("lazarus: store %s", mask_db_url(self.settings.db) if self.settings.db
                 else f"sqlite:{self.data_dir / 'lazarus.db'}")  # fmt: skip
        standby: Standby | None = None
        if self.ha is not None:
            standby = Standby(self.ha, clock, f"{os.uname().nodename} pid {os.getpid()} "
                                              f"{self.data_dir}")
            if await standby.wait_elected(stop) is None:
                await standby.close()
                store.close()
                return
            assert standby.term is not None
            log.info("lazarus: elected leader, epoch %d", standby.term.epoch)
        try:
            await self._lead(store, clock, stop, standby)
        finally:
            if standby is not None:
                await standby.close()
            store.close()

    async def _lead(self, store: Any, clock: SystemClock, stop: asyncio.Event,
                    standby: Standby | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            # the Store port: reads delegated (FencedStore.__getattr__), writes epoch-checked
            core_store = cast("Store", standby.claim(store)) if standby is not None else store
        except InternalError as exc:  # the store is down, or a newer leader claimed first
            log.error("lazarus: elected, but the epoch cannot be claimed: %s; exiting for a "
                      "restart as a standby", exc)
            self.exit_code = EXIT_DEPOSED
            return
        self.sim = SimCluster(clock)
        hook_env = dict(os.environ)
        if self.settings.hooks_dir:
            hook_env["LAZARUS_HOOKS_DIR"] = self.settings.hooks_dir
        if self.settings.remote_hooks_dir:
            hook_env["LAZARUS_REMOTE_HOOKS_DIR"] = self.settings.remote_hooks_dir
        hook_executor = SubprocessHookExecutor.from_env(hook_env)
        hook_executor.records = GroupRecords(self.data_dir / "run" / "hooks")
        orphans = await hook_executor.reap_orphans()  # before their executions run again
        if orphans:
            log.warning("lazarus: killed %d hook process group(s) left running by the previous "
                        "daemon: %s", len(orphans), " ".join(map(str, orphans)))
        hook_executor.env["LAZARUS_DATA_DIR"] = str(self.data_dir)  # host_error's locks, logs
        drivers = hypervisors(self.sim, self.settings.vm_mad)
        # What operators watch (docs/metrics.md): the JSON event stream (a file, /events) and
        # the Prometheus metrics (/metrics), fed by the journal and three observation points.
        feed = EventFeed(self.data_dir / "events.jsonl")
        metrics = Metrics(store, clock.now, feed)
        metrics.prime()
        controller = Controller(
            core_store,
            clock,
            drivers,
            self.settings,
            datastore_root=str(self.data_dir / "datastores"),
            hook_executor=TimedHookExecutor(
                hook_executor, metrics, lambda hook_id: store.hook(hook_id).name, feed=feed
            ),
            # the host agents' storage heartbeats (docs/ha.md): read when HEARTBEAT_DIR is set
            heartbeats=FileBeats(self.settings.heartbeat_dir) if self.settings.heartbeat_dir
            else None,
        )
        controller.journal.listeners.append(metrics.on_events)
        controller.monitor.probe_listeners.append(
            lambda host, ok, seconds: metrics.probe(host.id, host.name, ok, seconds)
        )
        controller.monitor.round_listeners.append(metrics.round_done)
        admin_auth = self.auth_file or self.data_dir / "one_auth"
        auth_file, generated = ensure_admin(core_store, admin_auth)
        # The hooks' identity: the HA role's user with a fresh token (api/roles.py), never
        # oneadmin's password (docs/security.md, "Users, groups and rights").
        ensure_roles(core_store)
        ha_auth = self.data_dir / "ha_auth"
        ha_user, ha_token = auth.split_session(issue_ha_token(core_store))
        auth.write_auth_file(ha_auth, ha_user, ha_token, overwrite=True)
        del ha_token
        fence_key_file = self.data_dir / "fence_key"  # ft/fence_host's key: docs/security.md
        fence_key = auth.generate_fence_key(fence_key_file)
        hook_executor.env["LAZARUS_FENCE_KEY"] = str(fence_key_file.resolve())
        runtime = Runtime(loop)
        runtime.bind()
        # lazarus.sim.* operate the simulated cluster: served only when its driver is loaded.
        # Its machines' state lives next to the store, so a new leader finds them as they are.
        sim_state = _sim_state_dir(self.settings.db, self.data_dir) / "sim.json"
        sim_methods = (
            [SimApi(self.sim, controller, runtime.call, sim_state)]
            if "sim" in drivers else []
        )
        dispatcher = build_dispatcher(
            controller, auth.Authenticator(store.user_by_name, clock.now), run=runtime.call,
            fence_key=fence_key, extra_methods=sim_methods, admit=runtime.admit,
        )
        dispatcher.timer = metrics.api_call
        limits = Limits(request_timeout=self.settings.api_request_timeout)
        server = XmlRpcServer(
            dispatcher, self.settings.api_listen, self.settings.api_port, limits=limits,
            routes=routes(metrics, feed),
        )
        self.url = server.url
        hook_executor.callback(server.url, str(ha_auth.resolve()))
        web: WebServer | None = None
        if self.settings.web_port >= 0:  # the dashboard acts as its users, through the API
            web = WebServer(build_app(dispatcher, feed), self.settings.api_listen,
                            self.settings.web_port)
        await controller.start()
        server.start()
        if web is not None:
            await asyncio.to_thread(web.start)
            self.dashboard_url = web.url
        log.info(
            "lazarus: listening on %s; oneadmin credentials %s %s",
            server.url,
            "written to" if generated else "in",
            auth_file,
        )
        if self.on_ready is not None:
            self.on_ready(server.url, auth_file, self.dashboard_url)
        ends = [stop] + ([standby.deposed] if standby is not None else [])
        waits = [asyncio.ensure_future(e.wait()) for e in ends]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            if standby is not None and standby.deposed.is_set():
                log.warning("lazarus: stopped leading (%s); exiting for a restart as a standby",
                            standby.why)
                await controller.abort()  # at once, as a crash: nothing of it can land anyway
                feed.close()
                if web is not None:
                    await asyncio.to_thread(web.close)
                server.close()
                self.exit_code = EXIT_DEPOSED
            else:
                log.info("lazarus: stopping")
                feed.close()  # ends the event streams, so close() finds no stream thread busy
                if web is not None:
                    await asyncio.to_thread(web.close)
                server.close()
                await controller.stop()


def _sim_state_dir(db: str, data_dir: Path) -> Path:
    """Next to a SQLite store (shared by several controllers with --ha), else the data dir."""
    if kind(db) == "sqlite" and db:
        return sqlite_path(db, data_dir).parent
    return data_dir


def _password_file(settings: Settings) -> Path | None:
    return Path(settings.db_password_file) if settings.db_password_file else None


def _dump_tasks() -> None:
    """Log every pending asyncio task with its coroutine stack (a diagnostic for operators)."""
    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(file=out)
        log.warning("task %s:\n%s", task.get_name(), out.getvalue())


def serve(settings: Settings, data_dir: Path, auth_file: Path | None = None,
          ha: HaOptions | None = None) -> int:
    validate_store_url(settings.db, _password_file(settings))  # StoreUrlError: one line
    # `kill -USR1 <pid>` prints every thread's stack to stderr: for a daemon that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    def ready(url: str, path: Path, dashboard: str) -> None:
        print(ready_lines.LISTENING.format(url=url), flush=True)
        if dashboard:
            print(ready_lines.DASHBOARD.format(url=dashboard), flush=True)
        print(ready_lines.CREDENTIALS.format(path=path), flush=True)

    daemon = Daemon(settings, data_dir, auth_file, on_ready=ready, ha=ha)
    return asyncio.run(daemon.run())
