"""The `ft/fence_host` hook command: fence one host through its FENCE levels.

Contract (OpenNebula's share/hooks/ft/fence_host.sh): the base64 HOST XML on stdin; exit 0
only when the host is proven powered off. Here: 1 when fencing failed, 2 for bad input (not
base64, not a HOST document, no or invalid FENCE). FENCE vectors are read from
HOST/TEMPLATE/FENCE (one element per level, child elements = attributes); see core/fencing.py.

Prints one line per agent run and a summary line, never a password. Options tune the policy:

    python -m lazarus.app.fence_host [--attempts 3] [--timeout 20] [--backoff 1]
        [--total-timeout 60] [--agent-path DIR[:DIR...]] < host.b64

Agents are looked up in --agent-path (also $LAZARUS_FENCE_PATH), then the system dirs.
The policy defaults can also come from the environment (the hook runner passes the daemon's
environment through, so tests and operators can bound the fence without editing the hook):
$LAZARUS_FENCE_ATTEMPTS, $LAZARUS_FENCE_TIMEOUT, $LAZARUS_FENCE_BACKOFF and
$LAZARUS_FENCE_TOTAL_TIMEOUT; a flag given on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import os
import sys
from collections.abc import Sequence
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from lazarus.core.fencing import FenceAttempt, FenceConfigError, FencePolicy, fence, parse_devices
from lazarus.domain.template import Vector
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.fence.agent import DEFAULT_SEARCH_PATH, SubprocessAgentRunner
from lazarus.drivers.hooks.lifeline import die_with_parent

EXIT_FENCED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    pass


def read_host(data: bytes) -> tuple[str, list[Vector]]:
    """The host name and its FENCE vectors from base64 HOST XML (plain XML is accepted too)."""
    text = data.strip()
    if not text.startswith(b"<"):
        try:
            text = base64.b64decode(b"".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInput(f"stdin is not base64: {exc}") from None
    try:
        root = SafeET.fromstring(text)
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise BadInput(f"stdin is not a HOST document: {exc}") from None
    if root.tag != "HOST":
        raise BadInput(f"stdin is not a HOST document (root element {root.tag})")
    name = (root.findtext("NAME") or "").strip() or f"host/{root.findtext('ID') or '?'}"
    vectors = [_vector(el) for el in root.findall("TEMPLATE/FENCE")]
    return name, vectors


def _vector(element: Element) -> Vector:
    return Vector([(child.tag.upper(), (child.text or "").strip()) for child in element])


def _env_number(name: str, default: float) -> float:
    """$LAZARUS_FENCE_<name> as a number, else the default (a bad value is an error)."""
    raw = os.environ.get(f"LAZARUS_FENCE_{name}", "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        print(f"fence_host: error: LAZARUS_FENCE_{name} must be a number, not {raw!r}",
              file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fence_host", description=__doc__.split("\n")[0])
    defaults = FencePolicy()
    parser.add_argument("--attempts", type=int,
                        default=int(_env_number("ATTEMPTS", defaults.attempts)))
    parser.add_argument("--timeout", type=float, default=_env_number("TIMEOUT", defaults.timeout))
    parser.add_argument("--backoff", type=float, default=_env_number("BACKOFF", defaults.backoff))
    parser.add_argument("--total-timeout", type=float,
                        default=_env_number("TOTAL_TIMEOUT", defaults.total_timeout))
    parser.add_argument("--agent-path", action="append", default=[])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    if not die_with_parent():
        print("fence_host: the process that started it is gone; exiting", file=sys.stderr)
        return EXIT_FAILED
    args = parse_args(argv)
    extra = [*args.agent_path, os.environ.get("LAZARUS_FENCE_PATH", "")]
    search = [d for entry in extra for d in entry.split(":") if d] + list(DEFAULT_SEARCH_PATH)
    policy = FencePolicy(
        attempts=max(1, args.attempts),
        timeout=args.timeout,
        backoff=args.backoff,
        total_timeout=args.total_timeout,
    )
    try:
        name, vectors = read_host(sys.stdin.buffer.read())
        if not vectors:
            raise BadInput(f"host {name}: no FENCE attribute in the host template")
        devices = parse_devices(vectors)
    except (BadInput, FenceConfigError) as exc:
        print(f"fence_host: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    def show(attempt: FenceAttempt) -> None:
        print(f"fence_host {name}: {attempt.line()}", flush=True)

    runner = SubprocessAgentRunner(search_path=search)
    outcome = asyncio.run(fence(name, devices, runner, SystemClock(), policy, on_attempt=show))
    print(f"fence_host {outcome.summary}", flush=True)
    return EXIT_FENCED if outcome.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
