"""The GET routes the API server serves beside XML-RPC (api/server.py `routes`).

* `/metrics`: the Prometheus exposition of `Metrics` (any authenticated user);
* `/events`: the event stream as server-sent events (`data: {json}` per line, a comment every
  15 s of silence so proxies keep the stream), at most EventFeed.max_subscribers at once
  (then 503): each stream holds one of the server's connection slots and one thread.
"""

from __future__ import annotations

from collections.abc import Iterator

from lazarus.api.server import Reply, Route
from lazarus.domain.entities import User

from .events import EventFeed, FeedFull
from .metrics import CONTENT_TYPE, Metrics


def metrics_route(metrics: Metrics) -> Route:
    def serve(user: User, query: str) -> Reply:
        return Reply(200, CONTENT_TYPE, metrics.exposition())

    return serve


def sse(lines: Iterator[str]) -> Iterator[bytes]:
    try:
        yield b": lazarus event stream\n\n"
        for line in lines:
            yield b": keepalive\n\n" if not line else f"data: {line}\n\n".encode()
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()


def events_route(feed: EventFeed, keepalive: float = 15.0) -> Route:
    def serve(user: User, query: str) -> Reply:
        try:
            sub = feed.subscribe()
        except FeedFull as exc:
            return Reply(503, "text/plain", f"{exc}\n".encode())
        return Reply(200, "text/event-stream", sse(sub.lines(keepalive)))

    return serve


def routes(metrics: Metrics, feed: EventFeed) -> dict[str, Route]:
    return {"/metrics": metrics_route(metrics), "/events": events_route(feed)}
