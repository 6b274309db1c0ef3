"""The Coordination port over etcd v3, through etcd's JSON gateway (`/v3/...` over HTTP).

    coord = EtcdCoordination(["http://10.0.0.1:2379", "http://10.0.0.2:2379", ...])
    term = await coord.campaign("lazarus/leader", "ctl-a", ttl=2.0)

Why our own thin client over the gateway rather than a library (evaluated for issue 14):

* python-etcd3 (0.12.0, March 2020, unmaintained): gRPC, so grpcio and protobuf; its
  generated `_pb2` modules predate protobuf 4 and fail to import with current protobuf
  ("Descriptors cannot be created directly") unless the pure-Python protobuf is forced.
* etcd3gw (2.7.0, OpenStack, maintained, over the same JSON gateway): installs cleanly on
  Python 3.11, but brings requests, futurist and pbr for the five calls we make, with one
  timeout per client object. We need a
  deadline per call (a renew must give up before the leader's own deadline) and failover
  across members inside that deadline.
* The gateway is etcd's documented, stable HTTP/JSON mapping of the gRPC API (etcd 3.4 serves
  it at /v3/). Five POSTs (range, txn, lease grant, keepalive, revoke) with base64 keys are
  about a hundred lines on the standard library's http.client: no dependency at all.

Each call runs in a worker thread (asyncio.to_thread) with a socket timeout; the members are
tried in turn, starting with the last one that answered, until the call's deadline. A member
that is cut off from the quorum answers 503 or times out: the next one is tried. etcd's TTLs
are whole seconds (rounded up here) and at least its minimum (1.5 x the election timeout).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import math
import threading
import time
import urllib.parse
from typing import Any

from lazarus.domain.errors import CoordinationError
from lazarus.ports.coordination import Term

DEFAULT_TIMEOUT = 1.0


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode(errors="replace")


class EtcdCoordination:
    def __init__(self, endpoints: list[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = []
        for url in endpoints:
            parts = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"etcd endpoint {url!r}: only http://host:port is supported")
            self.endpoints.append((parts.hostname, parts.port or 2379))
        self.timeout = timeout
        self._good = 0
        self._lock = threading.Lock()

    # -- transport ----------------------------------------------------------------------------
    def _post_once(self, host: str, port: int, path: str, body: dict[str, Any],
                   timeout: float) -> dict[str, Any]:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("POST", "/v3/" + path, json.dumps(body),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read() if path != "lease/keepalive" else resp.readline()
            if resp.status != 200:
                raise CoordinationError(f"etcd {host}:{port} {path}: HTTP {resp.status} "
                                        f"{raw[:200].decode(errors='replace')}")
        except (OSError, http.client.HTTPException) as exc:
            raise CoordinationError(f"etcd {host}:{port} {path}: {exc}") from exc
        finally:
            conn.close()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise CoordinationError(f"etcd {host}:{port} {path}: not JSON") from exc
        if not isinstance(data, dict):
            raise CoordinationError(f"etcd {host}:{port} {path}: unexpected answer")
        if "error" in data:
            raise CoordinationError(f"etcd {host}:{port} {path}: {data['error']}")
        return data

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        errors: list[str] = []
        n = len(self.endpoints)
        with self._lock:
            first = self._good
        for i in range(n):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            index = (first + i) % n
            host, port = self.endpoints[index]
            try:
                data = self._post_once(host, port, path, body, left)
            except CoordinationError as exc:
                errors.append(str(exc))
                continue
            with self._lock:
                self._good = index
            return data
        raise CoordinationError("; ".join(errors) or f"etcd {path}: no time left")

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._post, path, body)

    # -- the port -----------------------------------------------------------------------------
    async def leader(self, key: str) -> tuple[str, int] | None:
        data = await self._call("kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        if not kvs:
            return None
        kv = kvs[0]
        return _unb64(kv.get("value", "")), int(kv["create_revision"])

    async def campaign(self, key: str, value: str, ttl: float) -> Term | None:
        if await self.leader(key) is not None:
            return None  # held: no lease granted for nothing
        grant = await self._call("lease/grant", {"TTL": max(1, math.ceil(ttl))})
        lease = int(grant["ID"])
        granted = float(grant.get("TTL", ttl))
        try:
            txn = await self._call("kv/txn", {
                "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                             "create_revision": "0"}],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(value),
                                             "lease": str(lease)}}],
            })
        except BaseException:
            await self._revoke_quietly(lease)
            raise
        if not txn.get("succeeded"):
            await self._revoke_quietly(lease)
            return None
        epoch = int(txn["header"]["revision"])  # the put's revision: the key's creation
        return Term(key=key, value=value, lease=lease, epoch=epoch, ttl=granted)

    async def renew(self, term: Term) -> bool:
        data = await self._call("lease/keepalive", {"ID": str(term.lease)})
        result = data.get("result", data)
        return int(result.get("TTL", 0) or 0) > 0

    async def resign(self, term: Term) -> None:
        await self._call("lease/revoke", {"ID": str(term.lease)})

    async def _revoke_quietly(self, lease: int) -> None:
        try:
            await self._call("lease/revoke", {"ID": str(lease)})
        except CoordinationError:
            pass  # it expires on its own

    def close(self) -> None:
        pass  # one connection per call: nothing held
