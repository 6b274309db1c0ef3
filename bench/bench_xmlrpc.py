"""Throughput of the XML-RPC transport (not a test: prints figures, asserts nothing).

    .venv/bin/python bench/bench_xmlrpc.py [N]

Starts the server in a separate process (so client and server do not share a GIL) with a
trivial `one.vm.info` handler returning a small VM document, and prints calls per second for
N calls (default 5,000) from one client over one keep-alive connection:
- lazarus.api.client.Client (http.client, persistent connection),
- the same client opening a new connection per call (what a short-lived hook script pays),
- pyone (7.3.80 calls requests.post, so it opens a new connection per call too, and it binds
  the XML into its generateDS classes),
- the dispatcher alone, without HTTP (parse, authenticate, check, handle, serialize).
Best of 3 runs each.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.client import Client
from lazarus.api.wire import dumps_call
from lazarus.api.xmlrpc import CallContext, Dispatcher, Registry, XmlRpcServer
from lazarus.domain.entities import User

SESSION = "oneadmin:bench"
VM_XML = "<VM><ID>{}</ID><NAME>bench</NAME><STATE>3</STATE><LCM_STATE>3</LCM_STATE></VM>"


def make_dispatcher() -> Dispatcher:
    users = {"oneadmin": User(0, "oneadmin", hash_password("bench"))}
    registry = Registry()

    @registry.method("one.vm.info", "A:sib", defaults=(False,))
    def vm_info(ctx: CallContext, vm_id: int, decrypt: bool) -> str:
        return VM_XML.format(vm_id)

    return Dispatcher(registry, Authenticator(users.get))


def serve() -> None:
    server = XmlRpcServer(make_dispatcher(), port=0)
    print(server.port, flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()


def best_rate(n: int, call: Callable[[int], object]) -> float:
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for i in range(n):
            call(i)
        best = max(best, n / (time.perf_counter() - start))
    return best


def report(label: str, rate: float) -> None:
    print(f"{label + ':':<48}{rate:8.0f} calls/s")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(proc.stdout.readline())}/RPC2"
        with Client(url, SESSION) as client:
            rate = best_rate(n, lambda i: client.call("one.vm.info", i))
        report("lazarus Client, keep-alive, one.vm.info", rate)

        def fresh(i: int) -> object:
            with Client(url, SESSION) as client:
                return client.call("one.vm.info", i)

        rate = best_rate(max(n // 5, 1), fresh)
        report("lazarus Client, connection per call", rate)
        try:
            import pyone
        except ImportError:
            print("pyone not installed, skipped")
        else:
            one = pyone.OneServer(url, session=SESSION)
            rate = best_rate(max(n // 5, 1), lambda i: one.vm.info(i))
            report("pyone (connection per call), one.vm.info", rate)
    finally:
        proc.terminate()
        proc.wait()
    dispatcher = make_dispatcher()
    body = dumps_call("one.vm.info", [SESSION, 7])
    rate = best_rate(n, lambda i: dispatcher.handle(body, "bench"))
    report("Dispatcher.handle alone (no HTTP)", rate)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main()
