"""The one way to build the API stack: the method tables over a controller, behind a
Dispatcher that checks sessions and feeds API hooks.

    dispatcher = build_dispatcher(controller, Authenticator(store.user_by_name),
                                  run=runtime.call, fence_key=key, extra_methods=[sim_api])
    XmlRpcServer(dispatcher, ...)                  # the daemon (app/daemon.py)
    LocalClient(dispatcher, session)               # the simulator (sim/world.py), tests

Every call is authorized by api/rights.py's Authorizer (the ACL rules) before its handler.
It registers `one.*` and `lazarus.host.*` (api/methods.py), users, groups and ACL rules
(api/users.py) and, when the controller runs
hooks, `one.hook*` (api/hook_methods.py) whose observer records the API events hooks listen
to. `extra_methods` are further tables registered after those (the daemon's `lazarus.sim.*`,
app/sim_api.py, when the simulated driver is configured). `run` is how changes reach the
controller's loop (app/runtime.py: Runtime.call; `direct` when the caller is on it already),
`admit` bounds concurrent handlers per lane (Runtime.admit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Protocol

from lazarus.core.controller import Controller

from .hook_methods import HookApi
from .methods import Api, Runner, direct
from .monitoring import MonitoringApi
from .rights import Authorizer
from .templates import TemplateApi
from .users import UserApi
from .xmlrpc import Authenticate, Dispatcher, Registry


class MethodTable(Protocol):
    def register(self, registry: Registry) -> None: ...


def build_dispatcher(
    controller: Controller,
    authenticate: Authenticate,
    *,
    run: Runner = direct,
    fence_key: str | None = None,
    extra_methods: Iterable[MethodTable] = (),
    admit: Callable[[str], AbstractContextManager[None]] | None = None,
) -> Dispatcher:
    registry = Registry()
    hooks = controller.hooks
    authorizer = Authorizer(controller.store, hooks.store.hook if hooks is not None else None)
    Api(controller, run, fence_key, rights=authorizer).register(registry)
    UserApi(controller.store, authorizer, run, now=controller.clock.now).register(registry)
    MonitoringApi(controller.store, authorizer, controller.clock.now).register(registry)
    TemplateApi(controller, authorizer, run).register(registry)
    observer = None
    if hooks is not None:
        hook_api = HookApi(hooks, hooks.store, controller.store, run, rights=authorizer)
        hook_api.register(registry)
        observer = hook_api.observe
    for table in extra_methods:
        table.register(registry)
    return Dispatcher(registry, authenticate, observer, admit=admit, authorize=authorizer,
                      lane_of=authorizer.lane)
