"""The libvirt Hypervisor driver (VM_MAD "kvm" / "libvirt"): the only module importing libvirt.

Used by the app's composition root for real KVM/qemu hosts, and by tests against libvirt's test
driver (in-process "test:///<file>" URIs, or test-only libvirtd daemons). Each host names its
endpoint in its template, LIBVIRT_URI ("qemu+tcp://10.0.0.5/system",
"test+unix:///default?socket=/path", "test:///abs/node.xml"); without it the driver assumes
"qemu+tcp://<host name>/system". Optional host attributes: MIGRATE_URI (the data URI for live
migration to this host) and LIBVIRT_DOMAIN_TYPE (default "qemu", i.e. TCG, or "test").

How it stays responsive when hosts die:
- one cached connection per URI, opened lazily; libvirt's default event loop runs in a daemon
  thread (registered once, before any connection), every connection gets keepalive
  (interval x count) and a close callback that drops it from the cache, so a dead or hung host
  is noticed within about interval * (count + 1) seconds and the next call reconnects;
- every blocking libvirt call runs in its own daemon thread, so a call stuck on a hung host
  never blocks the asyncio loop, its shutdown, or interpreter exit; callers bound calls with
  asyncio.timeout (core/waits.py: within; never asyncio.wait_for, which can hang on 3.11);
- libvirt errors become TemporaryDriverError (connection / RPC / keepalive failures) or
  PermanentDriverError (everything else), chained `from` the libvirt error.

Domain events (VM HA, core/vm_ha.py): once a host has answered a probe, the driver opens a
third connection to it, the "events" lane, and registers domain event callbacks there
(lifecycle: stopped / crashed / suspended; watchdog; I/O error). A callback reports
(host, domain, what) to the listener (ports.hypervisor.DomainEventReporting), which wakes the
host for an immediate probe: the event is a hint, the probe is the truth. The events lane has
keepalive and a close callback like the others; when it drops (libvirtd restarted, host
gone), the next successful probe opens it again, so a lost event connection costs at most
one probe interval of event-driven detection and nothing else: probes, their lane and host
failure detection do not depend on it. Its loss is not reported as a host loss (only the
monitor lane's is).

Why libvirt's own event loop in a dedicated thread and not libvirt-python's asyncio
integration (libvirtaio): the callbacks then run on libvirt's thread, never on the
controller's loop, so a busy loop (a store write, a burst of hook events) cannot delay
keepalive answers into false connection losses, which the host failure detection depends on;
the driver stays independent of which asyncio loop calls it (tests and the simulator run
several loops in one process; libvirtaio binds libvirt to one loop for the whole process);
and every libvirt call is already made in worker threads. The callbacks do almost nothing:
they hand the event to the listener, which marshals it onto the controller's loop with
call_soon_threadsafe.

libvirt-python is imported lazily, so the rest of Lazarus imports fine without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, TypeVar
from xml.etree import ElementTree as ET

from lazarus.domain.entities import Host
from lazarus.domain.errors import DriverError, PermanentDriverError, TemporaryDriverError
from lazarus.ports.hypervisor import DomainInfo, DomainReason, DomainState, HostProbe, VmSpec

T = TypeVar("T")

_setup_lock = threading.Lock()
_module: Any = None
_VM_NAME = re.compile(r"one-(\d+)")


def _ignore_error(_ctx: object, _err: object) -> None:
    """libvirt's error handler: stay silent (libvirt prints every error to stderr otherwise)."""


def _run_events(lv: Any) -> None:
    while True:
        try:
            lv.virEventRunDefaultImpl()
        except Exception:  # the loop must outlive one failed iteration
            continue


def _libvirt() -> Any:
    """Import libvirt once, silence its error printing and start its event loop thread.

    The event loop must be registered before the first connection is opened, or setKeepAlive
    fails ("the caller doesn't support keepalive protocol").
    """
    global _module
    with _setup_lock:
        if _module is None:
            try:
                import libvirt
            except ImportError as exc:
                raise PermanentDriverError("libvirt-python is not installed") from exc
            libvirt.registerErrorHandler(_ignore_error, None)
            libvirt.virEventRegisterDefaultImpl()
            threading.Thread(
                target=_run_events, args=(libvirt,), name="libvirt-events", daemon=True
            ).start()
            _module = libvirt
        return _module


