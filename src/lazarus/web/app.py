"""The dashboard's Starlette application (docs/dashboard.md).

Pages (GET) need a session; actions (POST) need a session and its CSRF token in the form,
and, when the browser sends an Origin, the dashboard's own. The session cookie is HttpOnly,
SameSite=Strict, Path=/ui, so a cross-site page can neither read it nor have it sent with a
forged POST. Every read and every action is an API call through the dispatcher with the
user's own credentials (api.py): what a user may do is what the API lets them do, and a
refusal (AUTHORIZATION) is shown as such (403). Errors never show a traceback.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from lazarus.api.xmlrpc import Dispatcher
from lazarus.domain.errors import ApiError, ErrorCode
from lazarus.telemetry.events import EventFeed, FeedFull

from . import api as reads
from . import timeline, views
from .sessions import COOKIE, Session, SessionStore

log = logging.getLogger("lazarus.web")

LOGIN_COOKIE = "lazarus_ui_login"
MAX_FORM = 16 * 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
HOST_STATUS = {"enable": 0, "disable": 1}  # one.host.status: ENABLED, DISABLED


class Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status, headers=HEADERS)


def build_app(dispatcher: Dispatcher, feed: EventFeed, sessions: SessionStore | None = None,
              secure_cookies: bool = False) -> Starlette:
    store = sessions or SessionStore()

    def session_of(request: Request) -> Session | None:
        return store.get(request.cookies.get(COOKIE))

    def user_api(session: Session, request: Request) -> reads.UserApi:
        peer = request.client.host if request.client else "?"
        return reads.UserApi(dispatcher, session.credentials, f"dashboard {peer}")

    async def form(request: Request) -> dict[str, str]:
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM:
            raise Refused(413 if length.isdigit() else 411,
                          "the form is too large or has no length")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                raise Refused(413, "the form is too large")
        return dict(parse_qsl(body.decode("utf-8", errors="replace"), max_num_fields=20))

    def same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:  # not sent by every browser for same-origin forms: the token decides
            return True
        host = request.headers.get("host", "")
        return origin in (f"http://{host}", f"https://{host}")

    async def action(request: Request) -> tuple[Session, dict[str, str]]:
        session = session_of(request)
        if not same_origin(request):
            raise Refused(403, "cross-site request refused")
        if session is None:
            raise Refused(403, "no session: log in first")
        fields = await form(request)
        if not session.csrf_ok(fields.get("csrf", "")):
            raise Refused(403, "CSRF token missing or wrong")
        return session, fields

    def page(handler: Callable[[Request, Session], Awaitable[Response]]) -> Callable[
            [Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            session = session_of(request)
            if session is None:
                return RedirectResponse("/ui/login", 303, headers=HEADERS)
            try:
                return await handler(request, session)
            except reads.CallFailed as exc:
                status = 403 if exc.code == ErrorCode.AUTHORIZATION else 400
                return _html(views.page("Refused" if status == 403 else "Error",
                                        views.message(exc.text), session.user, session.csrf),
                             status)
            except Refused as exc:
                return _html(views.page("Refused", views.message(exc.text), session.user,
                                        session.csrf), exc.status)
            except Exception:
                log.exception("dashboard: %s failed", request.url.path)
                return _html(views.page("Error", views.message("Internal error, see the "
                             "daemon log."), session.user, session.csrf), 500)
        return run

    def posting(handler: Callable[[Request, Session, dict[str, str]], Awaitable[Response]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                _, fields = await action(request)
            except Refused as exc:
                return _html(views.page("Refused", views.message(exc.text)), exc.status)

            async def inner(request: Request, session: Session) -> Response:
                return await handler(request, session, fields)
            return await page(inner)(request)
        return run

    # -- login ------------------------------------------------------------------------------
    async def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        response = _html(views.login(csrf=token))
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                            path="/ui", secure=secure_cookies)
        return response

    async def login(request: Request) -> Response:
        try:
            if not same_origin(request):
                raise Refused(403, "cross-site request refused")
            fields = await form(request)
        except Refused as exc:
            return _html(views.page("Refused", views.message(exc.text)), exc.status)
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not token or not secrets.compare_digest(token, fields.get("csrf", "")):
            return _html(views.login("The login form expired; try again.", token), 403)
        user, password = fields.get("username", ""), fields.get("password", "")
        credentials = f"{user}:{password}"
        try:
            await run_in_threadpool(dispatcher.authenticate, credentials)
        except ApiError:
            log.info("dashboard: failed login for %r", user[:64])
            return _html(views.login("Wrong user or password.", token), 401)
        session = store.create(user, credentials)
        response = RedirectResponse("/ui/", 303, headers=HEADERS)
        response.set_cookie(COOKIE, session.sid, httponly=True, samesite="strict", path="/ui",
                            secure=secure_cookies)
        response.delete_cookie(LOGIN_COOKIE, path="/ui")
        return response

    async def logout(request: Request, session: Session, fields: dict[str, str]) -> Response:
        store.drop(session.sid)
        response = RedirectResponse("/ui/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    # -- pages ------------------------------------------------------------------------------
    def has_error_hook(a: reads.UserApi) -> bool:
        pool = a.xml("one.hookpool.info", -2, -1, -1)
        return any((h.findtext("TEMPLATE/STATE") or "").upper() == "ERROR"
                   and (h.findtext("TEMPLATE/RESOURCE") or "").upper() == "HOST"
                   for h in pool.findall("HOOK"))

    async def overview(request: Request, session: Session) -> Response:
        a = user_api(session, request)

        def read() -> str:
            return views.overview(reads.hosts(a), reads.vms(a), has_error_hook(a), session.csrf)
        body = await run_in_threadpool(read)
        return _html(views.page("Cluster overview", body, session.user, session.csrf))

    async def vm_list(request: Request, session: Session) -> Response:
        a = user_api(session, request)
        q = request.query_params
        vms = await run_in_threadpool(reads.vms, a)
        body = views.vm_list(vms, q.get("state", ""), q.get("host", ""), q.get("name", ""))
        return _html(views.page("VMs", body, session.user, session.csrf))

    async def incident_list(request: Request, session: Session) -> Response:
        hosts = await run_in_threadpool(reads.hosts, user_api(session, request))
        return _html(views.page("Incidents", views.incidents(hosts), session.user, session.csrf))

    async def incident(request: Request, session: Session) -> Response:
        host_id = int(request.path_params["host_id"])
        a = user_api(session, request)

        def read() -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, str]]:
            host = next((h for h in reads.hosts(a) if h["id"] == host_id), None)
            if host is None:
                raise Refused(404, f"no host {host_id}")
            names = {vm["id"]: vm["name"] for vm in reads.vms(a)}
            word = re.compile(rf"\b{re.escape(host['name'])}\b")
            logs = [r for r in reads.hook_records(a) if word.search(r["stdout"])]
            return host, logs, names
        host, logs, names = await run_in_threadpool(read)
        key = host["incident"].get("KEY", "")
        chart = timeline.svg(timeline.build(feed.recent(), host_id, key), names)
        body = views.incident(host, chart, logs, session.csrf)
        return _html(views.page(f"Incident on {host['name']}", body, session.user,
                                session.csrf))

    async def hook_list(request: Request, session: Session) -> Response:
        a = user_api(session, request)

        def read() -> str:
            return views.hooks(reads.hook_records(a), reads.hook_names(a), session.csrf)
        body = await run_in_threadpool(read)
        return _html(views.page("Hook executions", body, session.user, session.csrf))

    # -- actions ----------------------------------------------------------------------------
    async def host_status(request: Request, session: Session, fields: dict[str, str]
                          ) -> Response:
        host_id = int(request.path_params["host_id"])
        verb = request.path_params["verb"]
        if verb not in HOST_STATUS:
            raise Refused(404, "no such action")
        await run_in_threadpool(user_api(session, request).call, "one.host.status", host_id,
                                HOST_STATUS[verb])
        return RedirectResponse("/ui/", 303, headers=HEADERS)

    async def host_fenced(request: Request, session: Session, fields: dict[str, str]
                          ) -> Response:
        host_id = int(request.path_params["host_id"])
        a = user_api(session, request)
        host = next((h for h in await run_in_threadpool(reads.hosts, a) if h["id"] == host_id),
                    None)
        if host is None:
            raise Refused(404, f"no host {host_id}")
        # the CLI's question (lazarus host fenced --confirm), and the host's name typed back
        if fields.get("confirm") != "yes":
            raise Refused(400, "refusing without the confirmation: this says the host is OFF")
        if fields.get("name", "").strip() != host["name"]:
            raise Refused(400, "the typed name is not the host's: nothing confirmed")
        await run_in_threadpool(a.call, "lazarus.host.fenced", host_id)
        return RedirectResponse(f"/ui/incidents/{host_id}", 303, headers=HEADERS)

    async def hook_retry(request: Request, session: Session, fields: dict[str, str]
                         ) -> Response:
        hook_id = int(request.path_params["hook_id"])
        exec_id = int(request.path_params["exec_id"])
        await run_in_threadpool(user_api(session, request).call, "one.hook.retry", hook_id,
                                exec_id)
        back = request.headers.get("referer", "")
        target = back if back.startswith(f"{request.base_url}ui/") else "/ui/hooks"
        return RedirectResponse(target, 303, headers=HEADERS)

    # -- live -------------------------------------------------------------------------------
    async def events(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return Response("log in first\n", 403, headers=HEADERS)
        try:
            sub = feed.subscribe()
        except FeedFull as exc:
            return Response(f"{exc}\n", 503, headers=HEADERS)
        lines = sub.lines(keepalive=15.0)

        def next_frame() -> bytes | None:
            try:
                line = next(lines)
            except StopIteration:
                return None
            return b": keepalive\n\n" if not line else f"data: {line}\n\n".encode()

        async def frames() -> Any:
            try:
                yield b": lazarus event stream\n\n"
                while True:
                    frame = await run_in_threadpool(next_frame)
                    if frame is None or await request.is_disconnected():
                        return
                    yield frame
            finally:
                sub.cancel()
                feed.unsubscribe(sub)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        kinds = {"style.css": "text/css", "live.js": "text/javascript"}
        if name not in kinds:
            return Response("not found\n", 404)
        data = resources.files("lazarus.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=kinds[name], headers={**HEADERS,
                        "Cache-Control": "max-age=300"})

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui/", 303)

    routes = [
        Route("/", root),
        Route("/ui", root),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", posting(logout), methods=["POST"]),
        Route("/ui/", page(overview)),
        Route("/ui/vms", page(vm_list)),
        Route("/ui/incidents", page(incident_list)),
        Route("/ui/incidents/{host_id:int}", page(incident)),
        Route("/ui/hooks", page(hook_list)),
        Route("/ui/hosts/{host_id:int}/fenced", posting(host_fenced), methods=["POST"]),
        Route("/ui/hosts/{host_id:int}/{verb}", posting(host_status), methods=["POST"]),
        Route("/ui/hooks/{hook_id:int}/{exec_id:int}/retry", posting(hook_retry),
              methods=["POST"]),
        Route("/ui/events", events),
        Route("/ui/static/{name}", static),
    ]
    return Starlette(routes=routes)
