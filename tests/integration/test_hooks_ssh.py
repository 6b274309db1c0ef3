"""REMOTE hooks over SSH to a throwaway sshd on 127.0.0.1 (root: sshd needs it).

The fixture starts Debian's /usr/sbin/sshd -D on a free port with a fresh host key and a fresh
client key authorized only for this test, and always stops it. The executor then runs
<remote hooks dir>/<COMMAND> there, with arguments on the command line or on stdin.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.env import require_root
from lazarus.drivers.hooks.subprocess import SubprocessHookExecutor
from lazarus.ports.hooks import HookRequest

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[list[str]]:
    require_root("ssh", "ssh-keygen", SSHD)
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                       check=True)
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {tmp_path / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"sshd did not start: {proc.stderr.read()!r}"
                                         if proc.stderr else "sshd did not start") from None
                time.sleep(0.05)
        yield ["ssh", "-p", str(port), "-i", str(keys / "client"), "-o", "BatchMode=yes",
               "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
               "-o", f"UserKnownHostsFile={os.devnull}", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=5"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.root
def test_remote_hook_runs_over_ssh_with_argv_and_stdin(sshd: list[str], tmp_path: Path) -> None:
    remote = tmp_path / "remote_hooks"
    (remote / "ft").mkdir(parents=True)
    script = remote / "ft" / "where"
    script.write_text('#!/bin/sh\necho "args:$*"\necho "stdin:$(cat)"\necho "ran as $0"\n')
    script.chmod(0o755)
    ex = SubprocessHookExecutor(tmp_path / "local_hooks", remote_dir=str(remote), ssh=sshd)

    def run(**kw: object) -> tuple[int, str, str]:
        request = HookRequest(1, "ft/where", "QUJD -m 'x y'", remote_host="127.0.0.1",
                              **kw)  # type: ignore[arg-type]
        result = asyncio.run(ex.run(request))
        return result.code, result.stdout.decode(), result.stderr.decode()

    code, out, err = run()
    assert code == 0, err
    assert out == f"args:QUJD -m 'x y'\nstdin:\nran as {script}\n"
    code, out, err = run(stdin=True)
    assert code == 0, err
    assert out == f"args:\nstdin:QUJD -m 'x y'\nran as {script}\n"


@pytest.mark.root
def test_remote_failures_are_reported(sshd: list[str], tmp_path: Path) -> None:
    ex = SubprocessHookExecutor(tmp_path, remote_dir=str(tmp_path / "none"), ssh=sshd)
    result = asyncio.run(ex.run(HookRequest(1, "ft/missing", "", remote_host="127.0.0.1")))
    assert result.code == 127 and b"No such file or directory" in result.stderr
    pid_file = tmp_path / "slow.pid"
    slow_script = tmp_path / "slow"
    slow_script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    slow_script.chmod(0o755)
    slow = asyncio.run(ex.run(HookRequest(1, str(slow_script), "", remote_host="127.0.0.1",
                                          timeout=1.0)))
    try:
        assert slow.code == 255 and slow.stderr.startswith(b"Timeout executing")
    finally:  # the remote side may outlive the killed ssh client for a moment
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
