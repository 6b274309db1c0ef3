"""api/xmlrpc.py and api/client.py against a real server on 127.0.0.1 (port 0, in a thread):
OpenNebula's return convention and error codes, authentication, parameter checks, faults,
hostile HTTP and XML, logging hygiene, pyone as a client."""

from __future__ import annotations

import http.client
import logging
import socket
import xmlrpc.client
from collections.abc import Callable, Iterator
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest

from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.client import Client, RpcFaultError, TransportError, UnknownApiError
from lazarus.api.wire import dumps_call
from lazarus.api.xmlrpc import (
    CallContext,
    Dispatcher,
    Limits,
    Registry,
    UnknownMethod,
    XmlRpcServer,
)
from lazarus.domain.entities import User
from lazarus.domain.errors import (
    ActionError,
    AllocateError,
    ApiError,
    AuthenticationError,
    AuthorizationError,
    ErrorCode,
    InternalError,
    LockedError,
    NoExistsError,
    RpcApiError,
)

PASSWORD = "s3cr3t-Pa55"
SESSION = f"oneadmin:{PASSWORD}"
USERS = {"oneadmin": User(0, "oneadmin", hash_password(PASSWORD))}
ERRORS: dict[int, type[ApiError]] = {
    int(cls.code): cls
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


class Color(IntEnum):
    RED = 3


Observed = list[tuple[str, tuple[object, ...], list[object], User | None]]


def make_registry() -> Registry:
    reg = Registry()

    @reg.method("one.system.version")
    def version(ctx: CallContext) -> str:
        return "7.0.0"

    @reg.method("one.vm.info", "A:sib", defaults=(False,))
    def vm_info(ctx: CallContext, vm_id: int, decrypt: bool) -> str:
        if vm_id == 99:
            raise NoExistsError(f"Error getting virtual machine [{vm_id}].", resp_id=vm_id)
        return f"<VM><ID>{vm_id}</ID><DECRYPT>{int(decrypt)}</DECRYPT></VM>"

    @reg.method("one.test.echo", "A:ssibi", defaults=(True, -1))
    def echo(ctx: CallContext, *params: object) -> list[object]:
        return [ctx.user.name, ctx.method, ctx.client_address, *params]

    @reg.method("one.test.raise", "A:si")
    def fail(ctx: CallContext, code: int) -> None:
        raise ERRORS[code]("it failed", resp_id=7)

    @reg.method("one.test.crash")
    def crash(ctx: CallContext) -> None:
        raise RuntimeError("boom in handler")

    @reg.method("one.test.value", "A:ss")
    def value(ctx: CallContext, which: str) -> object:
        return {
            "big": 2**40,
            "enum": Color.RED,
            "ctrl": "a\x00b\x1bc\ufffe<&>",
            "struct": {"A": [1, "x", False]},
            "huge": 2**70,
            "object": object(),
        }[which]

    return reg


@pytest.fixture
def make_server() -> Iterator[Callable[..., XmlRpcServer]]:
    servers: list[XmlRpcServer] = []

    def make(limits: Limits | None = None, observer: Any = None) -> XmlRpcServer:
        dispatcher = Dispatcher(make_registry(), Authenticator(USERS.get), observer)
        server = XmlRpcServer(dispatcher, port=0, limits=limits)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def observed() -> Observed:
    return []


@pytest.fixture
def server(make_server: Callable[..., XmlRpcServer], observed: Observed) -> XmlRpcServer:
    return make_server(observer=lambda *args: observed.append(args))


@pytest.fixture
def client(server: XmlRpcServer) -> Iterator[Client]:
    with Client(server.url, SESSION) as c:
        yield c


def raw_call(server: XmlRpcServer, method: str, *params: object) -> Any:
    """The bare result array, through the standard library's client."""
    with xmlrpc.client.ServerProxy(server.url) as proxy:
        return getattr(proxy, method)(*params)


def post(
    server: XmlRpcServer, body: bytes, headers: dict[str, str] | None = None, path: str = "/RPC2"
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", path, body, headers or {"Content-Type": "text/xml"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def send_raw(server: XmlRpcServer, data: bytes) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def assert_alive(server: XmlRpcServer) -> None:
    assert raw_call(server, "one.system.version", SESSION) == [True, "7.0.0", 0]


# -- return convention ----------------------------------------------------------------------


def test_success_is_true_value_zero(server: XmlRpcServer, client: Client) -> None:
    assert raw_call(server, "one.system.version", SESSION) == [True, "7.0.0", 0]
    assert client.call("one.system.version") == "7.0.0"
    assert client.call("one.vm.info", 5) == "<VM><ID>5</ID><DECRYPT>0</DECRYPT></VM>"
    assert client.call("one.vm.info", 5, True) == "<VM><ID>5</ID><DECRYPT>1</DECRYPT></VM>"
    assert client.call("one.vm.info", Color.RED) == "<VM><ID>3</ID><DECRYPT>0</DECRYPT></VM>"


def test_handler_sees_context_and_defaults(client: Client) -> None:
    assert client.call("one.test.echo", "s", 1) == [
        "oneadmin",
        "one.test.echo",
        "127.0.0.1",
        "s",
        1,
        True,
        -1,
    ]
    assert client.call("one.test.echo", "s", 1, False) == [
        "oneadmin",
        "one.test.echo",
        "127.0.0.1",
        "s",
        1,
        False,
        -1,
    ]
    assert client.call("one.test.echo", "s", 1, 0, 9)[-2:] == [False, 9]  # int 0/1 as bool


@pytest.mark.parametrize("code", sorted(ERRORS), ids=lambda c: ErrorCode(c).name)
def test_every_error_code_round_trips(server: XmlRpcServer, client: Client, code: int) -> None:
    assert raw_call(server, "one.test.raise", SESSION, code) == [
        False,
        "[one.test.raise] it failed",
        code,
        7,
        0,
    ]
    with pytest.raises(ERRORS[code]) as info:
        client.call("one.test.raise", code)
    assert type(info.value) is ERRORS[code]
    assert info.value.message == "[one.test.raise] it failed"
    assert info.value.resp_id == 7


def test_no_exists_like_opennebula(client: Client) -> None:
    with pytest.raises(
        NoExistsError,
        match=r"^\[one.vm.info\] Error getting virtual machine "
        r"\[99\]\.$",
    ):
        client.call("one.vm.info", 99)


def test_unexpected_exception_is_internal_and_logged_server_side(
    server: XmlRpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="lazarus"):
        result = raw_call(server, "one.test.crash", SESSION)
    assert result[0] is False
    assert result[2] == ErrorCode.INTERNAL
    assert result[1].startswith("[one.test.crash] Internal error")
    assert "boom" not in result[1]
    assert "RuntimeError: boom in handler" in caplog.text


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("big", 2**40),  # beyond 32 bits: sent as <i8>, not refused
        ("enum", 3),
        ("ctrl", "a\ufffdb\ufffdc\ufffd<&>"),  # characters XML forbids are replaced
        ("struct", {"A": [1, "x", False]}),
    ],
)
def test_values_are_sent_safely(
    server: XmlRpcServer, client: Client, which: str, expected: object
) -> None:
    assert client.call("one.test.value", which) == expected
    assert raw_call(server, "one.test.value", SESSION, which) == [True, expected, 0]


