"""The dashboard's API calls: the dispatcher, in process, with the user's own session.

`UserApi.call` runs `method` exactly as an XML-RPC client's call would (authentication,
parameter checks, authorization, API hooks), and raises `CallFailed` with the API's text
and error code when the answer is a failure (an AUTHORIZATION error for a user whose role
may not act, once roles exist). The readers turn the pool documents into plain dicts.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from defusedxml import ElementTree as SafeET

from lazarus.api.xmlrpc import Dispatcher
from lazarus.domain.states import HostState, LcmState, VmState, vm_state_label


class CallFailed(Exception):
    def __init__(self, text: str, code: int) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass
class UserApi:
    dispatcher: Dispatcher
    credentials: str
    client_address: str = "dashboard"

    def call(self, method: str, *params: object) -> Any:
        result = self.dispatcher.call(method, [self.credentials, *params], self.client_address)
        if not result[0]:
            raise CallFailed(str(result[1]), int(result[2]))  # type: ignore[call-overload]
        return result[1]

    def xml(self, method: str, *params: object) -> Any:
        return SafeET.fromstring(self.call(method, *params))


def _int(node: Any, path: str, default: int = 0) -> int:
    text = node.findtext(path)
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _vector(node: Any) -> dict[str, str]:
    return {child.tag: child.text or "" for child in node} if node is not None else {}


def hosts(api: UserApi) -> list[dict[str, Any]]:
    out = []
    for h in api.xml("one.hostpool.info").findall("HOST"):
        state = HostState(_int(h, "STATE"))
        incidents = h.findall("TEMPLATE/HA_INCIDENT")
        out.append({
            "id": _int(h, "ID"),
            "name": h.findtext("NAME", ""),
            "state": state.name,
            "vm_mad": h.findtext("VM_MAD", ""),
            "cpu_total": _int(h, "HOST_SHARE/TOTAL_CPU"),
            "cpu_used": _int(h, "HOST_SHARE/CPU_USAGE"),
            "mem_total": _int(h, "HOST_SHARE/TOTAL_MEM"),
            "mem_used": _int(h, "HOST_SHARE/MEM_USAGE"),
            "running_vms": _int(h, "HOST_SHARE/RUNNING_VMS"),
            "vm_ids": [int(x.text or -1) for x in h.findall("VMS/ID")],
            "fence": [_vector(f) for f in h.findall("TEMPLATE/FENCE")],
            "fence_confirmed": _confirmed(h.find("TEMPLATE/FENCE_CONFIRMED")),
            "incident": _vector(incidents[-1]) if incidents else {},
            "failures": h.findtext("TEMPLATE/MONITOR_FAILURES", ""),
        })
    return out


def vms(api: UserApi) -> list[dict[str, Any]]:
    out = []
    for v in api.xml("one.vmpool.info", -2, -1, -1, -1).findall("VM"):
        state, lcm = VmState(_int(v, "STATE")), LcmState(_int(v, "LCM_STATE"))
        history = v.findall("HISTORY_RECORDS/HISTORY")
        out.append({
            "id": _int(v, "ID"),
            "name": v.findtext("NAME", ""),
            "state": state.name,
            "lcm": lcm.name if state is VmState.ACTIVE else "",
            "label": vm_state_label(state, lcm),
            "host": history[-1].findtext("HOSTNAME", "") if history else "",
            "host_id": _int(history[-1], "HID", -1) if history else -1,
        })
    return out


def hook_names(api: UserApi) -> dict[int, str]:
    pool = api.xml("one.hookpool.info", -2, -1, -1)
    return {_int(h, "ID"): h.findtext("NAME", "") for h in pool.findall("HOOK")}


def hook_records(api: UserApi) -> list[dict[str, Any]]:
    out = []
    for r in api.xml("one.hooklog.info", -1, -1, -1, 0).findall("HOOK_EXECUTION_RECORD"):
        out.append({
            "hook_id": _int(r, "HOOK_ID"),
            "execution_id": _int(r, "EXECUTION_ID"),
            "timestamp": _int(r, "TIMESTAMP"),
            "arguments": r.findtext("ARGUMENTS", ""),
            "code": _int(r, "EXECUTION_RESULT/CODE", -1),
            "stdout": _decode(r.findtext("EXECUTION_RESULT/STDOUT", "")),
            "stderr": _decode(r.findtext("EXECUTION_RESULT/STDERR", "")),
        })
    return out


def _confirmed(node: Any) -> str:
    """FENCE_CONFIRMED = [ TIME, USER ] as "by USER at TIME" ("" when absent)."""
    if node is None:
        return ""
    v = _vector(node)
    stamp = v.get("TIME", "")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(stamp))) if stamp.isdigit() \
        else stamp or "?"
    return f"by {v.get('USER', '?')} at {when}"


def _decode(text: str) -> str:
    try:
        return base64.b64decode(text).decode("utf-8", errors="replace")
    except ValueError:
        return text
