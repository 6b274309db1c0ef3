"""Text pieces of OpenNebula's XML documents: escaping, CDATA, typed numbers, templates.

Everything here is pure string building on the hot path of `one.vmpool.info` (thousands of VMs
per call), so the common case (printable text) costs one C-level check per value or per
template and no regular expression. Text that XML 1.0 cannot carry at all (NUL and most C0
controls, lone surrogates, U+FFFE/U+FFFF) is replaced by U+FFFD: one bad value must not make
the whole pool document unparsable for every client. A carriage return is written as `&#13;`
outside CDATA, because parsers turn a literal CR into LF.

`template_from_element` is the inverse of `template_xml`, used by the API for XML template
parameters (pyone sends nested dicts as XML); the caller parses with defusedxml.

Users: the other modules of this package, the API (template parameters), the hook runner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from xml.etree.ElementTree import Element

from ..errors import TemplateSyntaxError
from ..template import Template, Value, Vector, valid_name

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


NUM = tuple(str(i) for i in range(128))
"""Decimal text of the state / action enums by number: `NUM[vm.state]` costs a tuple index,
where formatting an IntEnum goes through Python-level Enum code (5x slower). Plain int fields
are written with `{x}`: the entities are typed int, and mypy keeps floats out of them."""


def clean(value: str) -> str:
    """`value` with the characters XML 1.0 cannot hold replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)


def esc(value: str) -> str:
    """Element text: & < > escaped (quotes need no escaping outside attributes)."""
    if not value.isprintable():  # printable excludes every character XML cannot carry
        value = clean(value)
        if "\r" in value:
            return _esc_chars(value).replace("\r", "&#13;")
    if "&" in value or "<" in value or ">" in value:
        return _esc_chars(value)
    return value


def _esc_chars(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cdata(value: str) -> str:
    """A template value as OpenNebula writes it: in CDATA, with "]]>" split across sections."""
    if value.isprintable() and "]]>" not in value:
        return "<![CDATA[" + value + "]]>"
    value = clean(value)
    if "\r" in value:  # CDATA cannot keep a CR (parsers turn it into LF); escaped text can
        return _esc_chars(value).replace("\r", "&#13;")
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def int_text(value: object) -> str | None:
    """`value` as an xs:integer literal, or None when it is not a whole number."""
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    text = str(value).strip()
    if _INT.fullmatch(text):
        return str(int(text))
    if _DECIMAL.fullmatch(text) and float(text).is_integer():
        return str(int(float(text)))
    return None


def decimal_text(value: object) -> str | None:
    """`value` as an xs:decimal literal (no exponent, no inf/nan), or None."""
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        text = repr(value)
        return text if "e" not in text else f"{value:f}"
    text = str(value).strip()
    return text if _DECIMAL.fullmatch(text) else None


def ids_xml(tag: str, ids: Iterable[int]) -> str:
    """An IDS element: `<HOSTS><ID>1</ID><ID>2</ID></HOSTS>`."""
    inner = "".join([f"<ID>{i}</ID>" for i in ids])
    return f"<{tag}>{inner}</{tag}>"


def pairs_xml(pairs: list[tuple[str, str]]) -> str:
    """`<A><![CDATA[b]]></A>...` for (name, value) pairs.

    Fast path: render everything plainly, then check the result once. It is right when the
    text is printable (so no character needs cleaning or escaping) and holds exactly one "]]>"
    per value (so no value contains one). Otherwise render value by value.
    """
    body = "".join([f"<{k}><![CDATA[{v}]]></{k}>" for k, v in pairs])
    if body.isprintable() and body.count("]]>") == len(pairs):
        return body
    return "".join([f"<{k}>{cdata(v)}</{k}>" for k, v in pairs])


def vector_xml(name: str, pairs: list[tuple[str, str]]) -> str:
    return f"<{name}>{pairs_xml(pairs)}</{name}>"


def attribute_xml(name: str, value: Value) -> str:
    if isinstance(value, str):
        return f"<{name}>{cdata(value)}</{name}>"
    return f"<{name}>{pairs_xml(value.pairs)}</{name}>"


Entry = tuple[str, str | list[tuple[str, str]]]
"""An attribute ready to render: (name, value) or (name, vector pairs)."""


def entries_xml(entries: list[Entry]) -> str:
    """Attributes as TEMPLATE children, in the order given (same fast path as pairs_xml)."""
    parts = []
    values = 0
    for name, value in entries:
        if isinstance(value, str):
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
            values += 1
        else:
            inner = "".join([f"<{k}><![CDATA[{v}]]></{k}>" for k, v in value])
            parts.append(f"<{name}>{inner}</{name}>")
            values += len(value)
    body = "".join(parts)
    if body.isprintable() and body.count("]]>") == values:
        return body
    return "".join(
        [
            f"<{name}>{cdata(value)}</{name}>"
            if isinstance(value, str)
            else f"<{name}>{pairs_xml(value)}</{name}>"
            for name, value in entries
        ]
    )


def items_xml(items: list[tuple[str, Value]]) -> str:
    """The children of a TEMPLATE element, in the order given."""
    return entries_xml([(n, v if isinstance(v, str) else v.pairs) for n, v in items])


def template_xml(tag: str, template: Template) -> str:
    """`<TAG><KEY><![CDATA[v]]></KEY><VEC><A><![CDATA[b]]></A></VEC></TAG>`, in stored order.

    Names are template names (validated when the template was parsed), so they are valid XML
    names as they are. An empty vector is written `<VEC></VEC>` and reads back as "".
    """
    return f"<{tag}>{items_xml(template.items)}</{tag}>"


def template_from_element(root: Element) -> Template:
    """The Template whose attributes are the children of `root` (any root tag).

    A child with element children is a vector attribute; otherwise its text (or "") is the
    value. Names are upper-cased as in the template language. Deeper nesting and names the
    template language does not allow raise TemplateSyntaxError.
    """
    items: list[tuple[str, Value]] = []
    for child in root:
        name = _name(child)
        if len(child):
            pairs: list[tuple[str, str]] = []
            for sub in child:
                if len(sub):
                    raise TemplateSyntaxError(
                        f"attribute {name}/{_name(sub)} is nested too deeply for a template"
                    )
                pairs.append((_name(sub), sub.text or ""))
            items.append((name, Vector(pairs)))
        else:
            items.append((name, child.text or ""))
    return Template(items)


def _name(elem: Element) -> str:
    tag = elem.tag
    if not isinstance(tag, str) or not valid_name(tag):
        raise TemplateSyntaxError(f"invalid attribute name {tag!r}")
    return tag.upper()
