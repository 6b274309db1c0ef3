"""A FENCE PASSWORD reaches the fence agent (docs/security.md, "How the fencing secret travels").

ft/host_error hands ft/fence_host the HOST document of one.host.info, where the PASSWORD is
masked. fence_host reads the real FENCE levels through `lazarus.host.fencecreds` with the
daemon's fence key ($LAZARUS_FENCE_KEY, a 0600 file): the agent gets the password on stdin,
and nothing it prints, nor the hook's output, holds it.

`fence_pwcheck` below is a fence agent in the ClusterLabs stdin protocol (key=value lines)
that refuses any other password, as a real BMC does. The root test does the same with the real
fence_ipmilan against the virtualbmc emulator (tests/helpers/bmc.py).
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.bmc import bmc_set
from helpers.daemon import Daemon, running_daemon
from lazarus.api.client import Client
from lazarus.lab.bmc import BmcSet

SECRET = "s3cret-bmc-pw"

AGENT = f"""#!{sys.executable}
import os, sys
params = dict(line.strip().split("=", 1) for line in sys.stdin if "=" in line)
state = os.environ["PWCHECK_STATE"]
if params.get("password") != os.environ["PWCHECK_PASSWORD"]:
    print("Failed: Unable to obtain correct plug status or plug is not available")
    sys.exit(1)
if params["action"] == "off":
    open(state, "w").write("off")
    print("Success: Powered OFF")
    sys.exit(0)
if params["action"] == "status":
    off = os.path.exists(state)
    print("Status: " + ("OFF" if off else "ON"))
    sys.exit(2 if off else 0)
sys.exit(1)
"""


FENCE = 'FENCE = [ AGENT = "fence_pwcheck", PLUG = "{plug}", PASSWORD = "' + SECRET + '" ]'


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    yield from running_daemon(tmp_path)


def fence_env(daemon: Daemon, tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "agents"
    bindir.mkdir(exist_ok=True)
    agent = bindir / "fence_pwcheck"
    agent.write_text(AGENT)
    agent.chmod(0o755)
    return {
        "PATH": "/usr/bin:/bin",
        "ONE_XMLRPC": daemon.url,
        "LAZARUS_AUTH": str(daemon.auth_file),
        "LAZARUS_FENCE_KEY": str(daemon.data_dir / "fence_key"),
        "LAZARUS_FENCE_PATH": str(bindir),
        "PWCHECK_PASSWORD": SECRET,
        "PWCHECK_STATE": str(tmp_path / "power-off"),
    }


def host_with_fence(client: Client, name: str, fence: str) -> tuple[int, bytes]:
    host_id = int(client.call("one.host.allocate", name, "sim", "sim", -1))
    client.call("one.host.update", host_id, fence, 1)
    document = str(client.call("one.host.info", host_id))
    assert SECRET not in document and "****" in document
    return host_id, base64.b64encode(document.encode())


def fence_host(stdin: bytes, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lazarus.app.fence_host", "--attempts", "1"],
        input=stdin.decode(), capture_output=True, text=True, timeout=90, env=env, check=False,
    )


def test_the_masked_document_fences_with_the_real_password(daemon: Daemon,
                                                            tmp_path: Path) -> None:
    env = fence_env(daemon, tmp_path)
    with daemon.client() as client:
        _, stdin = host_with_fence(
            client, "n1", FENCE.format(plug="n1"))
    done = fence_host(stdin, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fenced, power proven off by level 1" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    key = daemon.data_dir / "fence_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_without_the_fence_key_the_password_stays_masked(daemon: Daemon,
                                                         tmp_path: Path) -> None:
    env = fence_env(daemon, tmp_path)
    with daemon.client() as client:
        host_id, stdin = host_with_fence(
            client, "n2", FENCE.format(plug="n2"))
        with pytest.raises(Exception, match="fence key"):  # oneadmin alone may not read it
            client.call("lazarus.host.fencecreds", host_id, "not-the-key")
    del env["LAZARUS_FENCE_KEY"]
    done = fence_host(stdin, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "masked" in done.stderr and SECRET not in done.stdout + done.stderr
    assert not (tmp_path / "power-off").exists()


# -- a real agent against the IPMI emulator (root) ------------------------------------------------
@pytest.fixture(scope="module")
def bmcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BmcSet]:
    yield from bmc_set(tmp_path_factory.mktemp("fence-creds"), ["hv1"])


@pytest.mark.root
def test_fence_ipmilan_gets_the_documented_password(bmcs: BmcSet, daemon: Daemon,
                                                    tmp_path: Path) -> None:
    bmcs.power_on("hv1")
    attrs = bmcs.fence_attributes("hv1", "ipmi")
    del attrs["PASSWORD_FILE"]
    attrs["PASSWORD"] = bmcs.password
    fence = "FENCE = [ " + ", ".join(f'{k} = "{v}"' for k, v in attrs.items()) + " ]"
    env = fence_env(daemon, tmp_path) | {"PATH": os.environ["PATH"]}
    with daemon.client() as client:
        host_id = int(client.call("one.host.allocate", "hv1", "sim", "sim", -1))
        client.call("one.host.update", host_id, fence, 1)
        document = str(client.call("one.host.info", host_id))
    assert bmcs.password not in document
    done = fence_host(base64.b64encode(document.encode()), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert bmcs.password not in done.stdout + done.stderr
    assert bmcs.power_state("hv1") == "off"
