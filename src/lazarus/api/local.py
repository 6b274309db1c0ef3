"""An in-process API client: the same `call(method, *params)` as api/client.Client, going
through the real Dispatcher (session check, signatures, return convention) without HTTP.

The simulator and the tests run ft/host_error's logic with it against the real method table.
"""

from __future__ import annotations

from typing import Any

from .client import raise_for_result
from .xmlrpc import Dispatcher


class LocalClient:
    def __init__(self, dispatcher: Dispatcher, session: str) -> None:
        self.dispatcher = dispatcher
        self._session = session

    def call(self, method: str, *params: object) -> Any:
        return raise_for_result(method, self.dispatcher.call(method, [self._session, *params]))