@pytest.mark.parametrize("which", ["huge", "object"])
def test_unsendable_value_becomes_internal(client: Client, which: str) -> None:
    with pytest.raises(InternalError, match=r"^\[one.test.value\] Internal error"):
        client.call("one.test.value", which)


# -- authentication and parameters ----------------------------------------------------------


@pytest.mark.parametrize("session", ["oneadmin:wrong", "nobody:x", "oneadmin", ""])
def test_bad_session_is_authentication_error(server: XmlRpcServer, session: str) -> None:
    assert raw_call(server, "one.vm.info", session, 1) == [
        False,
        "[one.vm.info] User couldn't be authenticated, aborting call.",
        0x100,
        -1,
        0,
    ]
    with Client(server.url, session) as c, pytest.raises(AuthenticationError):
        c.call("one.vm.info", 1)


def test_authentication_comes_before_parameter_checks(server: XmlRpcServer) -> None:
    assert raw_call(server, "one.vm.info", "oneadmin:wrong", "x")[2] == 0x100


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ((), "Wrong number of parameters: expected 1 to 2 after the session, got 0."),
        ((1, True, 3), "Wrong number of parameters: expected 1 to 2 after the session, got 3."),
        (("1",), "Wrong type for parameter 1: expected int, got string."),
        ((True,), "Wrong type for parameter 1: expected int, got bool."),
        ((1.5,), "Wrong type for parameter 1: expected int, got double."),
        (([1],), "Wrong type for parameter 1: expected int, got array."),
        (({"a": 1},), "Wrong type for parameter 1: expected int, got struct."),
        ((1, "yes"), "Wrong type for parameter 2: expected bool, got string."),
        ((1, 2), "Wrong type for parameter 2: expected bool, got int."),
        ((2**31,), "Parameter 1 is out of the 32-bit integer range."),
    ],
    ids=[
        "none",
        "too-many",
        "str",
        "bool",
        "double",
        "array",
        "struct",
        "bool-str",
        "bool-2",
        "i8",
    ],
)
def test_wrong_parameters_are_rpc_api_errors(
    server: XmlRpcServer, client: Client, params: tuple[object, ...], text: str
) -> None:
    with pytest.raises(RpcApiError) as info:
        client.call("one.vm.info", *params)
    assert info.value.message == f"[one.vm.info] {text}"


