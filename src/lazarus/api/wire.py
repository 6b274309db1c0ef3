"""The XML-RPC wire format: parsing calls and responses safely, writing them compactly.

Used by the server (api/xmlrpc.py) and the client (api/client.py).

Parsing: the standard library's XML-RPC `Unmarshaller` fed through defusedxml's
`DefusedExpatParser`, with DTDs, entity declarations and external references forbidden
(billion laughs, XXE: refused before any expansion), text buffered into runs, and a nesting
limit. We use this pair rather than defusedxml.xmlrpc.monkey_patch() because monkey patching
changes xmlrpc.client process-wide (pyone, tests), and rather than a tree walk of our own
because the Unmarshaller already decodes every XML-RPC type (i8, nil, base64...).

Writing: ints beyond 32 bits go out as <i8> (xmlrpc.client refuses them; Ruby and pyone read
<i8>), IntEnum values as ints, and characters XML 1.0 forbids are replaced by U+FFFD so a
response always parses.
"""

from __future__ import annotations

import base64
import re
import xmlrpc.client
from collections.abc import Mapping, Sequence
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _LimitedUnmarshaller(xmlrpc.client.Unmarshaller):
    def __init__(self, max_depth: int) -> None:
        super().__init__(use_datetime=False, use_builtin_types=True)
        self._depth = 0
        self._max_depth = max_depth

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag in ("array", "struct"):
            self._depth += 1
            if self._depth > self._max_depth:
                raise ValueError(f"arrays/structs nested deeper than {self._max_depth}")
        super().start(tag, attrs)

    def end(self, tag: str) -> None:
        if tag in ("array", "struct"):
            self._depth -= 1
        super().end(tag)


class XmlRpcParseError(ValueError):
    """A body that is not an acceptable XML-RPC document (text safe to send back)."""


def _unmarshal(body: bytes, max_depth: int) -> _LimitedUnmarshaller:
    target = _LimitedUnmarshaller(max_depth)
    parser = DefusedExpatParser(target, forbid_dtd=True)
    # One data callback per text run, not one per entity reference (&lt; ...): a 14 MB
    # vmpool body escaped inside <string> is millions of them otherwise.
    parser._parser.buffer_text = True  # type: ignore[attr-defined]  # ExpatParser internals
    try:
        parser.feed(body)
        parser.close()
    except DefusedXmlException as exc:
        raise XmlRpcParseError(f"DTDs and entities are not allowed ({type(exc).__name__})") from exc
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        raise XmlRpcParseError(f"invalid XML-RPC document: {exc}") from exc
    except Exception as exc:  # expat.ExpatError and binascii.Error are not ValueErrors
        raise XmlRpcParseError(f"malformed XML: {exc}") from exc
    return target


def loads_call(body: bytes, max_depth: int = 32) -> tuple[str, tuple[Any, ...]]:
    """A methodCall body -> (method name, params); XmlRpcParseError if unacceptable."""
    target = _unmarshal(body, max_depth)
    name = target.getmethodname()
    if not name:
        raise XmlRpcParseError("not an XML-RPC methodCall (no methodName)")
    try:
        params = target.close()
    except Exception as exc:
        raise XmlRpcParseError(f"invalid XML-RPC document: {exc}") from exc
    return name, params


def loads_response(body: bytes, max_depth: int = 64) -> Any:
    """A methodResponse body -> its single value; raises xmlrpc.client.Fault for a fault."""
    target = _unmarshal(body, max_depth)
    try:
        values = target.close()  # raises Fault
    except xmlrpc.client.Fault:
        raise
    except Exception as exc:
        raise XmlRpcParseError(f"invalid XML-RPC response: {exc}") from exc
    if len(values) != 1:
        raise XmlRpcParseError("an XML-RPC response holds exactly one value")
    return values[0]


_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape(text: str) -> str:
    # printable ASCII (the usual case) holds none of them: two C-level checks, no regex scan
    if not (text.isascii() and text.isprintable()) and _INVALID_XML_CHARS.search(text):
        text = _INVALID_XML_CHARS.sub("\ufffd", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _dump(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(f"<value><string>{_escape(value)}</string></value>")
    elif isinstance(value, bool):
        out.append(f"<value><boolean>{int(value)}</boolean></value>")
    elif isinstance(value, int):
        value = int(value)  # IntEnum -> int
        if INT32_MIN <= value <= INT32_MAX:
            out.append(f"<value><int>{value}</int></value>")
        elif INT64_MIN <= value <= INT64_MAX:
            out.append(f"<value><i8>{value}</i8></value>")
        else:
            raise OverflowError("integer beyond 64 bits")
    elif isinstance(value, float):
        out.append(f"<value><double>{value!r}</double></value>")
    elif isinstance(value, list | tuple):
        out.append("<value><array><data>")
        for item in value:
            _dump(item, out)
        out.append("</data></array></value>")
    elif isinstance(value, Mapping):
        out.append("<value><struct>")
        for key, item in value.items():
            out.append(f"<member><name>{_escape(str(key))}</name>")
            _dump(item, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(value, bytes | bytearray):
        out.append(f"<value><base64>{base64.b64encode(value).decode()}</base64></value>")
    else:
        raise TypeError(f"cannot send {type(value).__name__} over XML-RPC")


def dumps_response(value: object) -> bytes:
    out = ['<?xml version="1.0"?>\n<methodResponse><params><param>']
    _dump(value, out)
    out.append("</param></params></methodResponse>\n")
    return "".join(out).encode("utf-8")


def dumps_fault(code: int, text: str) -> bytes:
    out = ['<?xml version="1.0"?>\n<methodResponse><fault>']
    _dump({"faultCode": code, "faultString": text}, out)
    out.append("</fault></methodResponse>\n")
    return "".join(out).encode("utf-8")


def dumps_call(method: str, params: Sequence[object]) -> bytes:
    """A methodCall body (used by api/client.py); same value rules as responses."""
    out = [f'<?xml version="1.0"?>\n<methodCall><methodName>{_escape(method)}</methodName><params>']
    for param in params:
        out.append("<param>")
        _dump(param, out)
        out.append("</param>")
    out.append("</params></methodCall>\n")
    return "".join(out).encode("utf-8")


