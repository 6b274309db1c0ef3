"""`Lab`: real qemu hosts on one machine, with fault injection, for lab tests and demos (root).

Used by `lazarus lab` (cli/lab.py), the lab tests, the end-to-end scenarios and the BMC
emulator's power watcher (lab/bmc.py calls `power_off`/`power_on`). All state (names, addresses,
pids, power and faults) lives in `<root_dir>/state.json`, guarded by a file lock, so any process
can operate or tear down a lab another process brought up.

    lab = Lab(Path("/tmp/lab"))
    lab.up(hosts=3)                  # hv1..hv3 at 10.250.0.1.., controller side 10.250.0.10
    st = lab.status()                # LIBVIRT_URI / MIGRATE_URI per host, for registration
    lab.fail("hv2", "network")       # cable pulled: qemu keeps running (split brain)
    lab.repair("hv2")
    lab.power_off("hv3"); lab.power_on("hv3")   # persistent domains come back shut off
    lab.down()                       # nothing left: processes, mounts, namespaces, links

Fault modes: "power" = SIGKILL the host's libvirtd and qemus and pull its cable; "network" =
pull the cable only; "hang" = SIGSTOP libvirtd (the socket accepts, nothing answers).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lazarus.lab import guest, hosts, netns
from lazarus.lab.proc import (
    LabError,
    alive,
    cmdline,
    kill_and_wait,
    mounts_under,
    run,
    signal_pids,
)

if TYPE_CHECKING:
    from lazarus.lab.bmc import BmcSet

FailMode = Literal["power", "network", "hang"]
FAIL_MODES: tuple[FailMode, ...] = ("power", "network", "hang")
DEFAULT_SUBNET = "10.250.0"
CTL_OCTET = 10
MAX_HOSTS = 9
LIBVIRT_PORT = 16509
REQUIRED_BINARIES = ("libvirtd", "virsh", "qemu-system-x86_64", "qemu-img", "ip", "nsenter",
                     "unshare", "taskset", "mount", "umount", "hostname", "stat")  # fmt: skip
# Forbidden roots: the hosts mount private views over these, so lab files there would not be
# shared between hosts.
_PRIVATE_ROOTS = ("/run", "/var", "/etc", "/sys", "/proc", "/dev")


def _mentions(pid: int, text: str) -> bool:
    """Does `text` occur in the command line or environment of `pid`?"""
    if text in " ".join(cmdline(pid)):
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return text.encode() in fh.read()
    except OSError:
        return False


def default_caps_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lazarus" / "lab" / "qemu-capabilities"


def missing_requirements() -> list[str]:
    """What keeps a lab from running here (empty when all is well)."""
    problems = [] if os.geteuid() == 0 else ["must run as root"]
    problems += [f"missing binary: {b}" for b in REQUIRED_BINARIES if shutil.which(b) is None]
    return problems


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    netns: str
    libvirt_uri: str  # qemu+tcp://ADDR/system, reachable from the root netns
    migrate_uri: str  # tcp://ADDR, where the host's qemu accepts migration streams
    unix_uri: str  # the same daemon over its unix socket (no network path needed)
    power: str  # "on" | "off"
    fault: str | None  # None | "network" | "hang"
    libvirtd_pid: int | None
    libvirtd_alive: bool
    pids: tuple[int, ...]  # every process of the host: its reaper, libvirtd and its qemus
    # FENCE vector attributes per BMC kind ("redfish", "ipmi") once `start_bmcs` ran
    fence: dict[str, dict[str, str]] = field(default_factory=dict)

    def template(self) -> dict[str, str]:
        """HOST template attributes a controller registers this host with."""
        return {"LIBVIRT_URI": self.libvirt_uri, "MIGRATE_URI": self.migrate_uri}


@dataclass(frozen=True)
class LabStatus:
    root_dir: str
    prefix: str
    up: bool
    controller_address: str
    datastore: str  # shared dir, same path on every host
    image: str  # the tiny guest image inside the datastore
    hosts: tuple[HostStatus, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def host(self, name: str) -> HostStatus:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no host {name!r} in the lab")


class Lab:
    def __init__(
        self,
        root_dir: Path,
        *,
        subnet: str = DEFAULT_SUBNET,
        caps_cache: Path | None = None,
    ) -> None:
        self.root = Path(root_dir).resolve()
        if any(str(self.root) == p or str(self.root).startswith(p + "/") for p in _PRIVATE_ROOTS):
            raise LabError(f"lab dir {self.root} is under a path the hosts mount privately")
        try:
            ipaddress.IPv4Network(f"{subnet}.0/24")
        except ValueError as exc:
            raise LabError(f"bad subnet {subnet!r}: give three octets, e.g. 10.250.0") from exc
        self.subnet = subnet
        self.caps_cache = caps_cache if caps_cache is not None else default_caps_cache()
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:4]
        self.prefix = f"lz{digest}"  # + "-" + name; root links are at most 15 chars
        self.state_file = self.root / "state.json"
        self.datastore = self.root / "datastore"
        self.ns_dir = self.root / "ns"
        self._bmcs: BmcSet | None = None

    # -- state -------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Hold the lab lock; yield the state dict and save it afterwards."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lab.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._load()
            try:
                yield state
            finally:
                if state:
                    tmp = self.state_file.with_suffix(".tmp")
                    tmp.write_text(json.dumps(state, indent=2) + "\n")
                    tmp.replace(self.state_file)

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        return data

    def _host(self, state: dict[str, Any], name: str) -> dict[str, Any]:
        try:
            entry: dict[str, Any] = state["hosts"][name]
        except KeyError:
            raise LabError(f"no host {name!r} in the lab at {self.root}") from None
        return entry

    def _paths(self, name: str) -> hosts.HostPaths:
        return hosts.HostPaths(self.root, name)

    # -- bring-up and teardown ---------------------------------------------------------------

    def up(self, hosts_count: int = 3) -> LabStatus:
        """Build the LAN, `hosts_count` hosts with running libvirtds and the guest image."""
        problems = missing_requirements()
        if problems:
            raise LabError("; ".join(problems))
        if not 1 <= hosts_count <= MAX_HOSTS:
            raise LabError(f"hosts must be between 1 and {MAX_HOSTS}")
        ctl = f"{self.subnet}.{CTL_OCTET}"
        if self._load().get("hosts"):
            raise LabError(f"a lab is already up in {self.root}; run down first")
        if ctl in netns.root_addresses():
            raise LabError(f"{ctl} is already in use (another lab is up on {self.subnet}.0/24)")
        names = {f"hv{i}": f"{self.subnet}.{i}" for i in range(1, hosts_count + 1)}
        try:
            self._up(names, ctl)
        except BaseException:
            self.down()
            raise
        return self.status()

    def _up(self, names: dict[str, str], ctl: str) -> None:
        lan = f"{self.prefix}-lan"
        with self._locked() as state:
            state.update(version=1, prefix=self.prefix, subnet=self.subnet, lan=lan,
                         ctl_link=f"{self.prefix}-ctl", ctl_address=ctl, hosts={})  # fmt: skip
        self.datastore.mkdir(parents=True, exist_ok=True)
        guest.write_image(self.datastore)
        self._ensure_ns_dir()
        netns.ensure_lan(lan)
        netns.add_root_link(lan, f"{self.prefix}-ctl", f"{ctl}/24")
        etc_hosts = dict(names, **{"lazarus-ctl": ctl})
        for name, addr in names.items():
            with self._locked() as state:
                state["hosts"][name] = {
                    "address": addr,
                    "netns": f"{self.prefix}-{name}",
                    "power": "off",
                    "fault": None,
                    "libvirtd_pid": None,
                }
            paths = self._paths(name)
            netns.add_host(lan, f"{self.prefix}-{name}", name, f"{addr}/24")
            hosts.write_config(paths, addr, etc_hosts, self.prefix)
            hosts.create_namespaces(paths, f"{self.prefix}-{name}")
        # The first host probes qemu if the cache is cold (8 s); the others reuse its result.
        first, *rest = names
        with self._locked() as state:
            hosts.seed_caps(self._paths(first), self.caps_cache)
            self._finish_boot(state, first, self._launch(state, first))
            hosts.save_caps(self._paths(first), self.caps_cache)
            launched = []
            for name in rest:
                hosts.seed_caps(self._paths(name), self.caps_cache)
                launched.append((name, self._launch(state, name)))
            for name, launcher in launched:
                self._finish_boot(state, name, launcher)

    def _ensure_ns_dir(self) -> None:
        """nsfs bind mounts need a private-propagation mount to live on."""
        self.ns_dir.mkdir(parents=True, exist_ok=True)
        if str(self.ns_dir) not in mounts_under(self.ns_dir):
            run(["mount", "--bind", str(self.ns_dir), str(self.ns_dir)])
        run(["mount", "--make-private", str(self.ns_dir)])

    def down(self) -> None:
        """Tear everything down; safe to call repeatedly and on a half-built lab."""
        if not self.root.is_dir():
            return
        with self._locked() as state:
            self._stop_bmcs(state)
            recorded = state.get("hosts", {})
            names = set(recorded)
            if self.ns_dir.is_dir():
                names |= {p.stem for p in self.ns_dir.glob("*.mnt")}
            for name in sorted(names):
                hosts.destroy(self._paths(name))
                pid = recorded.get(name, {}).get("libvirtd_pid")
                if pid and alive(pid) and "libvirtd" in " ".join(cmdline(pid)):
                    kill_and_wait([pid])  # its mount namespace file was already gone
            for point in mounts_under(self.root):
                run(["umount", "-l", point], check=False)
            for link in netns.root_links(f"{self.prefix}-"):
                netns.delete_root_link(link)
            for ns in netns.list_netns(f"{self.prefix}-"):
                netns.delete_netns(ns)
            state.clear()
        self.state_file.unlink(missing_ok=True)

    # -- power and faults --------------------------------------------------------------------

    def _launch(self, state: dict[str, Any], name: str) -> subprocess.Popen[bytes]:
        paths = self._paths(name)
        hosts.reset_runtime(paths)
        netns.set_port(state["lan"], name, True)
        return hosts.start_libvirtd(paths, f"{self.prefix}-{name}")

    def _finish_boot(
        self, state: dict[str, Any], name: str, launcher: subprocess.Popen[bytes]
    ) -> None:
        pid = hosts.wait_ready(self._paths(name), launcher)
        host = self._host(state, name)
        host.update(power="on", fault=None, libvirtd_pid=pid)
        if host.get("agent_args"):  # the agent starts with the host, as a service would
            self._start_agent(state, name, host["agent_args"])

    # -- host agents (lazarus agent: storage heartbeat, watchdog) ----------------------------

    def start_agent(self, name: str, controller: str, *, period: float = 1.0,
                    extra: list[str] | None = None) -> None:
        """Run `lazarus agent` in the host, writing its heartbeat to the shared datastore,
        checking `controller` (HOST:PORT) over the host's network, with the fake watchdog
        (no machine here has /dev/watchdog). Restarted at each power on."""
        args = ["--host", name, "--datastore", str(self.datastore), "--controller", controller,
                "--period", f"{period:g}", "--fake-watchdog", *(extra or [])]
        with self._locked() as state:
            host = self._host(state, name)
            host["agent_args"] = args
            if host["power"] == "on":
                self._start_agent(state, name, args)

    def _start_agent(self, state: dict[str, Any], name: str, args: list[str]) -> None:
        pid = hosts.start_agent(self._paths(name), f"{self.prefix}-{name}", args)
        self._host(state, name)["agent_pid"] = pid

    def stop_agent(self, name: str, timeout: float = 10.0) -> None:
        """Stop the host's agent cleanly (SIGTERM: it disarms its watchdog and says so) and
        forget it (it no longer starts at power on)."""
        with self._locked() as state:
            host = self._host(state, name)
            pid = int(host.pop("agent_pid", 0) or 0)
            host.pop("agent_args", None)
        if pid > 0 and alive(pid) and "lazarus.app.agent" in " ".join(cmdline(pid)):
            signal_pids([pid], signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                kill_and_wait([pid])

    def agent_alive(self, name: str) -> bool:
        pid = int(self._host(self._load(), name).get("agent_pid") or 0)
        return pid > 0 and alive(pid) and "lazarus.app.agent" in " ".join(cmdline(pid))

    def power_off(self, name: str) -> None:
        """Cut the power: SIGKILL libvirtd and every qemu of the host, pull its cable."""
        with self._locked() as state:
            host = self._host(state, name)
            netns.set_port(state["lan"], name, False)
            hosts.kill_all(self._paths(name))
            host.update(power="off", fault=None, libvirtd_pid=None)

    def power_on(self, name: str) -> None:
        """Boot a powered-off host: fresh /run, cable in, libvirtd up (no domain autostarts).

        Persistent domains it had come back shut off. A host that is on is left alone, as a
        BMC's power-on of a running machine does nothing.
        """
        with self._locked() as state:
            if self._host(state, name)["power"] != "on":
                self._finish_boot(state, name, self._launch(state, name))

    def power_state(self, name: str) -> str:
        """"on" or "off", as a BMC would report it."""
        return str(self._host(self._load(), name)["power"])

    def fail(self, name: str, mode: FailMode) -> None:
        """Inject a fault: "power", "network" (cable only) or "hang" (libvirtd stopped)."""
        if mode == "power":
            self.power_off(name)
            return
        with self._locked() as state:
            host = self._host(state, name)
            if host["power"] != "on":
                raise LabError(f"{name} is powered off")
            if mode == "network":
                netns.set_port(state["lan"], name, False)
            elif mode == "hang":
                signal_pids([host["libvirtd_pid"]], signal.SIGSTOP)
            else:
                raise LabError(f"unknown fault mode {mode!r}; use one of {FAIL_MODES}")
            host["fault"] = mode

    def repair(self, name: str) -> None:
        """Undo a fault: plug the cable back, resume libvirtd, or power the host on."""
        with self._locked() as state:
            host = self._host(state, name)
            if host["power"] == "on":
                netns.set_port(state["lan"], name, True)
                if host["libvirtd_pid"]:
                    signal_pids([host["libvirtd_pid"]], signal.SIGCONT)
                host["fault"] = None
            else:
                self._finish_boot(state, name, self._launch(state, name))

    # -- BMCs ---------------------------------------------------------------------------------

    def start_bmcs(self, *, redfish: bool = True, ipmi: bool = True) -> BmcSet:
        """Start emulated BMCs (lab/bmc.py) whose chassis power drives `power_off`/`power_on`.

        The BMCs listen on 127.0.0.1 (reachable from the root netns). Their FENCE attributes
        appear in `status()`; their processes are recorded so `down` (from any process) stops
        them. Chassis power events reach this lab only while the returned set's watcher runs,
        i.e. while the calling process lives: stop it with `down()` or `BmcSet.stop()`.
        """
        from lazarus.lab.bmc import BmcSet  # sushy-tools, virtualbmc, bcrypt: only when asked

        names = sorted(self._load().get("hosts", {}))
        if not names:
            raise LabError(f"no lab is up in {self.root}")
        bmcs = BmcSet.start(self.root, names, redfish=redfish, ipmi=ipmi,
                            on_power=self._on_chassis_power)  # fmt: skip
        self._bmcs = bmcs
        kinds = [k for k, wanted in (("redfish", redfish), ("ipmi", ipmi)) if wanted]
        with self._locked() as state:
            state["bmc_pids"] = [p.pid for p in bmcs.procs.values()]
            for name in names:
                state["hosts"][name]["fence"] = {k: bmcs.fence_attributes(name, k) for k in kinds}
        return bmcs

    def _on_chassis_power(self, name: str, power: str) -> None:
        if power == "off":
            self.power_off(name)
        else:
            self.power_on(name)

    def _stop_bmcs(self, state: dict[str, Any]) -> None:
        if self._bmcs is not None:
            self._bmcs.stop()
            self._bmcs = None
        for pid in state.get("bmc_pids", []):
            # Started with their own session: the group is theirs. Check it is still ours.
            try:
                ours = os.getpgid(pid) == pid and _mentions(pid, str(self.root))
            except ProcessLookupError:
                continue
            if ours:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> LabStatus:
        state = self._load()
        host_list = []
        for name, h in sorted(state.get("hosts", {}).items()):
            paths = self._paths(name)
            pid = h.get("libvirtd_pid")
            addr = h["address"]
            host_list.append(
                HostStatus(
                    name=name,
                    address=addr,
                    netns=h["netns"],
                    libvirt_uri=f"qemu+tcp://{addr}/system",
                    migrate_uri=f"tcp://{addr}",
                    unix_uri=paths.unix_uri,
                    power=h["power"],
                    fault=h.get("fault"),
                    libvirtd_pid=pid,
                    libvirtd_alive=bool(pid) and alive(pid),
                    pids=tuple(hosts.pids(paths)),
                    fence=dict(h.get("fence", {})),
                )
            )
        return LabStatus(
            root_dir=str(self.root),
            prefix=self.prefix,
            up=bool(host_list),
            controller_address=state.get("ctl_address", ""),
            datastore=str(self.datastore),
            image=str(self.datastore / "tinyvm.qcow2"),
            hosts=tuple(host_list),
        )