def _scheme(uri: str) -> str:
    """The driver part of a libvirt URI: "qemu+tcp://h/system" -> "qemu"."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


_DEFAULT_PORTS = {"tcp": 16509, "tls": 16514}
_NETLOC = re.compile(r"^[^:]+\+(tcp|tls)://(?:[^@/]*@)?(\[[^\]]+\]|[^:/?]+)(?::(\d+))?")


def _tcp_address(uri: str) -> tuple[str, int] | None:
    """(host, port) of a "+tcp" / "+tls" libvirt URI, None for other transports."""
    match = _NETLOC.match(uri)
    if match is None:
        return None
    transport, host, port = match.groups()
    return host.strip("[]"), int(port) if port else _DEFAULT_PORTS[transport]


def default_domain_type(uri: str) -> str:
    return "test" if _scheme(uri) == "test" else "qemu"


def map_state(state: int, reason: int = 0) -> DomainState:
    """libvirt (state, reason) -> what a probe reports (the states oned's VM sync knows)."""
    lv = _libvirt()
    if state == lv.VIR_DOMAIN_CRASHED:
        return DomainState.FAILURE
    if state == lv.VIR_DOMAIN_SHUTOFF:
        crashed = reason == lv.VIR_DOMAIN_SHUTOFF_CRASHED
        return DomainState.FAILURE if crashed else DomainState.POWEROFF
    if state == lv.VIR_DOMAIN_PAUSED and reason == lv.VIR_DOMAIN_PAUSED_WATCHDOG:
        return DomainState.FAILURE  # its watchdog fired (action pause): the guest hung
    if state in (lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PMSUSPENDED):
        return DomainState.SUSPENDED
    # RUNNING, BLOCKED (idle), SHUTDOWN (still shutting down), NOSTATE: the guest is there.
    return DomainState.RUNNING


def map_reason(state: int, reason: int = 0) -> str:
    """libvirt (state, reason) -> a DomainReason value VM HA acts on, or ""."""
    lv = _libvirt()
    if state == lv.VIR_DOMAIN_CRASHED:
        panicked = reason == lv.VIR_DOMAIN_CRASHED_PANICKED
        return DomainReason.PANICKED if panicked else DomainReason.CRASHED
    if state == lv.VIR_DOMAIN_SHUTOFF:
        if reason == lv.VIR_DOMAIN_SHUTOFF_CRASHED:
            return DomainReason.CRASHED
        return DomainReason.SHUTDOWN if reason == lv.VIR_DOMAIN_SHUTOFF_SHUTDOWN else ""
    if state == lv.VIR_DOMAIN_PAUSED:
        if reason == lv.VIR_DOMAIN_PAUSED_WATCHDOG:
            return DomainReason.WATCHDOG
        return DomainReason.IO_ERROR if reason == lv.VIR_DOMAIN_PAUSED_IOERROR else ""
    return ""


def event_kind(event: int, detail: int) -> str:
    """A lifecycle event -> what VM HA calls it; "" for events that need no probe (started,
    defined, resumed...: Lazarus' own operations)."""
    lv = _libvirt()
    if event == lv.VIR_DOMAIN_EVENT_CRASHED:
        return DomainReason.PANICKED
    if event == lv.VIR_DOMAIN_EVENT_STOPPED:
        if detail in (lv.VIR_DOMAIN_EVENT_STOPPED_FAILED, lv.VIR_DOMAIN_EVENT_STOPPED_CRASHED):
            return DomainReason.CRASHED
        if detail == lv.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
            return DomainReason.SHUTDOWN
        return "stopped"
    if event == lv.VIR_DOMAIN_EVENT_SUSPENDED:
        if detail == lv.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR:
            return DomainReason.IO_ERROR
        if detail == lv.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG:
            return DomainReason.WATCHDOG
        return "suspended"
    return ""


def vm_id_of(name: str) -> int | None:
    match = _VM_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


_BUS = {"vd": "virtio", "sd": "scsi", "hd": "ide", "xv": "xen"}


def domain_xml(spec: VmSpec, domain_type: str, uuid: str = "") -> str:
    """The libvirt domain XML for a VM (pure; ElementTree does the escaping).

    `domain_type` is "qemu" (TCG) or "kvm" for qemu URIs and "test" for test URIs. `uuid`
    (optional) keeps an existing definition's identity when it is redefined.
    """
    real = domain_type != "test"
    os_vector = next(iter(spec.template.vectors("OS")), None)
    arch = (os_vector.get("ARCH") if os_vector else None) or "x86_64"
    machine = (os_vector.get("MACHINE") if os_vector else None) or "pc"

    root = ET.Element("domain", type=domain_type)
    ET.SubElement(root, "name").text = spec.name
    if uuid:
        ET.SubElement(root, "uuid").text = uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(spec.memory_kib)
    ET.SubElement(root, "vcpu").text = str(max(1, spec.vcpu))
    os_el = ET.SubElement(root, "os")
    type_attrs = {"arch": arch, "machine": machine} if real else {"arch": arch}
    ET.SubElement(os_el, "type", type_attrs).text = "hvm"
    if real:
        ET.SubElement(os_el, "boot", dev="hd")
    ET.SubElement(root, "clock", offset="utc")
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    emulator = spec.template.get("EMULATOR")
    if emulator and real:
        ET.SubElement(devices, "emulator").text = emulator
    for disk in spec.disks:
        disk_el = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk_el, "driver", name="qemu", type=disk.format)
        ET.SubElement(disk_el, "source", file=disk.path)
        ET.SubElement(disk_el, "target", dev=disk.target, bus=_BUS.get(disk.target[:2], "virtio"))
        if disk.readonly:
            ET.SubElement(disk_el, "readonly")
    if spec.serial_path:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=spec.serial_path, append="on")
        ET.SubElement(serial, "target", port="0")
    control = spec.template.get("SERIAL_SOCKET")
    if control and real:  # COM2, a unix socket qemu listens on (the lab guest's commands)
        serial = ET.SubElement(devices, "serial", type="unix")
        ET.SubElement(serial, "source", mode="bind", path=control)
        ET.SubElement(serial, "target", port="1")
    if real:
        # Guest liveness for VM HA: a watchdog that pauses a hung guest (libvirt reports
        # PAUSED/WATCHDOG and a watchdog event) and a panic device (a panicking guest ends
        # CRASHED/PANICKED, then shut off by on_crash). WATCHDOG_MODEL = NONE leaves it out.
        model = (spec.template.get("WATCHDOG_MODEL") or "i6300esb").strip().lower()
        if model != "none":
            ET.SubElement(devices, "watchdog", model=model, action="pause")
        if (spec.template.get("PANIC_DEVICE") or "YES").strip().upper() != "NO":
            ET.SubElement(devices, "panic", model="isa")
    if real:
        if not spec.template.vectors("INPUT"):
            # libvirt adds a USB controller by default; SeaBIOS then spends about 0.07 s of
            # emulated CPU per TCG boot initialising it (measured: docs/benchmarks.md).
            ET.SubElement(devices, "controller", type="usb", model="none")
        ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(root, encoding="unicode")


