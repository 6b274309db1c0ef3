"""The XML-RPC transport of the controller API: OpenNebula's wire protocol over HTTP/1.1.

Who uses it: the daemon (app/) builds a `Registry`, registers the one.* method handlers,
wraps it in a `Dispatcher` with an `Authenticator` (api/auth.py) and serves it with
`XmlRpcServer`; api/client.py uses the same wire format (api/wire.py).

Per call (`Dispatcher.call`):
1. the first parameter must be the session string "user:password"; the injected
   authenticator turns it into a `User` or raises AuthenticationError. The session is never
   logged; log lines name the user only.
2. the remaining parameters are checked against the registered signature ("A:sii": after
   "A:" one letter per parameter including the session; s=str, i=32-bit int, b=bool),
   optional trailing parameters take their registered defaults. A wrong count or type is an
   RpcApiError, answered with the normal failure array (not a fault, not a traceback).
3. the handler `fn(ctx, *params)` runs; its value becomes [True, value, 0]. An ApiError
   becomes [False, "[method] text", code, resp_id, 0]; any other exception becomes INTERNAL
   with a generic text, the traceback goes to the server log only.
4. the optional observer (API hooks) sees (method, params after the session as received,
   result array, user) before the response is sent, so when a client's call returns, its
   observer has run. Calls refused for authentication or authorization are not observed.
   Observer errors are logged and ignored.
An unknown method is an XML-RPC fault (-506), as OpenNebula's xmlrpc-c answers; the Ruby CLI
prints ERROR for that field and carries on.

Parsing and writing the XML-RPC documents is api/wire.py's job (hardened parsing).

HTTP hardening: POST to the configured path only; Content-Length required (chunked or
missing: 411) and checked against the body limit before reading (413, connection closed);
an idle timeout per socket read and a total deadline for receiving one request body (408);
a cap on concurrent connections (503); TCP_NODELAY and single-write responses so keep-alive
clients (pyone's requests session, api/client.py) are not slowed by Nagle/delayed ACK.
The deadline uses time.monotonic: this is real transport time at the socket, not the
controller's (injected) clock.

Threads: one thread per connection (ThreadingHTTPServer), so handlers and the authenticator
run concurrently and must be thread-safe.
"""

from __future__ import annotations

import logging
import re
import selectors
import socket
import socketserver
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar

from lazarus.domain.entities import User
from lazarus.domain.errors import ApiError, ErrorCode, InternalError, RpcApiError

from . import defaults
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
_KINDS = {"s": "string", "i": "int", "b": "bool"}
_DIGITS = re.compile("[0-9]{1,18}")

Handler = Callable[..., object]
F = TypeVar("F", bound=Handler)


class Authenticate(Protocol):
    def __call__(self, session: str) -> User: ...


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
    ) -> None:
        self.registry = registry
        self._authenticate = authenticator
        self._observer = observer
        self.max_depth = max_depth

    def call(self, method: str, params: Sequence[object], client_address: str = "") -> list[object]:
        """The OpenNebula result array of `method(*params)`; UnknownMethod if unregistered."""
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
            value = m.fn(CallContext(user, method, client_address), *args)
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
        return result

    def handle(self, body: bytes, client_address: str = "") -> bytes:
        """A request body -> the response body (always a valid methodResponse)."""
        try:
            method, params = loads_call(body, self.max_depth)
        except XmlRpcParseError as exc:
            # Only the kind of error: parser messages may quote the body, which holds secrets.
            cause = type(exc.__cause__ or exc).__name__
            log.info("unparseable request from %s (%s)", client_address, cause)
            return dumps_fault(FAULT_PARSE, f"Could not parse the XML-RPC call: {exc}")
        try:
            result = self.call(method, params, client_address)
        except UnknownMethod:
            return dumps_fault(FAULT_NO_SUCH_METHOD, f"Method '{method[:200]}' not defined")
        try:
            return dumps_response(result)
        except (TypeError, OverflowError) as exc:
            # A handler returned something XML-RPC cannot carry (the observer has already
            # seen the call as a success; this is a handler bug, so it is logged loudly).
            log.error("%s returned an unsendable value: %s", method, exc)
            error = InternalError("Internal error, see the daemon log.")
            return dumps_response(_failure(method, error))


