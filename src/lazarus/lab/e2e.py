"""`LabCluster`: a lab of real hosts run by a real `lazarus serve`, for end-to-end scenarios.

Used by the tier-2 tests (tests/lab/test_e2e_*.py), `lazarus lab check` (cli/lab.py), the
failover benchmark (bench/rto.py) and the lab demo (lab/demo.py). It composes what exists:

    with LabCluster(Path("/tmp/e2e"), hosts=3, fence="redfish") as cl:
        ids = cl.create_vms(4)                 # tiny guests, scheduled by the controller
        ids += cl.create_vms(2, host="hv2")    # or put on one host (held, then deployed)
        cl.wait_running(ids)
        cl.lab.power_off("hv2")                # or cl.bmc_power_off("hv2"), cl.lab.fail(...)
        cl.wait_running(ids, not_on="hv2")

Bring-up: `Lab.up` (hosts hv1.., libvirtd each), `Lab.start_bmcs` (Redfish and/or IPMI; the
chassis power watcher lives in *this* process and calls Lab.power_off/power_on), then the
daemon as a subprocess (`python -m lazarus.cli.main serve --port 0`, data dir
<root>/controller, settings through LAZARUS_<NAME> variables), then through the API: each host
(one.host.allocate with VM_MAD kvm, one.host.update with LIBVIRT_URI, MIGRATE_URI and the
FENCE vector), a SYSTEM_DS with SHARED=YES and BASE_PATH = the lab's shared datastore (which
holds the tiny guest image), and the HOST/ERROR hook running ft/host_error. `close()` (also
on any failure during bring-up) stops the watchers and the daemon (its whole process group:
hook commands and fence agents included) and brings the lab down.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from lazarus.api.client import Client
from lazarus.app.serve_process import ServeError, ServeProcess
from lazarus.domain.template import Template, Vector
from lazarus.ha.examples import error_hook_arguments
from lazarus.lab import hosts
from lazarus.lab.guest import read_serial
from lazarus.lab.lab import CTL_OCTET, Lab, LabStatus
from lazarus.lab.observe import ApiWatch, HostView, VmView, parse_hosts, parse_vms, qemu_domains
from lazarus.lab.proc import LabError, mounts_under

READY_TIMEOUT = 60.0
DATASTORE_NAME = "lab_shared"
HOOK_NAME = "host_error"
DEFAULT_HOOK_ARGS = error_hook_arguments()  # the shipped example's: "$TEMPLATE -m -p 5"
VM_MEMORY_MIB = 16
VM_CPU = "0.05"


def _wait(check: Callable[[], bool], what: str, timeout: float, period: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(period)


class LabCluster:
    """A lab (hosts + BMCs) under a real controller; a context manager that always cleans up."""

    def __init__(
        self,
        root: Path,
        *,
        hosts: int = 3,
        fence: str = "redfish",
        subnet: str = "10.250.0",
        settings: Mapping[str, str] | None = None,
        hook_args: str | None = DEFAULT_HOOK_ARGS,
        watch_period: float = 0.05,
        agents: bool = False,
    ) -> None:
        if fence not in ("redfish", "ipmi"):
            raise LabError(f"fence must be redfish or ipmi, not {fence!r}")
        self.root = Path(root).resolve()
        self.host_count = hosts
        self.fence = fence
        self.lab = Lab(self.root / "lab", subnet=subnet)
        # agents: every host runs `lazarus agent`; the controller then listens on its LAN
        # address (the agents check it over the hosts' network) and reads their heartbeats
        self.agents = agents
        settings = dict(settings or {})
        listen = "127.0.0.1"
        if agents:
            listen = f"{subnet}.{CTL_OCTET}"
            settings["HEARTBEAT_DIR"] = str(self.lab.datastore)
        self.controller = ServeProcess(self.root / "controller", settings,
                                       ready_timeout=READY_TIMEOUT, listen=listen)  # fmt: skip
        self.hook_args = hook_args
        self.watch_period = watch_period
        self.status: LabStatus | None = None
        self.host_ids: dict[str, int] = {}
        self.datastore_id = -1
        self.hook_id = -1
        self.watch: ApiWatch | None = None
        self._client: Client | None = None
        self._bmcs: object | None = None

    # ------------------------------------------------------------------ bring-up
    def __enter__(self) -> LabCluster:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def up(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # A fresh controller: a database left by an earlier run would hold the old hosts.
        shutil.rmtree(self.controller.data_dir, ignore_errors=True)
        if not self.lab.state_file.exists() and not mounts_under(self.lab.root):
            # and fresh hosts: a host's /var keeps the domains an earlier run defined
            shutil.rmtree(self.lab.root, ignore_errors=True)
        self.lab.up(self.host_count)
        self._bmcs = self.lab.start_bmcs(redfish=self.fence == "redfish",
                                         ipmi=self.fence == "ipmi")  # fmt: skip
        self.status = self.lab.status()
        try:
            self.controller.start()
        except ServeError as exc:
            raise LabError(str(exc)) from exc
        client = self.client
        self._register_hosts(client)
        self._register_datastore(client)
        if self.hook_args is not None:
            self._register_hook(client, self.hook_args)
        self.watch = ApiWatch(self.controller.client, period=self.watch_period).start()
        if self.agents:
            port = self.controller.url.rsplit(":", 1)[1].split("/", 1)[0]
            for h in self.status.hosts:
                self.lab.start_agent(h.name, f"{self.controller.listen}:{port}")
        self.wait_hosts("MONITORED", timeout=60)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self.controller.client()
        return self._client

    def _register_hosts(self, client: Client) -> None:
        assert self.status is not None
        for h in self.status.hosts:
            host_id = int(client.call("one.host.allocate", h.name, "kvm", "kvm", -1))
            template = Template.from_dict(dict(h.template()))
            template.add("FENCE", Vector(list(h.fence[self.fence].items())))
            client.call("one.host.update", host_id, template.render(), 1)
            self.host_ids[h.name] = host_id

    def _register_datastore(self, client: Client) -> None:
        assert self.status is not None
        template = Template.from_dict({
            "NAME": DATASTORE_NAME, "TYPE": "SYSTEM_DS", "TM_MAD": "shared", "SHARED": "YES",
            "BASE_PATH": self.status.datastore,
        })  # fmt: skip
        self.datastore_id = int(client.call("one.datastore.allocate", template.render(), -1))

    def _register_hook(self, client: Client, arguments: str) -> None:
        template = Template.from_dict({
            "NAME": HOOK_NAME, "TYPE": "state", "RESOURCE": "HOST", "STATE": "ERROR",
            "COMMAND": "ft/host_error", "ARGUMENTS": arguments, "ARGUMENTS_STDIN": "yes",
            "REMOTE": "no",
        })  # fmt: skip
        self.hook_id = int(client.call("one.hook.allocate", template.render()))

    # ------------------------------------------------------------------------ VMs
    def vm_template(self, name: str, liveness: bool = False,
                    extra: Mapping[str, str] | None = None) -> str:  # fmt: skip
        """A tiny guest on the shared datastore; its serial file is <datastore>/<name>.serial.

        Paths are absolute: core/placement.py reads SCHED_DS_REQUIREMENTS from the VM's
        TEMPLATE only, while one.vm.allocate files it under USER_TEMPLATE, so a scheduled VM
        lands on datastore 0 (also SHARED=YES) and relative paths would resolve there.
        """
        assert self.status is not None
        datastore = Path(self.status.datastore)
        template = Template.from_dict({
            "NAME": name, "CPU": VM_CPU, "VCPU": "1", "MEMORY": str(VM_MEMORY_MIB),
            "SCHED_DS_REQUIREMENTS": f"ID={self.datastore_id}",
            "SERIAL_FILE": str(datastore / f"{name}.serial"),
        })  # fmt: skip
        if liveness:  # the guest's commands socket (COM2) and the watchdog it feeds
            template.set("SERIAL_SOCKET", str(self.guest_socket_path(name)))
            template.set("WATCHDOG_MODEL", "ib700")
        for key, value in (extra or {}).items():
            template.set(key, value)
        template.add("DISK", Vector([("PATH", self.status.image), ("FORMAT", "qcow2"),
                                     ("READONLY", "YES")]))  # fmt: skip
        return template.render()

    def create_vms(self, count: int, *, host: str | None = None, prefix: str = "vm",
                   liveness: bool = False,
                   extra: Mapping[str, str] | None = None) -> list[int]:  # fmt: skip
        """Allocate `count` tiny guests; on `host` if given (held, then deployed there).
        `liveness`: with an ib700 watchdog the guest feeds and a commands socket
        (`guest_command`: panic, hang)."""
        ids = []
        start = len(self.vms())
        for index in range(count):
            name = f"{prefix}{start + index}"
            template = self.vm_template(name, liveness, extra)
            vm_id = int(self.client.call("one.vm.allocate", template, host is not None))
            if host is not None:
                self.client.call("one.vm.deploy", vm_id, self.host_ids[host], False,
                                 self.datastore_id)  # fmt: skip
            ids.append(vm_id)
        return ids

    def guest_socket_path(self, name: str) -> Path:
        assert self.status is not None
        return Path(self.status.datastore) / f"{name}.sock"

    def guest_command(self, vm_id: int, byte: bytes) -> None:
        """Send one byte to a liveness guest's COM2 (guest.PANIC_BYTE, guest.HANG_BYTE)."""
        path = self.guest_socket_path(self.vm(vm_id).name)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(byte)
            time.sleep(0.3)  # let qemu read it before the connection closes

    def qemu_pids(self, vm_id: int) -> list[int]:
        """The qemu processes running this VM on this lab's hosts."""
        mounts = self.host_mnts()
        found = qemu_domains().get(f"one-{vm_id}", [])
        return [pid for pid, mnt in found if mnt in mounts]

    def kill_qemu(self, vm_id: int) -> int:
        """kill -9 the VM's qemu (a crash: its host stays healthy); returns the pid."""
        [pid] = self.qemu_pids(vm_id)
        os.kill(pid, signal.SIGKILL)
        return pid

    def serial_path(self, vm_id: int) -> Path:
        assert self.status is not None
        return Path(self.status.datastore) / f"{self.vm(vm_id).name}.serial"

    def counter(self, vm_id: int) -> tuple[int, int | None]:
        """(boots, latest counter) from a VM's serial file."""
        view = read_serial(self.serial_path(vm_id))
        return view.boots, view.counter

    # ---------------------------------------------------------------------- views
    def vms(self) -> list[VmView]:
        return parse_vms(self.client.call("one.vmpool.info", -2, -1, -1, -1))

    def vm(self, vm_id: int) -> VmView:
        return parse_vms(f"<VM_POOL>{self.client.call('one.vm.info', vm_id, False)}</VM_POOL>")[0]

    def hosts(self) -> list[HostView]:
        return parse_hosts(self.client.call("one.hostpool.info", -2, -1, -1))

    def host_state(self, name: str) -> str:
        return next(h.state.name for h in self.hosts() if h.name == name)

    def wait_hosts(self, state: str, names: Sequence[str] | None = None,
                   timeout: float = 60) -> None:  # fmt: skip
        wanted = set(names or self.host_ids)
        _wait(lambda: all(h.state.name == state for h in self.hosts() if h.name in wanted),
              f"hosts {sorted(wanted)} {state}", timeout)  # fmt: skip

    def wait_running(self, ids: Sequence[int], *, not_on: str | None = None,
                     timeout: float = 60) -> list[VmView]:  # fmt: skip
        """Wait until every VM in `ids` is RUNNING (and not placed on `not_on`)."""
        wanted = set(ids)

        def ok() -> bool:
            views = [v for v in self.vms() if v.id in wanted]
            return len(views) == len(wanted) and all(
                v.running and (not_on is None or v.host != not_on) for v in views
            )

        _wait(ok, f"VMs {sorted(wanted)} RUNNING" + (f" off {not_on}" if not_on else ""),
              timeout, period=0.1)  # fmt: skip
        return [v for v in self.vms() if v.id in wanted]

    def host_mnt(self, name: str) -> str:
        """The host's mount namespace as /proc/PID/ns/mnt names it (see QemuProc.mnt)."""
        return f"mnt:[{os.stat(hosts.HostPaths(self.lab.root, name).mnt_ns).st_ino}]"

    def host_mnts(self) -> frozenset[str]:
        """Every host's mount namespace: a QemuWatch of this cluster's qemus only."""
        return frozenset(self.host_mnt(f"hv{i}") for i in range(1, self.host_count + 1))

    def bmc_power_off(self, name: str) -> None:
        """Chassis power off through the host's BMC, as an operator would: a Redfish
        ComputerSystem.Reset ForceOff (fence="redfish") or `ipmitool power off` (ipmi)."""
        self._bmc_power(name, on=False)

    def bmc_power_on(self, name: str) -> None:
        self._bmc_power(name, on=True)

    def _bmc_power(self, name: str, *, on: bool) -> None:
        from lazarus.lab.bmc import BmcSet

        bmcs = self._bmcs
        assert isinstance(bmcs, BmcSet), "the cluster is not up"
        user, password = bmcs.credentials
        if self.fence == "ipmi":
            argv = ["ipmitool", "-I", "lanplus", "-H", bmcs.bind, "-p",
                    str(bmcs.ipmi_port(name)), "-U", user, "-E", "power", "on" if on else "off"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                                  env=dict(os.environ, IPMI_PASSWORD=password))  # fmt: skip
            if done.returncode != 0:
                raise LabError(f"ipmitool power: exit {done.returncode}: {done.stderr.strip()}")
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the lab BMC's self-signed certificate
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}
            try:
                # sushy redirects a system's name to its UUID; urllib follows that for GET only
                system = urllib.request.Request(
                    f"{bmcs.redfish_url()}{bmcs.systems_uri(name)}", headers=headers)
                with urllib.request.urlopen(system, timeout=30, context=context) as reply:
                    target = reply.geturl().rstrip("/")
                body = json.dumps({"ResetType": "On" if on else "ForceOff"}).encode()
                reset = urllib.request.Request(f"{target}/Actions/ComputerSystem.Reset",
                                               data=body, method="POST", headers=headers)
                with urllib.request.urlopen(reset, timeout=30, context=context):
                    pass
            except OSError as exc:
                raise LabError(f"Redfish reset of {name}: {exc}") from exc
        if not bmcs.wait_power(name, "on" if on else "off", timeout=30):
            raise LabError(f"the chassis of {name} did not go {'on' if on else 'off'}")

    def hook_log(self) -> str:
        """ft/host_error's log lines (its own log file in the controller's data dir)."""
        try:
            return (self.controller.data_dir / "log" / "host_error.log").read_text()
        except OSError:
            return ""

    def daemon_log(self) -> str:
        try:
            return self.controller.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Watchers, client, daemon, BMCs, lab: each step runs even if another fails."""
        steps: list[Callable[[], None]] = []
        if self.watch is not None:
            steps.append(self.watch.stop)
        if self._client is not None:
            steps.append(self._client.close)
        steps += [self.controller.close, self.lab.down]
        errors = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep tearing down; report the first problem after
                errors.append(exc)
        self.watch, self._client, self._bmcs = None, None, None
        if errors:
            raise LabError(f"teardown: {errors[0]}") from errors[0]
