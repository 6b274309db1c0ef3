"""Which HTTP stack for XML-RPC: the hardened threaded server (api/server.py) against
Starlette on uvicorn, the stack the dashboard uses (web/), on the same Dispatcher and the same
answer (not a test: prints figures, asserts nothing).

    .venv/bin/python bench/bench_http_stacks.py [--calls 3000] [--size 6000]

One keep-alive client (lazarus.api.client.Client, as the CLI and ft/host_error use) calls
`one.vm.info` `--calls` times on each stack in turn (twice, interleaved, to see the noise of a
shared machine); the method returns a fixed document of `--size` bytes, so only the transport
differs. On uvicorn the dispatcher runs in Starlette's thread pool (it is synchronous and
CPU-bound; on the event loop it would stall every other connection). Both servers run in
this process, each in its own thread; wall-clock timing, bounded loops.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.client import Client
from lazarus.api.server import XmlRpcServer
from lazarus.api.xmlrpc import Dispatcher, Registry
from lazarus.domain.entities import User


def dispatcher(size: int) -> Dispatcher:
    doc = "<VM><ID>1</ID><TEMPLATE>" + "x" * size + "</TEMPLATE></VM>"
    reg = Registry()
    reg.register("one.vm.info", lambda ctx, vm_id, decrypt: doc, "A:sib", (False,))
    users = {"oneadmin": User(0, "oneadmin", hash_password("pw"))}
    return Dispatcher(reg, Authenticator(users.get))


def starlette_app(d: Dispatcher) -> Starlette:
    async def rpc(request: Request) -> Response:
        body = await request.body()
        peer = request.client.host if request.client else ""
        answer, ok = await run_in_threadpool(d.handle_call, body, peer, "")
        return Response(answer, media_type="text/xml",
                        headers={} if ok else {"Connection": "close"})

    return Starlette(routes=[Route("/RPC2", rpc, methods=["POST"])])


def rate(url: str, calls: int) -> float:
    with Client(url, "oneadmin:pw") as client:
        client.call("one.vm.info", 1)
        start = time.perf_counter()
        for _ in range(calls):
            client.call("one.vm.info", 1)
        return calls / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--size", type=int, default=6000)
    args = ap.parse_args()
    d = dispatcher(args.size)
    threaded = XmlRpcServer(d, port=0)
    threaded.start()
    config = uvicorn.Config(starlette_app(d), host="127.0.0.1", port=0, lifespan="off",
                            access_log=False, log_level="warning", limit_concurrency=128)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    asgi = f"http://127.0.0.1:{port}/RPC2"
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for round_ in (1, 2):
        a = rate(threaded.url, args.calls)
        b = rate(asgi, args.calls)
        print(f"round {round_}: threaded http.server {a:7.0f} calls/s   "
              f"uvicorn+Starlette {b:7.0f} calls/s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server.should_exit = True
    thread.join(10)
    threaded.close()


if __name__ == "__main__":
    main()