def _translate(exc: Exception, what: str) -> DriverError:
    """A libvirt error -> Temporary (connection, RPC, keepalive) or Permanent (the rest)."""
    lv = _libvirt()
    code, domain = exc.get_error_code(), exc.get_error_domain()  # type: ignore[attr-defined]
    temporary_codes = {
        lv.VIR_ERR_SYSTEM_ERROR,
        lv.VIR_ERR_RPC,
        lv.VIR_ERR_NO_CONNECT,
        lv.VIR_ERR_INVALID_CONN,
        lv.VIR_ERR_OPERATION_TIMEOUT,
        lv.VIR_ERR_AGENT_UNRESPONSIVE,
    }
    temporary = code in temporary_codes or domain in (lv.VIR_FROM_RPC, lv.VIR_FROM_REMOTE)
    kind = TemporaryDriverError if temporary else PermanentDriverError
    return kind(f"{what}: {exc}")


def _is_code(exc: Exception, *names: str) -> bool:
    lv = _libvirt()
    code = exc.get_error_code()  # type: ignore[attr-defined]
    return any(code == getattr(lv, name) for name in names)


MONITOR_LANE = "monitor"
EVENTS_LANE = "events"


class _Conn:
    """A cached connection and the number of calls using it right now.

    A connection is closed only when it is dropped (close callback, RPC failure, close()) AND
    no call uses it: closing a virConnect while another thread is inside a call on it is a
    use-after-free in libvirt (it segfaulted the hung-daemon test before this existed).
    """

    __slots__ = ("call_lock", "closed", "conn", "dropped", "key", "uri", "users")

    def __init__(self, key: tuple[str, str], conn: Any) -> None:
        self.key = key
        self.uri = key[0]
        self.conn = conn
        self.users = 0
        self.dropped = False
        self.closed = False
        # One call at a time per connection. With libvirt 9.0, when keepalive closes a
        # connection, a call queued behind the one in flight is never woken and crashes the
        # process later (reproduced with plain libvirt-python); queued on our lock instead, it
        # sees the connection was dropped and fails fast with TemporaryDriverError.
        self.call_lock = threading.Lock()


