"""Emulated BMCs for fencing tests and the lab: Redfish (sushy-tools) and IPMI (virtualbmc).

One test-driver-only libvirtd holds one test domain per host: the host's chassis power. A
watcher (`virsh event --loop`, which also keeps the test driver's state alive: it only lives
while a client is connected) defines and starts the chassis domains, then reports power
changes to a callback (the lab kills a host's daemons when its chassis goes off). Both BMC
emulators act on those domains:

    bmcs = BmcSet.start(tmp_path, ["hv1", "hv2"], on_power=lambda host, state: ...)
    try:
        bmcs.redfish_port, bmcs.systems_uri("hv1"), bmcs.ipmi_port("hv1"), bmcs.credentials
        bmcs.fence_attributes("hv1", "redfish")   # a FENCE vector for the host template
        bmcs.power_state("hv1")                    # "on" | "off"
    finally:
        bmcs.stop()

sushy-emulator serves HTTPS (fence_redfish speaks nothing else) with a self-signed
certificate from `openssl req` and HTTP basic auth (bcrypt htpasswd); vbmcd gets its own
config file through $VIRTUALBMC_CONFIG (config dir, pid file and control port inside `workdir`).
Needs root, libvirtd, virsh and openssl. Test infrastructure: subprocess and short real waits
are fine here. Used by tests/integration/test_fence_*.py and the lab harness.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from lazarus.domain.errors import LazarusError

log = logging.getLogger("lazarus.lab.bmc")

PowerCallback = Callable[[str, str], None]  # (host, "on" | "off")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EVENT_RE = re.compile(r"event 'lifecycle' for domain '([^']+)': (\w+)")
_READY = "LAZARUS-BMC-READY"


class BmcError(LazarusError):
    """An emulator did not come up, or a chassis command failed."""


def free_port(kind: int = socket.SOCK_STREAM, bind: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((bind, 0))
        return int(sock.getsockname()[1])


def _tool(name: str) -> str:
    """A console script of our virtualenv (sushy-emulator, vbmc, vbmcd), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise BmcError(f"{name} not found (pip install sushy-tools virtualbmc)")
    return found


def _run(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 30) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BmcError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise BmcError(f"{Path(argv[0]).name} {argv[1]}: exit {done.returncode}: "
                       f"{done.stderr.strip()[-500:]}")  # fmt: skip
    return done.stdout


def _wait(what: str, ready: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]
          | None = None) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise BmcError(f"{what} exited with {proc.returncode} while starting")
        if time.monotonic() > deadline:
            raise BmcError(f"{what} not ready after {timeout:g}s")
        time.sleep(0.05)


