"""`fence_sim`: a real executable fence agent for the demo daemon's simulated hosts.

Speaks the ClusterLabs protocol (key=value lines on stdin, or --key=value arguments):
action=off|on|status|monitor|reboot, plug=<host name>. It asks the daemon over XML-RPC,
`lazarus.sim.power(session, host_name, action)` -> [ok, "on"|"off" (the power state after
the action), code], so `ft/fence_host` fences simulated hosts exactly as real hardware.
Endpoint: $ONE_XMLRPC or http://127.0.0.1:2633/RPC2; session: the first line of the file
named by $LAZARUS_AUTH, else $ONE_AUTH, else ~/.one/one_auth ("user:password").

Exit codes: 0 success (status: ON), 2 status OFF, 1 failure.
"""

from __future__ import annotations

import os
import sys
import xmlrpc.client
from collections.abc import Sequence
from pathlib import Path

import defusedxml.xmlrpc

from lazarus.drivers.hooks.lifeline import die_with_parent

DEFAULT_ENDPOINT = "http://127.0.0.1:2633/RPC2"
ACTIONS = ("off", "on", "status", "monitor", "reboot")


def read_params(argv: Sequence[str], stdin_text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    lines = stdin_text.splitlines() if not argv else []
    for line in [*lines, *(a.removeprefix("--") for a in argv)]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        params[key.strip().replace("-", "_")] = value.strip() if sep else "1"
    if "port" in params and "plug" not in params:
        params["plug"] = params["port"]  # ClusterLabs: port is the plug's old name
    return params


def session() -> str:
    path = os.environ.get("LAZARUS_AUTH") or os.environ.get("ONE_AUTH")
    auth = Path(path) if path else Path.home() / ".one" / "one_auth"
    return auth.read_text(encoding="utf-8").splitlines()[0].strip()


def call(action: str, plug: str) -> str:
    defusedxml.xmlrpc.monkey_patch()  # the daemon's answers are parsed hardened
    endpoint = os.environ.get("ONE_XMLRPC") or DEFAULT_ENDPOINT
    with xmlrpc.client.ServerProxy(endpoint) as proxy:
        # the method name has a dot in it: reach it through getattr chains
        reply = proxy.lazarus.sim.power(session(), plug, action)
    if not isinstance(reply, list) or not reply or reply[0] is not True:
        text = reply[1] if isinstance(reply, list) and len(reply) > 1 else reply
        raise RuntimeError(str(text))
    return str(reply[1])


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent({})  # dies with fence_host; no parent check: wrappers may run it
    argv = sys.argv[1:] if argv is None else list(argv)
    params = read_params(argv, "" if argv else sys.stdin.read())
    action = params.get("action", "reboot")
    plug = params.get("plug", "")
    if action not in ACTIONS:
        print(f"ERROR: Failed: unsupported action {action}", file=sys.stderr)
        return 1
    if not plug:
        print("ERROR: Failed: You have to enter plug number or machine identification",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        state = call("status" if action == "monitor" else action, plug)
    except (OSError, xmlrpc.client.Error, RuntimeError, IndexError, ValueError) as exc:
        print(f"ERROR: Failed: {exc}", file=sys.stderr)
        return 1
    if action == "status":
        print(f"Status: {state.upper()}")
        return 2 if state == "off" else 0
    if action != "monitor":
        print(f"Success: {action} (power {state})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
