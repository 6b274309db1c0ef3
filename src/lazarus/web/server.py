"""The dashboard's HTTP server: uvicorn in its own thread and event loop, beside the XML-RPC
server (so nothing on the dashboard's port can take a slot of the HA programs' API).

Limits (uvicorn's settings): at most `max_connections` concurrent connections and requests
(then 503), keep-alive idle connections closed after 5 s, a request head larger than 16 KiB
refused, the listen backlog 128; forms are limited to 16 KiB by the app (app.py). uvicorn
answers errors without a traceback ("Internal Server Error"); the app catches its own.
Access logs are off (the URLs carry no secret, but the log is the daemon's).
"""

from __future__ import annotations

import threading

import uvicorn
from starlette.applications import Starlette


class WebServer:
    def __init__(self, app: Starlette, host: str, port: int, max_connections: int = 64) -> None:
        self.config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", access_log=False, log_level="warning",
            limit_concurrency=max_connections, timeout_keep_alive=5, backlog=128,
            h11_max_incomplete_event_size=16 * 1024, server_header=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(self.config)
        self._thread = threading.Thread(target=self.server.run, name="web", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self.server.started or not self._thread.is_alive():
                break
            waited.wait(0.02)
        if not self.server.started:
            raise RuntimeError(f"the dashboard did not start on {self.host}:{self.port}")
        sockets = [s for server in self.server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/ui/"

    def close(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
