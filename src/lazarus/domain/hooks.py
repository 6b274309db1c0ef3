"""Hooks: OpenNebula's state and API hooks, their templates, matching keys and execution records.

A hook is created from an OpenNebula hook template (`onehook create`):

    NAME = host_error            TYPE = state          RESOURCE = HOST     STATE = ERROR
    COMMAND = "ft/host_error"    ARGUMENTS = "$TEMPLATE -m -p 5"           ARGUMENTS_STDIN = yes

`parse_hook` validates such a template with OpenNebula's error texts and normalises it the way
oned does (NAME and TYPE leave the template, ON becomes STATE/LCM_STATE, REMOTE is stored as
YES/NO). `Hook.key` and `event_key` are the exact-match keys oned's hook manager
looks up ("HOST/ERROR/", "VM/ACTIVE/UNKNOWN", "API one.vm.allocate"); every hook on a key fires.

`HookJob` is one queued execution (the durable outbox row the hook manager runs);
`ExecutionRecord` is one entry of a hook's execution log (HOOK_EXECUTION_RECORD).

Who uses it: core/hooks.py (manager), api/hook_methods.py, store/hooks.py, domain/xml/hooks.py.
Stdlib only.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Collection
from dataclasses import dataclass, field

from .errors import AllocateError, InternalError, LockedError
from .secrets import keep_stored_secrets
from .states import HostState, LcmState, VmState
from .template import Template

TYPES = ("state", "api")
RESOURCES = ("HOST", "VM", "IMAGE", "NET")
# ON shortcuts of VM state hooks -> (STATE, LCM_STATE); CUSTOM takes both from the template.
ON_SHORTCUTS: dict[str, tuple[str, str]] = {
    "PROLOG": ("ACTIVE", "PROLOG"),
    "RUNNING": ("ACTIVE", "RUNNING"),
    "SHUTDOWN": ("ACTIVE", "EPILOG"),
    "STOP": ("STOPPED", "LCM_INIT"),
    "DONE": ("DONE", "LCM_INIT"),
    "UNKNOWN": ("ACTIVE", "UNKNOWN"),
}
_HOST_STATES = ("INIT", "MONITORED", "ERROR", "DISABLED", "OFFLINE")
# one.hooklog.info and every *.info / *pool.info* / quota info call only read: not hookable.
# lazarus.host.fencecreds answers with secrets: no $API may ever hold its answer.
_READ_ONLY_EXTRA = ("one.system.version", "one.system.config", "lazarus.host.fencecreds")
_READ_ONLY_LAST = ("monitoring", "accounting", "showback")
TRUE_WORDS = ("YES", "TRUE")
INTERRUPTED_CODE = -1
MAX_TIMEOUT = 7 * 24 * 3600  # seconds; a hook running longer is a mistake
"""CODE of the record written for an execution the controller died during."""

LOCK_LEVELS = {1: "USE", 2: "MANAGE", 3: "ADMIN", 4: "ALL"}


def is_yes(value: str | None) -> bool:
    """OpenNebula's yes/no attributes; we also accept "true" (OpenNebula's branch is dead)."""
    return (value or "").strip().upper() in TRUE_WORDS


def is_read_call(method: str) -> bool:
    """True for calls that only read (*.info, *pool.info*, monitoring, accounting, hooklog):
    refused as CALL, as oned refuses them."""
    last = method.rsplit(".", 1)[-1]
    return last.startswith("info") or last in _READ_ONLY_LAST or method in _READ_ONLY_EXTRA


def escapes_base(command: str) -> bool:
    """True when a relative COMMAND leaves its base directory (`..`)."""
    if command.startswith("/"):
        return False
    normal = posixpath.normpath(command)
    return normal == ".." or normal.startswith("../")


def b64(text: str) -> str:
    """Strict base64 (no line breaks) of UTF-8 text, as $TEMPLATE and $API are."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass
class Hook:
    id: int
    name: str
    type: str  # "state" | "api"
    template: Template = field(default_factory=Template)
    lock: int = 0  # 0 unlocked, 1..4
    lock_time: int = 0
    since_event: int = 0  # fires only for events with a larger id (no replay of the past)

    @property
    def command(self) -> str:
        return self.template.get("COMMAND") or ""

    @property
    def ha(self) -> bool:
        """Runs in the hook manager's HA lane: a state hook on hosts (ft/host_error is one),
        or any hook with HA = YES. API hooks can never hold its slots."""
        if is_yes(self.template.get("HA")):
            return True
        return self.type == "state" and (self.template.get("RESOURCE") or "") == "HOST"

    @property
    def arguments(self) -> str:
        return self.template.get("ARGUMENTS") or ""

    @property
    def stdin(self) -> bool:
        """The argument string goes to stdin: ARGUMENTS_STDIN=yes, or ARGUMENTS carries
        $TEMPLATE / $API. A document never goes to argv, which every local user reads in
        /proc (a deliberate difference from OpenNebula, docs/differences.md)."""
        return is_yes(self.template.get("ARGUMENTS_STDIN")) or carries_document(self.arguments)

    @property
    def remote(self) -> bool:
        return is_yes(self.template.get("REMOTE"))

    @property
    def timeout(self) -> float | None:
        raw = (self.template.get("TIMEOUT") or "").strip()
        try:
            value = float(raw)
        except ValueError:
            return None
        return value if value > 0 else None

    @property
    def key(self) -> str:
        t = self.template
        if self.type == "api":
            return f"API {t.get('CALL') or ''}"
        return f"{t.get('RESOURCE') or ''}/{t.get('STATE') or ''}/{t.get('LCM_STATE') or ''}"


