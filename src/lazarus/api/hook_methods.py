"""The one.hook* methods and the API-hook observer.

    hooks = HookApi(controller.hooks, controller.hooks.store, controller.store, runtime.call)
    hooks.register(registry)                     # one.hook.*, one.hookpool.info, one.hooklog.info
    dispatcher = Dispatcher(registry, authenticator, observer=hooks.observe)

api/stack.py's build_dispatcher does exactly this for every composition root.

Reads (info, pool, log) run in the HTTP thread straight from the store; changes run on the
controller's loop through `run` (app/runtime.py), like api/methods.py.

`observe` is the Dispatcher's observer: after every call, before the answer is sent, it
records an API event for calls some hook listens to (`HookManager.hooked_calls`, an in-memory
set checked first, so unhooked calls cost one set lookup). The event's body is the CALL_INFO
document ($API); the session parameter is always masked, as are the password parameters of
the user calls, and every text parameter goes through the one masking rule
(domain/secrets.py: a FENCE PASSWORD in a one.host.update template is shown as "****").
Recording goes through `run`, so the event is durable when the client gets its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lazarus.core.hooks import HookManager
from lazarus.domain.entities import User
from lazarus.domain.errors import ActionError, AllocateError, InternalError
from lazarus.domain.secrets import MASK, mask_text
from lazarus.domain.xml import host_xml, vm_xml
from lazarus.domain.xml.hooks import call_info_xml, hook_pool_xml, hook_xml, hooklog_xml
from lazarus.ports.hooks import HookReader
from lazarus.ports.store import StoreReader

from .methods import Runner, direct, parse_template
from .rights import Authorizer, plain_auth
from .validation import check_name
from .xmlrpc import CallContext, Registry

# Parameters (position after the session, from 0) never written into CALL_INFO.
SECRET_PARAMS: dict[str, tuple[int, ...]] = {
    "one.user.allocate": (1,),
    "one.user.passwd": (1,),
    "one.user.login": (1,),
}
# Calls whose answer is a secret (the login token): CALL_INFO shows it masked.
SECRET_RESULTS = frozenset({"one.user.login"})


class HookApi:
    def __init__(
        self,
        manager: HookManager,
        store: HookReader,
        objects: StoreReader | None = None,
        run: Runner = direct,
        rights: Authorizer | None = None,
    ) -> None:
        self.manager = manager
        self.store = store
        self.objects = objects  # for EXTRA of allocate calls
        self.run = run
        self.rights = rights  # one.hookpool.info lists the hooks the caller may USE

    # -- handlers -----------------------------------------------------------------------------
    def allocate(self, ctx: CallContext, text: str) -> int:
        template = parse_template(text, AllocateError, "hook")
        return self.run(lambda: self.manager.allocate(template))

    def info(self, ctx: CallContext, hook_id: int, decrypt: bool = False) -> str:
        hook = self.store.hook(hook_id)
        return hook_xml(hook, self.store.hook_records(hook_id))

    def delete(self, ctx: CallContext, hook_id: int) -> int:
        return self.run(lambda: self.manager.delete(hook_id))

    def update(self, ctx: CallContext, hook_id: int, text: str, append: int = 0) -> int:
        template = parse_template(text, InternalError, "hook")
        return self.run(lambda: self.manager.update(hook_id, template, bool(append)))

    def rename(self, ctx: CallContext, hook_id: int, name: str) -> int:
        check_name(name, ActionError)
        return self.run(lambda: self.manager.rename(hook_id, name))

    def lock(self, ctx: CallContext, hook_id: int, level: int = 1, test: bool = False) -> int:
        return self.run(lambda: self.manager.lock(hook_id, level, test))

    def unlock(self, ctx: CallContext, hook_id: int) -> int:
        return self.run(lambda: self.manager.unlock(hook_id))

    def retry(self, ctx: CallContext, hook_id: int, execution_id: int) -> int:
        return self.run(lambda: self.manager.retry(hook_id, execution_id))

    def pool_info(self, ctx: CallContext, *_filters: int) -> str:
        hooks = self.store.hooks()
        if self.rights is not None:
            hooks = self.rights.visible(ctx.user, hooks, lambda h: plain_auth("HOOK", h.id))
        return hook_pool_xml(hooks)

    def log_info(self, ctx: CallContext, min_ts: int, max_ts: int, hook_id: int, rc: int) -> str:
        return hooklog_xml(self.store.hook_log(min_ts, max_ts, hook_id, rc))

    # -- API hooks ----------------------------------------------------------------------------
    def observe(
        self, method: str, params: tuple[object, ...], result: list[object], user: User | None
    ) -> None:
        if method not in self.manager.hooked_calls:
            return
        secret = SECRET_PARAMS.get(method, ())
        shown = tuple(
            MASK if i in secret else mask_text(p) if isinstance(p, str) else p
            for i, p in enumerate(params)
        )
        answer = [mask_text(r) if isinstance(r, str) else r for r in result]  # error texts
        if method in SECRET_RESULTS and result and result[0] is True:
            answer[1] = MASK
        document = call_info_xml(shown, answer, self._extra(method, result))
        self.run(lambda: self.manager.record_api(method, document))

    def _extra(self, method: str, result: list[object]) -> str:
        """EXTRA: the allocated object, for the allocate calls we can render."""
        if self.objects is None or not result or result[0] is not True:
            return ""
        value = result[1]
        if not isinstance(value, int):
            return ""
        try:
            if method == "one.vm.allocate":
                return vm_xml(self.objects.vm(value))
            if method == "one.host.allocate":
                return host_xml(self.objects.host(value))
            if method == "one.hook.allocate":
                return hook_xml(self.store.hook(value))
        except Exception:  # the object may be gone already; EXTRA is optional
            return ""
        return ""

    # -- binding ------------------------------------------------------------------------------
    def register(self, registry: Registry) -> None:
        table: list[tuple[str, Callable[..., Any], str, tuple[Any, ...]]] = [
            ("one.hook.allocate", self.allocate, "A:ss", ()),
            ("one.hook.info", self.info, "A:sib", (False,)),
            ("one.hook.delete", self.delete, "A:si", ()),
            ("one.hook.update", self.update, "A:sisi", (0,)),
            ("one.hook.rename", self.rename, "A:sis", ()),
            ("one.hook.lock", self.lock, "A:siib", (1, False)),
            ("one.hook.unlock", self.unlock, "A:si", ()),
            ("one.hook.retry", self.retry, "A:sii", ()),
            ("one.hookpool.info", self.pool_info, "A:siii", (-2, -1, -1)),
            ("one.hooklog.info", self.log_info, "A:siiii", ()),
        ]
        for name, fn, signature, defaults in table:
            registry.register(name, fn, signature, defaults)
        # CALL must name a method that exists: everything registered so far and later.
        self.manager.known_calls = _Names(registry)


class _Names:
    """A live view of the registry's method names (for CALL validation)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._registry.get(name) is not None

    def __iter__(self) -> Any:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry.names())
