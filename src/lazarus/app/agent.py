"""`lazarus agent`: the host agent process (lazarus/agent/loop.py with the real adapters).

    lazarus agent --host node1 --datastore /var/lib/one/datastores/0 \\
        --controller 10.0.0.1:2633 [--period 1] [--loss-timeout 5] \\
        [--watchdog /dev/watchdog --watchdog-timeout 10 | --fake-watchdog] \\
        [--isolation-response none|stop --isolation-time 10 --libvirt-uri qemu:///system]

It writes <datastore>/.lazarus-heartbeat/<host>.hb every period, checks that the
controller's API port accepts a TCP connection, and feeds the watchdog while it has either.
No controller code runs here; it needs no credentials (it never calls the API).
Also `python -m lazarus.app.agent ...` (the lab starts it so inside each host's namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from lazarus.agent.loop import RESPONSES, Agent, AgentConfig
from lazarus.drivers.agent_io import TcpLink, VirshVms
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.heartbeat import FileBeats
from lazarus.drivers.watchdog import DeviceWatchdog, FakeWatchdog
from lazarus.ports.heartbeat import Watchdog


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lazarus agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", required=True, help="this host's name, as the controller knows it")
    p.add_argument("--datastore", required=True, type=Path,
                   help="the shared system datastore directory (as this host mounts it)")
    p.add_argument("--controller", required=True, help="HOST:PORT of the controller's API")
    p.add_argument("--period", type=float, default=1.0)
    p.add_argument("--loss-timeout", type=float, default=5.0)
    p.add_argument("--watchdog", type=Path, default=None, help="watchdog device (/dev/watchdog)")
    p.add_argument("--watchdog-timeout", type=float, default=10.0)
    p.add_argument("--fake-watchdog", action="store_true",
                   help="a watchdog that only logs when it would reset the host (tests, lab)")
    p.add_argument("--isolation-response", choices=RESPONSES, default="none")
    p.add_argument("--isolation-time", type=float, default=10.0)
    p.add_argument("--libvirt-uri", default="qemu:///system")
    return p


def _controller(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise SystemExit(f"--controller needs HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


async def run(args: argparse.Namespace) -> int:
    clock = SystemClock()
    config = AgentConfig(host=args.host, period=args.period, loss_timeout=args.loss_timeout,
                         isolation_response=args.isolation_response,
                         isolation_time=args.isolation_time)  # fmt: skip
    watchdog: Watchdog | None = None
    fake: FakeWatchdog | None = None
    if args.watchdog is not None:
        watchdog = DeviceWatchdog(args.watchdog, args.watchdog_timeout)
    elif args.fake_watchdog:
        fake = FakeWatchdog(clock.monotonic, args.watchdog_timeout,
                            on_fire=lambda: logging.error("fake watchdog: would reset the host"))
        watchdog = fake
    host, port = _controller(args.controller)
    agent = Agent(config, clock, FileBeats(args.datastore), TcpLink(host, port), watchdog,
                  VirshVms(args.libvirt_uri))
    task = asyncio.ensure_future(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    logging.info("agent %s: heartbeat in %s every %g s, watchdog %s", args.host,
                 args.datastore, args.period,
                 "none" if watchdog is None else f"{watchdog.timeout:g} s")
    try:
        while not task.done():
            await asyncio.sleep(0.5)
            if fake is not None:
                fake.check()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    return asyncio.run(run(parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
