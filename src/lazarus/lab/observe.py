"""Watching a lab cluster from outside: the controller's view over its API, qemu's from /proc.

Used by lab/e2e.py (`LabCluster`), the end-to-end tests, bench/rto.py and the lab demo. Both
watchers are threads sampling at a fixed rate and keeping what changed, stamped with
`time.monotonic()`, so a test or the benchmark can ask afterwards "when did VM 3 become
RUNNING on hv1" or "were there ever two qemu processes for one VM".

- `ApiWatch` polls one.hostpool.info and one.vmpool.info (default every 50 ms) and records a
  `Change` per host state, per HA incident state (HOST/TEMPLATE/HA_INCIDENT/STATE, written by
  ft/host_error), per count of failed probes (HOST/TEMPLATE/MONITOR_FAILURES, published by the
  monitor) and per VM (state, LCM state, host).
- `QemuWatch` scans /proc (default every 20 ms) for qemu processes and their `-name guest=NAME`
  argument, recording for each domain name the most processes ever seen at one instant and the
  set of host mount namespaces they ran in.

Test and benchmark infrastructure: real threads and real sleeps are fine here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from defusedxml import ElementTree as SafeET

from lazarus.api.client import Client
from lazarus.domain.errors import LazarusError
from lazarus.domain.states import HostState, LcmState, VmState


@dataclass(frozen=True)
class Change:
    at: float  # time.monotonic()
    kind: str  # "host" | "incident" | "failures" | "vm"
    oid: int
    value: str  # host: state name; incident: its STATE; failures: count; vm: "STATE/LCM"
    host: str = ""  # the VM's host name (vm changes)


@dataclass(frozen=True)
class VmView:
    id: int
    name: str
    state: VmState
    lcm: LcmState
    host: str  # last history record's host name ("" before the first placement)
    host_id: int

    @property
    def running(self) -> bool:
        return self.state is VmState.ACTIVE and self.lcm is LcmState.RUNNING

    @property
    def label(self) -> str:
        if self.state is VmState.ACTIVE:
            return self.lcm.name
        return self.state.name


@dataclass(frozen=True)
class HostView:
    id: int
    name: str
    state: HostState
    incident: str  # HA_INCIDENT/STATE or ""
    failures: int = 0  # TEMPLATE/MONITOR_FAILURES: consecutive failed probes


def parse_vms(xml: str) -> list[VmView]:
    views = []
    for vm in SafeET.fromstring(xml).findall("VM"):
        hist = vm.findall("HISTORY_RECORDS/HISTORY")
        views.append(
            VmView(
                id=int(vm.findtext("ID", "-1")),
                name=vm.findtext("NAME", ""),
                state=VmState(int(vm.findtext("STATE", "0"))),
                lcm=LcmState(int(vm.findtext("LCM_STATE", "0"))),
                host=hist[-1].findtext("HOSTNAME", "") if hist else "",
                host_id=int(hist[-1].findtext("HID", "-1")) if hist else -1,
            )
        )
    return views


def parse_hosts(xml: str) -> list[HostView]:
    views = []
    for host in SafeET.fromstring(xml).findall("HOST"):
        incidents = host.findall("TEMPLATE/HA_INCIDENT")
        views.append(
            HostView(
                id=int(host.findtext("ID", "-1")),
                name=host.findtext("NAME", ""),
                state=HostState(int(host.findtext("STATE", "0"))),
                incident=(incidents[-1].findtext("STATE", "") or "") if incidents else "",
                failures=int(host.findtext("TEMPLATE/MONITOR_FAILURES", "0") or "0"),
            )
        )
    return views


@dataclass
class _Poller:
    """A daemon thread that calls `_tick()` every `period` seconds, from start() to stop()."""

    period: float = field(default=0.05, kw_only=True)
    _stop: threading.Event = field(default_factory=threading.Event, kw_only=True, repr=False)
    _thread: threading.Thread | None = field(default=None, kw_only=True, repr=False)

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._tick()
            self._stop.wait(self.period)

    def _tick(self) -> None:
        raise NotImplementedError


@dataclass
class ApiWatch(_Poller):
    """Poll the controller and keep every change of host, incident and VM state."""

    make_client: Callable[[], Client]
    changes: list[Change] = field(default_factory=list)
    on_change: Callable[[Change], None] | None = None
    errors: int = 0
    _last: dict[tuple[str, int], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: Client | None = None

    def _run(self) -> None:
        self._client = self.make_client()  # made and closed on the polling thread
        try:
            super()._run()
        finally:
            self._client.close()

    def _tick(self) -> None:
        assert self._client is not None
        try:
            self.sample(self._client)
        except (LazarusError, OSError, SafeET.ParseError):
            self.errors += 1

    def sample(self, client: Client) -> None:
        hosts = parse_hosts(client.call("one.hostpool.info", -2, -1, -1))
        vms = parse_vms(client.call("one.vmpool.info", -2, -1, -1, -1))
        now = time.monotonic()
        for h in hosts:
            self._note(now, "host", h.id, h.state.name)
            if h.incident:
                self._note(now, "incident", h.id, h.incident)
            self._note(now, "failures", h.id, str(h.failures))
        for v in vms:
            self._note(now, "vm", v.id, f"{v.state.name}/{v.lcm.name}", v.host)

    def _note(self, now: float, kind: str, oid: int, value: str, host: str = "") -> None:
        key = (kind, oid)
        shown = f"{value}@{host}"
        if self._last.get(key) == shown:
            return
        self._last[key] = shown
        change = Change(now, kind, oid, value, host)
        with self._lock:
            self.changes.append(change)
        if self.on_change is not None:
            self.on_change(change)

    def snapshot(self) -> list[Change]:
        with self._lock:
            return list(self.changes)

    def first(self, kind: str, oid: int, value: str, *, after: float = 0.0,
              host: str | None = None, not_host: str | None = None) -> float | None:  # fmt: skip
        """When `oid` first showed `value` at or after `after` (optionally on/off a host)."""
        for c in self.snapshot():
            if c.kind != kind or c.oid != oid or c.value != value or c.at < after:
                continue
            if host is not None and c.host != host:
                continue
            if not_host is not None and c.host == not_host:
                continue
            return c.at
        return None


def qemu_domains() -> dict[str, list[tuple[int, str]]]:
    """Domain name -> [(pid, mount namespace)] of every live qemu process on this machine."""
    found: dict[str, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
            if not args or b"qemu-system" not in args[0]:
                continue
            mnt = os.readlink(f"/proc/{entry}/ns/mnt")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue  # a zombie runs nothing
        except OSError:
            continue
        for index, arg in enumerate(args[:-1]):
            if arg == b"-name":
                value = args[index + 1].decode(errors="replace")
                for part in value.split(","):
                    name = part[len("guest="):] if part.startswith("guest=") else ""
                    if name:
                        found.setdefault(name, []).append((int(entry), mnt))
    return found


@dataclass
class QemuProc:
    pid: int
    name: str  # the libvirt domain name
    mnt: str  # its mount namespace ("mnt:[inode]"): which lab host it ran on
    first: float  # first and last sample (time.monotonic()) that saw it alive
    last: float


@dataclass
class QemuWatch(_Poller):
    """Sample the qemu processes (every 20 ms unless told); remember the worst overlap per
    domain name."""

    period: float = field(default=0.02, kw_only=True)
    # only qemus in these mount namespaces (one lab's hosts; another lab running at the same
    # time has VMs of the same names); empty: every qemu on the machine
    mounts: frozenset[str] = frozenset()
    most: dict[str, int] = field(default_factory=dict)  # name -> most processes at once
    namespaces: dict[str, set[str]] = field(default_factory=dict)
    overlaps: list[tuple[float, str, list[int]]] = field(default_factory=list)
    seen: dict[int, QemuProc] = field(default_factory=dict)  # every qemu ever sampled
    samples: int = 0

    def _tick(self) -> None:
        now = time.monotonic()
        for name, found in qemu_domains().items():
            procs = [p for p in found if not self.mounts or p[1] in self.mounts]
            if not procs:
                continue
            self.most[name] = max(self.most.get(name, 0), len(procs))
            self.namespaces.setdefault(name, set()).update(m for _, m in procs)
            for pid, mnt in procs:
                self.seen.setdefault(pid, QemuProc(pid, name, mnt, now, now)).last = now
            if len(procs) > 1:
                self.overlaps.append((now, name, [p for p, _ in procs]))
        self.samples += 1

    def processes(self, name: str) -> list[QemuProc]:
        """Every qemu process that ran domain `name`, oldest first."""
        return sorted((p for p in list(self.seen.values()) if p.name == name),
                      key=lambda p: p.first)  # fmt: skip