def event_key(kind: str, obj: str, state: str, lcm_state: str, method: str) -> str | None:
    """The matching key of an event: kind "state" (EventKind.STATE) -> "OBJ/STATE/LCM", kind
    "api" (EventKind.API_CALL) -> "API <method>"; None for other events."""
    if kind == "api":
        return f"API {method}"
    if kind != "state" or not obj:
        return None
    return f"{obj}/{state}/{lcm_state if obj == 'VM' else ''}"


# -- templates --------------------------------------------------------------------------------


def _state_hook(template: Template) -> None:
    resource = (template.get("RESOURCE") or "").strip().upper()
    if not resource:
        raise AllocateError("RESOURCE attribute is required for STATE hooks.")
    if resource not in RESOURCES:
        raise AllocateError(f"Invalid resource type: {resource}")
    template.set("RESOURCE", resource)
    if resource == "HOST":
        state = (template.get("STATE") or "").strip().upper()
        if state not in _HOST_STATES or state not in HostState.__members__:
            raise AllocateError(f"Invalid STATE: {state}")
        template.set("STATE", state)
        template.remove("LCM_STATE")
    elif resource == "VM":
        _vm_state(template)
    else:
        state = (template.get("STATE") or "").strip().upper()
        if not state:
            raise AllocateError("Hook STATE attribute not found or invalid")
        template.set("STATE", state)


def _vm_state(template: Template) -> None:
    on = (template.get("ON") or "").strip().upper()
    if on in ON_SHORTCUTS:
        state, lcm = ON_SHORTCUTS[on]
    elif on == "CUSTOM":
        state = (template.get("STATE") or "").strip().upper()
        if state not in VmState.__members__:
            raise AllocateError(f"Wrong STATE: {state}")
        lcm = (template.get("LCM_STATE") or "").strip().upper()
        if lcm not in LcmState.__members__:
            raise AllocateError(f"Wrong LCM_STATE: {lcm}")
        if state != "ACTIVE":
            lcm = "LCM_INIT"  # the journal records LCM_INIT outside ACTIVE
    else:
        raise AllocateError(f"Unkown state condition: {on}")
    template.remove("ON")
    template.set("STATE", state)
    template.set("LCM_STATE", lcm)


def _api_hook(template: Template, known_calls: Collection[str] | None) -> None:
    call = (template.get("CALL") or "").strip()
    if not call:
        raise AllocateError("No CALL in template for API type Hook")
    if is_read_call(call):
        raise AllocateError(f"API call {call} only reads information and cannot be hooked.")
    internal = call.startswith("one.internal.")
    if known_calls is not None and call not in known_calls and not internal:
        raise AllocateError(f"API call does not exist or is not supported: {call}")
    template.set("CALL", call)
    for name in ("RESOURCE", "STATE", "LCM_STATE", "ON"):
        template.remove(name)


def _common(template: Template, error: type[Exception]) -> str:
    command = (template.get("COMMAND") or "").strip()
    if not command:
        raise error("No COMMAND in template for Hook.")
    if escapes_base(command):
        raise error(f"COMMAND {command} leaves the hooks directory; use a path inside it.")
    template.set("COMMAND", command)
    template.set("REMOTE", "YES" if is_yes(template.get("REMOTE")) else "NO")
    stdin = template.get("ARGUMENTS_STDIN")
    if stdin is not None:
        template.set("ARGUMENTS_STDIN", "YES" if is_yes(stdin) else "NO")
    timeout = template.get("TIMEOUT")
    if timeout is not None and timeout.strip():
        try:
            seconds = float(timeout)
        except ValueError:
            raise error(f"Invalid TIMEOUT: {timeout}") from None
        # A negative, infinite or NaN TIMEOUT once reached the executor as is.
        if not 0 <= seconds <= MAX_TIMEOUT:
            raise error(f"Invalid TIMEOUT: {timeout} (seconds, 0 to {MAX_TIMEOUT})")
    return command


