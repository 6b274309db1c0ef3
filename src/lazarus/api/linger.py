"""Refused connections closed without a reset (a "lingering close", as Apache does).

The HTTP server answers 503 to a connection beyond its cap (api/server.py) before reading
anything. Closing that socket at once makes the kernel answer the client's request bytes,
arrived or still coming, with a reset, and the client sees "connection reset" or "broken pipe"
instead of the 503: api/client.py retries a 503 for every call but a reset for reads only, so
a write at the cap failed (issue 20). Here the refused socket is shut for writing (the 503 and
a FIN are on their way), then what the client sends is read and dropped until it closes its
side, for at most `timeout` seconds and `budget` bytes, in one thread for all of them; beyond
`limit` sockets lingering at once, the newest is closed at once (a flood must not grow this).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable


class Lingerer:
    def __init__(self, timeout: float = 2.0, budget: int = 1 << 20, limit: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout, self.budget, self.limit, self.clock = timeout, budget, limit, clock
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._socks: dict[socket.socket, list[float]] = {}  # sock -> [deadline, bytes left]
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, sock: socket.socket) -> None:
        """Take over `sock` (its answer already sent): shut our side, drain, then close."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        with self._lock:
            if self._closed or len(self._socks) >= self.limit:
                sock.close()
                return
            sock.setblocking(False)
            self._socks[sock] = [self.clock() + self.timeout, float(self.budget)]
            self._selector.register(sock, selectors.EVENT_READ)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-linger",
                                                daemon=True)
                self._thread.start()
        self._wake_w.send(b"x")

    def lingering(self) -> int:
        with self._lock:
            return len(self._socks)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                deadlines = [entry[0] for entry in self._socks.values()]
            wait = max(0.0, min(deadlines) - self.clock()) if deadlines else None
            for key, _ in self._selector.select(wait):
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                self._drain(key.fileobj)  # type: ignore[arg-type]
            now = self.clock()
            with self._lock:
                expired = [s for s, (deadline, _) in self._socks.items() if deadline <= now]
            for sock in expired:
                self._drop(sock)

    def _drain(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        with self._lock:
            entry = self._socks.get(sock)
            if entry is None:
                return
            entry[1] -= len(data)
            done = not data or entry[1] <= 0
        if done:
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            if self._socks.pop(sock, None) is None:
                return
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            socks = list(self._socks)
            self._socks.clear()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5)
        for sock in socks:
            sock.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
