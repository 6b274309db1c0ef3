"""The dashboard's and the GET routes' security over real HTTP (uvicorn and the API server on
loopback), with a stub API: sessions, cookie flags, CSRF and Origin checks, a refusal that
comes from the API's authorization, form limits, no traceback, Basic auth on /metrics."""

from __future__ import annotations

import base64
import http.client
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.server import Reply, XmlRpcServer
from lazarus.api.xmlrpc import CallContext, Dispatcher, Registry
from lazarus.domain.entities import User
from lazarus.domain.errors import AuthorizationError
from lazarus.telemetry.events import EventFeed
from lazarus.web.app import build_app
from lazarus.web.server import WebServer

USERS = {"oneadmin": User(0, "oneadmin", hash_password("admin-pw")),
         "viewer": User(1, "viewer", hash_password("viewer-pw"))}
HOSTS = ("<HOST_POOL><HOST><ID>0</ID><NAME>node1</NAME><STATE>2</STATE><VM_MAD>sim</VM_MAD>"
         "<HOST_SHARE><TOTAL_CPU>800</TOTAL_CPU><CPU_USAGE>100</CPU_USAGE></HOST_SHARE>"
         "<VMS/><TEMPLATE/></HOST></HOST_POOL>")


class Api:
    def __init__(self) -> None:
        self.status_calls: list[tuple[str, int, int]] = []
        self.broken = False

    def registry(self) -> Registry:
        reg = Registry()

        def host_status(ctx: CallContext, host_id: int, status: int) -> int:
            if ctx.user.name == "viewer":  # as the API's read-only role will answer
                raise AuthorizationError("[one.host.status] User [1] : Not authorized to "
                                         "perform MANAGE HOST [0].")
            self.status_calls.append((ctx.user.name, host_id, status))
            return host_id

        def hostpool(ctx: CallContext) -> str:
            return "<HOST_POOL><not xml" if self.broken else HOSTS

        reg.register("one.hostpool.info", hostpool)
        reg.register("one.vmpool.info", lambda ctx, *a: "<VM_POOL/>", "A:siiii")
        reg.register("one.hookpool.info", lambda ctx, *a: "<HOOK_POOL/>", "A:siii")
        reg.register("one.hooklog.info", lambda ctx, *a: "<HOOKLOG/>", "A:siiii")
        reg.register("one.host.status", host_status, "A:sii")
        return reg


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def web(api: Api) -> Iterator[WebServer]:
    dispatcher = Dispatcher(api.registry(), Authenticator(USERS.get))
    server = WebServer(build_app(dispatcher, EventFeed()), "127.0.0.1", 0)
    server.start()
    try:
        yield server
    finally:
        server.close()


