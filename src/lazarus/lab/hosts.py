"""One lab host: persistent mount + UTS namespaces and its own root libvirtd (qemu driver, TCG).

Used by lab.lab. A host "hvN" is a network namespace (lab.netns) plus a mount namespace and a
UTS namespace kept alive by bind mounts of their nsfs files under `<lab>/ns/` (`unshare
--mount=FILE`). The mount namespace is built once per lab and reused across libvirtd restarts
("power cycles"); mounting a fresh overlay per start makes two overlays share an upper dir and
libvirtd then kills running VMs. Inside it the host sees private:

    /etc/libvirt   <- <lab>/hosts/hvN/etc    (libvirtd.conf, qemu.conf, persistent domains)
    /run           tmpfs, with /run/libvirt <- <lab>/hosts/hvN/run (sockets, pid file)
    /var           overlay, upper dir <lab>/hosts/hvN/var-upper (libvirt state, caps cache)
    /sys           sysfs of the host's network namespace
    /etc/hosts, /etc/resolv.conf, and /etc/passwd + /etc/group when the machine lacks the
    libvirt-qemu user (libvirtd refuses to start without it)

Everything else (the lab dir, the shared datastore) is the root file system, seen at the same
path by every host. Processes enter with `nsenter --net=/run/netns/X` (never `ip netns exec`,
whose fresh mount namespace cannot see the nsfs bind mounts).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lazarus.lab import netns
from lazarus.lab.proc import LabError, cmdline, kill_and_wait, pids_in_mount_ns, run

LIBVIRTD = "/usr/sbin/libvirtd"
CAPS_SUBDIR = Path("cache/libvirt/qemu/capabilities")  # under /var (the overlay upper dir)
QEMU_USER = "libvirt-qemu"
QEMU_UID = 64055


@dataclass(frozen=True)
class HostPaths:
    """Where one host's files live on the root file system."""

    root: Path  # the lab dir
    name: str

    @property
    def dir(self) -> Path:
        return self.root / "hosts" / self.name

    @property
    def etc(self) -> Path:
        return self.dir / "etc"

    @property
    def run(self) -> Path:
        return self.dir / "run"

    @property
    def log(self) -> Path:
        return self.dir / "log"

    @property
    def var_upper(self) -> Path:
        return self.dir / "var-upper"

    @property
    def var_work(self) -> Path:
        return self.dir / "var-work"

    @property
    def caps(self) -> Path:
        return self.var_upper / CAPS_SUBDIR

    @property
    def socket(self) -> Path:
        return self.run / "libvirt-sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "libvirtd.pid"

    @property
    def mnt_ns(self) -> Path:
        return self.root / "ns" / f"{self.name}.mnt"

    @property
    def uts_ns(self) -> Path:
        return self.root / "ns" / f"{self.name}.uts"

    @property
    def unix_uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"


def _file_binds(paths: HostPaths) -> list[tuple[Path, str]]:
    binds = [
        (paths.dir / "etc-hosts", "/etc/hosts"),
        (paths.dir / "resolv.conf", "/etc/resolv.conf"),
    ]
    if (paths.dir / "passwd").exists():
        binds += [(paths.dir / "passwd", "/etc/passwd"), (paths.dir / "group", "/etc/group")]
    return binds


def _has_qemu_user() -> bool:
    try:
        pwd.getpwnam(QEMU_USER)
        grp.getgrnam(QEMU_USER)
    except KeyError:
        return False
    return True


