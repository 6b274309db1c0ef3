"""A real 3-member etcd cluster on loopback, for the coordination contract and HA tests.

    from helpers.etcd import EtcdCluster, require_etcd

    @pytest.fixture
    def etcd(tmp_path): yield from etcd_cluster(tmp_path)      # or the `etcd` fixture below

    def test_x(etcd):
        etcd.endpoints            # ["http://127.0.0.1:P1", ...], one per member
        etcd.kill(0)              # SIGKILL one member (quorum kept with 2 of 3)
        etcd.stop(1); etcd.cont(1)  # SIGSTOP / SIGCONT (a frozen member)
        etcd.start(0)             # the same member again, on its data directory
        etcd.kill_all(); etcd.start_all()

Debian's `etcd-server` (etcd 3.4) runs each member in `<tmp>/m<i>` with free loopback ports
for clients and peers; the members talk only to each other on 127.0.0.1. Heartbeat 50 ms and
election timeout 500 ms (etcd's defaults are 100/1000): a member loss settles within a second,
which keeps the tests fast; Lazarus' own lease timing does not depend on them.

`require_etcd()` skips the calling test when the `etcd` binary is missing, saying how to get
it, unless LAZARUS_REQUIRE_ETCD=1 (.ci/run sets it), where a missing etcd fails the test so CI
cannot lose these checks silently. Every process is killed by its pid when the cluster closes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 20.0
ETCD = "etcd"


def require_etcd() -> str:
    """The etcd binary's path; skips (or fails under LAZARUS_REQUIRE_ETCD=1) when absent."""
    path = shutil.which(ETCD)
    if path is None:
        message = ("etcd is not installed (Debian package etcd-server; `make setup` as root "
                   "installs it)")
        if os.environ.get("LAZARUS_REQUIRE_ETCD") == "1":
            pytest.fail(f"{message}; LAZARUS_REQUIRE_ETCD=1")
        pytest.skip(message)
    return path


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdMember:
    def __init__(self, cluster: EtcdCluster, index: int, client: int, peer: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"m{index}"
        self.client_port = client
        self.peer_port = peer
        self.dir = cluster.workdir / self.name
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.cluster.binary,
            "--name", self.name,
            "--data-dir", str(self.dir / "data"),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.cluster.initial_cluster,
            "--initial-cluster-token", self.cluster.token,
            "--initial-cluster-state", "existing" if self.started_once else "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-outputs", str(self.dir / "etcd.log"),
            "--logger", "zap",
        ]
        with open(self.dir / "stderr.log", "ab") as stderr:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,
            )
        self.started_once = True

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=1.0) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


class EtcdCluster:
    """Three etcd members on loopback in `workdir` (see the module docstring)."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.binary = require_etcd()
        self.workdir = Path(workdir)
        ports = _free_ports(2 * size)
        self.members = [EtcdMember(self, i, ports[2 * i], ports[2 * i + 1]) for i in range(size)]
        self.token = f"lazarus-test-{os.getpid()}-{ports[0]}"
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start_all(self) -> None:
        for m in self.members:
            m.start()
        self.wait_healthy()

    def wait_healthy(self, members: list[int] | None = None) -> None:
        """Until each named member (all running ones by default) reports a leader."""
        wanted = [self.members[i] for i in members] if members is not None else [
            m for m in self.members if m.proc is not None]
        deadline = time.monotonic() + START_TIMEOUT
        while not all(m.healthy() for m in wanted):
            for m in wanted:
                if m.proc is not None and m.proc.poll() is not None:
                    log = (m.dir / "stderr.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"etcd member {m.name} exited: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd not healthy within {START_TIMEOUT:g} s")
            time.sleep(0.05)

    def start(self, i: int) -> None:
        self.members[i].start()

    def kill(self, i: int) -> None:
        self.members[i].kill()

    def stop(self, i: int) -> None:
        self.members[i].signal(signal.SIGSTOP)

    def cont(self, i: int) -> None:
        self.members[i].signal(signal.SIGCONT)

    def kill_all(self) -> None:
        for m in self.members:
            m.kill()

    def close(self) -> None:
        self.kill_all()


def etcd_cluster(workdir: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(workdir)
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh healthy 3-member cluster for one test (import it into the test module)."""
    yield from etcd_cluster(tmp_path / "etcd")