@dataclass
class BmcSet:
    workdir: Path
    hosts: list[str]
    bind: str = "127.0.0.1"
    username: str = "admin"
    password: str = field(default="", repr=False)
    on_power: PowerCallback | None = None
    redfish_port: int = 0
    vbmc_server_port: int = 0
    ipmi_ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    power_events: list[tuple[float, str, str]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    # -- public API ---------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        workdir: Path | str,
        hosts: Sequence[str],
        bind: str = "127.0.0.1",
        *,
        redfish: bool = True,
        ipmi: bool = True,
        on_power: PowerCallback | None = None,
        username: str = "admin",
        password: str | None = None,
    ) -> BmcSet:
        """Start the chassis daemon, watcher and emulators; everything is stopped on error."""
        for host in hosts:
            if not _NAME_RE.match(host):
                raise BmcError(f"bad host name {host!r}")
        root = Path(workdir).resolve() / "bmc"
        root.mkdir(parents=True, exist_ok=True)
        bmcs = cls(root, list(hosts), bind, username, password or secrets.token_urlsafe(12),
                   on_power)  # fmt: skip
        try:
            bmcs._start_libvirtd()
            bmcs._start_watcher()
            if redfish:
                bmcs._spawn_sushy()
            if ipmi:
                bmcs._spawn_vbmcd()
            if redfish:
                bmcs._wait_sushy()
            if ipmi:
                bmcs._add_vbmcs()
        except BaseException:
            bmcs.stop()
            raise
        return bmcs

    @property
    def libvirt_uri(self) -> str:
        return f"test+unix:///default?socket={self.workdir / 'run' / 'libvirt-sock'}"

    @property
    def credentials(self) -> tuple[str, str]:
        return self.username, self.password

    @property
    def password_file(self) -> Path:
        """A 0600 file holding the password (for FENCE PASSWORD_FILE)."""
        return self.workdir / "bmc.pw"

    def redfish_url(self, host: str | None = None) -> str:
        return f"https://{self.bind}:{self.redfish_port}"

    def systems_uri(self, host: str) -> str:
        return f"/redfish/v1/Systems/{host}"

    def ipmi_port(self, host: str) -> int:
        return self.ipmi_ports[host]

    def fence_attributes(self, host: str, kind: str = "redfish") -> dict[str, str]:
        """FENCE vector attributes that fence `host` through this set ("redfish" | "ipmi")."""
        common = {"IP": self.bind, "USERNAME": self.username,
                  "PASSWORD_FILE": str(self.password_file)}  # fmt: skip
        if kind == "redfish":
            return {"AGENT": "fence_redfish", **common, "PORT": str(self.redfish_port),
                    "OPTIONS": f"ssl_insecure=1 systems_uri={self.systems_uri(host)}"}
        return {"AGENT": "fence_ipmilan", **common, "PORT": str(self.ipmi_port(host)),
                "OPTIONS": "lanplus=1 power_wait=0"}  # fmt: skip

    def power_state(self, host: str) -> str:
        state = _run(["virsh", "-c", self.libvirt_uri, "domstate", host]).strip()
        return "on" if state in ("running", "paused", "blocked") else "off"

    def power_on(self, host: str) -> None:
        if self.power_state(host) == "off":
            _run(["virsh", "-q", "-c", self.libvirt_uri, "start", host])

    def power_off(self, host: str) -> None:
        if self.power_state(host) == "on":
            _run(["virsh", "-q", "-c", self.libvirt_uri, "destroy", host])

    def wait_power(self, host: str, state: str, timeout: float = 10.0) -> bool:
        """Wait until the watcher has seen `host` go `state` (since the last `power_on/off`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._last(host) != state:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        """Stop everything started, newest first; safe to call twice and after errors."""
        for name in reversed(list(self.procs)):
            _stop_group(self.procs.pop(name))

    def __enter__(self) -> BmcSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the chassis daemon and its watcher -----------------------------------------------------
    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
               stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:  # fmt: skip
        logfile = open(self.workdir / f"{name}.out", "wb")  # noqa: SIM115 (child owns it)
        try:
            proc = subprocess.Popen(list(argv), stdin=stdin, stdout=logfile,
                                    stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                    start_new_session=True)  # fmt: skip
        finally:
            logfile.close()
        self.procs[name] = proc
        return proc

    def _start_libvirtd(self) -> None:
        run, empty = self.workdir / "run", self.workdir / "empty-drivers"
        for folder in (run, empty):
            folder.mkdir(exist_ok=True)
        conf = self.workdir / "libvirtd.conf"
        conf.write_text(
            "listen_tls = 0\nlisten_tcp = 0\n"
            f'unix_sock_dir = "{run}"\nauth_unix_ro = "none"\nauth_unix_rw = "none"\n'
            f'log_outputs = "3:file:{self.workdir / "libvirtd.log"}"\n'
        )
        # An empty driver dir: only the built-in test and remote drivers (testbed.md 2a).
        env = dict(os.environ, LIBVIRT_DRIVER_DIR=str(empty))
        proc = self._spawn("libvirtd", ["libvirtd", "-f", str(conf), "-p",
                                        str(run / "libvirtd.pid")], env)  # fmt: skip
        _wait("libvirtd", lambda: (run / "libvirt-sock").exists(), 15, proc)
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)

    def _start_watcher(self) -> None:
        script = []
        for host in self.hosts:
            xml = self.workdir / f"{host}.xml"
            xml.write_text(f"<domain type='test'><name>{host}</name><memory>1024</memory>"
                           "<vcpu>1</vcpu><os><type>hvm</type></os></domain>\n")  # fmt: skip
            script += [f"define '{xml}'", f"start {host}"]
        script += [f"echo {_READY}", "event --loop --all --timestamp"]
        proc = subprocess.Popen(
            ["virsh", "-q", "-c", self.libvirt_uri], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs["watcher"] = proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(("\n".join(script) + "\n").encode())
        proc.stdin.flush()
        ready = threading.Event()
        lines: list[str] = []
        thread = threading.Thread(target=self._watch, args=(proc, ready, lines), daemon=True)
        thread.start()
        if not ready.wait(15):
            raise BmcError("chassis watcher not ready: " + " | ".join(lines[-5:]))
        for host in self.hosts:
            if self.power_state(host) != "on":
                raise BmcError(f"chassis {host} did not start: " + " | ".join(lines[-5:]))

    def _watch(self, proc: subprocess.Popen[bytes], ready: threading.Event,
               lines: list[str]) -> None:  # fmt: skip
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if not ready.is_set():
                lines.append(line)
                if _READY in line:
                    ready.set()
                continue
            match = _EVENT_RE.search(line)
            if not match or match.group(2) not in ("Started", "Stopped"):
                continue
            host, state = match.group(1), "on" if match.group(2) == "Started" else "off"
            with self._cond:
                self.power_events.append((time.monotonic(), host, state))
                self._cond.notify_all()
            log.info("chassis %s: power %s", host, state)
            if self.on_power is not None and host in self.hosts:
                try:
                    self.on_power(host, state)
                except Exception:
                    log.exception("power callback for %s failed", host)

    def _last(self, host: str) -> str | None:
        for _, name, state in reversed(self.power_events):
            if name == host:
                return state
        return None

    # -- Redfish ----------------------------------------------------------------------------
    def _spawn_sushy(self) -> None:
        cert, key = self.workdir / "cert.pem", self.workdir / "key.pem"
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
              "-days", "30", "-subj", f"/CN={self.bind}",
              "-addext", f"subjectAltName=IP:{self.bind}"])  # fmt: skip
        digest = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text(f"{self.username}:{digest}\n")
        self.redfish_port = free_port(bind=self.bind)
        conf = self.workdir / "sushy.conf"
        conf.write_text(
            f"SUSHY_EMULATOR_LISTEN_IP = {self.bind!r}\n"
            f"SUSHY_EMULATOR_LISTEN_PORT = {self.redfish_port}\n"
            f"SUSHY_EMULATOR_LIBVIRT_URI = {self.libvirt_uri!r}\n"
            "SUSHY_EMULATOR_IGNORE_BOOT_DEVICE = True\n"
            f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}\n"
            f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}\n"
            f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}\n"
        )
        self._spawn("sushy", [_tool("sushy-emulator"), "--config", str(conf),
                              "--libvirt-uri", self.libvirt_uri])  # fmt: skip

    def _wait_sushy(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{self.redfish_url()}/redfish/v1",
                                            timeout=2, context=context) as reply:  # fmt: skip
                    return int(reply.status) == 200
            except OSError:
                return False

        _wait("sushy-emulator", up, 30, self.procs["sushy"])

    # -- IPMI -------------------------------------------------------------------------------
    def _vbmc_env(self) -> dict[str, str]:
        return dict(os.environ, VIRTUALBMC_CONFIG=str(self.workdir / "virtualbmc.conf"),
                    HOME=str(self.workdir))  # fmt: skip

    def _spawn_vbmcd(self) -> None:
        # virtualbmc reads $VIRTUALBMC_CONFIG (else ~/.vbmc/virtualbmc.conf); config_dir must
        # exist, or vbmcd dies at once ("No such file or directory").
        confdir = self.workdir / "vbmc"
        confdir.mkdir(exist_ok=True)
        self.vbmc_server_port = free_port()
        (self.workdir / "virtualbmc.conf").write_text(
            f"[default]\nconfig_dir = {confdir}\npid_file = {self.workdir / 'vbmcd.pid'}\n"
            f"server_port = {self.vbmc_server_port}\n"
            f"[log]\nlogfile = {self.workdir / 'vbmcd.log'}\n"
        )
        self._spawn("vbmcd", [_tool("vbmcd"), "--foreground"], self._vbmc_env())

    def _add_vbmcs(self) -> None:
        proc = self.procs["vbmcd"]
        _wait("vbmcd", lambda: _tcp_open("127.0.0.1", self.vbmc_server_port), 30, proc)
        env, vbmc = self._vbmc_env(), _tool("vbmc")
        for host in self.hosts:
            port = self.ipmi_ports[host] = free_port(socket.SOCK_DGRAM, self.bind)
            _run([vbmc, "add", host, "--port", str(port), "--address", self.bind,
                  # "--password=X": a random password may start with "-" (argparse then
                  # took it for an option and the lab's IPMI BMC failed to start, by chance)
                  f"--username={self.username}", f"--password={self.password}",
                  "--libvirt-uri", self.libvirt_uri], env)  # fmt: skip
            _run([vbmc, "start", host], env)
        ipmi_env = dict(os.environ, IPMI_PASSWORD=self.password)  # -E: not in argv
        for host in self.hosts:
            argv = ["ipmitool", "-I", "lanplus", "-H", self.bind, "-p",
                    str(self.ipmi_ports[host]), "-U", self.username, "-E", "-R", "1", "-N", "1",
                    "power", "status"]  # fmt: skip
            _wait(f"vbmc {host}", lambda a=argv: _ok(a, ipmi_env), 30, proc)  # type: ignore[misc]


def _tcp_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _ok(argv: Sequence[str], env: dict[str, str]) -> bool:
    try:
        done = subprocess.run(list(argv), capture_output=True, env=env, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers, reap the leader."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    # children of a group leader that already exited (vbmc instances) get the KILL too
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
