"""Scenarios as data: the TOML format the simulator runs (documented in docs/simulator.md).

    name = "power-loss-migrate"
    duration = 240                       # virtual seconds after setup
    [settings]                           # any core.settings.Settings field
    monitoring_interval_host = 5
    [cluster]
    hosts = 3                            # node1..node3, or a list of names / inline tables
    controllers = 3                      # optional: several controllers, one leader
    datastores = [{ name = "local", tm_mad = "ssh" }]
    [[cluster.vms]]
    name = "web"; host = "node1"; count = 3; memory = 512; ha = true; priority = 5
    [hook]
    arguments = "$TEMPLATE -m -p 2"      # enabled = false: no error hook at all
    [[events]]
    at = 10; action = "power_off"; host = "node1"
    [expect]
    recovery_deadline = 60
    vms = [{ name = "web-*", state = "RUNNING", not_host = "node1" }]

`load(path)` parses and checks a file, `dumps(scenario)` writes one back (the fuzzer writes
minimal reproducing scenarios with it). Used by sim/runner.py, sim/fuzz.py and the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lazarus.core.settings import Settings
from lazarus.domain.errors import LazarusError

ACTIONS = {
    "power_off": ("host",),
    "power_on": ("host",),
    "network_cut": ("host",),
    "network_restore": ("host",),
    "partition": ("parties",),
    "heal": ("parties",),
    "hang": ("host",),
    "unhang": ("host",),
    "fence_fault": ("host", "fault"),
    "vm_crash": ("vm",),
    "storage_fail": ("host",),
    "storage_restore": ("host",),
    "capacity": ("host",),
    "fail_next": ("host", "op"),
    "controller_crash": (),
    "controller_freeze": ("down",),
    "coordination_cut": ("down",),
    "store_fault": ("down",),
    "api": ("method",),
}
FENCE_FAULTS = ("none", "unreachable", "wrong_password", "lying", "ignores_off", "reports_off",
                "slow")
VM_CRASH_KINDS = ("crashed", "panicked", "watchdog", "io_error", "shutdown")
VM_STATES = ("RUNNING", "POWEROFF", "SUSPENDED", "PENDING", "HOLD")
ORACLES = ("split_brain", "unfenced_start", "recovery", "mass_fence", "fence_rate", "hook_lost",
           "accounting", "false_error", "vm_ha_budget", "vm_ha_host", "vm_ha_operator",
           "one_actor")
HA_ACTIONS = ("controller_freeze", "coordination_cut")  # need [cluster] controllers >= 2


class ScenarioError(LazarusError):
    """A scenario file that cannot be run (the message names the field)."""


@dataclass
class HostSpec:
    name: str
    cpu: int = 800  # 1/100 cores
    memory: int = 8192  # MiB
    fence: bool = True  # a FENCE = [ AGENT = "fence_sim" ] level


@dataclass
class DatastoreSpec:
    name: str
    tm_mad: str = "ssh"
    shared: bool | None = None  # None: from TM_MAD as the core decides


@dataclass
class VmSpec:
    name: str
    host: str = ""  # empty: the scheduler places it
    count: int = 1
    cpu: float = 1.0
    memory: int = 512  # MiB
    ha: bool = True
    priority: int = 0
    datastore: str = ""  # empty: the default system datastore (SHARED)
    state: str = "RUNNING"

    def names(self) -> list[str]:
        return [self.name] if self.count == 1 else [f"{self.name}-{i}" for i in range(self.count)]


@dataclass
class Event:
    at: float
    action: str
    host: str = ""
    vm: str = ""
    parties: list[str] = field(default_factory=list)
    fault: str = ""
    delay: float = 0.0  # slow fence device: seconds per agent action
    op: str = ""
    permanent: bool = False
    count: int = 1  # fail_next: this many calls in a row fail
    cpu: int = 0
    memory: int = 0
    gone: bool = False  # vm_crash: the domain vanishes instead of FAILURE
    kind: str = ""  # vm_crash: crashed (default), panicked, watchdog, io_error, shutdown
    down: float = 0.0  # controller_crash: seconds before the new controller starts; store_fault,
    # controller_freeze, coordination_cut: how long it lasts
    controller: str = ""  # several controllers: which one (ctl0, ctl1, ...); empty: the leader
    method: str = ""
    params: list[Any] = field(default_factory=list)
    expect_error: bool = False  # api: the call is expected to fail

    def describe(self) -> str:
        what = self.host or self.vm or " ".join(self.parties) or self.method or self.controller
        extra = f" {self.fault}" if self.fault else ""
        return f"{self.action} {what}{extra}".strip()


@dataclass
class Expect:
    recovery_deadline: float = 90.0  # 0 disables the deadline oracle
    max_fences_per_host_hour: int = 3
    oracles: list[str] = field(default_factory=lambda: list(ORACLES))
    violations: list[str] = field(default_factory=list)  # oracles that must fire (negative tests)
    vms: list[dict[str, Any]] = field(default_factory=list)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # substrings of host_error's output
    no_log: list[str] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    not_fenced: list[str] = field(default_factory=list)


@dataclass
class AgentSpec:
    """`[agent]`: a host agent (lazarus/agent) on every host, or on `hosts`."""

    enabled: bool = True
    hosts: list[str] = field(default_factory=list)  # empty: every host
    watchdog: bool = False
    watchdog_timeout: float = 10.0
    period: float = 1.0
    loss_timeout: float = 5.0
    isolation_response: str = "none"  # none | stop
    isolation_time: float = 10.0
    reboot: float = 30.0  # a watchdog reset: the host is off this long, then powers on


@dataclass
class Scenario:
    name: str
    description: str = ""
    duration: float = 300.0
    jitter: float = 0.0  # with --seed: each event shifted by up to this many seconds
    settings: dict[str, Any] = field(default_factory=dict)
    hosts: list[HostSpec] = field(default_factory=list)
    datastores: list[DatastoreSpec] = field(default_factory=list)
    vms: list[VmSpec] = field(default_factory=list)
    hook: bool = True
    hook_arguments: str = "$TEMPLATE -m -p 2"
    hook_timeout: float = 0.0
    controllers: int = 1  # >= 2: that many controllers, one leader (sim/controllers.py)
    events: list[Event] = field(default_factory=list)
    expect: Expect = field(default_factory=Expect)
    agent: AgentSpec | None = None

    def vm_names(self) -> list[str]:
        return [n for spec in self.vms for n in spec.names()]


# -- loading ----------------------------------------------------------------------------------
def _build(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def _hosts(raw: Any) -> list[HostSpec]:
    if isinstance(raw, int):
        return [HostSpec(f"node{i + 1}") for i in range(raw)]
    if not isinstance(raw, list):
        raise ScenarioError("cluster.hosts: a number, or a list of names or tables")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            out.append(HostSpec(item))
        else:
            out.append(_build(HostSpec, dict(item), f"cluster.hosts[{i}]"))
    return out


def from_dict(data: dict[str, Any], default_name: str = "scenario") -> Scenario:
    data = dict(data)
    cluster = dict(data.pop("cluster", {}))
    hook = dict(data.pop("hook", {}))
    events = data.pop("events", [])
    expect = data.pop("expect", {})
    agent = data.pop("agent", None)
    known = {"name", "description", "duration", "jitter", "settings"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(f"unknown top-level field(s) {', '.join(unknown)}")
    s = Scenario(name=str(data.get("name", default_name)))
    s.description = str(data.get("description", ""))
    s.duration = float(data.get("duration", s.duration))
    s.jitter = float(data.get("jitter", 0.0))
    s.settings = dict(data.get("settings", {}))
    setting_names = {f.name for f in dataclasses.fields(Settings)}
    for key in s.settings:
        if key not in setting_names:
            raise ScenarioError(f"settings: {key} is not a Settings field")
    s.hosts = _hosts(cluster.pop("hosts", 3))
    controllers = cluster.pop("controllers", 1)
    if not isinstance(controllers, int) or isinstance(controllers, bool) or not \
            1 <= controllers <= 9:
        raise ScenarioError("cluster.controllers: a whole number from 1 to 9")
    s.controllers = controllers
    s.datastores = [
        _build(DatastoreSpec, dict(d), f"cluster.datastores[{i}]")
        for i, d in enumerate(cluster.pop("datastores", []))
    ]
    s.vms = [_build(VmSpec, dict(v), f"cluster.vms[{i}]") for i, v in
             enumerate(cluster.pop("vms", []))]
    if cluster:
        raise ScenarioError(f"cluster: unknown field(s) {', '.join(sorted(cluster))}")
    s.hook = bool(hook.pop("enabled", True))
    s.hook_arguments = str(hook.pop("arguments", s.hook_arguments))
    s.hook_timeout = float(hook.pop("timeout", 0.0))
    if hook:
        raise ScenarioError(f"hook: unknown field(s) {', '.join(sorted(hook))}")
    s.events = [_build(Event, dict(e), f"events[{i}]") for i, e in enumerate(events)]
    s.expect = _build(Expect, dict(expect), "expect")
    if agent is not None:
        s.agent = _build(AgentSpec, dict(agent), "agent")
        if not s.agent.enabled:
            s.agent = None
    check(s)
    return s


def check(s: Scenario) -> None:
    hosts = {h.name for h in s.hosts}
    if len(hosts) != len(s.hosts):
        raise ScenarioError("cluster.hosts: duplicate names")
    vms = s.vm_names()
    if len(set(vms)) != len(vms):
        raise ScenarioError("cluster.vms: duplicate names")
    for spec in s.vms:
        if spec.host and spec.host not in hosts:
            raise ScenarioError(f"vm {spec.name}: unknown host {spec.host}")
        if spec.state not in VM_STATES:
            raise ScenarioError(f"vm {spec.name}: state must be one of {', '.join(VM_STATES)}")
    for i, e in enumerate(s.events):
        where = f"events[{i}] ({e.action})"
        if e.action not in ACTIONS:
            raise ScenarioError(f"{where}: unknown action; one of {', '.join(ACTIONS)}")
        for needed in ACTIONS[e.action]:
            if not getattr(e, needed):
                raise ScenarioError(f"{where}: needs {needed}")
        if e.host and e.host not in hosts:
            raise ScenarioError(f"{where}: unknown host {e.host}")
        if e.vm and e.vm not in vms:
            raise ScenarioError(f"{where}: unknown vm {e.vm}")
        for party in e.parties:
            if party not in hosts and party not in ("controller", "storage"):
                raise ScenarioError(f"{where}: unknown party {party}")
        if e.kind and (e.action != "vm_crash" or e.kind not in VM_CRASH_KINDS):
            raise ScenarioError(f"{where}: kind (vm_crash only) must be one of "
                                f"{', '.join(VM_CRASH_KINDS)}")
        if e.fault and e.fault not in FENCE_FAULTS:
            raise ScenarioError(f"{where}: fault must be one of {', '.join(FENCE_FAULTS)}")
        if e.at < 0:
            raise ScenarioError(f"{where}: at must be >= 0")
        if e.down < 0:
            raise ScenarioError(f"{where}: down must be >= 0")
        if (e.action in HA_ACTIONS or e.controller) and s.controllers < 2:
            raise ScenarioError(f"{where}: needs [cluster] controllers >= 2")
        names = {f"ctl{i}" for i in range(s.controllers)}
        if e.controller and e.controller not in names:
            raise ScenarioError(f"{where}: unknown controller {e.controller}; "
                                f"one of {', '.join(sorted(names))}")
    if s.agent is not None:
        for name in s.agent.hosts:
            if name not in hosts:
                raise ScenarioError(f"agent: unknown host {name}")
        if s.agent.isolation_response not in ("none", "stop"):
            raise ScenarioError("agent: isolation_response must be none or stop")
    for name in [*s.expect.oracles, *s.expect.violations]:
        if name not in ORACLES:
            raise ScenarioError(f"expect: unknown oracle {name}; one of {', '.join(ORACLES)}")


def load(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    try:
        return from_dict(data, default_name=path.stem)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


# -- writing ----------------------------------------------------------------------------------
def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string for our characters
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _changed(obj: Any, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields that differ from the dataclass defaults (plus `keep`)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = object()
        if f.name in keep or value != default:
            out[f.name] = value
    return out


def dumps(s: Scenario) -> str:
    lines = [f"name = {_value(s.name)}"]
    if s.description:
        lines.append(f"description = {_value(s.description)}")
    lines.append(f"duration = {_value(s.duration)}")
    if s.settings:
        lines += ["", "[settings]"] + [f"{k} = {_value(v)}" for k, v in s.settings.items()]
    lines += ["", "[cluster]"]
    lines.append("hosts = " + _value([_changed(h, ("name",)) for h in s.hosts]))
    if s.controllers != 1:
        lines.append(f"controllers = {s.controllers}")
    if s.datastores:
        lines.append("datastores = " + _value([_changed(d, ("name",)) for d in s.datastores]))
    for vm in s.vms:
        lines += ["", "[[cluster.vms]]"] + [
            f"{k} = {_value(v)}" for k, v in _changed(vm, ("name",)).items()
        ]
    lines += ["", "[hook]", f"enabled = {_value(s.hook)}",
              f"arguments = {_value(s.hook_arguments)}"]
    if s.hook_timeout:
        lines.append(f"timeout = {_value(s.hook_timeout)}")
    for e in s.events:
        lines += ["", "[[events]]"] + [
            f"{k} = {_value(v)}" for k, v in _changed(e, ("at", "action")).items()
        ]
    if s.agent is not None:
        lines += ["", "[agent]"] + [f"{k} = {_value(v)}" for k, v in _changed(s.agent).items()]
    expect = _changed(s.expect)
    if expect:
        lines += ["", "[expect]"] + [f"{k} = {_value(v)}" for k, v in expect.items()]
    return "\n".join(lines) + "\n"