# -- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    max_body: int = 8 * 1024 * 1024  # bytes; larger requests get 413
    idle_timeout: float = 30.0  # seconds without a byte from the client
    request_timeout: float = 60.0  # seconds to receive one whole request body
    max_connections: int = 128  # concurrent connections; more get 503


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Lazarus"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.limits.idle_timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s: " + format, self.address_string(), *args)

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it ("Expect: 100-continue").
        length = self.headers.get("Content-Length", "").strip()
        if _DIGITS.fullmatch(length) and int(length) > self.server.limits.max_body:
            self._plain_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        self._plain_error(HTTPStatus.METHOD_NOT_ALLOWED, "XML-RPC needs POST")

    def _plain_error(self, status: HTTPStatus, text: str) -> None:
        self.send_error(status, text)  # also sends "Connection: close" and closes

    def do_POST(self) -> None:
        limits = self.server.limits
        if self.path.split("?", 1)[0] != self.server.rpc_path:
            return self._plain_error(HTTPStatus.NOT_FOUND, f"use {self.server.rpc_path}")
        if "Transfer-Encoding" in self.headers:
            return self._plain_error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length body")
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            return self._plain_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "no content encodings")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return self._plain_error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0].strip()):
            return self._plain_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        length = int(lengths[0])
        if length > limits.max_body:
            log.info("refused a %d-byte request from %s", length, self.client_address[0])
            return self._plain_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"requests are limited to {limits.max_body} bytes",
            )
        body = self._read_body(length, limits.request_timeout)
        if body is None:
            return None
        response = self.server.dispatcher.handle(body, self.client_address[0])
        head = (
            f"HTTP/1.1 200 OK\r\nServer: Lazarus\r\nDate: {self.date_time_string()}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(response)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("ascii") + b"\r\n" + response)  # one write: no Nagle stall
        return None

    def _read_body(self, length: int, request_timeout: float) -> bytes | None:
        deadline = time.monotonic() + request_timeout
        chunks: list[bytes] = []
        remaining = length
        while remaining:
            chunk = self.rfile.read1(min(remaining, 65536))  # returns after one socket read
            if not chunk:
                self.close_connection = True
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
            if remaining and time.monotonic() > deadline:
                log.info("request from %s too slow, dropped", self.client_address[0])
                self._plain_error(HTTPStatus.REQUEST_TIMEOUT, "request body too slow")
                return None
        return b"".join(chunks)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], dispatcher: Dispatcher, rpc_path: str, limits: Limits
    ) -> None:
        self.dispatcher = dispatcher
        self.rpc_path = rpc_path
        self.limits = limits
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(): a DNS lookup that can stall
        # for seconds on a badly configured resolver, for a name we never use.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            busy = len(self._open) >= self.limits.max_connections
            if not busy:
                self._open.add(request)
        if busy:
            log.warning("too many connections, refused %s", client_address[0])
            try:
                request.settimeout(1.0)
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.error("connection from %s failed:\n%s", client_address[0], traceback.format_exc())

    def drop_connections(self) -> None:
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class XmlRpcServer:
    """The XML-RPC endpoint. Binds in the constructor (port 0 picks a free port; see `port`).

    Use `serve_forever()` in the caller's thread, or `start()` for a background thread;
    `close()` stops serving, drops open connections and releases the port.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        host: str = defaults.DEFAULT_LISTEN_HOST,
        port: int = defaults.DEFAULT_PORT,
        path: str = defaults.DEFAULT_PATH,
        limits: Limits | None = None,
    ) -> None:
        self._httpd = _HTTPServer((host, port), dispatcher, path, limits or Limits())
        # close() writes to this pair to wake the accept loop at once (no polling interval).
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self._httpd.rpc_path}"

    def serve_forever(self) -> None:
        """Accept connections until close(); each connection is served in its own thread."""
        if self._stop.is_set():
            return
        self._stopped.clear()
        httpd = self._httpd
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(httpd, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._stop.is_set():
                    for key, _ in selector.select():
                        if key.fileobj is httpd and not self._stop.is_set():
                            self._accept()
        finally:
            self._stopped.set()

    def _accept(self) -> None:
        httpd = self._httpd
        try:
            request, client_address = httpd.get_request()
        except OSError:
            return
        try:
            httpd.process_request(request, client_address)
        except Exception:
            httpd.handle_error(request, client_address)
            httpd.shutdown_request(request)

    def start(self) -> None:
        """serve_forever() in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="xmlrpc", daemon=True)
        self._stopped.clear()
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, release the port and drop open connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._stopped.wait()
        self._httpd.server_close()
        self._httpd.drop_connections()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> XmlRpcServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "Authenticate",
    "CallContext",
    "Dispatcher",
    "Limits",
    "Observer",
    "Registry",
    "UnknownMethod",
    "XmlRpcServer",
]
