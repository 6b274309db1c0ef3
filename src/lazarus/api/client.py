"""The Python client of the Lazarus XML-RPC API.

Who uses it: the CLI (cli/), the hook commands (ft/host_error and friends) and tests.

    client = Client.from_env()           # $LAZARUS_XMLRPC/$ONE_XMLRPC + $LAZARUS_AUTH/$ONE_AUTH
    xml = client.call("one.vm.info", 7)  # the session is added as the first parameter

`call` returns the value of a successful call ([True, value, 0] -> value) and raises the
domain.errors ApiError subclass that matches the failure's code (NoExistsError for 0x400 and
so on), with OpenNebula's message "[method] text" and resp_id kept. An unknown code raises
`UnknownApiError` (carrying the raw code), an XML-RPC fault (e.g. unknown method) raises
`RpcFaultError`, and anything on the way (refused connection, timeout, an HTTP error status,
an unparseable answer) raises `TransportError`, which is also a ConnectionError:
"cannot reach the Lazarus daemon at URL: ...".

One persistent HTTP/1.1 connection (http.client) is kept open and reused, which is what makes
hundreds of calls per second possible. When a reused connection turns out to have been closed
by the server while idle (the request never reached it), the call is sent once more on a fresh
connection at once. Beyond that, with backoff (0.1 s doubling, `retries` times, `sleep`
injectable):
* HTTP 503 is retried for every call: the server answers 503 only when it refuses a
  connection, before reading any request (api/server.py), so nothing has run;
* a reset of a fresh connection is retried for reads only (`is_read_call`: *.info, pools,
  system.version/config), which are safe to run twice; a write may have run and is not.
So a daemon at its connection cap for a moment (api/server.py) no longer fails ft/host_error.

`store_wait=S` (ft/host_error: app/host_error.py): a *write* the daemon refused because its
store could not write (code INTERNAL, "Store error: ...": full disk, read-only database; the
transaction was rolled back, nothing of it landed) is sent again with backoff (1 s doubling
to 30 s, `clock` and `sleep` injectable) for up to S seconds, each retry told to
`on_store_retry`; after S seconds the last error is raised, saying so. A call that made
several transactions may have landed its first ones: the retry meets the new state (host_error
checks every VM's state before acting). 0 (the default: CLI, tests) raises at once.

`lane="ha"` sends "X-Lazarus-Lane: ha": the daemon runs this caller's writes ahead of other
API writes (app/runtime.py); ft/host_error and ft/fence_host use it.

Thread safety: a Client may be shared between threads, but calls are serialized over its one
connection by a lock; give each thread its own Client for parallel calls.

The session string is kept private: it appears in no message, exception or repr.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.parse
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any

from lazarus.domain.errors import (
    ActionError,
    AllocateError,
    ApiError,
    AuthenticationError,
    AuthorizationError,
    InternalError,
    LazarusError,
    LockedError,
    NoExistsError,
    RpcApiError,
    is_store_failure,
)
from lazarus.domain.hooks import is_read_call

from . import auth, defaults
from .wire import XmlRpcParseError, dumps_call, loads_response

_BY_CODE: dict[int, type[ApiError]] = {
    cls.code: cls
    for cls in (
        AuthenticationError,
        AuthorizationError,
        NoExistsError,
        ActionError,
        RpcApiError,
        InternalError,
        AllocateError,
        LockedError,
    )
}
# The server closed an idle keep-alive connection before our request reached it.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
RETRIES = 3
FIRST_BACKOFF = 0.1  # seconds, doubling, at most MAX_BACKOFF
MAX_BACKOFF = 2.0
STORE_FIRST_BACKOFF, STORE_MAX_BACKOFF = 1.0, 30.0  # writes the store refused (store_wait)


class _Reset(Exception):
    """A fresh connection was reset or closed: the request may or may not have run."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class TransportError(LazarusError, ConnectionError):
    """The daemon could not be reached or did not answer with XML-RPC."""


class RpcFaultError(LazarusError):
    """The daemon answered with an XML-RPC fault (unknown method, unparseable call)."""

    def __init__(self, fault_code: int, fault_string: str) -> None:
        super().__init__(f"XML-RPC fault {fault_code}: {fault_string}")
        self.fault_code = fault_code
        self.fault_string = fault_string


class UnknownApiError(ApiError):
    """A failure whose code Lazarus does not know (e.g. REPLICATION from a real oned)."""

    def __init__(self, message: str, resp_id: int, remote_code: int) -> None:
        super().__init__(message, resp_id)
        self.remote_code = remote_code