def request(web: WebServer, method: str, path: str, body: str | None = None,
            headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    conn.request(method, path, body=body, headers=hdrs)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def cookies(response: http.client.HTTPResponse) -> dict[str, str]:
    out = {}
    for header in response.headers.get_all("set-cookie") or []:
        name, _, _ = header.partition("=")
        out[name] = header
    return out


def login(web: WebServer, user: str, password: str) -> tuple[str, str]:
    """(the session cookie header value, the page's CSRF token)."""
    form = request(web, "GET", "/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.body.decode())[1]  # type: ignore
    pre = cookies(form)["lazarus_ui_login"].split(";")[0]
    done = request(web, "POST", "/ui/login", urlencode(
        {"csrf": token, "username": user, "password": password}), {"Cookie": pre})
    assert done.status == 303, done.body  # type: ignore[attr-defined]
    session = cookies(done)["lazarus_ui"]
    page = request(web, "GET", "/ui/", headers={"Cookie": session.split(";")[0]})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.body.decode())[1]  # type: ignore
    return session, csrf


def test_login_sets_a_strict_httponly_cookie_and_wrong_passwords_get_none(web: WebServer
                                                                          ) -> None:
    session, _ = login(web, "oneadmin", "admin-pw")
    flags = [f.strip().lower() for f in session.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/ui" in flags
    form = request(web, "GET", "/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.body.decode())[1]  # type: ignore
    pre = cookies(form)["lazarus_ui_login"].split(";")[0]
    wrong = request(web, "POST", "/ui/login", urlencode(
        {"csrf": token, "username": "oneadmin", "password": "nope"}), {"Cookie": pre})
    assert wrong.status == 401 and "lazarus_ui" not in cookies(wrong)
    no_token = request(web, "POST", "/ui/login", urlencode(
        {"csrf": "x", "username": "oneadmin", "password": "admin-pw"}))
    assert no_token.status == 403
    assert request(web, "GET", "/ui/").status == 303  # no session: to the login page


def test_every_action_needs_the_session_token_and_its_origin(web: WebServer, api: Api) -> None:
    session, csrf = login(web, "oneadmin", "admin-pw")
    cookie = {"Cookie": session.split(";")[0]}
    assert request(web, "POST", "/ui/hosts/0/disable", "csrf=guess", cookie).status == 403
    assert request(web, "POST", "/ui/hosts/0/disable", urlencode({"csrf": csrf}),
                   {**cookie, "Origin": "http://evil.example"}).status == 403
    assert request(web, "POST", "/ui/hosts/0/disable", urlencode({"csrf": csrf})).status == 403
    assert api.status_calls == []
    ok = request(web, "POST", "/ui/hosts/0/disable", urlencode({"csrf": csrf}),
                 {**cookie, "Origin": f"http://127.0.0.1:{web.port}"})
    assert ok.status == 303 and api.status_calls == [("oneadmin", 0, 1)]
    big = request(web, "POST", "/ui/hosts/0/enable", "csrf=" + "x" * 20_000, cookie)
    assert big.status == 413 and len(api.status_calls) == 1


def test_the_refusal_of_a_read_only_user_is_the_apis(web: WebServer, api: Api) -> None:
    session, csrf = login(web, "viewer", "viewer-pw")
    cookie = {"Cookie": session.split(";")[0]}
    assert request(web, "GET", "/ui/", headers=cookie).status == 200  # sees
    refused = request(web, "POST", "/ui/hosts/0/disable", urlencode({"csrf": csrf}), cookie)
    assert refused.status == 403
    assert b"Not authorized to perform MANAGE HOST" in refused.body  # type: ignore[attr-defined]
    assert api.status_calls == []


def test_logout_ends_the_session_and_errors_show_no_traceback(web: WebServer, api: Api) -> None:
    session, csrf = login(web, "oneadmin", "admin-pw")
    cookie = {"Cookie": session.split(";")[0]}
    api.broken = True
    broken = request(web, "GET", "/ui/", headers=cookie)
    assert broken.status == 500
    assert b"Traceback" not in broken.body and b"Internal error" in broken.body  # type: ignore
    page = request(web, "GET", "/ui/incidents", headers=cookie)
    for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"):
        assert page.getheader(header)
    out = request(web, "POST", "/ui/logout", urlencode({"csrf": csrf}), cookie)
    assert out.status == 303
    assert request(web, "GET", "/ui/hooks", headers=cookie).status == 303
    assert request(web, "GET", "/ui/events", headers=cookie).status == 403


def _basic(session: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(session.encode()).decode()}


def test_get_routes_of_the_api_server_need_basic_credentials(api: Api) -> None:
    dispatcher = Dispatcher(api.registry(), Authenticator(USERS.get))
    seen: list[str] = []

    def route(user: User, query: str) -> Reply:
        seen.append(user.name)
        return Reply(200, "text/plain", b"ok\n")

    with XmlRpcServer(dispatcher, port=0, routes={"/metrics": route}) as server:
        server.start()

        def get(headers: dict[str, str], body: str | None = None) -> Any:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/metrics", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            return response

        refused = get({})
        assert refused.status == 401 and refused.getheader("Connection") == "close"
        assert refused.getheader("WWW-Authenticate") == 'Basic realm="lazarus"'
        assert get(_basic("oneadmin:wrong")).status == 401
        assert get({"Authorization": "Basic !!!"}).status == 401
        assert get(_basic("viewer:viewer-pw"), body="x").status == 400
        assert seen == []
        assert get(_basic("viewer:viewer-pw")).status == 200 and seen == ["viewer"]
