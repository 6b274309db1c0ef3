"""HOOK, HOOK_POOL, HOOKLOG / HOOK_EXECUTION_RECORD and CALL_INFO documents.

Shapes follow OpenNebula's hook.xsd, hook_pool.xsd and api_info.xsd. The hook TEMPLATE is
written in the XSD's element order (ARGUMENTS, ARGUMENTS_STDIN, CALL, COMMAND, LCM_STATE,
REMOTE, RESOURCE, STATE); attributes the XSD does not list (TIMEOUT, operator extras) follow
them, as oned writes them (the shipped XSD predates TIMEOUT). STDOUT and STDERR are base64 with
a line break every 60 characters, as HEM sends them.

Users: api/hook_methods.py (one.hook.info, one.hookpool.info, one.hooklog.info), the hook
manager (CALL_INFO of API events, the $API argument).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence

from ..hooks import ExecutionRecord, Hook
from ..secrets import mask_bytes, mask_words, redact
from .text import cdata, esc, items_xml

_XSD_ORDER = (
    "ARGUMENTS", "ARGUMENTS_STDIN", "CALL", "COMMAND", "LCM_STATE", "REMOTE", "RESOURCE", "STATE",
)  # fmt: skip


def _lines64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\n".join(text[i : i + 60] for i in range(0, len(text), 60))


def hook_template_xml(hook: Hook) -> str:
    items = redact(hook.template).items
    known = [(n, v) for name in _XSD_ORDER for n, v in items if n == name]
    rest = [(n, v) for n, v in items if n not in _XSD_ORDER]
    return f"<TEMPLATE>{items_xml(known + rest)}</TEMPLATE>"


def record_xml(record: ExecutionRecord) -> str:
    r = record.result
    remote = f"<REMOTE_HOST>{esc(record.remote_host)}</REMOTE_HOST>" if record.remote_host else ""
    retry = "<RETRY>yes</RETRY>" if record.retry else ""
    return (
        f"<HOOK_EXECUTION_RECORD><HOOK_ID>{record.hook_id:d}</HOOK_ID>"
        f"<EXECUTION_ID>{record.execution_id:d}</EXECUTION_ID>"
        f"<TIMESTAMP>{record.timestamp:d}</TIMESTAMP>"
        f"<ARGUMENTS>{cdata(mask_words(record.arguments))}</ARGUMENTS>"
        f"<EXECUTION_RESULT><COMMAND>{cdata(mask_words(r.command))}</COMMAND>"
        f"<STDOUT>{_lines64(mask_bytes(r.stdout))}</STDOUT>"
        f"<STDERR>{_lines64(mask_bytes(r.stderr))}</STDERR>"
        f"<CODE>{r.code:d}</CODE></EXECUTION_RESULT>{remote}{retry}</HOOK_EXECUTION_RECORD>"
    )


def hooklog_xml(records: Iterable[ExecutionRecord]) -> str:
    return "<HOOKLOG>" + "".join(record_xml(r) for r in records) + "</HOOKLOG>"


def _lock_xml(hook: Hook) -> str:
    if not hook.lock:
        return ""
    return (
        f"<LOCK><LOCKED>{hook.lock:d}</LOCKED><OWNER>0</OWNER><TIME>{hook.lock_time:d}</TIME>"
        "<REQ_ID>-1</REQ_ID></LOCK>"
    )


def hook_xml(hook: Hook, log: Sequence[ExecutionRecord] | None = None) -> str:
    """The HOOK document; with `log` (one.hook.info) it carries the HOOKLOG."""
    hooklog = hooklog_xml(log) if log is not None else ""
    return (
        f"<HOOK><ID>{hook.id:d}</ID><NAME>{esc(hook.name)}</NAME><TYPE>{esc(hook.type)}</TYPE>"
        f"{_lock_xml(hook)}{hook_template_xml(hook)}{hooklog}</HOOK>"
    )


def hook_pool_xml(hooks: Iterable[Hook]) -> str:
    """HOOK_POOL of one.hookpool.info: every hook, without logs."""
    return "<HOOK_POOL>" + "".join(hook_xml(h) for h in hooks) + "</HOOK_POOL>"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return esc(str(value))


def call_info_xml(
    params: Sequence[object], result: Sequence[object], extra: str = ""
) -> str:
    """CALL_INFO of an API event (api_info.xsd).

    `params` are the call's parameters after the session (IN position 1 is the session and is
    always written masked as "****"); `result` is the OpenNebula result array (OUT 1 success,
    2 value or message, 3 error code, 4 resp_id on failure); `extra` an XML document put
    under EXTRA (allocate/delete: the object)."""
    ok = bool(result[0]) if result else False
    parts = ["<PARAMETER><POSITION>1</POSITION><TYPE>IN</TYPE><VALUE>****</VALUE></PARAMETER>"]
    for pos, value in enumerate(params, start=2):
        parts.append(
            f"<PARAMETER><POSITION>{pos}</POSITION><TYPE>IN</TYPE>"
            f"<VALUE>{_value(value)}</VALUE></PARAMETER>"
        )
    outs = list(result[:3]) if ok else list(result[:4])
    for pos, value in enumerate(outs, start=1):
        parts.append(
            f"<PARAMETER><POSITION>{pos}</POSITION><TYPE>OUT</TYPE>"
            f"<VALUE>{_value(value)}</VALUE></PARAMETER>"
        )
    extra_xml = f"<EXTRA>{extra}</EXTRA>" if extra else ""
    return (
        f"<CALL_INFO><RESULT>{int(ok)}</RESULT><PARAMETERS>{''.join(parts)}</PARAMETERS>"
        f"{extra_xml}</CALL_INFO>"
    )
