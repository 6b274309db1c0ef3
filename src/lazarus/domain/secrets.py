"""Secrets never leave the controller: every document the API returns, every hook $TEMPLATE /
$API, hook record, event line and log line gets its secret values replaced by "****".

The one rule (docs/security.md), applied by every function here:

* **names**: an attribute (top level, or inside a vector such as FENCE or CONTEXT) is a secret
  when its name is PASSWORD, PASSWD, SECRET or TOKEN, or ends in _PASSWORD, PASSWD, SECRET or
  TOKEN (ROOT_PASSWORD, ROOTPASSWD, VNC_PASSWD, CEPH_SECRET, API_TOKEN; not PASSWORD_FILE,
  which is a path). Case does not matter.
* **words inside values** (OPTIONS strings, hook ARGUMENTS, command lines): `key=value` and
  `--key value` / `-key value` whose key, upper-cased with `-` read as `_` and leading dashes
  dropped, is a secret name by the rule above: `passwd=x`, `--password x`,
  `--ipmi-password=x` all have their value masked.
* **text** (template parameters of API calls in OpenNebula syntax or XML, hook output):
  `NAME = "value"` / `NAME=value` and `<NAME>value</NAME>` with a secret NAME, plus the words
  rule.

Masking over-approximates on purpose: a description saying "token=abc" is shown masked.
The secrets themselves stay in the store (0600) and reach only the fence agents' stdin, through
`lazarus.host.fencecreds` (api/methods.py, docs/security.md). Operators should still prefer
PASSWORD_FILE in FENCE vectors.
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace

from .entities import VM, Datastore, Host
from .template import Template, Vector

MASK = "****"

_EXACT = ("PASSWORD", "PASSWD", "SECRET", "TOKEN")
_ENDINGS = ("_PASSWORD", "PASSWD", "SECRET", "TOKEN")
# Cheap prefilter: a value without any of these cannot hold a secret word.
_HINT = re.compile(r"(?i)pass|secret|token")
_VALUE = r'(?P<val>"(?:[^"\\]|\\.)*"|[^\s,\]\[<>"]+)'
# key=value, NAME = "value", --key=value (the key may start with dashes).
_ASSIGN = re.compile(r"(?<![\w.-])(?P<key>-{0,2}[A-Za-z_][\w.-]*)(?P<sep>[ \t]*=[ \t]*)" + _VALUE)
# --key value, -key value.
_FLAG = re.compile(r"(?<![\w.=-])(?P<key>-{1,2}[A-Za-z_][\w.-]*)(?P<sep>[ \t]+)" + _VALUE)
# A leaf <NAME>value</NAME> (CDATA or text), for XML template parameters.
_ELEMENT = re.compile(
    r"<(?P<tag>[A-Za-z_][\w.-]*)>(?P<val>(?:<!\[CDATA\[.*?\]\]>|[^<])*)</(?P=tag)>", re.DOTALL
)


def is_secret(name: str) -> bool:
    """The name rule: PASSWORD, PASSWD, SECRET, TOKEN, or a name ending in _PASSWORD, PASSWD,
    SECRET or TOKEN (any case)."""
    name = name.upper()
    return name in _EXACT or name.endswith(_ENDINGS)


def _is_secret_key(key: str) -> bool:
    """A word's key (`--ipmi-password`, `passwd`) under the name rule."""
    return is_secret(key.lstrip("-").replace("-", "_").lstrip("_"))


def _masked(match: re.Match[str]) -> str:
    if not _is_secret_key(match["key"]):
        value = match["val"]
        if value.startswith('"') and len(value) > 2:  # OPTIONS = "passwd=x": look inside
            return f'{match["key"]}{match["sep"]}"{mask_words(value[1:-1])}"'
        return match[0]
    value = MASK if not match["val"].startswith('"') else f'"{MASK}"'
    return f"{match['key']}{match['sep']}{value}"


def mask_words(text: str) -> str:
    """`text` with the values of secret `key=value`, `NAME = "value"` and `--key value` words
    masked (OPTIONS strings, ARGUMENTS, command lines, OpenNebula template text)."""
    if not _HINT.search(text):
        return text
    return _FLAG.sub(_masked, _ASSIGN.sub(_masked, text))


def mask_text(text: str) -> str:
    """Free text that may be a template in OpenNebula syntax or XML, or anything else."""
    if not _HINT.search(text):
        return text

    def element(match: re.Match[str]) -> str:
        if is_secret(match["tag"]):
            return f"<{match['tag']}>{MASK}</{match['tag']}>"
        return match[0]

    return mask_words(_ELEMENT.sub(element, text))


