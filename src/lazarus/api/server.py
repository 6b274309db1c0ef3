"""The HTTP/1.1 server of the XML-RPC API: one thread per connection, hardened.

Who uses it: the daemon (app/daemon.py) serves a Dispatcher (api/xmlrpc.py) with
`XmlRpcServer`; tests start it on port 0.

HTTP hardening: POST to the configured path only; Content-Length required (chunked or
missing: 411) and checked against the body limit before reading (413, connection closed);
TCP_NODELAY and single-write responses so keep-alive clients (pyone's requests session,
api/client.py) are not slowed by Nagle/delayed ACK.

Time and connection limits (once, 50 connections trickling a byte every 10 s held 50
threads for 130 s; at the connection cap every caller, ft/host_error included, got 503):
* every socket read waits at most `idle_timeout`, and one whole request (request line,
  headers and body) must arrive within `request_timeout` of its first byte, or of the accept
  for a connection's first request (`DeadlineReader`): a slow body is answered 408, slow
  headers close the connection;
* `max_connections` concurrent connections, of which the last `reserved_connections` are
  kept for loopback peers (the hook commands, ft/host_error among them, call back from the
  controller's host): a remote peer beyond the soft cap gets 503 (`admits`), and the refused
  socket is closed without a reset (api/linger.py), so the client reads that 503;
* a connection whose call failed authentication is closed after the answer, so an
  unauthenticated client cannot keep a slot with keep-alive;
* the listen backlog is `backlog` (128), not socketserver's 5.
503 is only ever answered before a request is read, so a client may resend any call after
it (api/client.py does).
The deadlines use time.monotonic (injectable for tests): this is real transport time at the
socket, not the controller's (injected) clock.

Other routes (`routes`, GET only): /metrics and /events (telemetry/, wired by app/daemon.py).
Each is authenticated like every call, with HTTP Basic credentials of a Lazarus user (the
same "user:password" as the XML-RPC session, which is what Prometheus' basic_auth sends);
no credentials or wrong ones: 401 and the connection is closed. A GET carrying a body is
refused (400). A route answers a `Reply`: a body, or an iterator of chunks streamed until it
ends (server-sent events: the response has no length and closes the connection at its end).

Threads: one thread per connection (ThreadingHTTPServer), so handlers and the authenticator
run concurrently and must be thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import logging
import re
import selectors
import socket
import socketserver
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from lazarus.domain.entities import User
from lazarus.domain.errors import ApiError

from . import defaults
from .linger import Lingerer

if TYPE_CHECKING:
    from .xmlrpc import Dispatcher

log = logging.getLogger("lazarus.api.xmlrpc")

_DIGITS = re.compile("[0-9]{1,18}")
LANE_HEADER = "X-Lazarus-Lane"


@dataclass(frozen=True)
class Limits:
    max_body: int = 8 * 1024 * 1024  # bytes; larger requests get 413
    idle_timeout: float = 30.0  # seconds without a byte from the client
    request_timeout: float = 10.0  # seconds to receive one whole request (line, headers, body)
    max_connections: int = 128  # concurrent connections; more get 503
    reserved_connections: int = 32  # of those, kept for loopback peers (local HA callers)
    backlog: int = 128  # listen queue


@dataclass(frozen=True)
class Reply:
    """What a GET route answers: `body` bytes, or chunks to stream (no length, then close)."""

    status: int
    content_type: str
    body: bytes | Iterator[bytes]
    headers: tuple[tuple[str, str], ...] = ()


Route = Callable[[User, str], Reply]  # (the authenticated user, the query string) -> Reply


def admits(open_connections: int, peer: str, limits: Limits) -> bool:
    """Whether a new connection from `peer` gets a slot: loopback peers up to the cap, remote
    ones up to the cap less the reserved slots."""
    if open_connections >= limits.max_connections:
        return False
    if open_connections < limits.max_connections - limits.reserved_connections:
        return True
    try:
        return ipaddress.ip_address(peer.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class DeadlineReader(io.RawIOBase):
    """The raw stream under a connection's rfile. Each read waits at most `idle` seconds;
    once a request is armed, all its reads end by its deadline (TimeoutError after), so
    trickling bytes cannot hold a thread past `total` seconds."""

    def __init__(
        self, sock: socket.socket, idle: float, total: float, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self._sock = sock
        self._idle = idle
        self._total = total
        self._clock = clock
        self.deadline: float | None = None

    def arm(self, start: float | None) -> None:
        """A new request: its deadline counts from `start`, or from its first byte (None)."""
        self.deadline = None if start is None else start + self._total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self._idle
        if self.deadline is not None:
            remaining = self.deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError("request deadline passed")
            timeout = min(timeout, remaining)
        self._sock.settimeout(timeout)
        n = self._sock.recv_into(buffer)
        if n and self.deadline is None:
            self.deadline = self._clock() + self._total
        return n



class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Lazarus"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        limits = self.server.limits
        self.connection.settimeout(limits.idle_timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # the socketserver's reader: ours replaces it
        self.reader = DeadlineReader(
            self.connection, limits.idle_timeout, limits.request_timeout, self.server.clock
        )
        self.rfile = io.BufferedReader(self.reader, 65536)
        self.reader.arm(self.server.clock())  # the first request counts from the accept

    def handle_one_request(self) -> None:
        super().handle_one_request()
        self.reader.arm(None)  # a keep-alive request counts from its first byte

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
        path, _, query = self.path.partition("?")
        route = self.server.routes.get(path)
        if route is None:
            return self._plain_error(HTTPStatus.METHOD_NOT_ALLOWED, "XML-RPC needs POST")
        if "Transfer-Encoding" in self.headers or self.headers.get(
            "Content-Length", "0"
        ).strip() not in ("", "0"):
            return self._plain_error(HTTPStatus.BAD_REQUEST, "a GET has no body")
        user = self._basic_user()
        if user is None:
            self.close_connection = True
            self._send(HTTPStatus.UNAUTHORIZED, "text/plain", b"authentication required\n",
                       (("WWW-Authenticate", 'Basic realm="lazarus"'),))
            return None
        try:
            reply = route(user, query)
        except Exception:
            log.error("GET %s by %s failed:\n%s", path, user.name, traceback.format_exc())
            return self._plain_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        if isinstance(reply.body, bytes):
            self._send(HTTPStatus(reply.status), reply.content_type, reply.body, reply.headers)
            return None
        self._stream(reply)
        return None

    def _basic_user(self) -> User | None:
        scheme, _, encoded = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "basic" or not encoded or len(encoded) > 4096:
            return None
        try:
            session = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        try:
            return self.server.dispatcher.authenticate(session)
        except ApiError:
            log.info("GET %s: authentication failed from %s", self.path.partition("?")[0],
                     self.client_address[0])
            return None

    def _send(self, status: HTTPStatus, content_type: str, body: bytes,
              headers: tuple[tuple[str, str], ...] = ()) -> None:
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nServer: Lazarus\r\n"
            f"Date: {self.date_time_string()}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        )
        head += "".join(f"{name}: {value}\r\n" for name, value in headers)
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("ascii") + b"\r\n" + body)

    def _stream(self, reply: Reply) -> None:
        self.close_connection = True
        head = (
            f"HTTP/1.1 {reply.status} OK\r\nServer: Lazarus\r\n"
            f"Date: {self.date_time_string()}\r\nContent-Type: {reply.content_type}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n"
        )
        head += "".join(f"{name}: {value}\r\n" for name, value in reply.headers)
        chunks = reply.body
        assert not isinstance(chunks, bytes)
        try:
            self.wfile.write(head.encode("ascii") + b"\r\n")
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:
            pass  # the client went away, or the server is closing
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

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
        body = self._read_body(length)
        if body is None:
            return None
        lane = self.headers.get(LANE_HEADER, "").strip().lower()
        response, authenticated = self.server.dispatcher.handle_call(
            body, self.client_address[0], lane
        )
        if not authenticated:
            self.close_connection = True  # no keep-alive slot for a rejected caller
        head = (
            f"HTTP/1.1 200 OK\r\nServer: Lazarus\r\nDate: {self.date_time_string()}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(response)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("ascii") + b"\r\n" + response)  # one write: no Nagle stall
        return None

    def _read_body(self, length: int) -> bytes | None:
        chunks: list[bytes] = []
        remaining = length
        while remaining:
            try:
                chunk = self.rfile.read1(min(remaining, 65536))  # returns after one socket read
            except TimeoutError:
                log.info("request from %s too slow, dropped", self.client_address[0])
                self._plain_error(HTTPStatus.REQUEST_TIMEOUT, "request too slow")
                return None
            if not chunk:
                self.close_connection = True
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        dispatcher: Dispatcher,
        rpc_path: str,
        limits: Limits,
        clock: Callable[[], float] = time.monotonic,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.routes = dict(routes or {})
        self.rpc_path = rpc_path
        self.limits = limits
        self.clock = clock
        self.request_queue_size = limits.backlog  # server_activate's listen(); default 5
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.lingerer = Lingerer(budget=limits.max_body + 65536)
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
            busy = not admits(len(self._open), str(client_address[0]), self.limits)
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
                self.shutdown_request(request)
                return
            self.lingerer.add(request)  # closed without a reset: the client reads the 503
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
        clock: Callable[[], float] = time.monotonic,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        """`routes`: GET paths besides the XML-RPC endpoint (see the module text)."""
        self._httpd = _HTTPServer(
            (host, port), dispatcher, path, limits or Limits(), clock, routes
        )
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
        self._httpd.lingerer.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> XmlRpcServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


    @property
    def base_url(self) -> str:
        """http://host:port (the GET routes hang off it)."""
        return self.url[: -len(self._httpd.rpc_path)] if self._httpd.rpc_path else self.url


__all__ = [
    "LANE_HEADER", "DeadlineReader", "Limits", "Reply", "Route", "XmlRpcServer", "admits"
]