def test_session_must_be_a_string(server: XmlRpcServer) -> None:
    result = raw_call(server, "one.vm.info", 1, 1)
    assert result[:3] == [
        False,
        "[one.vm.info] The first parameter must be the session string.",
        0x1000,
    ]
    assert raw_call(server, "one.system.version")[2] == 0x1000


def test_unknown_method_is_a_fault(server: XmlRpcServer, client: Client) -> None:
    with pytest.raises(xmlrpc.client.Fault) as info:
        raw_call(server, "one.nope.info", SESSION)
    assert info.value.faultCode == -506
    assert "one.nope.info" in info.value.faultString
    with pytest.raises(RpcFaultError, match=r"one\.nope\.info' not defined"):
        client.call("one.nope.info")
    assert_alive(server)


def test_observer_sees_every_authorized_call(
    server: XmlRpcServer, client: Client, observed: Observed
) -> None:
    client.call("one.vm.info", 4)
    with pytest.raises(NoExistsError):
        client.call("one.vm.info", 99)
    # Rejected callers never reach API hooks: 500 bogus calls once queued 500 hook runs
    # ahead of ft/host_error.
    with Client(client.endpoint, "oneadmin:bad") as bad, pytest.raises(AuthenticationError):
        bad.call("one.vm.info", 4, True)
    with pytest.raises(AuthorizationError):
        client.call("one.test.raise", int(AuthorizationError.code))
    assert raw_call(server, "one.vm.info", 7)[0] is False  # no session string at all
    with pytest.raises(RpcFaultError):
        client.call("one.nope")  # not a call of a method: not observed
    user = USERS["oneadmin"]
    assert observed == [
        ("one.vm.info", (4,), [True, "<VM><ID>4</ID><DECRYPT>0</DECRYPT></VM>", 0], user),
        (
            "one.vm.info",
            (99,),
            [False, "[one.vm.info] Error getting virtual machine [99].", 0x400, 99, 0],
            user,
        ),
    ]


def test_failing_observer_does_not_break_calls(
    make_server: Callable[..., XmlRpcServer], caplog: pytest.LogCaptureFixture
) -> None:
    def observer(*args: object) -> None:
        raise ValueError("observer bug")

    server = make_server(observer=observer)
    with caplog.at_level(logging.ERROR, logger="lazarus"):
        assert_alive(server)
    assert "observer bug" in caplog.text


def test_dispatcher_works_without_http() -> None:
    dispatcher = Dispatcher(make_registry(), Authenticator(USERS.get))
    assert dispatcher.call("one.vm.info", [SESSION, 3], "local")[0] is True
    with pytest.raises(UnknownMethod):
        dispatcher.call("one.x", [SESSION])


def test_registry_refuses_bad_signatures() -> None:
    reg = Registry()
    reg.register("one.a", lambda ctx: 0)
    with pytest.raises(ValueError, match="already"):
        reg.register("one.a", lambda ctx: 0)
    with pytest.raises(ValueError, match="session"):
        reg.register("one.b", lambda ctx: 0, "A:i")
    with pytest.raises(ValueError, match="letters"):
        reg.register("one.c", lambda ctx: 0, "A:sx")
    with pytest.raises(ValueError, match="defaults"):
        reg.register("one.d", lambda ctx: 0, "A:si", defaults=(1, 2))
    assert reg.names() == ["one.a"]


# -- logs -----------------------------------------------------------------------------------


