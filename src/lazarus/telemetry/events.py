"""The structured event stream: one JSON object per journalled transition and per incident step.

For log shippers (a JSON-lines file, `EventFeed(path=...)`) and live views (server-sent events:
`subscribe()` gives a bounded queue per client). A journal event becomes

    {"type": "event", "id": 42, "time": 1767225600.25, "kind": "state", "obj": "HOST",
     "obj_id": 3, "state": "ERROR", "lcm_state": "", "flag": "", "value": "", "method": "",
     "host_id": -1, "line": "host/3 node3: MONITORED => ERROR (3 missed probes)"}

(the typed fields of domain/entities.py Event; never `body`, the object's XML), and an incident
step (incidents.py)

    {"type": "incident", "time": ..., "host_id": 3, "host": "node3", "key": "3f2a9c1e",
     "state": "FENCED", "previous": "FENCING", "fence": "fence_sim level 1: off confirmed",
     "handled": [4, 7], "failed": [], "vms": {"4": "RUNNING on node1"}}

Lines are already masked by the journal (the one rule of domain/secrets.py). Publishing never
blocks the controller's loop: a subscriber whose queue is full loses that line and is told so
once in its stream ({"type": "lost", "count": n}); the file is line-buffered and opened 0600.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from lazarus.domain.entities import Event

from .incidents import Step

log = logging.getLogger("lazarus.telemetry")

QUEUE_SIZE = 1000
RECENT = 20_000  # records kept in memory for the dashboard's timelines (web/)


def event_record(event: Event) -> dict[str, Any]:
    return {
        "type": "event",
        "id": event.id,
        "time": event.time,
        "kind": str(event.kind),
        "obj": str(event.obj),
        "obj_id": event.obj_id,
        "state": event.state,
        "lcm_state": event.lcm_state,
        "flag": event.flag,
        "value": event.value,
        "method": event.method,
        "host_id": event.host_id,
        "line": event.line,
    }


def step_record(step: Step, now: float) -> dict[str, Any]:
    incident = step.incident
    record: dict[str, Any] = {
        "type": "incident",
        "time": now,
        "host_id": step.host_id,
        "host": step.host,
        "key": step.key,
        "state": str(step.state),
        "previous": "" if step.previous is None else str(step.previous),
        "mode": incident.mode,
        "fence": incident.fence,
        "handled": incident.handled,
        "failed": incident.failed,
        "vms": {str(k): v for k, v in sorted(incident.vms.items())},
    }
    if step.fence_seconds is not None:
        record["fence_seconds"] = round(step.fence_seconds, 3)
    return record


class Subscription:
    def __init__(self, feed: EventFeed) -> None:
        self._feed = feed
        self.queue: queue.Queue[str | None] = queue.Queue(QUEUE_SIZE)
        self.lost = 0
        self.closed = False

    def lines(self, keepalive: float = 15.0) -> Iterator[str]:
        """JSON lines as they come; "" every `keepalive` seconds of silence; ends when the
        feed closes or the subscription is cancelled."""
        try:
            while True:
                try:
                    line = self.queue.get(timeout=keepalive)
                except queue.Empty:
                    if self.closed:  # the end mark did not fit in a full queue
                        return
                    yield ""
                    continue
                if line is None:
                    return
                if self.lost:
                    lost, self.lost = self.lost, 0
                    yield json.dumps({"type": "lost", "count": lost})
                yield line
        finally:
            self._feed.unsubscribe(self)

    def cancel(self) -> None:
        self.closed = True
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass


class FeedFull(Exception):
    """More subscribers than the feed takes."""


class EventFeed:
    def __init__(self, path: Path | None = None, max_subscribers: int = 16) -> None:
        self.max_subscribers = max_subscribers
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)
            self._file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")

    def publish(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=False)
        with self._lock:
            self._recent.append(record)
        if self._file is not None:
            try:
                self._file.write(line + "\n")
            except OSError as exc:
                log.error("event stream file: %s", exc)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.queue.put_nowait(line)
            except queue.Full:
                sub.lost += 1

    def recent(self) -> list[dict[str, Any]]:
        """The last RECENT records published since the daemon started, oldest first."""
        with self._lock:
            return list(self._recent)

    def subscribe(self) -> Subscription:
        with self._lock:
            if len(self._subs) >= self.max_subscribers:
                raise FeedFull(f"at most {self.max_subscribers} event stream clients")
            sub = Subscription(self)
            self._subs.append(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        with self._lock:
            subs, self._subs = list(self._subs), []
        for sub in subs:
            sub.cancel()
        if self._file is not None:
            self._file.close()
            self._file = None
