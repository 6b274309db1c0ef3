"""Dashboard sessions: kept in memory on the server, named by a random cookie.

A login keeps the user's "user:password" session string here (never in the cookie, never
logged), because every page calls the API as that user. The cookie holds only a random id
(HttpOnly, SameSite=Strict, Path=/ui). Each session has its own CSRF token, which every
action's form carries and the server compares in constant time. Sessions end at logout,
after `idle` seconds without a request, or when the daemon stops; at most `limit` live
sessions (the oldest is dropped).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "lazarus_ui"


@dataclass
class Session:
    sid: str
    user: str
    credentials: str = field(repr=False)  # "user:password", for the API calls
    csrf: str
    seen: float

    def csrf_ok(self, token: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), token.encode())


class SessionStore:
    def __init__(
        self, idle: float = 1800.0, limit: int = 1000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle = idle
        self.limit = limit
        self._now = now
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str, credentials: str) -> Session:
        session = Session(secrets.token_urlsafe(32), user, credentials,
                          secrets.token_urlsafe(32), self._now())
        with self._lock:
            self._sessions[session.sid] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if self._now() - session.seen > self.idle:
                del self._sessions[sid]
                return None
            session.seen = self._now()
            self._sessions.move_to_end(sid)
            return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
