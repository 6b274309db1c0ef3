"""The bridge between the API's HTTP threads and the controller's asyncio loop.

The controller runs on one loop in one thread, so its state changes never race. An HTTP
thread that must change state calls `runtime.call(fn)`: `fn` runs on the loop thread, and its
value (or exception) comes back to the caller. Reads do not come here (see api/methods.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Runtime:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float = 60.0) -> None:
        self.loop = loop
        self.timeout = timeout
        self._thread_id: int | None = None

    def bind(self) -> None:
        """Called from the loop thread once it runs."""
        self._thread_id = threading.get_ident()

    def call(self, fn: Callable[[], T]) -> T:
        if threading.get_ident() == self._thread_id:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(self.timeout)
