"""The XML-RPC transport of the controller API: OpenNebula's wire protocol over HTTP/1.1.

Who uses it: api/stack.py builds a `Registry` with the one.* method handlers and wraps it in
a `Dispatcher` with an `Authenticator` (api/auth.py); the daemon (app/) serves it with
`XmlRpcServer`, the simulator calls it through api/local.py; api/client.py uses the same wire
format (api/wire.py).

Per call (`Dispatcher.call`):
1. the first parameter must be the session string "user:password"; the injected
   authenticator turns it into a `User` or raises AuthenticationError. The session is never
   logged; log lines name the user only.
2. the remaining parameters are checked against the registered signature ("A:sii": after
   "A:" one letter per parameter including the session; s=str, i=32-bit int, b=bool),
   optional trailing parameters take their registered defaults. A wrong count or type is an
   RpcApiError, answered with the normal failure array (not a fault, not a traceback).
   (A=array: its members are the handler's to check.) Then the optional `authorize` hook
   (api/rights.py, the ACL rules) may refuse the call: AUTHORIZATION, nothing runs.
3. the handler `fn(ctx, *params)` runs; its value becomes [True, value, 0]. An ApiError
   becomes [False, "[method] text", code, resp_id, 0]; any other exception becomes INTERNAL
   with a generic text, the traceback goes to the server log only.
4. the optional observer (API hooks) sees (method, params after the session as received,
   result array, user) before the response is sent, so when a client's call returns, its
   observer has run. Calls refused for authentication or authorization are not observed.
   Observer errors are logged and ignored.
An unknown method is an XML-RPC fault (-506), as OpenNebula's xmlrpc-c answers (the Ruby CLI
fails the whole command on it; docs/api.md lists what is served).

Parsing and writing the XML-RPC documents is api/wire.py's job (hardened parsing).

The HTTP server (hardening, connection limits) is api/server.py's job.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar

from lazarus.domain.entities import User
from lazarus.domain.errors import ApiError, ErrorCode, InternalError, RpcApiError

from .wire import (
    INT32_MAX,
    INT32_MIN,
    XmlRpcParseError,
    dumps_fault,
    dumps_response,
    loads_call,
)

log = logging.getLogger("lazarus.api.xmlrpc")

FAULT_PARSE = -503  # xmlrpc-c's codes, which OpenNebula's clients see from oned
FAULT_NO_SUCH_METHOD = -506
_KINDS = {"s": "string", "i": "int", "b": "bool", "A": "array"}

Handler = Callable[..., object]
F = TypeVar("F", bound=Handler)


class Authenticate(Protocol):
    def __call__(self, session: str) -> User: ...


class Authorize(Protocol):
    """Raises AuthorizationError (or NoExistsError) when ctx.user may not make this call."""

    def __call__(self, ctx: CallContext, params: Sequence[object]) -> None: ...


class Observer(Protocol):
    def __call__(
        self, method: str, params: tuple[object, ...], result: list[object], user: User | None
    ) -> None: ...


@dataclass(frozen=True)
class CallContext:
    """What a handler knows about its call besides the parameters."""

    user: User
    method: str
    client_address: str
    lane: str = ""  # "ha" for the HA programs' calls (header X-Lazarus-Lane), else ""


LANES = ("", "ha")
# The lane of the authenticated call this thread is running, for app/runtime.py: it admits
# the writes of "ha" callers (ft/host_error) ahead of the others.
call_lane: ContextVar[str] = ContextVar("lazarus_call_lane", default="")


@dataclass(frozen=True)
class _Method:
    name: str
    fn: Handler
    kinds: str  # one letter per parameter after the session
    defaults: tuple[object, ...]  # for the trailing optional parameters


class Registry:
    """The methods the server answers, by OpenNebula name."""

    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}

    def register(
        self, name: str, fn: Handler, signature: str = "A:s", defaults: Sequence[object] = ()
    ) -> None:
        """Register `fn(ctx, *params)` under `name`.

        `signature` is OpenNebula's ("A:sii"), the first letter after "A:" being the session;
        `defaults` fill the last len(defaults) parameters when the client omits them, e.g.
        register("one.vm.deploy", fn, "A:siibis", defaults=(False, -1, "")).
        """
        if not signature.startswith("A:s"):
            raise ValueError(f"{name}: signature must start with 'A:s' (the session)")
        kinds = signature[3:]
        if any(k not in _KINDS for k in kinds):
            raise ValueError(f"{name}: signature letters must be among {''.join(_KINDS)}")
        if len(defaults) > len(kinds):
            raise ValueError(f"{name}: more defaults than parameters")
        if name in self._methods:
            raise ValueError(f"{name} is already registered")
        self._methods[name] = _Method(name, fn, kinds, tuple(defaults))

    def method(
        self, name: str, signature: str = "A:s", defaults: Sequence[object] = ()
    ) -> Callable[[F], F]:
        """Decorator form of `register`."""

        def decorate(fn: F) -> F:
            self.register(name, fn, signature, defaults)
            return fn

        return decorate

    def get(self, name: str) -> _Method | None:
        return self._methods.get(name)

    def names(self) -> list[str]:
        return sorted(self._methods)


# -- dispatch -------------------------------------------------------------------------------


class UnknownMethod(Exception):
    """Raised by Dispatcher.call for a name nobody registered (the server sends a fault)."""


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    return {int: "int", str: "string", float: "double", list: "array", dict: "struct"}.get(
        type(value), type(value).__name__
    )


def _check_params(m: _Method, params: Sequence[object]) -> list[object]:
    n_max = len(m.kinds)
    n_min = n_max - len(m.defaults)
    if not n_min <= len(params) <= n_max:
        expected = str(n_min) if n_min == n_max else f"{n_min} to {n_max}"
        raise RpcApiError(
            f"Wrong number of parameters: expected {expected} after the session, got {len(params)}."
        )
    checked: list[object] = []
    for pos, (kind, value) in enumerate(zip(m.kinds, params, strict=False), start=1):
        if kind == "s" and isinstance(value, str):
            checked.append(value)
        elif kind == "i" and isinstance(value, int) and not isinstance(value, bool):
            if not INT32_MIN <= value <= INT32_MAX:
                raise RpcApiError(f"Parameter {pos} is out of the 32-bit integer range.")
            checked.append(value)
        elif kind == "b" and isinstance(value, int) and value in (0, 1):
            checked.append(bool(value))
        elif kind == "A" and isinstance(value, list):
            checked.append(value)  # the handler checks the members
        else:
            raise RpcApiError(
                f"Wrong type for parameter {pos}: expected {_KINDS[kind]}, got {_type_name(value)}."
            )
    checked.extend(m.defaults[len(params) - n_min :])
    return checked


def _failure(method: str, exc: ApiError) -> list[object]:
    text = exc.message
    prefix = f"[{method}]"
    if not text.startswith(prefix):
        text = f"{prefix} {text}"
    return [False, text, int(exc.code), exc.resp_id, 0]


def _safe_name(session: object) -> str:
    if not isinstance(session, str) or ":" not in session:
        return "<malformed session>"
    return repr(session.partition(":")[0][:64])


class Dispatcher:
    """Runs one XML-RPC call: session check, parameter check, handler, return convention."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticate,
        observer: Observer | None = None,
        *,
        max_depth: int = 32,
        admit: Callable[[str], AbstractContextManager[None]] | None = None,
        authorize: Authorize | None = None,
        lane_of: Callable[[User, str], str] | None = None,
    ) -> None:
        self.registry = registry
        self._authenticate = authenticator
        # After the parameter check, before the handler (api/rights.py: ACL rules).
        self._authorize = authorize
        # Which lane an authenticated user may have (api/rights.py: "ha" for the oneadmin
        # and ha groups only); None: the lane asked for.
        self._lane_of = lane_of
        self._observer = observer
        self.max_depth = max_depth
        # Around each authenticated handler, by lane: app/runtime.py bounds how many
        # non-HA handlers run at once.
        self._admit = admit or (lambda lane: nullcontext())
        # Told each answered call's method and seconds (parse to render): the API latency
        # metric (telemetry/metrics.py). Must not raise.
        self.timer: Callable[[str, float], None] | None = None

    def authenticate(self, session: str) -> User:
        """The user of a "user:password" session (AuthenticationError if none): for the
        transport's other routes (api/server.py), which authenticate like every call."""
        return self._authenticate(session)

    def call(
        self, method: str, params: Sequence[object], client_address: str = "", lane: str = ""
    ) -> list[object]:
        """The OpenNebula result array of `method(*params)`; UnknownMethod if unregistered."""
        return self._call(method, params, client_address, lane)[0]

    def _call(
        self, method: str, params: Sequence[object], client_address: str, lane: str
    ) -> tuple[list[object], User | None]:
        m = self.registry.get(method)
        if m is None:
            raise UnknownMethod(method)
        user: User | None = None
        session = params[0] if params else None
        rest = tuple(params[1:])
        try:
            if not isinstance(session, str):
                raise RpcApiError("The first parameter must be the session string.")
            try:
                user = self._authenticate(session)
            except ApiError:
                log.info(
                    "%s: authentication failed for user %s from %s",
                    method,
                    _safe_name(session),
                    client_address,
                )
                raise
            args = _check_params(m, rest)
            lane = lane if lane in LANES else ""
            if lane and self._lane_of is not None:
                lane = self._lane_of(user, lane)
            ctx = CallContext(user, method, client_address, lane)
            if self._authorize is not None:
                self._authorize(ctx, args)
            token = call_lane.set(lane)  # only authenticated callers choose a lane
            try:
                with self._admit(lane):
                    value = m.fn(ctx, *args)
            finally:
                call_lane.reset(token)
            result: list[object] = [True, value, 0]
        except ApiError as exc:
            result = _failure(method, exc)
        except Exception:
            log.error(
                "%s by %s from %s failed:\n%s",
                method,
                user.name if user else "?",
                client_address,
                traceback.format_exc(),
            )
            result = _failure(method, InternalError("Internal error, see the daemon log."))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s by %s from %s -> %s",
                method,
                user.name if user else "?",
                client_address,
                "ok" if result[0] else f"error 0x{result[2]:x}",
            )
        # Only authenticated, authorized calls reach API hooks: each observed call can store
        # an event and start a hook command, so anonymous callers must not be able to queue
        # work ahead of ft/host_error (500 bogus calls once delayed a failover by a minute).
        refused = not result[0] and result[2] in (ErrorCode.AUTHENTICATION, ErrorCode.AUTHORIZATION)
        if self._observer is not None and user is not None and not refused:
            try:
                self._observer(method, rest, result, user)
            except Exception:
                log.error("API observer failed after %s:\n%s", method, traceback.format_exc())
        return result, user

    def handle(self, body: bytes, client_address: str = "") -> bytes:
        """A request body -> the response body (always a valid methodResponse)."""
        return self.handle_call(body, client_address)[0]

    def handle_call(
        self, body: bytes, client_address: str = "", lane: str = ""
    ) -> tuple[bytes, bool]:
        """handle(), and whether the caller authenticated (the server closes the connection
        of one who did not, api/server.py)."""
        timer = self.timer
        start = time.perf_counter() if timer is not None else 0.0
        response, authenticated, method = self._handle(body, client_address, lane)
        if timer is not None and method:
            try:
                timer(method, time.perf_counter() - start)
            except Exception:
                log.exception("API timer failed")
        return response, authenticated

    def _handle(self, body: bytes, client_address: str, lane: str) -> tuple[bytes, bool, str]:
        """handle_call(), and the name of the registered method it ran ("" if none)."""
        try:
            method, params = loads_call(body, self.max_depth)
        except XmlRpcParseError as exc:
            # Only the kind of error: parser messages may quote the body, which holds secrets.
            cause = type(exc.__cause__ or exc).__name__
            log.info("unparseable request from %s (%s)", client_address, cause)
            fault = dumps_fault(FAULT_PARSE, f"Could not parse the XML-RPC call: {exc}")
            return fault, False, ""
        try:
            result, user = self._call(method, params, client_address, lane)
        except UnknownMethod:
            fault = dumps_fault(FAULT_NO_SUCH_METHOD, f"Method '{method[:200]}' not defined")
            return fault, False, ""
        try:
            return dumps_response(result), user is not None, method
        except (TypeError, OverflowError) as exc:
            # A handler returned something XML-RPC cannot carry (the observer has already
            # seen the call as a success; this is a handler bug, so it is logged loudly).
            log.error("%s returned an unsendable value: %s", method, exc)
            error = InternalError("Internal error, see the daemon log.")
            return dumps_response(_failure(method, error)), user is not None, method


from .server import Limits, XmlRpcServer  # noqa: E402  (re-exported)

__all__ = [
    "Authenticate",
    "Authorize",
    "CallContext",
    "Dispatcher",
    "Limits",
    "Observer",
    "Registry",
    "UnknownMethod",
    "XmlRpcServer",
]
