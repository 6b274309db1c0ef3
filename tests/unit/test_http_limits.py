"""Connection time and capacity limits of the API server (api/server.py) and the client's
bounded retries (api/client.py): slow clients cannot hold threads past the request
deadline, local HA callers keep slots, a 503 or a reset is retried with backoff."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.client import Client, TransportError
from lazarus.api.server import DeadlineReader, Limits, XmlRpcServer, admits
from lazarus.api.wire import dumps_call, dumps_response
from lazarus.api.xmlrpc import CallContext, Dispatcher, Registry, call_lane
from lazarus.domain.entities import User
from lazarus.domain.errors import InternalError

PASSWORD = "s3cr3t-Pa55"
SESSION = f"oneadmin:{PASSWORD}"
USERS = {"oneadmin": User(0, "oneadmin", hash_password(PASSWORD))}


class StepClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_trickled_bytes_do_not_extend_the_deadline(pair: Any) -> None:
    server_side, client_side = pair
    clock = StepClock()
    reader = DeadlineReader(server_side, idle=30.0, total=10.0, clock=clock)
    reader.arm(None)  # a keep-alive request: the deadline starts with its first byte
    buffer = bytearray(16)
    for _ in range(3):  # one byte every 4 s: each read is well within the idle timeout
        client_side.sendall(b"P")
        assert reader.readinto(buffer) == 1
        clock.now += 4.0
    client_side.sendall(b"O")
    with pytest.raises(TimeoutError):
        reader.readinto(buffer)  # 12 s after the first byte: the request is over


def test_first_request_counts_from_the_accept(pair: Any) -> None:
    server_side, client_side = pair
    clock = StepClock()
    reader = DeadlineReader(server_side, idle=30.0, total=10.0, clock=clock)
    reader.arm(clock())
    clock.now += 10.5  # connected, then silent
    client_side.sendall(b"POST")
    with pytest.raises(TimeoutError):
        reader.readinto(bytearray(16))


def registry() -> Registry:
    reg = Registry()
    seen: list[str] = []

    @reg.method("one.system.version")
    def version(ctx: CallContext) -> str:
        seen.append(f"{ctx.lane}/{call_lane.get()}")
        return "7.0.0"

    reg.seen = seen  # type: ignore[attr-defined]
    return reg


@pytest.fixture
def make_server() -> Iterator[Any]:
    servers: list[XmlRpcServer] = []

    def make(limits: Limits | None = None) -> XmlRpcServer:
        server = XmlRpcServer(
            Dispatcher(registry(), Authenticator(USERS.get)), port=0, limits=limits
        )
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()


def test_slow_headers_are_dropped_at_the_request_deadline(make_server: Any) -> None:
    server = make_server(Limits(request_timeout=0.3, idle_timeout=30.0))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert sock.recv(100) == b""  # closed at 0.3 s, not after the 30 s idle timeout


def test_listen_backlog_is_raised(make_server: Any) -> None:
    assert make_server()._httpd.request_queue_size == 128


@pytest.mark.parametrize(
    ("open_now", "peer", "ok"),
    [
        (95, "192.0.2.7", True),
        (96, "192.0.2.7", False),  # beyond the soft cap: remote peers wait
        (96, "127.0.0.1", True),  # local HA callers (ft/host_error) still get in
        (127, "::1", True),
        (128, "127.0.0.1", False),
        (100, "not-an-ip", False),
    ],
)
def test_reserved_slots_for_loopback_peers(open_now: int, peer: str, ok: bool) -> None:
    assert admits(open_now, peer, Limits()) is ok


def test_rejected_caller_loses_its_keep_alive_slot(make_server: Any) -> None:
    server = make_server()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/RPC2", dumps_call("one.system.version", ["oneadmin:bad"]))
        response = conn.getresponse()
        response.read()
        assert response.will_close
    finally:
        conn.close()


def test_lane_header_reaches_authenticated_handlers_only(make_server: Any) -> None:
    server = make_server()
    with Client(server.url, SESSION, lane="ha") as c:
        assert c.call("one.system.version") == "7.0.0"
    with Client(server.url, SESSION) as c:
        assert c.call("one.system.version") == "7.0.0"
    with Client(server.url, SESSION, lane="bogus") as c:
        assert c.call("one.system.version") == "7.0.0"
    assert server._httpd.dispatcher.registry.seen == ["ha/ha", "/", "/"]  # type: ignore[attr-defined]


# -- client retries -------------------------------------------------------------------------


class FakeConnection:
    """Stands in for http.client.HTTPConnection: answers from a script, one item a request."""

    def __init__(self, script: list[Any], log: list[str]) -> None:
        self.script = script
        self.log = log
        self._next: Any = None

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.log.append(headers.get("X-Lazarus-Lane", ""))
        self._next = self.script.pop(0)
        if isinstance(self._next, BaseException):
            raise self._next

    def getresponse(self) -> Any:
        status = self._next
        body = dumps_response([True, "ok", 0]) if status == 200 else b""
        if isinstance(status, list):  # a scripted result array, answered with 200
            status, body = 200, dumps_response(status)

        class Response:
            will_close = status != 200
            reason = "x"

            def read(self) -> bytes:
                return body

        response = Response()
        response.status = status  # type: ignore[attr-defined]
        return response

    def close(self) -> None:
        pass


def scripted(script: list[Any], **kwargs: Any) -> tuple[Client, list[float], list[str]]:
    sleeps: list[float] = []
    log: list[str] = []
    client = Client("http://127.0.0.1:1/RPC2", SESSION, sleep=sleeps.append, **kwargs)
    client._connect = lambda: FakeConnection(script, log)  # type: ignore[method-assign]
    return client, sleeps, log


def test_503_is_retried_with_backoff_for_any_call() -> None:
    client, sleeps, _ = scripted([503, 503, 200])
    assert client.call("one.vm.action", "resched", 3) == "ok"  # 503 comes before any work
    assert sleeps == [0.1, 0.2]


def test_retries_are_bounded() -> None:
    client, sleeps, log = scripted([503] * 10)
    with pytest.raises(TransportError, match="503"):
        client.call("one.vm.info", 3)
    assert len(log) == 4 and sleeps == [0.1, 0.2, 0.4]


def test_reset_of_a_fresh_connection_is_retried_for_reads_only() -> None:
    client, sleeps, _ = scripted([ConnectionResetError(), 200])
    assert client.call("one.hostpool.info") == "ok"
    assert sleeps == [0.1]
    client, sleeps, _ = scripted([ConnectionResetError(), 200])
    with pytest.raises(TransportError):
        client.call("one.vm.recover", 3, 4)  # it may have run: never sent twice
    assert sleeps == []


def test_a_write_refused_at_the_cap_reads_503_not_a_reset(make_server: Any) -> None:
    """Before: the refused socket was closed at once; the client's request bytes met a reset
    ("broken pipe" / "connection reset"), which the client retries for reads only, so a write
    at the cap failed. Now the server closes it without a reset and every try reads 503."""
    server = make_server(Limits(max_connections=1, reserved_connections=0))
    holder = Client(server.url, SESSION, retries=0)
    holder.call("one.system.version")  # accepted, kept alive: the one slot is taken
    try:
        for size in (10, 300_000):
            for _ in range(10):
                with Client(server.url, SESSION, retries=0) as client, \
                        pytest.raises(TransportError) as failure:
                    client.call("one.host.update", 0, "A" * size, 1)
                assert "HTTP 503" in str(failure.value), failure.value
    finally:
        holder.close()
    assert server._httpd.lingerer.lingering() <= 20


FULL = [False, "[one.host.update] Store error: database or disk is full", 0x2000, -1, 0]


class StepSleep:
    """The injected sleep of the client, moving the injected clock (no real time)."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []  # type: ignore[var-annotated]

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_write_the_store_refused_is_retried_until_it_lands() -> None:
    """Before: host_error's write refused by a full disk failed the run at once and nothing
    ran it again. With store_wait the client sends it again, with backoff, until it lands."""
    told: list[str] = []
    step = StepSleep()
    client, _, log = scripted([FULL, FULL, FULL, 200], store_wait=600, clock=lambda: step.now,
                              on_store_retry=told.append)
    client._sleep = step
    assert client.call("one.host.update", 3, "A = 1", 1) == "ok"
    assert step.sleeps == [1.0, 2.0, 4.0] and len(log) == 4
    assert "the store refused the write" in told[0] and "attempt 3" in told[2]


def test_store_retries_are_bounded_and_reads_or_other_errors_are_not_retried() -> None:
    step = StepSleep()
    client, _, log = scripted([FULL] * 100, store_wait=100, clock=lambda: step.now)
    client._sleep = step
    with pytest.raises(InternalError, match="refused this write for 100 s"):
        client.call("one.host.update", 3, "A = 1", 1)
    assert sum(step.sleeps) == 100 and max(step.sleeps) == 30.0
    other = [False, "[one.vm.recover] Error: something else", 0x2000, -1, 0]
    client, sleeps, log = scripted([other, 200], store_wait=100)
    with pytest.raises(InternalError, match="something else"):
        client.call("one.vm.recover", 3, 4)
    assert sleeps == [] and len(log) == 1
    client, sleeps, log = scripted([FULL, 200])  # store_wait 0 (the CLI): at once
    with pytest.raises(InternalError, match="disk is full"):
        client.call("one.host.update", 3, "A = 1", 1)
    assert sleeps == []