def mask_bytes(data: bytes) -> bytes:
    """Process output (hook stdout/stderr): masked as text, undecodable bytes kept as they are."""
    if not _HINT.search(data.decode("latin-1")):
        return data
    return mask_text(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def _value(name: str, value: str) -> str:
    return MASK if is_secret(name) else mask_words(value)


@functools.lru_cache(maxsize=4096)
def _name_hint(name: str) -> bool:
    return _HINT.search(name) is not None  # names repeat across documents: cached


def _value_hint(text: str) -> bool:
    low = text.lower()  # measured: faster than the case-insensitive regex on short values
    return "pass" in low or "secret" in low or "token" in low


def _holds_secret(template: Template) -> bool:
    """The fast check every rendered document pays: no secret name, no hint of a word."""
    for name, value in template.items:
        if isinstance(value, Vector):
            for key, text in value.pairs:
                if _name_hint(key) or _value_hint(text):
                    return True
        elif _name_hint(name) or _value_hint(value):
            return True
    return False


def redact(template: Template) -> Template:
    """A copy of `template` with secrets masked; the same object when it holds none."""
    if not _holds_secret(template):
        return template
    items: list[tuple[str, str | Vector]] = []
    changed = False
    for name, value in template.items:
        new: str | Vector
        if isinstance(value, Vector):
            pairs = [(k, _value(k, v)) for k, v in value.pairs]
            new = value if pairs == value.pairs else Vector(pairs)
        else:
            new = _value(name, value)
        changed = changed or new != value
        items.append((name, new))
    return Template(items) if changed else template


def public_host(host: Host) -> Host:
    """The host as it may be shown: same object when it holds no secret."""
    masked = redact(host.template)
    return host if masked is host.template else replace(host, template=masked)


def public_vm(vm: VM) -> VM:
    """The VM as it may be shown (TEMPLATE and USER_TEMPLATE masked)."""
    template, user = redact(vm.template), redact(vm.user_template)
    if template is vm.template and user is vm.user_template:
        return vm
    return replace(vm, template=template, user_template=user)


def public_datastore(ds: Datastore) -> Datastore:
    masked = redact(ds.template)
    return ds if masked is ds.template else replace(ds, template=masked)


def keep_stored_secrets(new: Template, stored: Template) -> Template:
    """`new` (a template a client sends to replace or extend `stored`) with every value that is
    the masked form of the stored value at the same place put back to the stored value.

    A client that reads a document (masked) and writes it back whole must not store "****"
    over a FENCE PASSWORD. The same place: a top-level attribute of the same name and
    occurrence; a vector of the same name whose masked form equals the new vector exactly
    (the FENCE levels may be reordered), else the vector of the same name and occurrence,
    key by key. A value the client really changed is taken as it is, and "****" where
    nothing was stored stays "****"."""
    if MASK not in new.render():
        return new
    scalars: dict[str, list[str]] = {}
    vectors: dict[str, list[Vector]] = {}
    for name, value in stored.items:
        if isinstance(value, Vector):
            vectors.setdefault(name, []).append(value)
        else:
            scalars.setdefault(name, []).append(value)
    left = {name: list(found) for name, found in vectors.items()}  # not yet matched whole
    seen: dict[str, int] = {}
    items: list[tuple[str, str | Vector]] = []
    for name, value in new.items:
        index = seen[name] = seen.get(name, -1) + 1
        if isinstance(value, Vector):
            items.append((name, _kept_vector(value, left.get(name, []),
                                             vectors.get(name, []), index)))
        else:
            old = scalars.get(name, [])
            if index < len(old) and value != old[index] and value == _value(name, old[index]):
                value = old[index]
            items.append((name, value))
    return Template(items)


def _kept_vector(new: Vector, unmatched: list[Vector], same_name: list[Vector],
                 index: int) -> Vector:
    for candidate in unmatched:
        if Vector([(k, _value(k, v)) for k, v in candidate.pairs]).pairs == new.pairs:
            unmatched.remove(candidate)
            return Vector(list(candidate.pairs))
    if index >= len(same_name):
        return new
    old = same_name[index]
    pairs = []
    for key, value in new.pairs:
        was = old.get(key)
        if was is not None and value != was and value == _value(key, was):
            value = was
        pairs.append((key, value))
    return Vector(pairs)


def mask_db_url(url: str) -> str:
    """A store URL as logs and API output show it: the scheme, host, port and database only
    (no user, no query parameters, no password even if one slipped in). A SQLite URL is a
    path, shown as it is."""
    from urllib.parse import urlsplit

    if not url.startswith(("postgresql:", "postgres:")):
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "postgresql://****"
    return f"postgresql://{host}{port}{parts.path}"