def test_session_never_reaches_the_logs(
    server: XmlRpcServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client.call("one.vm.info", 1)
        with pytest.raises(InternalError):
            client.call("one.test.crash")
        for session in ("oneadmin:wrong-Pa55", "nocolonsecret"):
            with Client(server.url, session) as c, pytest.raises(AuthenticationError):
                c.call("one.vm.info", 1)
        with pytest.raises(RpcApiError):
            client.call("one.vm.info", "x")
        post(server, b"<methodCall><methodName>one.vm.info</methodName>" + PASSWORD.encode())
        bad_int = f"<value><int>{PASSWORD}</int></value>"
        post(server, nested(0).replace(b"<value><int>1</int></value>", bad_int.encode()))
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (PASSWORD, "wrong-Pa55", "nocolonsecret"):
        assert secret not in text
    assert "authentication failed for user 'oneadmin'" in text
    assert "<malformed session>" in text


# -- hostile HTTP and XML -------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<methodCall><methodName>one.test.value</methodName><params>
<param><value><string>oneadmin:s3cr3t-Pa55</string></value></param>
<param><value><string>&lol9;</string></value></param></params></methodCall>"""


def external_entity(target: Path) -> bytes:
    return f"""<?xml version="1.0"?>
<!DOCTYPE m [ <!ENTITY xxe SYSTEM "file://{target}"> ]>
<methodCall><methodName>one.test.echo</methodName><params>
<param><value><string>{SESSION}</string></value></param>
<param><value><string>&xxe;</string></value></param>
<param><value><int>1</int></value></param></params></methodCall>""".encode()


def test_billion_laughs_is_refused(server: XmlRpcServer) -> None:
    status, body = post(server, BILLION_LAUGHS)
    assert status == 200
    assert b"<fault>" in body and b"DTDs and entities are not allowed" in body
    assert b"lollol" not in body
    assert_alive(server)


def test_external_entity_is_refused(server: XmlRpcServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    status, body = post(server, external_entity(secret))
    assert status == 200
    assert b"DTDs and entities are not allowed" in body
    assert b"TOP-SECRET" not in body
    assert_alive(server)


def test_bare_doctype_is_refused(server: XmlRpcServer) -> None:
    body = dumps_call("one.system.version", [SESSION]).replace(
        b"<methodCall>", b'<!DOCTYPE methodCall SYSTEM "http://127.0.0.1:1/x.dtd"><methodCall>'
    )
    assert b"DTDs and entities are not allowed" in post(server, body)[1]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<methodCall><methodName>x</methodName>",
        b"<methodResponse><params/></methodResponse>",
        b"<methodCall><methodName>one.vm.info</methodName><params><param><value><int>zz</int>"
        b"</value></param></params></methodCall>",
    ],
    ids=["empty", "text", "truncated", "response", "bad-int"],
)
def test_malformed_xml_is_a_clear_fault(server: XmlRpcServer, body: bytes) -> None:
    status, answer = post(server, body)
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(answer)
    assert info.value.faultCode == -503
    assert info.value.faultString.startswith("Could not parse the XML-RPC call: ")
    assert_alive(server)


def nested(depth: int) -> bytes:
    opening, closing = "<value><array><data>", "</data></array></value>"
    value = opening * depth + "<value><int>1</int></value>" + closing * depth
    return (
        f"<methodCall><methodName>one.vm.info</methodName><params><param><value><string>"
        f"{SESSION}</string></value></param><param>{value}</param></params>"
        f"</methodCall>"
    ).encode()


def test_deep_nesting_is_refused_cheaply(server: XmlRpcServer) -> None:
    answer = post(server, nested(100_000))[1]
    assert b"nested deeper than 32" in answer
    assert_alive(server)


def test_shallow_nesting_is_just_a_wrong_type(server: XmlRpcServer) -> None:
    result = xmlrpc.client.loads(post(server, nested(10))[1])[0][0]
    assert result[2] == 0x1000 and "expected int, got array" in result[1]


def test_oversized_body_gets_413_before_it_is_read(
    make_server: Callable[..., XmlRpcServer],
) -> None:
    server = make_server(Limits(max_body=1024))
    head = b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n"
    answer = send_raw(server, head)  # the body is never sent: the server must not wait for it
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert_alive(server)


def test_oversized_body_refused_before_100_continue(
    make_server: Callable[..., XmlRpcServer],
) -> None:
    server = make_server(Limits(max_body=1024))
    head = b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n"
    assert send_raw(server, head).startswith(b"HTTP/1.1 413 ")


def test_default_limit_is_8_mib(server: XmlRpcServer) -> None:
    head = f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: {8 * 2**20 + 1}\r\n\r\n"
    assert send_raw(server, head.encode()).startswith(b"HTTP/1.1 413 ")
    assert_alive(server)


def test_oversized_body_sent_in_full_leaves_server_alive(
    make_server: Callable[..., XmlRpcServer],
) -> None:
    server = make_server(Limits(max_body=1024))
    try:
        status, _ = post(server, b"x" * 200_000)
        assert status == 413
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server closed while we were still sending: also a refusal
    assert_alive(server)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (
            b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Content-Encoding: gzip\r\n\r\n",
            415,
        ),
        (b"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 404),
        (b"GET /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"PUT /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ],
    ids=["no-length", "chunked", "negative", "two-lengths", "gzip", "path", "get", "put"],
)
def test_bad_http_requests(server: XmlRpcServer, head: bytes, status: int) -> None:
    assert send_raw(server, head).startswith(f"HTTP/1.1 {status} ".encode())
    assert_alive(server)


def test_idle_client_is_dropped(make_server: Callable[..., XmlRpcServer]) -> None:
    server = make_server(Limits(idle_timeout=0.2))
    assert send_raw(server, b"POST /RPC2 HTTP/1.1\r\nHost:") == b""  # closed, no answer
    assert_alive(server)


def test_slow_body_gets_408(make_server: Callable[..., XmlRpcServer]) -> None:
    server = make_server(Limits(request_timeout=0.3))  # the rest of the body never comes
    body = dumps_call("one.system.version", [SESSION])
    head = f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    assert send_raw(server, head + body[:10]).startswith(b"HTTP/1.1 408 ")


def test_connection_cap_answers_503(make_server: Callable[..., XmlRpcServer]) -> None:
    server = make_server(Limits(max_connections=1))
    with Client(server.url, SESSION) as first:
        assert first.call("one.system.version") == "7.0.0"  # holds the only slot (keep-alive)
        body = dumps_call("one.system.version", [SESSION])
        head = f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        assert send_raw(server, head.encode() + body).startswith(b"HTTP/1.1 503 ")
        assert first.call("one.system.version") == "7.0.0"


def test_keep_alive_and_response_headers(server: XmlRpcServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        peers = set()
        for _ in range(3):
            conn.request("POST", "/RPC2", dumps_call("one.system.version", [SESSION]))
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Type") == "text/xml"
            body = response.read()
            assert int(response.getheader("Content-Length", "-1")) == len(body)
            assert not response.will_close
            assert conn.sock is not None
            peers.add(conn.sock.getsockname())
        assert len(peers) == 1  # one TCP connection for all three calls
    finally:
        conn.close()


# -- client ---------------------------------------------------------------------------------


def test_client_reconnects_when_the_server_dropped_an_idle_connection(
    server: XmlRpcServer, client: Client
) -> None:
    assert client.call("one.system.version") == "7.0.0"
    server._httpd.drop_connections()  # what the idle timeout does to a keep-alive connection
    assert client.call("one.system.version") == "7.0.0"


def test_client_unreachable_daemon() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    with (
        Client(f"http://127.0.0.1:{port}/RPC2", SESSION) as c,
        pytest.raises(TransportError) as info,
    ):
        c.call("one.system.version")
    assert isinstance(info.value, ConnectionError)
    assert str(info.value).startswith(f"cannot reach the Lazarus daemon at http://127.0.0.1:{port}")
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(c)


def test_client_http_error_status(server: XmlRpcServer) -> None:
    with (
        Client(f"http://127.0.0.1:{server.port}/wrong", SESSION) as c,
        pytest.raises(TransportError, match="answered HTTP 404"),
    ):
        c.call("one.system.version")


def test_client_unknown_error_code() -> None:
    from lazarus.api.client import raise_for_result

    with pytest.raises(UnknownApiError) as info:
        raise_for_result("one.x", [False, "[one.x] replication", 0x10000, 3, 0])
    assert info.value.remote_code == 0x10000 and info.value.resp_id == 3


def test_client_from_env(server: XmlRpcServer, tmp_path: Path) -> None:
    auth_file = tmp_path / "auth"
    auth_file.write_text(SESSION + "\n")
    env = {"LAZARUS_XMLRPC": server.url, "ONE_AUTH": str(auth_file)}
    with Client.from_env(env) as c:
        assert c.call("one.system.version") == "7.0.0"
        assert c.user == "oneadmin"


# -- pyone ----------------------------------------------------------------------------------


def test_pyone_works_unchanged(server: XmlRpcServer) -> None:
    pyone = pytest.importorskip("pyone")
    one = pyone.OneServer(server.url, session=SESSION)
    assert one.system.version() == "7.0.0"
    with pytest.raises(pyone.OneNoExistsException, match="Error getting virtual machine"):
        one.vm.info(99)
    with pytest.raises(pyone.OneApiException):
        one.vm.info("x")
    bad = pyone.OneServer(server.url, session="oneadmin:wrong")
    with pytest.raises(pyone.OneAuthenticationException, match="User couldn't be authenticated"):
        bad.system.version()


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    dispatcher = Dispatcher(make_registry(), Authenticator(USERS.get))
    try:
        server = XmlRpcServer(dispatcher, host="::1", port=0)
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    with server:
        server.start()
        assert server.url == f"http://[::1]:{server.port}/RPC2"
        with Client(server.url, SESSION) as c:
            assert c.call("one.system.version") == "7.0.0"
