"""Fencing: prove that a failed host is powered off, through ClusterLabs fence agents.

A host's template names one or more fence levels, tried in order:

    FENCE = [ AGENT = "fence_redfish", IP = "127.0.0.1", PORT = "8000", USERNAME = "admin",
              PASSWORD_FILE = "/etc/lazarus/bmc/node1.pw",
              OPTIONS = "ssl_insecure=1 systems_uri=/redfish/v1/Systems/node1" ]

Attribute mapping to agent stdin lines: IP -> ip, PORT -> ipport (the BMC's TCP port; the
agents' own `port` means the plug, so use PLUG for that), USERNAME -> username, PASSWORD_FILE
is read when the devices are parsed (at fence time) -> password, PASSWORD (discouraged) ->
password, OPTIONS = space-separated key=value pairs (a bare word means key=1), any other
attribute -> its lower-cased name. `action` is ours to set and may not be configured.

Per level: action=off (per-attempt timeout, retried with exponential backoff), then
action=status must answer OFF (rc 2). Status ON after a successful off means the device lied
or the power came back: the level failed. A failed level moves on to the next one. The whole
fence is bounded by `FencePolicy.total_timeout`. Exit 0 of an off alone proves nothing.

Used by app/fence_host.py (the `ft/fence_host` hook, real agents) and the simulator (fence_sim).
No subprocess and no real time here: the runner and the clock are injected. Passwords never
leave this module except on agent stdin: `FenceDevice` hides them from repr, attempt records
carry redacted agent output only (`redact`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import Element

from lazarus.core.waits import within
from lazarus.domain.errors import DriverError, LazarusError, PermanentDriverError
from lazarus.domain.template import Template, Value, Vector
from lazarus.ports.clock import Clock
from lazarus.ports.fence import RC_OK, RC_STATUS_OFF, AgentResult, FenceAgentRunner

log = logging.getLogger("lazarus.fencing")

AGENT_RE = re.compile(r"^fence_[a-z0-9_]+$")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"action", "password", "passwd", "password_script", "passwd_script"}
_RENAMED = {"IP": "ip", "PORT": "ipport", "USERNAME": "username", "PLUG": "plug"}
_SPECIAL = {"AGENT", "PASSWORD_FILE", "PASSWORD", "OPTIONS"}
REDACTED = "********"
# Agents print these on every run (fence_ipmilan imports the deprecated `pipes` module).
_NOISE = ("DeprecationWarning", "from pipes import")
_MESSAGE_MAX = 200


class FenceConfigError(LazarusError):
    """A FENCE vector that cannot be used (the message says which level and why)."""


@dataclass(frozen=True)
class FenceDevice:
    """One fence level: an agent and its parameters. The password is kept out of repr."""

    level: int  # 1-based, in template order
    agent: str
    params: tuple[tuple[str, str], ...]  # without action and password
    password: str | None = field(default=None, repr=False)

    def agent_params(self, action: str) -> dict[str, str]:
        """The stdin lines for one run (password included: for the runner only)."""
        out = {"action": action}
        out.update(self.params)
        if self.password is not None:
            out["password"] = self.password
        return out

    def describe(self) -> str:
        params = dict(self.params)
        where = params.get("ip", "")
        if where and "ipport" in params:
            where += ":" + params["ipport"]
        target = params.get("plug") or params.get("systems_uri", "")
        return " ".join(p for p in (self.agent, where, target) if p)


@dataclass(frozen=True)
class FencePolicy:
    attempts: int = 3  # off attempts per level (and status attempts on failure)
    timeout: float = 20.0  # per agent run
    backoff: float = 1.0  # sleep before the 2nd attempt; doubles each time (1, 2, 4, ...)
    backoff_factor: float = 2.0
    total_timeout: float = 60.0  # the whole fence, all levels
    grace: float = 5.0  # a runner that overruns its timeout by this much is abandoned

    def delay(self, retry: int) -> float:
        """Backoff before retry number `retry` (1 = the second attempt)."""
        return float(self.backoff * self.backoff_factor ** (retry - 1))


@dataclass(frozen=True)
class FenceAttempt:
    """One agent run, safe to log and store: no password, agent output redacted."""

    level: int
    agent: str
    action: str
    attempt: int
    rc: int | None  # None when the run timed out or the runner raised
    duration: float
    result: str  # "ok", "off", "on", "failed", "timeout"
    message: str

    def line(self) -> str:
        rc = "-" if self.rc is None else str(self.rc)
        text = f"level {self.level} {self.agent} {self.action} #{self.attempt}: {self.result}"
        text += f" (rc={rc}, {self.duration:.2f}s)"
        return f"{text} {self.message}" if self.message else text


@dataclass(frozen=True)
class FenceOutcome:
    host: str
    ok: bool
    level: int | None  # the level that proved the host off
    attempts: tuple[FenceAttempt, ...]
    duration: float
    summary: str


# -- parsing ---------------------------------------------------------------------------------
def _read_file(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def _check_value(level: int, key: str, value: str) -> None:
    if any(c in value for c in "\r\n\0"):
        raise FenceConfigError(f"FENCE level {level}: {key} contains a line break or NUL")


def _options(level: int, text: str) -> list[tuple[str, str]]:
    pairs = []
    for word in text.split():
        key, sep, value = word.partition("=")
        key = key.strip().lower().replace("-", "_").lstrip("_")
        if not _KEY_RE.match(key):
            raise FenceConfigError(f"FENCE level {level}: bad OPTIONS entry {word.split('=')[0]!r}")
        pairs.append((key, value if sep else "1"))
    return pairs


def parse_device(
    level: int, vector: Vector, read_secret: Callable[[str], str] = _read_file
) -> FenceDevice:
    attrs = vector.as_dict()
    agent = (attrs.get("AGENT") or "").strip()
    if not agent:
        raise FenceConfigError(f"FENCE level {level}: missing AGENT")
    if not AGENT_RE.match(agent):
        raise FenceConfigError(
            f"FENCE level {level}: AGENT {agent!r} is not a fence agent name (fence_[a-z0-9_]+)"
        )
    params: dict[str, str] = {}
    for name, value in vector.pairs:
        if name in _SPECIAL:
            continue
        key = _RENAMED.get(name, name.lower().replace("-", "_"))
        if not _KEY_RE.match(key) or key in _RESERVED:
            raise FenceConfigError(f"FENCE level {level}: attribute {name} is not allowed")
        params[key] = value
    for key, value in _options(level, attrs.get("OPTIONS", "")):
        if key in _RESERVED:
            raise FenceConfigError(f"FENCE level {level}: OPTIONS may not set {key}")
        params[key] = value
    for key, value in params.items():
        _check_value(level, key, value)
    password: str | None = None
    password_file = attrs.get("PASSWORD_FILE")
    if password_file:
        try:
            password = read_secret(password_file).rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise FenceConfigError(
                f"FENCE level {level}: cannot read PASSWORD_FILE {password_file}: {reason}"
            ) from None
        if not password:
            raise FenceConfigError(f"FENCE level {level}: PASSWORD_FILE {password_file} is empty")
    elif "PASSWORD" in attrs:
        password = attrs["PASSWORD"]
    if password is not None and any(c in password for c in "\r\n\0"):
        raise FenceConfigError(f"FENCE level {level}: the password contains a line break")
    return FenceDevice(level, agent, tuple(params.items()), password)


def fence_levels(
    template: Template, read_secret: Callable[[str], str] = _read_file
) -> list[FenceDevice]:
    """The FENCE levels of a host template, in order: the one reader of the FENCE attribute
    (ft/fence_host, its fencecreds answer, the in-process fencer; the XML forms through
    `fence_template`). FenceConfigError names the first bad level and why."""
    if any(isinstance(v, str) for v in template.values("FENCE")):
        raise FenceConfigError("FENCE must be a vector attribute: FENCE = [ AGENT = ..., ... ]")
    return [parse_device(i, v, read_secret)
            for i, v in enumerate(template.vectors("FENCE"), start=1)]  # fmt: skip


def fence_template(element: Element | None) -> Template:
    """The FENCE attributes of an XML template (HOST/TEMPLATE, or fencecreds' <TEMPLATE>) as a
    Template, for `fence_levels`; the other attributes are ignored. A FENCE element with child
    elements is a vector (names upper-cased, values stripped), one without is a string."""
    items: list[tuple[str, Value]] = []
    for fence_el in [] if element is None else element.findall("FENCE"):
        if len(fence_el):
            pairs = [(child.tag.upper(), (child.text or "").strip()) for child in fence_el]
            items.append(("FENCE", Vector(pairs)))
        else:
            items.append(("FENCE", (fence_el.text or "").strip()))
    return Template(items)


# -- redaction -------------------------------------------------------------------------------
def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every occurrence of each (non-empty) secret replaced."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def agent_message(result: AgentResult, secrets: Iterable[str | None]) -> str:
    """The agent's most telling output line (its last ERROR/Failed/Success/Status line, else
    its last line), redacted, without the log timestamp, on one line."""
    lines = [
        line.strip()
        for line in (result.stdout + "\n" + result.stderr).splitlines()
        if line.strip() and not any(noise in line for noise in _NOISE)
    ]
    telling = [ln for ln in lines if re.search(r"ERROR|Fail|Success|Status|Unable", ln)]
    pick = (telling or lines or [""])[-1]
    pick = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+\s+", "", pick)
    pick = redact(pick, secrets)
    return pick if len(pick) <= _MESSAGE_MAX else pick[: _MESSAGE_MAX - 3] + "..."


# -- orchestration ---------------------------------------------------------------------------
class _Fence:
    def __init__(
        self,
        host: str,
        runner: FenceAgentRunner,
        clock: Clock,
        policy: FencePolicy,
        on_attempt: Callable[[FenceAttempt], None] | None,
        secrets: list[str | None],
    ) -> None:
        self.host = host
        self.runner = runner
        self.clock = clock
        self.policy = policy
        self.on_attempt = on_attempt
        self.secrets = secrets
        self.start = clock.monotonic()
        self.deadline = self.start + policy.total_timeout
        self.attempts: list[FenceAttempt] = []

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    async def run(self, device: FenceDevice, action: str, number: int) -> FenceAttempt:
        timeout = max(0.0, min(self.policy.timeout, self.remaining()))
        began = self.clock.monotonic()
        rc: int | None = None
        try:
            result = await within(
                self.runner.run(device.agent, device.agent_params(action), timeout),
                timeout + self.policy.grace,
            )
        except TimeoutError:
            verdict, message = "timeout", f"no answer within {timeout:g}s"
        except PermanentDriverError:
            raise
        except DriverError as exc:
            verdict, message = "failed", redact(str(exc), self.secrets)
        except Exception as exc:  # a broken runner must not abort the fence of a failed host
            verdict, message = "failed", redact(f"{type(exc).__name__}: {exc}", self.secrets)
        else:
            message = agent_message(result, self.secrets)
            if result.timed_out:
                verdict, message = "timeout", f"killed after {timeout:g}s"
            else:
                rc = result.rc
                if action == "status":
                    verdict = {RC_OK: "on", RC_STATUS_OFF: "off"}.get(rc, "failed")
                else:
                    verdict = "ok" if rc == RC_OK else "failed"
        attempt = FenceAttempt(
            device.level, device.agent, action, number, rc,
            self.clock.monotonic() - began, verdict, message,
        )  # fmt: skip
        self.record(attempt)
        return attempt

    def record(self, attempt: FenceAttempt) -> None:
        self.attempts.append(attempt)
        log.info("fence %s: %s", self.host, attempt.line())
        if self.on_attempt is not None:
            self.on_attempt(attempt)

    async def with_retries(self, device: FenceDevice, action: str, done: set[str]) -> str:
        """Run `action` until its verdict is in `done` or attempts/time run out; return the
        last verdict, or "bound" when the total timeout stopped us."""
        verdict = "failed"
        for number in range(1, self.policy.attempts + 1):
            if number > 1:
                delay = self.policy.delay(number - 1)
                if delay >= self.remaining():
                    return "bound"
                await self.clock.sleep(delay)
            if self.remaining() <= 0:
                return "bound"
            try:
                verdict = (await self.run(device, action, number)).result
            except PermanentDriverError as exc:
                message = redact(str(exc), self.secrets)
                self.record(FenceAttempt(device.level, device.agent, action, number, None,
                                         0.0, "failed", message))  # fmt: skip
                return "failed"
            if verdict in done or verdict == "on":
                return verdict
        return verdict

    async def level(self, device: FenceDevice) -> str:
        """'' when this level proved the host off, else why it failed."""
        verdict = await self.with_retries(device, "off", {"ok"})
        if verdict != "ok":
            return "total timeout reached" if verdict == "bound" else f"off {verdict}"
        verdict = await self.with_retries(device, "status", {"off"})
        if verdict == "off":
            return ""
        if verdict == "on":
            return "status says ON after off"
        return "total timeout reached" if verdict == "bound" else f"status {verdict}"


async def fence(
    host_name: str,
    devices: list[FenceDevice],
    runner: FenceAgentRunner,
    clock: Clock,
    policy: FencePolicy | None = None,
    on_attempt: Callable[[FenceAttempt], None] | None = None,
) -> FenceOutcome:
    """Try each level in order until one proves the host off; never raises for agent failures."""
    policy = policy or FencePolicy()
    job = _Fence(host_name, runner, clock, policy, on_attempt, [d.password for d in devices])
    reasons: list[str] = []
    used: int | None = None
    for device in devices:
        if job.remaining() <= 0:
            reasons.append(f"level {device.level} {device.agent}: not tried (total timeout)")
            continue
        why = await job.level(device)
        if not why:
            used = device.level
            break
        reasons.append(f"level {device.level} {device.agent}: {why}")
    duration = clock.monotonic() - job.start
    tries = len(job.attempts)
    if used is not None:
        device = devices[used - 1]
        summary = (
            f"host {host_name}: fenced, power proven off by level {used} ({device.describe()})"
            f" in {duration:.2f}s, {tries} agent runs"
        )
    elif not devices:
        summary = f"host {host_name}: NOT fenced: no FENCE levels configured"
    else:
        summary = f"host {host_name}: NOT fenced after {duration:.2f}s: " + "; ".join(reasons)
    summary = redact(summary, job.secrets)
    (log.info if used is not None else log.error)("fence %s", summary)
    return FenceOutcome(host_name, used is not None, used, tuple(job.attempts), duration, summary)


def render_params(params: Mapping[str, str]) -> str:
    """A loggable rendering of agent params (the password masked), for error messages."""
    return " ".join(f"{k}={REDACTED if k == 'password' else v}" for k, v in params.items())
