"""The `ft/fence_host` hook command: fence one host through its FENCE levels.

Contract (OpenNebula's share/hooks/ft/fence_host.sh): the base64 HOST XML on stdin; exit 0
only when the host is proven powered off. Here: 1 when fencing failed, 2 for bad input (not
base64, not a HOST document, no or invalid FENCE). FENCE vectors are read from
HOST/TEMPLATE/FENCE (one element per level, child elements = attributes) by
ha/fencing.py's fence_template and fence_levels, the one reader of FENCE.

Prints one line per agent run and a summary line, never a password. Options tune the policy:

    python -m lazarus.app.fence_host [--attempts 3] [--timeout 20] [--backoff 1]
        [--total-timeout 60] [--agent-path DIR[:DIR...]] < host.b64

The HOST document of one.host.info has its secrets masked ("****", domain/secrets.py). When
a FENCE level holds a masked value, the real levels are read from the daemon with
`lazarus.host.fencecreds(host id, key)`: the endpoint and session of the hook environment
($ONE_XMLRPC, $LAZARUS_AUTH) and the fence key in the 0600 file $LAZARUS_FENCE_KEY (set by the
daemon for its hooks). The password then exists only in this process and on the agent's
stdin; without the key the fence fails with exit 2 (docs/security.md).

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
from collections.abc import Mapping, Sequence
from pathlib import Path

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from lazarus.api.auth import read_fence_key
from lazarus.api.client import Client
from lazarus.domain.errors import LazarusError
from lazarus.domain.secrets import MASK
from lazarus.domain.template import Template
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.fence.agent import DEFAULT_SEARCH_PATH, SubprocessAgentRunner
from lazarus.drivers.hooks.lifeline import die_with_parent
from lazarus.ha.fencing import (
    FenceAttempt,
    FenceConfigError,
    FencePolicy,
    fence,
    fence_levels,
    fence_template,
)

EXIT_FENCED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    pass


def read_host_id(data: bytes) -> tuple[str, int | None, Template]:
    """The host name, its ID (None when absent) and its FENCE attributes (for fence_levels)."""
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
    fence = fence_template(root.find("TEMPLATE"))
    raw_id = (root.findtext("ID") or "").strip()
    return name, int(raw_id) if raw_id.isdigit() else None, fence


def masked(fence: Template) -> bool:
    return any(MASK in value for vector in fence.vectors("FENCE") for _, value in vector.pairs)


def fence_credentials(host_id: int | None, env: Mapping[str, str]) -> Template:
    """The unmasked FENCE levels of the host, from the daemon (BadInput when unavailable)."""
    why = "masked in the HOST document and the fencing credentials cannot be read: "
    key_file = env.get("LAZARUS_FENCE_KEY", "")
    if host_id is None:
        raise BadInput(why + "the document has no host ID")
    if not key_file:
        raise BadInput(why + "$LAZARUS_FENCE_KEY is not set (see docs/security.md)")
    try:
        key = read_fence_key(Path(key_file))
        with Client.from_env(env) as client:
            document = str(client.call("lazarus.host.fencecreds", host_id, key))
        root = SafeET.fromstring(document)
    except (LazarusError, OSError, SafeET.ParseError, DefusedXmlException) as exc:
        raise BadInput(why + str(exc)) from None
    return fence_template(root)


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
        name, host_id, fence_attrs = read_host_id(sys.stdin.buffer.read())
        if "FENCE" not in fence_attrs:
            raise BadInput(f"host {name}: no FENCE attribute in the host template")
        if masked(fence_attrs):
            fence_attrs = fence_credentials(host_id, os.environ)
        devices = fence_levels(fence_attrs)
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