def parse_hook(template: Template, known_calls: Collection[str] | None = None) -> Hook:
    """A new Hook (id -1) from an allocate template, validated and normalised as oned does.

    Raises AllocateError with OpenNebula's texts. `known_calls`: the API method names that
    exist (None: any name is accepted)."""
    t = template.copy()
    name = (t.get("NAME") or "").strip()
    t.remove("NAME")
    if not name:
        raise AllocateError("No NAME in template for Hook.")
    _common(t, AllocateError)
    kind = (t.get("TYPE") or "").strip().lower()
    t.remove("TYPE")
    if kind not in TYPES:
        raise AllocateError("No TYPE or invalid one in template for Hook.")
    if kind == "state":
        _state_hook(t)
    else:
        _api_hook(t, known_calls)
    return Hook(id=-1, name=name, type=kind, template=t)


def updated_template(
    hook: Hook, template: Template, append: bool, known_calls: Collection[str] | None = None
) -> Template:
    """The hook's template after one.hook.update (replace, or merge when `append`), validated.

    Errors (InternalError, as oned's update answers): no COMMAND ("The COMMAND attribute is
    not defined."), a state hook without a valid STATE/LCM_STATE ("The STATE attribute is not
    defined or it's invalid."), an api hook without a valid CALL."""
    new = hook.template.copy() if append else Template()
    incoming = keep_stored_secrets(template.copy(), hook.template)  # written back masked
    for name in ("NAME", "TYPE"):
        incoming.remove(name)
    if append:
        new.merge(incoming)
    else:
        new = incoming
    if not (new.get("COMMAND") or "").strip():
        raise InternalError("The COMMAND attribute is not defined.")
    _common(new, InternalError)
    try:
        if hook.type == "state":
            if "ON" in new and (new.get("RESOURCE") or "").upper() == "VM":
                _vm_state(new)
            _check_state(new)
        else:
            _api_hook(new, known_calls)
    except AllocateError as exc:
        raise InternalError(exc.message) from exc
    return new


def _check_state(template: Template) -> None:
    bad = InternalError("The STATE attribute is not defined or it's invalid.")
    resource = (template.get("RESOURCE") or "").strip().upper()
    state = (template.get("STATE") or "").strip().upper()
    if resource not in RESOURCES or not state:
        raise bad
    template.set("RESOURCE", resource)
    template.set("STATE", state)
    if resource == "HOST" and state not in _HOST_STATES:
        raise bad
    if resource == "VM":
        lcm = (template.get("LCM_STATE") or "").strip().upper()
        if state not in VmState.__members__ or lcm not in LcmState.__members__:
            raise bad
        template.set("LCM_STATE", lcm)


def carries_document(arguments: str) -> bool:
    """True when ARGUMENTS has a $TEMPLATE or $API token (the object's or call's document)."""
    return any(token in ("$TEMPLATE", "$API") for token in arguments.split())


def substitute(arguments: str, template_b64: str = "", api_b64: str = "") -> str:
    """ARGUMENTS with $TEMPLATE / $API replaced, tokens joined by single spaces (HEM)."""
    out = []
    for token in arguments.split():
        if token == "$TEMPLATE":
            out.append(template_b64)
        elif token == "$API":
            out.append(api_b64)
        else:
            out.append(token)
    return " ".join(out)


# -- execution --------------------------------------------------------------------------------


@dataclass
class ExecutionResult:
    """What running a hook command gave (EXECUTION_RESULT)."""

    command: str
    stdout: bytes = b""
    stderr: bytes = b""
    code: int = 0


@dataclass
class ExecutionRecord:
    """One HOOK_EXECUTION_RECORD of a hook's log."""

    hook_id: int
    execution_id: int
    timestamp: int
    arguments: str
    result: ExecutionResult
    remote_host: str = ""
    retry: bool = False
    job_id: int = -1  # the queued execution it came from (LAZARUS_HOOK_EXECUTION)
    event_id: int = -1

    @property
    def interrupted(self) -> bool:
        return self.result.code == INTERRUPTED_CODE


PENDING = "pending"
RUNNING = "running"


@dataclass
class HookJob:
    """One queued execution of a hook: the durable outbox row.

    Written pending in the transaction that moves the dispatch cursor past its event, marked
    running just before the command starts, and deleted in the transaction that stores its
    ExecutionRecord. `attempt` counts starts (more than 1 after an interruption)."""

    id: int
    hook_id: int
    event_id: int  # -1 for retries
    arguments: str
    remote_host: str = ""
    retry: bool = False
    status: str = PENDING
    attempt: int = 0
    created: float = 0.0

    @property
    def execution_key(self) -> str:
        """LAZARUS_HOOK_EXECUTION: stable across re-runs after an interruption."""
        return f"{self.hook_id}:{self.id}"


def lock_check(hook: Hook, level: int) -> None:
    """Refuse an operation of `level` (1 use, 2 manage, 3 admin) on a locked hook."""
    if hook.lock and (hook.lock == 4 or level >= hook.lock):
        raise LockedError(f"The resource hook is locked. [{hook.id}].", hook.id)