def raise_for_result(method: str, result: Any) -> Any:
    """The value of an OpenNebula result array, or the matching ApiError raised."""
    if not isinstance(result, list) or len(result) < 2 or not isinstance(result[0], bool):
        raise TransportError(f"{method}: the answer is not an OpenNebula result array")
    if result[0]:
        return result[1]
    message = str(result[1])
    code = result[2] if len(result) > 2 and isinstance(result[2], int) else -1
    resp_id = result[3] if len(result) > 3 and isinstance(result[3], int) else -1
    cls = _BY_CODE.get(code)
    if cls is None:
        raise UnknownApiError(message, resp_id, code)
    raise cls(message, resp_id)


class Client:
    """An XML-RPC client for one endpoint and one session ("user:password")."""

    def __init__(
        self,
        endpoint: str,
        session: str,
        *,
        timeout: float = 60.0,
        lane: str = "",
        retries: int = RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        store_wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        on_store_retry: Callable[[str], None] | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"not an http(s) XML-RPC endpoint: {endpoint!r}")
        self.endpoint = endpoint
        self.user = session.partition(":")[0]
        self._session = session
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path or "/"
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._headers = {"Content-Type": "text/xml", "Accept": "text/xml"}
        if lane:
            self._headers["X-Lazarus-Lane"] = lane
        self._retries = max(0, retries)
        self._sleep = sleep
        self._store_wait = store_wait
        self._clock = clock
        self._on_store_retry = on_store_retry

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, timeout: float = 60.0, lane: str = "",
        **options: Any,
    ) -> Client:
        """Endpoint from defaults.endpoint(), session from the resolved one_auth file;
        `options` as the constructor's (store_wait, on_store_retry, ...)."""
        env = os.environ if env is None else env
        session = auth.read_auth_file(auth.resolve_auth_file(env))
        return cls(defaults.endpoint(env), session, timeout=timeout, lane=lane, **options)

    def __repr__(self) -> str:
        return f"Client({self.endpoint!r}, user={self.user!r})"

    def call(self, method: str, *params: object) -> Any:
        """Call `method(session, *params)`; returns the value or raises (see module doc)."""
        if self._store_wait <= 0 or is_read_call(method):
            return self._call_once(method, params)
        deadline = self._clock() + self._store_wait
        delay, attempt = STORE_FIRST_BACKOFF, 1
        while True:
            try:
                return self._call_once(method, params)
            except InternalError as exc:
                left = deadline - self._clock()
                if not is_store_failure(exc):
                    raise
                if left <= 0:
                    raise InternalError(
                        f"{exc.message} (the store refused this write for "
                        f"{self._store_wait:g} s; gave up)", exc.resp_id) from exc
                wait = min(delay, left)
                if self._on_store_retry is not None:
                    self._on_store_retry(
                        f"{method}: the store refused the write ({exc.message}); "
                        f"retrying in {wait:g} s (attempt {attempt})")
                self._sleep(wait)
                delay, attempt = min(delay * 2, STORE_MAX_BACKOFF), attempt + 1

    def _call_once(self, method: str, params: tuple[object, ...]) -> Any:
        body = dumps_call(method, [self._session, *params])  # IntEnum goes out as int
        status, reason, data = self._send(method, body)
        if status != 200:
            raise TransportError(
                f"the Lazarus daemon at {self.endpoint} answered HTTP {status} {reason}"
            )
        try:
            result = loads_response(data)
        except xmlrpc.client.Fault as fault:
            raise RpcFaultError(fault.faultCode, fault.faultString) from None
        except XmlRpcParseError as exc:
            raise TransportError(
                f"the Lazarus daemon at {self.endpoint} sent an unreadable answer: {exc}"
            ) from exc
        return raise_for_result(method, result)

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _send(self, method: str, body: bytes) -> tuple[int, str, bytes]:
        """_post with the bounded retries of the module docstring."""
        delay = FIRST_BACKOFF
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                with self._lock:
                    status, reason, data = self._post(body)
            except _Reset as exc:
                if last or not is_read_call(method):
                    raise self._unreachable(exc.cause) from exc.cause
            else:
                if status != 503 or last:
                    return status, reason, data
            self._sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
        raise AssertionError("unreachable")

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        headers = self._headers
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            try:
                # http.client sends headers and a bytes body in one write: no Nagle stall.
                conn.request("POST", self._path, body, headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    self._drop()
                return response.status, response.reason, data
            except _STALE as exc:
                self._drop()
                if reused and attempt == 1:
                    continue
                raise _Reset(exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                raise self._unreachable(exc) from exc
        raise AssertionError("unreachable")

    def _unreachable(self, exc: BaseException) -> TransportError:
        reason = str(exc) or type(exc).__name__
        return TransportError(f"cannot reach the Lazarus daemon at {self.endpoint}: {reason}")

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
