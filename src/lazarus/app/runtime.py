"""The bridge between the API's HTTP threads and the controller's asyncio loop.

The controller runs on one loop in one thread, so its state changes never race. An HTTP
thread that must change state calls `runtime.call(fn)`: `fn` runs on the loop thread, and its
value (or exception) comes back to the caller. Reads do not come here (see api/methods.py).

HA work first (measured before the lanes: failing over a 100-VM host took 41 s under a
50-client API load, 11 s idle). Two lanes, chosen by the authenticated call's lane
(`call_lane`, set by the Dispatcher from the "X-Lazarus-Lane" header that ft/host_error sends):
* on the loop, every waiting "ha" call runs first, then at most `api_per_turn` other calls,
  then the loop's other ready callbacks (the monitor, scheduler and VM driver tasks) get
  their turn before the next batch: a flood of API writes takes one slot per loop turn
  instead of one per call in the loop's FIFO;
* `admit(lane)` bounds how many non-HA API handlers run at once (`api_workers`): each one
  parses and renders XML while holding the GIL, so 50 busy HTTP threads left the loop thread
  a fiftieth of the interpreter. The others wait for a slot, in their own threads; their
  number is bounded by the server's connection cap (api/server.py).
Lanes are a priority among authenticated callers, not a security boundary: an unauthenticated
caller never reaches a handler, so never a lane.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from lazarus.api.xmlrpc import call_lane
from lazarus.domain.errors import InternalError

T = TypeVar("T")
_Item = tuple["concurrent.futures.Future[Any]", Callable[[], Any]]


class Runtime:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float = 60.0,
        *,
        api_per_turn: int = 1,
        api_workers: int = 4,
    ) -> None:
        self.loop = loop
        self.timeout = timeout
        self.api_per_turn = max(1, api_per_turn)
        self._thread_id: int | None = None
        self._cond = threading.Condition()
        self._ha: deque[_Item] = deque()
        self._api: deque[_Item] = deque()
        self._scheduled = False
        self._gate = threading.BoundedSemaphore(max(1, api_workers))

    def bind(self) -> None:
        """Called from the loop thread once it runs."""
        self._thread_id = threading.get_ident()

    # -- admission of API handlers (HTTP threads) -----------------------------------------------
    @contextmanager
    def admit(self, lane: str) -> Iterator[None]:
        """Hold one of the `api_workers` slots while a non-HA handler runs."""
        if lane == "ha":
            yield
            return
        if not self._gate.acquire(timeout=self.timeout):
            raise InternalError("The controller is too busy to take this call; try again.")
        try:
            yield
        finally:
            self._gate.release()

    def try_admit(self, lane: str) -> bool:
        """Whether admit(lane) would get a slot now (takes and returns it; for tests)."""
        if lane == "ha":
            return True
        if not self._gate.acquire(blocking=False):
            return False
        self._gate.release()
        return True

    # -- calls onto the loop --------------------------------------------------------------------
    def call(self, fn: Callable[[], T]) -> T:
        if threading.get_ident() == self._thread_id:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            (self._ha if call_lane.get() == "ha" else self._api).append((future, fn))
            wake = not self._scheduled
            self._scheduled = True
            self._cond.notify_all()
        if wake:
            self.loop.call_soon_threadsafe(self._drain)
        return future.result(self.timeout)

    def _drain(self) -> None:
        """On the loop: every HA call, then `api_per_turn` others; again next turn if more."""
        with self._cond:
            batch = list(self._ha)
            self._ha.clear()
            for _ in range(min(self.api_per_turn, len(self._api))):
                batch.append(self._api.popleft())
        for future, fn in batch:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
        with self._cond:
            self._scheduled = bool(self._ha or self._api)
        if self._scheduled:
            self.loop.call_soon(self._drain)  # behind the callbacks that are ready now

    def wait_queued(self, count: int, timeout: float = 10.0) -> None:
        """Block until `count` calls wait for the loop (tests, benchmarks)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._ha) + len(self._api) >= count, timeout):
                raise TimeoutError(f"fewer than {count} calls queued")
