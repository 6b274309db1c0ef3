"""Bounds on what the API accepts: template size, attribute count, names, numbers, addresses.

Who calls it: api/methods.py and api/hook_methods.py, on every allocate, update and rename,
before the change reaches the controller's loop. A value out of bounds is refused with a
clear message and the OpenNebula error class of the call (AllocateError on allocate,
InternalError on update, as oned answers a template it cannot take); nothing is stored.

Why each bound exists (found by a black-box attack of `lazarus serve`):
* one VM with CPU="1e307" made the scheduler raise OverflowError every cycle, so no VM was
  placed by anyone: every number the core computes with is finite and in a sane range;
* 1 MB names, 50,000 attributes: size and count limits keep the store, the XML documents
  and every pool read small;
* a newline in a VM name forged log lines: names never hold control characters;
* `../../etc` as a host name, `ADDRESS="-oProxyCommand=..."` (run by ssh for REMOTE hooks):
  host names and addresses follow hostname / IP syntax and never start with '-'.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

from lazarus.domain.errors import ApiError
from lazarus.domain.secrets import mask_words
from lazarus.domain.template import Template, Vector

MAX_TEMPLATE_CHARS = 256 * 1024  # one template parameter, before parsing
MAX_ATTRIBUTES = 1000  # attributes in one template, vector members included
MAX_VALUE_CHARS = 64 * 1024  # one attribute value
MAX_NAME_CHARS = 128  # VM, hook, datastore names
MAX_HOSTNAME_CHARS = 253  # RFC 1035

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 1123 labels (underscore tolerated, as resolvers and libvirt URIs do): no empty label,
# none starting or ending with '-', so neither "../x" nor "-oOption" can pass.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    above_low: bool = False  # True: the value must be > low (CPU, MEMORY), else >= low

    def text(self) -> str:
        low = f"> {self.low:g}" if self.above_low else f">= {self.low:g}"
        return f"a finite number {low} and <= {self.high:g}"

    def holds(self, value: float) -> bool:
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.above_low else value >= self.low


# The numbers the core computes with, per kind of object. CPU in cores, MEMORY in MiB,
# RESERVED_CPU in percent of a core and RESERVED_MEM in KiB (negative values add capacity,
# as in OpenNebula).
NUMBERS: dict[str, dict[str, Bound]] = {
    "vm": {
        "CPU": Bound(0, 4096, above_low=True),
        "VCPU": Bound(0, 4096, above_low=True),
        "MEMORY": Bound(0, 64 * 1024 * 1024, above_low=True),  # 64 TiB
        "HA_PRIORITY": Bound(-1_000_000, 1_000_000),
    },
    "host": {
        "RESERVED_CPU": Bound(-409_600, 409_600),
        "RESERVED_MEM": Bound(-(2**36), 2**36),  # 64 TiB in KiB
        "SIM_CPU": Bound(0, 409_600),
        "SIM_MEMORY": Bound(0, 2**36),
        "MONITOR_FAILURES": Bound(0, 1_000_000),
    },
    "datastore": {},
    "hook": {},  # TIMEOUT is checked with the hook's other rules (domain/hooks.py)
}


def check_text(text: str, error: type[ApiError]) -> None:
    """A template parameter, before it is parsed."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise error(
            f"Template too large: {len(text)} characters, the limit is {MAX_TEMPLATE_CHARS}."
        )


def check_template(
    template: Template, kind: str, error: type[ApiError], existing: int = 0
) -> None:
    """A parsed template of a `kind` in NUMBERS; `existing`: attributes it is appended to."""
    count = existing + sum(
        1 + (len(value.pairs) if isinstance(value, Vector) else 0) for _, value in template
    )
    if count > MAX_ATTRIBUTES:
        raise error(f"Too many attributes: {count}, the limit is {MAX_ATTRIBUTES}.")
    bounds = NUMBERS[kind]
    for name, value in template:
        for text in value.as_dict().values() if isinstance(value, Vector) else [value]:
            if len(text) > MAX_VALUE_CHARS:
                raise error(f"Attribute {name} is too long (limit {MAX_VALUE_CHARS} characters).")
        if isinstance(value, str) and name in bounds and value.strip():
            _number(name, value, bounds[name], error)
    if kind == "host":
        for address in template.values("ADDRESS"):
            if isinstance(address, Vector) or not is_host_name(address.strip()):
                shown = address if isinstance(address, str) else "[...]"
                raise error(f"ADDRESS {printable(shown)} is not a host name or IP address.")
    object_name = template.get("NAME")
    if object_name is not None:
        check_name(object_name, error)


def _number(name: str, raw: str, bound: Bound, error: type[ApiError]) -> None:
    try:
        value = float(raw)
    except ValueError:
        raise error(f"{name} must be {bound.text()}, not {printable(raw)}.") from None
    if not bound.holds(value):
        raise error(f"{name} must be {bound.text()}, not {printable(raw)}.")


def check_name(name: str, error: type[ApiError], what: str = "Name") -> None:
    """An object name: bounded, no control characters (they would forge log lines)."""
    if len(name) > MAX_NAME_CHARS:
        raise error(f"{what} is too long: {len(name)} characters, the limit is {MAX_NAME_CHARS}.")
    if _CONTROL.search(name):
        raise error(f"{what} {printable(name)} contains control characters.")


def is_host_name(name: str) -> bool:
    """Hostname (RFC 1123 labels) or IPv4 / IPv6 address syntax."""
    if not name or len(name) > MAX_HOSTNAME_CHARS:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return True
    return all(_LABEL.fullmatch(label) for label in name.removesuffix(".").split("."))


def check_host_name(name: str, error: type[ApiError]) -> None:
    if not is_host_name(name.strip()):
        raise error(
            f"Host name {printable(name)} is not a host name or IP address "
            "(letters, digits, '-', '_' and '.', at most 253 characters)."
        )


def printable(text: str, limit: int = 64) -> str:
    """`text` for an error message: control characters escaped, at most `limit` characters,
    secret words masked (the message reaches $API, hook records and events: an ADDRESS
    "h passwd=x" was echoed in clear)."""
    return repr(mask_words(text[:limit])) + ("..." if len(text) > limit else "")
