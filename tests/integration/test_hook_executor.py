"""SubprocessHookExecutor with real processes: argv vs stdin, hooks directory, `..` refusal,
missing commands, TIMEOUT killing the whole process group, output caps and the environment.

Real processes need a real event loop (asyncio.run); the only wall-clock wait is the timeout
test's TIMEOUT (0.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lazarus.domain.hooks import ExecutionResult
from lazarus.drivers.hooks.lifeline import PARENT_ENV, GroupRecords, group_members
from lazarus.drivers.hooks.subprocess import SubprocessHookExecutor
from lazarus.ports.hooks import HookRequest


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """Running (a zombie waiting for an init that does not reap counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run(executor: SubprocessHookExecutor, **kw: object) -> ExecutionResult:
    request = HookRequest(hook_id=1, **kw)  # type: ignore[arg-type]
    return asyncio.run(executor.run(request))


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    base = tmp_path / "hooks"
    script(base / "ft" / "echo_args", 'printf "argc=%s" "$#"; for a; do printf " [%s]" "$a"; done\n'
           'printf "\\nstdin=%s" "$(cat)"; echo "err" >&2; exit 3\n')
    return base


def test_arguments_on_the_command_line(hooks_dir: Path) -> None:
    ex = SubprocessHookExecutor(hooks_dir)
    result = run(ex, command="ft/echo_args", arguments="QUJD -m  -p 5")
    assert result.stdout == b"argc=4 [QUJD] [-m] [-p] [5]\nstdin="
    assert (result.stderr, result.code) == (b"err\n", 3)
    assert result.command == "ft/echo_args QUJD -m  -p 5"


def test_arguments_on_stdin(hooks_dir: Path) -> None:
    ex = SubprocessHookExecutor(hooks_dir)
    result = run(ex, command="ft/echo_args", arguments="QUJD -m -p 5", stdin=True)
    assert result.stdout == b"argc=0\nstdin=QUJD -m -p 5"


def test_no_shell_is_involved(hooks_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ex = SubprocessHookExecutor(hooks_dir)
    result = run(ex, command="ft/echo_args", arguments=f";touch {marker} $(id) `id`")
    assert not marker.exists()
    assert b"[;touch]" in result.stdout and b"[$(id)]" in result.stdout


def test_absolute_command_runs_as_is(hooks_dir: Path) -> None:
    ex = SubprocessHookExecutor(hooks_dir)
    result = run(ex, command=str(hooks_dir / "ft" / "echo_args"), arguments="x")
    assert result.stdout.startswith(b"argc=1 [x]")


@pytest.mark.parametrize("command", ["../outside", "ft/../../outside", ".."])
def test_commands_leaving_the_hooks_directory_are_refused(
    hooks_dir: Path, tmp_path: Path, command: str
) -> None:
    marker = tmp_path / "ran"
    script(tmp_path / "outside", f"touch {marker}\n")
    result = run(SubprocessHookExecutor(hooks_dir), command=command, arguments="")
    assert result.code == 255 and result.stderr.startswith(b"Internal error")
    assert b"leaves the hooks directory" in result.stderr and not marker.exists()


def test_missing_and_unexecutable_commands_give_internal_error(hooks_dir: Path) -> None:
    ex = SubprocessHookExecutor(hooks_dir)
    missing = run(ex, command="ft/nope", arguments="a")
    assert missing.code == 255
    assert missing.stderr.startswith(b"Internal error: No such file or directory")
    (hooks_dir / "plain").write_text("not executable")
    denied = run(ex, command="plain", arguments="")
    assert denied.code == 255 and b"Permission denied" in denied.stderr


def test_timeout_kills_the_whole_process_group(hooks_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script(hooks_dir / "slow", f"sleep 60 & echo $! > {pidfile}\nwait\n")
    ex = SubprocessHookExecutor(hooks_dir, kill_grace=1.0)
    result = run(ex, command="slow", arguments="", timeout=0.5)
    assert result.code == 255 and result.stderr == b"Timeout executing slow\n"
    assert not alive(int(pidfile.read_text()))  # the background child died with its group


def test_timeout_escalates_to_sigkill(hooks_dir: Path, tmp_path: Path) -> None:
    script(hooks_dir / "stubborn", "trap '' TERM\nwhile :; do sleep 0.1; done\n")
    ex = SubprocessHookExecutor(hooks_dir, kill_grace=0.3)
    result = run(ex, command="stubborn", arguments="", timeout=0.3)
    assert result.code == 255 and b"Timeout executing" in result.stderr


def test_output_is_capped(hooks_dir: Path) -> None:
    script(hooks_dir / "chatty", "head -c 300000 /dev/zero; head -c 5000 /dev/zero >&2\n")
    ex = SubprocessHookExecutor(hooks_dir, output_limit=1000)
    result = run(ex, command="chatty", arguments="")
    assert (len(result.stdout), len(result.stderr), result.code) == (1000, 1000, 0)


def test_environment_carries_callback_and_execution_id(hooks_dir: Path) -> None:
    script(hooks_dir / "env", 'echo "$ONE_XMLRPC|$ONE_AUTH|$LAZARUS_XMLRPC|$LAZARUS_AUTH|'
           '$LAZARUS_HOOK_EXECUTION"\n')
    ex = SubprocessHookExecutor(hooks_dir)
    ex.callback("http://127.0.0.1:1/RPC2", "/tmp/auth")
    result = run(ex, command="env", arguments="", env={"LAZARUS_HOOK_EXECUTION": "1:7"})
    assert result.stdout == b"http://127.0.0.1:1/RPC2|/tmp/auth|http://127.0.0.1:1/RPC2|/tmp/auth|1:7\n"


def test_signal_exit_is_128_plus_signal(hooks_dir: Path) -> None:
    script(hooks_dir / "selfkill", "kill -TERM $$\n")
    result = run(SubprocessHookExecutor(hooks_dir), command="selfkill", arguments="")
    assert result.code == 128 + signal.SIGTERM


def test_remote_argv_quotes_for_the_remote_shell(hooks_dir: Path) -> None:
    ex = SubprocessHookExecutor(hooks_dir, remote_dir="/var/tmp/h/", ssh=["ssh", "-p", "22"])
    argv = ex.argv(HookRequest(1, "ft/x", "a;b $(c)", remote_host="node1"))
    assert argv == ["ssh", "-p", "22", "-n", "--", "node1", "/var/tmp/h/ft/x 'a;b' '$(c)'"]
    stdin = ex.argv(HookRequest(1, "/abs/x", "QQ==", stdin=True, remote_host="node1"))
    assert stdin == ["ssh", "-p", "22", "--", "node1", "/abs/x"]
    with pytest.raises(ValueError):
        ex.argv(HookRequest(1, "../x", "", remote_host="node1"))


@pytest.mark.parametrize("address", ["-oProxyCommand=touch /tmp/pwned", "-F/tmp/x", " -v"])
def test_a_remote_host_that_looks_like_an_option_is_refused(hooks_dir: Path, tmp_path: Path,
                                                            address: str) -> None:
    """ADDRESS="-oProxyCommand=..." must never reach ssh as an option (it runs a local
    command): ssh's options end with `--`, and a destination starting with '-' is refused."""
    marker = tmp_path / "pwned"
    address = address.replace("/tmp/pwned", str(marker))
    ex = SubprocessHookExecutor(hooks_dir)
    with pytest.raises(ValueError, match="remote host"):
        ex.argv(HookRequest(1, "ft/x", "", remote_host=address))
    result = run(ex, command="ft/x", arguments="", remote_host=address)
    assert result.code == 255 and b"remote host" in result.stderr
    assert not marker.exists()


# ------------------------------------------------------------ processes a crash leaves behind
def test_running_commands_are_recorded_until_they_end(hooks_dir: Path, tmp_path: Path) -> None:
    records = GroupRecords(tmp_path / "run")
    executor = SubprocessHookExecutor(hooks_dir=hooks_dir, records=records)
    run_dir = tmp_path / "run"  # the record is written just after the start: wait for it
    (hooks_dir / "ls_records").write_text(
        f"#!/bin/sh\nfor i in $(seq 200); do [ -n \"$(ls {run_dir} 2>/dev/null)\" ] && break; "
        f"sleep 0.05; done\nls {run_dir}\n")
    (hooks_dir / "ls_records").chmod(0o755)
    result = run(executor, command="ls_records", arguments="")
    assert result.code == 0 and result.stdout.split()  # its own group, recorded while it ran
    assert records.recorded() == {}  # forgotten once it ended


def test_reap_kills_the_groups_a_crashed_daemon_left(tmp_path: Path) -> None:
    """Before: nothing killed them; an orphaned ft/host_error kept the host's lock and the
    re-run gave up. Now the restarted daemon kills every recorded group and waits for it."""
    records = GroupRecords(tmp_path / "run")
    orphan = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"], start_new_session=True)
    try:
        wait_until(lambda: len(group_members(orphan.pid)) >= 2)
        members = group_members(orphan.pid)
        records.add(orphan.pid)
        assert asyncio.run(records.reap()) == [orphan.pid]
        orphan.wait(10)
        assert not any(alive(pid) for pid in members)  # the child too, not just the leader
        assert records.recorded() == {}
    finally:
        orphan.kill()
        orphan.wait(10)


def test_reap_spares_a_reused_pid(tmp_path: Path) -> None:
    """A record whose leader pid now belongs to another process (other start time) is
    dropped, not killed."""
    records = GroupRecords(tmp_path / "run")
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / str(other.pid)).write_text(f"{other.pid} 1\n")  # not its start
        assert asyncio.run(records.reap()) == []
        assert other.poll() is None and records.recorded() == {}
    finally:
        other.kill()
        other.wait(10)


def test_hook_programs_die_with_their_parent(tmp_path: Path) -> None:
    """die_with_parent (called by ft/host_error, ft/fence_host, fence_sim): SIGKILL of the
    starter kills the program at once instead of leaving it fencing on its own."""
    pid_file = tmp_path / "child"
    code = (
        "import os, time\n"
        "from lazarus.drivers.hooks.lifeline import die_with_parent\n"
        "assert die_with_parent()\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import os, subprocess, sys, time\n"
         "env = dict(os.environ, LAZARUS_PARENT_PID=str(os.getpid()))\n"
         f"subprocess.Popen([sys.executable, '-c', {code!r}], env=env)\n"
         "time.sleep(60)\n"],
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text())
        child = int(pid_file.read_text())
        assert alive(child)
        starter.kill()
        starter.wait(10)
        wait_until(lambda: not alive(child))
    finally:
        starter.kill()
        starter.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(starter.pid, signal.SIGKILL)


def test_a_hook_whose_parent_is_already_gone_stops() -> None:
    check = (
        "from lazarus.drivers.hooks.lifeline import die_with_parent\n"
        f"assert die_with_parent({{{PARENT_ENV!r}: '1'}}) is False\n"  # the parent is not init
        "assert die_with_parent({}) is True\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=30)


def wait_until(probe: Callable[[], object], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not probe():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)
