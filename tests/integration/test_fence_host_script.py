"""`python -m lazarus.app.fence_host`: base64 HOST XML on stdin, exit 0 only when proven off.

Through the real agents and BMC emulators (root), and through `fence_sim` (the demo agent)
against a tiny XML-RPC daemon that implements `lazarus.sim.power` (no root needed)."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape
from xmlrpc.server import SimpleXMLRPCServer

import pytest

from helpers.bmc import bmc_set
from lazarus.lab.bmc import BmcSet


def host_xml(name: str, levels: list[dict[str, str]]) -> bytes:
    fences = "".join(
        "<FENCE>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in level.items()) + "</FENCE>"
        for level in levels
    )
    xml = (f"<HOST><ID>7</ID><NAME>{escape(name)}</NAME><STATE>3</STATE>"
           f"<TEMPLATE>{fences}</TEMPLATE></HOST>")
    return base64.b64encode(xml.encode())


def fence_host(stdin: bytes, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lazarus.app.fence_host", "--backoff", "0.1", *args],
        input=stdin.decode(), capture_output=True, text=True, timeout=90, env=env, check=False,
    )


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"%%% not base64 %%%", "not base64"),
        (base64.b64encode(b"<VM><ID>1</ID></VM>"), "not a HOST document"),
        (base64.b64encode(b"<HOST><NAME>n1</NAME><TEMPLATE/></HOST>"), "no FENCE attribute"),
        (host_xml("n1", [{"AGENT": "rm"}]), "is not a fence agent name"),
        (base64.b64encode(b'<!DOCTYPE x [<!ENTITY a "b">]><HOST>&a;</HOST>'), "HOST document"),
    ],
    ids=["base64", "not-host", "no-fence", "bad-agent", "entities"],
)
def test_bad_input_exits_2(stdin: bytes, message: str) -> None:
    done = fence_host(stdin)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


# -- real agents (root) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bmcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BmcSet]:
    yield from bmc_set(tmp_path_factory.mktemp("fence-host"), ["hv1", "hv2"])


@pytest.mark.root
def test_real_agents_fence_the_host(bmcs: BmcSet, tmp_path: Path) -> None:
    bmcs.power_on("hv1")
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("wrong-password")
    levels = [bmcs.fence_attributes("hv1", "ipmi") | {"PASSWORD_FILE": str(wrong)},
              bmcs.fence_attributes("hv1", "redfish")]
    done = fence_host(host_xml("hv1", levels), "--attempts", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("fence_host hv1: level 1 fence_ipmilan off #1: failed")
    assert "level 2 fence_redfish status #1: off (rc=2" in lines[2]
    assert "fenced, power proven off by level 2" in lines[-1]
    assert bmcs.password not in done.stdout + done.stderr
    assert "wrong-password" not in done.stdout + done.stderr
    assert bmcs.power_state("hv1") == "off" and bmcs.power_state("hv2") == "on"


@pytest.mark.root
def test_real_agents_failure_exits_1(bmcs: BmcSet, tmp_path: Path) -> None:
    bmcs.power_on("hv2")
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("wrong-password")
    levels = [bmcs.fence_attributes("hv2", "redfish") | {"PASSWORD_FILE": str(wrong)}]
    done = fence_host(host_xml("hv2", levels), "--attempts", "2")
    assert done.returncode == 1
    assert "NOT fenced" in done.stdout.splitlines()[-1]
    assert "wrong-password" not in done.stdout + done.stderr
    assert bmcs.power_state("hv2") == "on"


# -- fence_sim through a fake daemon -----------------------------------------------------------
class FakeDaemon:
    def __init__(self) -> None:
        self.power = {"sim1": "on", "sim2": "on"}
        self.calls: list[tuple[str, str, str]] = []
        self.server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False, allow_none=True)
        self.server.register_function(self.sim_power, "lazarus.sim.power")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def sim_power(self, session: Any, host: Any, action: Any) -> list[Any]:
        self.calls.append((session, host, action))
        if session != "oneadmin:pw":
            return [False, "[lazarus.sim.power] User couldn't be authenticated", 256]
        if host not in self.power:
            return [False, f"[lazarus.sim.power] no host {host}", 1024]
        if action in ("on", "off"):
            self.power[host] = action
        return [True, self.power[host], 0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/RPC2"


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    fake = FakeDaemon()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.fixture
def sim_env(daemon: FakeDaemon, tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "agents"
    bindir.mkdir()
    agent = bindir / "fence_sim"
    agent.write_text(f"#!{sys.executable}\nfrom lazarus.app.fence_sim_agent import main\n"
                     "raise SystemExit(main())\n")
    agent.chmod(0o755)
    auth = tmp_path / "one_auth"
    auth.write_text("oneadmin:pw\n")
    return {"PATH": "/usr/bin:/bin", "ONE_XMLRPC": daemon.url, "LAZARUS_AUTH": str(auth),
            "LAZARUS_FENCE_PATH": str(bindir)}


def test_fence_sim_through_the_daemon(daemon: FakeDaemon, sim_env: dict[str, str]) -> None:
    done = fence_host(host_xml("sim1", [{"AGENT": "fence_sim", "PLUG": "sim1"}]), env=sim_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert daemon.power == {"sim1": "off", "sim2": "on"}
    assert [c[1:] for c in daemon.calls] == [("sim1", "off"), ("sim1", "status")]


def test_fence_sim_unknown_host_fails(daemon: FakeDaemon, sim_env: dict[str, str]) -> None:
    done = fence_host(host_xml("nope", [{"AGENT": "fence_sim", "PLUG": "nope"}]),
                      "--attempts", "1", env=sim_env)
    assert done.returncode == 1
    assert "no host nope" in done.stdout


def test_fence_sim_bad_session_fails(daemon: FakeDaemon, sim_env: dict[str, str],
                                     tmp_path: Path) -> None:
    (tmp_path / "one_auth").write_text("oneadmin:wrong\n")
    done = fence_host(host_xml("sim2", [{"AGENT": "fence_sim", "PLUG": "sim2"}]),
                      "--attempts", "1", env=sim_env)
    assert done.returncode == 1 and daemon.power["sim2"] == "on"
    assert "oneadmin:wrong" not in done.stdout + done.stderr