def write_config(paths: HostPaths, address: str, hosts: dict[str, str], uuid_seed: str) -> None:
    """Write the host's private files (idempotent). `hosts` maps every lab name to its address."""
    for d in (paths.etc, paths.run, paths.log, paths.var_upper, paths.var_work):
        d.mkdir(parents=True, exist_ok=True)
    host_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{uuid_seed}.{paths.name}")
    (paths.etc / "libvirtd.conf").write_text(
        "listen_tls = 0\n"
        "listen_tcp = 1\n"
        f'listen_addr = "{address}"\n'
        'auth_tcp = "none"\n'
        'auth_unix_ro = "none"\n'
        'auth_unix_rw = "none"\n'
        f'log_outputs = "3:file:{paths.log}/libvirtd.log"\n'
        # libvirt refuses to migrate between daemons with the same host UUID.
        f'host_uuid = "{host_uuid}"\n'
    )
    (paths.etc / "qemu.conf").write_text(
        'user = "root"\n'
        'group = "root"\n'
        "dynamic_ownership = 0\n"
        "remember_owner = 0\n"
        'security_driver = "none"\n'
        "namespaces = [ ]\n"
        "cgroup_controllers = [ ]\n"
        'stdio_handler = "file"\n'
        # Lab only, like security_driver "none" above: qemu's seccomp filter costs about
        # 0.04 s of CPU per guest start here (measured, docs/benchmarks.md); real hosts keep it.
        "seccomp_sandbox = 0\n"
        f'migration_address = "{address}"\n'
        f'migration_host = "{address}"\n'
    )
    lines = ["127.0.0.1 localhost"] + [f"{addr} {name}" for name, addr in hosts.items()]
    (paths.dir / "etc-hosts").write_text("\n".join(lines) + "\n")
    # Unresolvable names stall libvirtd for seconds; nothing answers on 127.0.0.1:53.
    (paths.dir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    if not _has_qemu_user():
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        home = "/var/lib/libvirt"
        passwd += f"{QEMU_USER}:x:{QEMU_UID}:{QEMU_UID}:Libvirt Qemu:{home}:/usr/sbin/nologin\n"
        group += f"{QEMU_USER}:x:{QEMU_UID}:\n"
        (paths.dir / "passwd").write_text(passwd)
        (paths.dir / "group").write_text(group)


def _enter(paths: HostPaths, netns_name: str) -> list[str]:
    return [
        "nsenter",
        f"--mount={paths.mnt_ns}",
        f"--uts={paths.uts_ns}",
        f"--net={netns.netns_path(netns_name)}",
    ]


def create_namespaces(paths: HostPaths, netns_name: str) -> None:
    """Create the persistent mount + UTS namespaces and mount the host's private view."""
    for f in (paths.mnt_ns, paths.uts_ns):
        f.touch()
    run(["unshare", f"--mount={paths.mnt_ns}", f"--uts={paths.uts_ns}",
         "--propagation", "private", "true"])  # fmt: skip
    enter = _enter(paths, netns_name)
    steps: list[list[str]] = [
        ["hostname", paths.name],
        ["mount", "-t", "sysfs", "sysfs", "/sys"],
        ["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"],
        ["mkdir", "/run/libvirt"],
        ["mount", "--bind", str(paths.etc), "/etc/libvirt"],
        ["mount", "--bind", str(paths.run), "/run/libvirt"],
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir=/var,upperdir={paths.var_upper},workdir={paths.var_work}", "/var"],
    ]  # fmt: skip
    for step in steps:
        run(enter + step)
    _apply_file_binds(paths, netns_name)


def _apply_file_binds(paths: HostPaths, netns_name: str) -> None:
    """Bind the private /etc files, again if a package install replaced the real file.

    Replacing a file (adduser rewrites /etc/passwd) silently detaches bind mounts on it.
    """
    binds = _file_binds(paths)
    out = run(_enter(paths, netns_name) + ["stat", "-L", "-c", "%i"] + [d for _, d in binds])
    inodes = out.split()
    for (src, dst), inode in zip(binds, inodes, strict=True):
        if int(inode) != src.stat().st_ino:
            run([*_enter(paths, netns_name), "mount", "--bind", str(src), dst])


def seed_caps(paths: HostPaths, cache: Path | None) -> None:
    """Copy cached qemu capabilities into the host (saves an 8 s probe per libvirtd start)."""
    if cache is None or not cache.is_dir():
        return
    paths.caps.mkdir(parents=True, exist_ok=True)
    for f in cache.glob("*.xml"):
        shutil.copy2(f, paths.caps / f.name)


def save_caps(paths: HostPaths, cache: Path | None) -> None:
    """Store the host's probed qemu capabilities as the cache for later hosts and labs."""
    if cache is None or not paths.caps.is_dir():
        return
    cache.mkdir(parents=True, exist_ok=True)
    for f in paths.caps.glob("*.xml"):
        target = cache / f.name
        if target.exists() and target.read_bytes() == f.read_bytes():
            continue
        tmp = cache / f".{f.name}.{os.getpid()}.tmp"
        shutil.copy2(f, tmp)
        tmp.replace(target)


def reset_runtime(paths: HostPaths) -> None:
    """What a reboot forgets: /run/libvirt contents. Also drop autostart links (never autostart)."""
    for entry in paths.run.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    autostart = paths.etc / "qemu" / "autostart"
    if autostart.is_dir():
        for link in autostart.iterdir():
            link.unlink()


def start_libvirtd(paths: HostPaths, netns_name: str) -> subprocess.Popen[bytes]:
    """Launch the host's libvirtd (daemonizing); call `wait_ready` with the returned process.

    Pinned to CPU 0: the two vCPUs of this machine kind report different CPUID data, which makes
    libvirt discard its capabilities cache and re-probe qemu (8 s) at every start. Started
    under lab.reaper, a subreaper that reaps the host's exited qemus at once (this machine's
    PID 1 takes seconds, and libvirt's destroy waits for it holding the domain's lock).
    """
    _apply_file_binds(paths, netns_name)
    with open(paths.log / "stdout", "ab") as out:
        return subprocess.Popen(
            [*_enter(paths, netns_name), "taskset", "-c", "0", sys.executable, "-m",
             "lazarus.lab.reaper", LIBVIRTD, "--daemon", "--listen",
             "-f", "/etc/libvirt/libvirtd.conf", "-p", "/run/libvirt/libvirtd.pid"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )  # fmt: skip


def start_agent(paths: HostPaths, netns_name: str, args: list[str]) -> int:
    """Start `lazarus agent` (app/agent.py) inside the host's namespaces, detached (setsid -f,
    as a service manager would run it); return its pid. It dies with the host's power
    (kill_all kills every process of the mount namespace) and sees the network as the host
    does (its cable pulled: no controller)."""
    with open(paths.log / "agent.log", "ab") as out:
        subprocess.run(
            [*_enter(paths, netns_name), "setsid", "-f", sys.executable, "-m",
             "lazarus.app.agent", *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=True, timeout=30,
        )  # fmt: skip
    host = args[args.index("--host") + 1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in pids(paths):
            line = cmdline(pid)
            if "lazarus.app.agent" in line and host in line:
                return pid
        time.sleep(0.05)
    raise LabError(f"{paths.name}: the agent did not start; see {paths.log / 'agent.log'}")


def wait_ready(paths: HostPaths, launcher: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """Wait until the daemon serves the qemu driver; return libvirtd's pid.

    libvirtd's foreground process exits once its sockets exist; the daemon accepts clients only
    after its drivers are initialized, so one `virsh version` blocks until it is ready.
    """
    try:
        code = launcher.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        launcher.kill()
        launcher.wait()
        raise LabError(f"{paths.name}: libvirtd did not daemonize in {timeout} s") from exc
    if code != 0:
        raise LabError(f"{paths.name}: libvirtd exited {code}; see {paths.log}")
    run(["virsh", "-q", "-c", paths.unix_uri, "version"], timeout=timeout)
    return int(paths.pidfile.read_text().strip())


def pids(paths: HostPaths) -> list[int]:
    """Every process of this host (libvirtd and its qemus)."""
    return pids_in_mount_ns(paths.mnt_ns)


def kill_all(paths: HostPaths) -> None:
    """Pull the plug: SIGKILL every process of the host and wait for them."""
    kill_and_wait(pids(paths))


def destroy(paths: HostPaths) -> None:
    """Kill the host's processes and release its namespaces."""
    kill_all(paths)
    for f in (paths.mnt_ns, paths.uts_ns):
        if f.exists():
            run(["umount", str(f)], check=False)
            f.unlink(missing_ok=True)
