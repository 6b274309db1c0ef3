"""The OpenNebula template language: parse, edit and write back.

    NAME   = "vm one"              # quoted value; \\" and \\\\ are the escapes
    CPU    = 0.5                   # bare value (up to the end of the token)
    DISK   = [ IMAGE = "base", SIZE = 1024 ]     # vector attribute
    DISK   = [ IMAGE = "data" ]                  # keys may repeat; order is kept

Names are case-insensitive and stored upper-case, as OpenNebula does. A Template is an ordered
list of (NAME, value) pairs where a value is a string or a Vector (an ordered list of
(NAME, string) pairs). `parse(render(t)) == t` holds for every template (tested with
hypothesis); comments and layout are not kept, the attributes, their order and their exact
values are.

Who uses it: the API (allocate/update), the store (templates are kept as parsed structures),
the XML renderer, and hook / FENCE configuration readers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import TemplateSyntaxError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_BARE_STOP = set(" \t\r\n,]#=\"[")
_QUOTED_RUN = re.compile(r'[^"\\]+')


def valid_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


@dataclass
class Vector:
    """A vector attribute: `KEY = [ A = "b", C = "d" ]`."""

    pairs: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        key = key.upper()
        for name, value in self.pairs:
            if name == key:
                return value
        return default

    def set(self, key: str, value: str) -> None:
        key = key.upper()
        for index, (name, _) in enumerate(self.pairs):
            if name == key:
                self.pairs[index] = (key, value)
                return
        self.pairs.append((key, value))

    def as_dict(self) -> dict[str, str]:
        return dict(self.pairs)


Value = str | Vector


@dataclass
class Template:
    """An ordered multimap of attribute names to strings or vectors."""

    items: list[tuple[str, Value]] = field(default_factory=list)

    # -- reading ----------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        """The first single (non-vector) value of `key`."""
        key = key.upper()
        for name, value in self.items:
            if name == key and isinstance(value, str):
                return value
        return default

    def get_int(self, key: str, default: int) -> int:
        raw = self.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            return int(float(raw))
        except (ValueError, OverflowError):  # "abc", "nan"; "inf", "1e999"
            return default

    def get_float(self, key: str, default: float) -> float:
        raw = self.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            return default
        return value if math.isfinite(value) else default  # "inf"/"nan" are no capacity

    def vectors(self, key: str) -> list[Vector]:
        key = key.upper()
        return [v for name, v in self.items if name == key and isinstance(v, Vector)]

    def values(self, key: str) -> list[Value]:
        key = key.upper()
        return [v for name, v in self.items if name == key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(name == key.upper() for name, _ in self.items)

    def __iter__(self) -> Iterator[tuple[str, Value]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    # -- editing ----------------------------------------------------------------------------
    def set(self, key: str, value: Value) -> None:
        """Replace every `key` by one attribute with `value` (at the first one's place)."""
        key = key.upper()
        for index, (name, _) in enumerate(self.items):
            if name == key:
                self.items[index] = (key, value)
                self.items = [
                    (n, v) for i, (n, v) in enumerate(self.items) if i == index or n != key
                ]
                return
        self.items.append((key, value))

    def add(self, key: str, value: Value) -> None:
        self.items.append((key.upper(), value))

    def remove(self, key: str) -> None:
        key = key.upper()
        self.items = [(n, v) for n, v in self.items if n != key]

    def merge(self, other: Template) -> None:
        """`update --append` semantics: each attribute named in `other` replaces ours."""
        for name in dict.fromkeys(name for name, _ in other.items):
            self.remove(name)
        self.items.extend(other.items)

    def copy(self) -> Template:
        return Template(
            [(n, Vector(list(v.pairs)) if isinstance(v, Vector) else v) for n, v in self.items]
        )

    # -- text -------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Template:
        return _Parser(text).parse()

    def render(self) -> str:
        lines = []
        for name, value in self.items:
            if isinstance(value, Vector):
                inner = ",\n  ".join(f"{k} = {quote(v)}" for k, v in value.pairs)
                lines.append(f"{name} = [\n  {inner} ]" if inner else f"{name} = [ ]")
            else:
                lines.append(f"{name} = {quote(value)}")
        return "\n".join(lines) + ("\n" if lines else "")

    # -- storage ----------------------------------------------------------------------------
    def to_json(self) -> list[list[object]]:
        return [
            [name, {"V": [list(p) for p in value.pairs]} if isinstance(value, Vector) else value]
            for name, value in self.items
        ]

    @classmethod
    def from_json(cls, data: Iterable[list[object]]) -> Template:
        items: list[tuple[str, Value]] = []
        for name, value in data:
            if isinstance(value, dict):
                items.append((str(name), Vector([(str(k), str(v)) for k, v in value["V"]])))
            else:
                items.append((str(name), str(value)))
        return cls(items)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Template:
        template = cls()
        for key, value in data.items():
            if isinstance(value, dict):
                template.add(key, Vector([(k.upper(), str(v)) for k, v in value.items()]))
            else:
                template.add(key, str(value))
        return template


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> TemplateSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        column = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return TemplateSyntaxError(message, line, column)

    def skip_blank(self, newlines: bool = True) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            else:
                return

    def parse(self) -> Template:
        template = Template()
        while True:
            self.skip_blank()
            if self.pos >= len(self.text):
                return template
            name = self.name()
            self.expect("=")
            self.skip_blank(newlines=False)
            if self.peek() == "[":
                self.pos += 1
                template.items.append((name, self.vector()))
            else:
                template.items.append((name, self.value(in_vector=False)))
            self.skip_blank(newlines=False)
            if self.pos < len(self.text) and self.text[self.pos] not in "\n,":
                raise self.error(f"unexpected {self.text[self.pos]!r} after the value of {name}")
            if self.peek() == ",":
                self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        self.skip_blank(newlines=False)
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "end of text"
            raise self.error(f"expected {char!r}, found {found}")
        self.pos += 1

    def name(self) -> str:
        match = _NAME_RE.match(self.text, self.pos)
        if not match:
            found = repr(self.peek()) if self.peek() else "end of text"
            raise self.error(f"expected an attribute name, found {found}")
        self.pos = match.end()
        return match.group().upper()

    def value(self, in_vector: bool) -> str:
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_STOP:
            self.pos += 1
        if self.pos == start:
            if in_vector or self.peek() in ("\n", "", "#"):
                return ""
            raise self.error(f"unexpected {self.peek()!r} where a value was expected")
        return self.text[start : self.pos]

    def quoted(self) -> str:
        text = self.text
        self.pos += 1
        out: list[str] = []
        while True:
            match = _QUOTED_RUN.match(text, self.pos)  # a run of ordinary characters at once
            if match:
                out.append(match.group())
                self.pos = match.end()
            if self.pos >= len(text):
                raise self.error("unterminated quoted value")
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text) and text[self.pos + 1] in '"\\':
                out.append(text[self.pos + 1])
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:  # a backslash that escapes nothing is kept
                out.append(char)
                self.pos += 1

    def vector(self) -> Vector:
        vector = Vector()
        while True:
            self.skip_blank()
            if self.peek() == "]":
                self.pos += 1
                return vector
            if not self.peek():
                raise self.error("unterminated vector attribute (missing ']')")
            key = self.name()
            self.expect("=")
            self.skip_blank()
            vector.pairs.append((key, self.value(in_vector=True)))
            self.skip_blank()
            if not self.peek():
                raise self.error("unterminated vector attribute (missing ']')")
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                found = repr(self.peek()) if self.peek() else "end of text"
                raise self.error(f"expected ',' or ']' in vector attribute, found {found}")