class LibvirtHypervisor:
    """The Hypervisor port over libvirt-python, cached connections per URI and lane.

    Lanes: probes have a connection of their own ("monitor"), so a burst of deploys can never
    delay them into false probe timeouts (that once got a healthy, busy host fenced); other
    operations spread over `op_lanes` connections by domain name, so deploys to one host run
    in parallel while two operations on one domain stay in order.
    """

    def __init__(
        self,
        keepalive_interval: int = 1,
        keepalive_count: int = 2,
        *,
        connect_timeout: float = 5.0,
        reach_timeout: float = 0.5,
        shutdown_timeout: float = 60.0,
        op_lanes: int = 4,
    ) -> None:
        self.op_lanes = max(1, op_lanes)
        self.shutdown_timeout = shutdown_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        # libvirt's open has no timeout and keepalive starts only once it returns: a TCP URI
        # is first probed with a plain socket (else a pulled cable piles up threads, each
        # blocked for the kernel's ~2 min SYN timeout), which must complete the TCP handshake
        # within reach_timeout. The handshake is the kernel's work, answered at once by a
        # host whose libvirtd is busy, so a short bound fences no busy host while a dead
        # host's re-probes fail in 0.5 s instead of hanging until PROBE_TIMEOUT. Callers
        # queued behind an open in progress (libvirt's own handshake, slow on a loaded
        # daemon) wait up to connect_timeout.
        self.connect_timeout = connect_timeout
        self.reach_timeout = reach_timeout
        self._lock = threading.Lock()  # guards the fields below; never held across libvirt calls
        self._loss_listener: Callable[[str], None] | None = None
        self._domain_listener: Callable[[str, str, str], None] | None = None
        self._events_opening: set[str] = set()  # uris whose events connection is opening
        self._hints: dict[tuple[str, str], str] = {}  # (uri, domain) -> last event's kind
        self._names: dict[str, str] = {}  # uri -> host name (learnt from the calls)
        self._conns: dict[tuple[str, str], _Conn] = {}
        self._uri_locks: dict[tuple[str, str], threading.Lock] = {}
        self._dead: list[_Conn] = []  # dropped, unused, to be closed by a worker (not callbacks)
        self._probing: dict[str, asyncio.Task[HostProbe]] = {}  # uri -> the probe in flight

    # -- connections ------------------------------------------------------------------------
    @staticmethod
    def uri(host: Host) -> str:
        return host.template.get("LIBVIRT_URI") or f"qemu+tcp://{host.name}/system"

    def is_connected(self, uri: str) -> bool:
        """True while a live connection to `uri` is cached (the close callback clears it)."""
        with self._lock:
            return any(key[0] == uri for key in self._conns)

    def set_loss_listener(self, listener: Callable[[str], None] | None) -> None:
        """`listener(host name)` is called (from libvirt's event thread) when a host's
        connection is closed under us: keepalive timeout, EOF, error."""
        self._loss_listener = listener

    def set_domain_listener(self, listener: Callable[[str, str, str], None] | None) -> None:
        """`listener(host name, domain name, what)` is called (from libvirt's event thread)
        for domain events: what is a DomainReason value, "stopped" or "suspended"."""
        self._domain_listener = listener

    def events_connected(self, uri: str) -> bool:
        with self._lock:
            return (uri, EVENTS_LANE) in self._conns

    def _ensure_events(self, uri: str) -> None:
        """Open the events connection to a host that just answered, if it has none (never
        blocks: the open runs in a thread of its own)."""
        if self._domain_listener is None or uri.startswith("test:///"):
            return  # test:///file keeps its state per connection: no events to share
        with self._lock:
            if (uri, EVENTS_LANE) in self._conns or uri in self._events_opening:
                return
            self._events_opening.add(uri)
        threading.Thread(target=self._open_events, args=(uri,), name="libvirt-events-open",
                         daemon=True).start()

    def _open_events(self, uri: str) -> None:
        lv = _libvirt()
        try:
            entry = self._acquire(uri, EVENTS_LANE)
            try:
                conn = entry.conn
                conn.domainEventRegisterAny(
                    None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, uri)
                conn.domainEventRegisterAny(
                    None, lv.VIR_DOMAIN_EVENT_ID_WATCHDOG, self._on_watchdog, uri)
                conn.domainEventRegisterAny(
                    None, lv.VIR_DOMAIN_EVENT_ID_IO_ERROR, self._on_io_error, uri)
            except lv.libvirtError:
                self._drop(entry)  # the next probe tries again
            finally:
                self._release(entry)
        except (lv.libvirtError, DriverError):
            pass  # unreachable now: the next good probe tries again
        finally:
            with self._lock:
                self._events_opening.discard(uri)

    def _event(self, uri: str, dom: Any, what: str) -> None:
        listener, name = self._domain_listener, self._names.get(uri)
        if not what or listener is None or name is None:
            return
        try:
            domain = str(dom.name())
        except Exception:  # never let a callback raise into libvirt's loop
            return
        if what in (DomainReason.PANICKED, DomainReason.WATCHDOG):
            self._hints[(uri, domain)] = what  # the probe may only see "shut off, crashed"
        listener(name, domain, what)

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, uri: str) -> None:
        self._event(uri, dom, event_kind(event, detail))

    def _on_watchdog(self, _conn: Any, dom: Any, _action: int, uri: str) -> None:
        self._event(uri, dom, DomainReason.WATCHDOG)

    def _on_io_error(self, _conn: Any, dom: Any, _path: str, _alias: str, action: int,
                     uri: str) -> None:  # fmt: skip
        if action == _libvirt().VIR_DOMAIN_EVENT_IO_ERROR_PAUSE:
            self._event(uri, dom, DomainReason.IO_ERROR)

    def _with_hints(self, uri: str, probe: HostProbe) -> HostProbe:
        """Name a crash the way its event did (a panicked guest shuts off as "crashed")."""
        if not self._hints:
            return probe
        listed = {dom.deploy_id for dom in probe.domains}
        for key in [k for k in self._hints if k[0] == uri and k[1] not in listed]:
            self._hints.pop(key, None)  # undefined meanwhile: forget it
        domains = []
        for dom in probe.domains:
            hint = self._hints.get((uri, dom.deploy_id))
            if hint is not None and dom.state is DomainState.RUNNING:
                self._hints.pop((uri, dom.deploy_id), None)  # restarted: the hint is spent
            elif hint is not None and dom.state is DomainState.FAILURE:
                dom = dataclasses.replace(dom, reason=hint)
            domains.append(dom)
        return dataclasses.replace(probe, domains=tuple(domains))

    def _on_close(self, _conn: Any, _reason: int, entry: _Conn) -> None:
        """libvirt's close callback (event loop thread): forget the connection, report it."""
        self._drop(entry)
        listener, name = self._loss_listener, self._names.get(entry.uri)
        monitor = entry.key[1] == MONITOR_LANE
        if listener is not None and name is not None and monitor and _reason != 3:  # 3: we closed
            listener(name)

    def _drop(self, entry: _Conn) -> None:
        with self._lock:
            if self._conns.get(entry.key) is entry:
                del self._conns[entry.key]
            if not entry.dropped:
                entry.dropped = True
                if entry.users == 0:
                    self._dead.append(entry)

    def _release(self, entry: _Conn) -> None:
        with self._lock:
            entry.users -= 1
            last = entry.dropped and entry.users == 0
        if last:
            self._close_entry(entry)

    def _reap(self) -> None:
        with self._lock:
            dead, self._dead = self._dead, []
        for entry in dead:
            self._close_entry(entry)

    def _close_entry(self, entry: _Conn) -> None:
        lv = _libvirt()
        with self._lock:
            if entry.closed or entry.users:
                return
            entry.closed = True
        try:
            entry.conn.unregisterCloseCallback()
        except lv.libvirtError:
            pass
        try:
            entry.conn.close()
        except lv.libvirtError:
            pass

    def _open(self, uri: str) -> Any:
        lv = _libvirt()
        address = _tcp_address(uri)
        if address is not None:
            try:
                socket.create_connection(address, timeout=self.reach_timeout).close()
            except OSError as exc:
                raise TemporaryDriverError(f"cannot reach {uri}: {exc}") from exc
        conn = lv.open(uri)
        try:
            conn.setKeepAlive(self.keepalive_interval, self.keepalive_count)
        except lv.libvirtError as exc:
            if not _is_code(exc, "VIR_ERR_NO_SUPPORT"):  # local drivers have no keepalive
                conn.close()
                raise
        return conn

    def _acquire(self, uri: str, lane: str) -> _Conn:
        """The cached connection to `uri` in `lane` (opened if needed), counted as in use."""
        lv = _libvirt()
        self._reap()
        key = (uri, lane)
        with self._lock:
            entry = self._conns.get(key)
            uri_lock = self._uri_locks.setdefault(key, threading.Lock())
            if entry is not None:
                entry.users += 1
        if entry is not None:
            if entry.conn.isAlive():
                return entry
            self._drop(entry)
            self._release(entry)
        # One open per URI at a time; late arrivals reuse the winner's connection.
        if not uri_lock.acquire(timeout=self.connect_timeout):
            raise TemporaryDriverError(f"still connecting to {uri}")
        try:
            with self._lock:
                entry = self._conns.get(key)
                if entry is not None:
                    entry.users += 1
                    return entry
            conn = self._open(uri)
            entry = _Conn(key, conn)
            try:
                conn.registerCloseCallback(self._on_close, entry)
            except lv.libvirtError:
                pass
            with self._lock:
                entry.users += 1
                self._conns[key] = entry
            return entry
        finally:
            uri_lock.release()

    def close(self) -> None:
        """Close every connection; ones still in use close when their last call ends."""
        with self._lock:
            entries = list(self._conns.values())
        for entry in entries:
            self._drop(entry)
        self._reap()

    # -- running calls ----------------------------------------------------------------------
    def _blocking_private(self, uri: str, what: str, fn: Callable[[Any], T], lane: str) -> T:
        """Run fn on a connection of its own (long calls such as migrations must not hold
        up probes queued on the shared connection)."""
        lv = _libvirt()
        try:
            conn = self._open(uri)
        except lv.libvirtError as exc:
            raise _translate(exc, f"{what} on {uri}") from exc
        try:
            return fn(conn)
        except lv.libvirtError as exc:
            raise _translate(exc, f"{what} on {uri}") from exc
        finally:
            try:
                conn.close()
            except lv.libvirtError:
                pass

    def _blocking(self, uri: str, what: str, fn: Callable[[Any], T], lane: str) -> T:
        lv = _libvirt()
        entry = None
        try:
            entry = self._acquire(uri, lane)
            with entry.call_lock:
                if entry.dropped:
                    lost = f"{what} on {uri}: connection lost (host dead or hung)"
                    raise TemporaryDriverError(lost)
                return fn(entry.conn)
        except lv.libvirtError as exc:
            error = _translate(exc, f"{what} on {uri}")
            if entry is not None and isinstance(error, TemporaryDriverError):
                self._drop(entry)
            raise error from exc
        finally:
            if entry is not None:
                self._release(entry)

    async def _call(
        self,
        host: Host,
        what: str,
        fn: Callable[[Any], T],
        private: bool = False,
        domain: str = "",
    ) -> T:
        """Run fn(connection) in a daemon thread; a hung host never blocks loop or exit.
        Probes use the monitor lane; an operation the lane of its domain (see the class)."""
        uri = self.uri(host)
        lane = MONITOR_LANE
        # test:///file.xml keeps private state per connection: one connection for everything.
        if domain and not uri.startswith("test:"):
            lane = f"op{zlib.crc32(domain.encode()) % self.op_lanes}"
        blocking = self._blocking_private if private else self._blocking
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(result: T | None, error: BaseException | None) -> None:
            if future.done():  # the caller gave up (timeout / cancel)
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            try:
                result: T | None = blocking(uri, f"{what} {host.name}", fn, lane)
                error: BaseException | None = None
            except BaseException as exc:  # delivered to the awaiting coroutine
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(deliver, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        threading.Thread(target=work, name=f"libvirt-{what}", daemon=True).start()
        return await future

    # -- the Hypervisor port ----------------------------------------------------------------
    async def probe(self, host: Host) -> HostProbe:
        """Probe a host; a probe asked for while one is in flight shares its answer.

        The monitor starts a new probe every RETRY_INTERVAL while a host is failing, without
        waiting for the previous one. On one connection they would queue behind the slow
        call and each time out in turn: one answer late by a second made three "failures in
        a row" and put a busy, healthy host in ERROR. Shared, a late answer that still comes
        within a later probe's own timeout counts as a success for it; a call that really
        hangs still fails every probe waiting for it, one PROBE_TIMEOUT after each started.
        Only answers are shared: a probe whose shared call failed makes a call of its own.
        """
        uri = self.uri(host)
        self._names[uri] = host.name
        loop = asyncio.get_running_loop()
        while True:
            task = self._probing.get(uri)
            mine = task is None or task.done() or task.get_loop() is not loop
            if mine:
                task = loop.create_task(self._call(host, "probe", _probe))
                self._probing[uri] = task
                task.add_done_callback(lambda done: _forget(self._probing, uri, done))
            assert task is not None
            try:
                # shield: a caller that times out must not cancel the call that the next
                # probe (the monitor re-probes at once) waits for; asyncio.run cancels a
                # leftover.
                probe = await asyncio.shield(task)
                self._ensure_events(uri)
                return self._with_hints(uri, probe)
            except DriverError:
                if mine:
                    raise
                # Another probe's call failed: one failed call is one failure, counted by
                # the probe that made it. Sharing it would turn each failed call of a dead
                # host into up to MONITOR_FAILURES failures at once (a 4.5 s network blip
                # got a host fenced that way); this probe makes its own observation.

    async def deploy(self, host: Host, spec: VmSpec) -> str:
        uri = self.uri(host)
        domain_type = host.template.get("LIBVIRT_DOMAIN_TYPE") or default_domain_type(uri)

        def run(conn: Any) -> str:
            dom = _lookup(conn, spec.name)
            if dom is None:
                dom = conn.defineXML(domain_xml(spec, domain_type))
            elif dom.isActive():
                return str(dom.name())
            else:
                # A stale definition (e.g. left by a power loss) is refreshed from the spec.
                dom = conn.defineXML(domain_xml(spec, domain_type, uuid=dom.UUIDString()))
            dom.create()
            return str(dom.name())

        return await self._call(host, "deploy", run, domain=spec.name)

    async def shutdown(self, host: Host, deploy_id: str, hard: bool) -> None:
        """Destroy (hard), or ask the guest to shut down (ACPI) and wait until it has: a
        guest that ignores ACPI fails the operation after `shutdown_timeout` (as OpenNebula's
        SHUTDOWN_TIMEOUT), leaving the VM RUNNING; the operator then uses the -hard action."""

        def run(conn: Any) -> None:
            dom = _lookup(conn, deploy_id)
            if dom is None or not dom.isActive():
                return
            _tolerate_gone(dom.destroy if hard else dom.shutdown)

        await self._call(host, "shutdown", run, domain=deploy_id)
        if hard:
            return

        def active(conn: Any) -> bool:
            dom = _lookup(conn, deploy_id)
            return dom is not None and bool(dom.isActive())

        deadline = time.monotonic() + self.shutdown_timeout
        while await self._call(host, "shutdown-wait", active, domain=deploy_id):
            if time.monotonic() >= deadline:
                raise TemporaryDriverError(
                    f"{deploy_id} on {host.name} did not shut down within "
                    f"{self.shutdown_timeout:g} s (the guest ignores ACPI?): use the -hard action"
                )
            await asyncio.sleep(0.25)

    async def suspend(self, host: Host, deploy_id: str) -> None:
        await self._call(
            host, "suspend", lambda conn: conn.lookupByName(deploy_id).suspend(), domain=deploy_id
        )

    async def resume(self, host: Host, deploy_id: str) -> None:
        await self._call(
            host, "resume", lambda conn: conn.lookupByName(deploy_id).resume(), domain=deploy_id
        )

    async def cleanup(self, host: Host, deploy_id: str) -> None:
        def run(conn: Any) -> None:
            lv = _libvirt()
            dom = _lookup(conn, deploy_id)
            if dom is None:
                return
            if dom.isActive():
                _tolerate_gone(dom.destroy)
            flags = lv.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | lv.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            try:
                _tolerate_gone(lambda: dom.undefineFlags(flags))
            except lv.libvirtError as exc:
                if not _is_code(exc, "VIR_ERR_INVALID_ARG", "VIR_ERR_NO_SUPPORT"):
                    raise
                _tolerate_gone(dom.undefine)

        await self._call(host, "cleanup", run, domain=deploy_id)

    async def migrate(self, source: Host, target: Host, deploy_id: str, spec: VmSpec) -> str:
        """Live peer-to-peer migration; the source daemon connects to the target's URI."""
        source_uri, target_uri = self.uri(source), self.uri(target)
        if "test" in (_scheme(source_uri), _scheme(target_uri)):
            raise PermanentDriverError(
                f"migrate {deploy_id} {source.name} -> {target.name}: the libvirt test driver "
                "cannot migrate (deploy on the target and clean up the source instead)"
            )
        migrate_uri = target.template.get("MIGRATE_URI")

        def run(conn: Any) -> str:
            lv = _libvirt()
            params = {lv.VIR_MIGRATE_PARAM_URI: migrate_uri} if migrate_uri else {}
            flags = (
                lv.VIR_MIGRATE_LIVE
                | lv.VIR_MIGRATE_PEER2PEER
                | lv.VIR_MIGRATE_PERSIST_DEST
                | lv.VIR_MIGRATE_UNDEFINE_SOURCE
            )
            conn.lookupByName(deploy_id).migrateToURI3(target_uri, params, flags)
            return deploy_id

        return await self._call(
            source, f"migrate to {target.name}", run, private=True, domain=deploy_id
        )


def _forget(probing: dict[str, asyncio.Task[HostProbe]], uri: str,
            done: asyncio.Task[HostProbe]) -> None:  # fmt: skip
    if probing.get(uri) is done:
        del probing[uri]
    if not done.cancelled():
        done.exception()  # retrieved: a failure nobody awaits any more is not "never retrieved"


def _lookup(conn: Any, name: str) -> Any:
    """The domain, or None when it does not exist."""
    lv = _libvirt()
    try:
        return conn.lookupByName(name)
    except lv.libvirtError as exc:
        if _is_code(exc, "VIR_ERR_NO_DOMAIN"):
            return None
        raise


def _tolerate_gone(action: Callable[[], object]) -> None:
    """Run a stop/undefine action; a domain that is already gone or stopped is fine."""
    lv = _libvirt()
    try:
        action()
    except lv.libvirtError as exc:
        if not _is_code(exc, "VIR_ERR_NO_DOMAIN", "VIR_ERR_OPERATION_INVALID"):
            raise


def _probe(conn: Any) -> HostProbe:
    lv = _libvirt()
    model, mem_mib, cpus, mhz = conn.getInfo()[:4]
    domains: list[DomainInfo] = []
    used_mem = 0
    for dom in conn.listAllDomains(0):
        try:
            name = dom.name()
            state, reason = dom.state()
            # maxMemory, not info(): info() of a domain that is starting can wait seconds
            # for the start to finish (measured 2.8 s with 15 starts in flight), so a probe
            # during a mass deploy timed out and a healthy survivor went to ERROR. Our
            # domains have no balloon, so their memory is their maximum (for other domains
            # this over-counts, which only makes the scheduler more careful).
            memory = dom.maxMemory() if dom.isActive() else 0
        except lv.libvirtError as exc:
            if _is_code(exc, "VIR_ERR_NO_DOMAIN"):
                continue  # vanished between listing and asking
            raise
        used_mem += memory
        domains.append(
            DomainInfo(
                deploy_id=name,
                state=map_state(state, reason),
                vm_id=vm_id_of(name),
                memory_kib=memory,
                reason=map_reason(state, reason),
            )
        )
    info = {
        "HOSTNAME": str(conn.getHostname()),
        "HYPERVISOR": str(conn.getType()).lower(),
        "ARCH": str(model),
        "CPUSPEED": str(mhz),
        "LIBVIRT_VERSION": str(conn.getLibVersion()),
    }
    return HostProbe(
        total_cpu=int(cpus) * 100,
        total_mem=int(mem_mib) * 1024,
        used_cpu=0,  # not measured: it needs two samples of cpuTime (future work)
        used_mem=used_mem,
        domains=tuple(domains),
        info=info,
    )
