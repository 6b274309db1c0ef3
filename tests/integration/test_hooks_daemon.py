"""Hooks end to end against a real `lazarus serve` (tests/helpers/daemon.py), simulated hosts.

- the shipped error_hook, created with the CLI, fires when a simulated host fails, once, with
  the base64 HOST document (state ERROR) on stdin; `hook show -e` decodes it;
- an API hook on one.vm.allocate fires after successful and failed calls with RESULT 1 / 0;
- a daemon SIGKILLed while a hook runs records it as interrupted after the restart and runs it
  again with the same LAZARUS_HOOK_EXECUTION.
The daemon's hooks directory ($LAZARUS_HOOKS_DIR) is a test directory whose ft/host_error
records what it got instead of recovering anything. Waits are bounded polls, never sleeps.
"""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from defusedxml import ElementTree as SafeET

from helpers.daemon import FAST_SETTINGS, Daemon, both_stores, running_daemon, wait_for
from lazarus.cli.main import lazarus
from lazarus.domain.errors import AllocateError
from lazarus.ha.examples import ERROR_HOOK as SHIPPED_ERROR_HOOK

REPO = Path(__file__).resolve().parents[2]
ERROR_HOOK = SHIPPED_ERROR_HOOK

RECORDER = """#!/bin/sh
# stands in for ft/host_error: keep stdin and the arguments, block while $BLOCK exists
dir={runs}
key="$LAZARUS_HOOK_EXECUTION.$LAZARUS_HOOK_ATTEMPT"
echo $$ > "$dir/$key.pid"
cat > "$dir/$key.stdin"
printf '%s\\n' "$@" > "$dir/$key.args"
while [ -e {block} ]; do sleep 0.05; done
echo "recovered"
"""


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    base = tmp_path / "hooks"
    (base / "ft").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    script = base / "ft" / "host_error"
    script.write_text(RECORDER.format(runs=tmp_path / "runs", block=tmp_path / "block"))
    script.chmod(0o755)
    return base


@pytest.fixture
def daemon(tmp_path: Path, hooks: Path, daemon_db: str) -> Iterator[Daemon]:
    yield from running_daemon(tmp_path, {**FAST_SETTINGS, "HOOKS_DIR": str(hooks)}, daemon_db)


def cli(daemon: Daemon, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(
        lazarus, ["--endpoint", daemon.url, "--auth-file", str(daemon.auth_file), *args],
        input=stdin, catch_exceptions=False,
    )
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return result.stdout


def records(daemon: Daemon, hook_id: int) -> list[Any]:
    with daemon.client() as client:
        doc = SafeET.fromstring(client.call("one.hook.info", hook_id))
    return doc.findall("HOOKLOG/HOOK_EXECUTION_RECORD")


def host_state(daemon: Daemon, host_id: int) -> int:
    with daemon.client() as client:
        doc = SafeET.fromstring(client.call("one.host.info", host_id))
    return int(doc.findtext("STATE") or -1)


def fail_host(daemon: Daemon, name: str = "node1") -> int:
    with daemon.client() as client:
        host_id = int(client.call("one.host.allocate", name, "sim", "sim", -1))
        wait_for("MONITORED", lambda: host_state(daemon, host_id) == 2)
        client.call("lazarus.sim.power", name, "off")
    return host_id


@both_stores
def test_shipped_error_hook_fires_once_with_the_host_xml_on_stdin(
    daemon: Daemon, tmp_path: Path
) -> None:
    assert cli(daemon, "hook", "create", str(ERROR_HOOK)).strip() == "ID: 0"
    assert "host_error" in cli(daemon, "hook", "list")
    host_id = fail_host(daemon)
    [record] = wait_for("the hook's record", lambda: records(daemon, 0))
    assert record.findtext("EXECUTION_RESULT/CODE") == "0"
    [stdin_file] = (tmp_path / "runs").glob("*.stdin")
    token, *rest = stdin_file.read_text().split(" ")
    assert rest == ["-m", "-p", "5"]
    assert (tmp_path / "runs" / stdin_file.name.replace(".stdin", ".args")).read_text() == "\n"
    host = SafeET.fromstring(base64.b64decode(token))
    assert (host.findtext("ID"), host.findtext("NAME"), host.findtext("STATE")) == (
        str(host_id), "node1", "3")
    shown = cli(daemon, "hook", "show", "0", "-e", "0")
    assert "<HOST><ID>" in shown and "<STATE>3</STATE>" in shown and "recovered" in shown
    # still one execution: more failed probes are no new transition
    wait_for("more probes", lambda: host_state(daemon, host_id) == 3)
    assert len(records(daemon, 0)) == 1 and len(list((tmp_path / "runs").glob("*.stdin"))) == 1


def test_api_hook_fires_on_success_and_failure(daemon: Daemon, tmp_path: Path) -> None:
    out = tmp_path / "api.out"
    script = tmp_path / "api_hook"
    # $API without ARGUMENTS_STDIN still comes on stdin: never in argv (docs/differences.md)
    out.mkdir()  # one file per execution: the two runs may overlap
    script.write_text(f'#!/bin/sh\necho "argc=$#" > {out}/$LAZARUS_HOOK_EXECUTION.argc\n'
                      f'cat > {out}/$LAZARUS_HOOK_EXECUTION.api\n')
    script.chmod(0o755)
    template = (f'NAME = on_alloc\nTYPE = api\nCALL = "one.vm.allocate"\n'
                f'COMMAND = "{script}"\nARGUMENTS = "$API"\n')
    hook_id = int(cli(daemon, "hook", "create", "-", stdin=template).split()[1])
    with daemon.client() as client:
        client.call("one.vm.allocate", 'NAME = "web"\nCPU = 1\nMEMORY = 64', False)
        with pytest.raises(AllocateError):
            client.call("one.vm.allocate", "NAME = [", False)
    wait_for("two API records", lambda: len(records(daemon, hook_id)) == 2)
    runs = sorted(out.glob("*.api"), key=lambda p: int(p.stem.split(":")[1]))
    infos = [SafeET.fromstring(base64.b64decode(p.read_text())) for p in runs]
    assert [i.findtext("RESULT") for i in infos] == ["1", "0"]
    assert infos[0].find("EXTRA/VM") is not None
    assert {p.read_text() for p in out.glob("*.argc")} == {"argc=0\n"}
    session = daemon.session()
    assert not any(session.split(":", 1)[1] in p.read_text() for p in runs)


@both_stores
def test_sigkill_while_a_hook_runs_records_it_interrupted_and_reruns_it(
    daemon: Daemon, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    (tmp_path / "block").touch()
    cli(daemon, "hook", "create", str(ERROR_HOOK))
    fail_host(daemon)
    [pid_file] = wait_for("the hook to start", lambda: list(runs.glob("*.1.pid")))
    daemon.kill()
    if daemon.process is not None and daemon.process.stdout is not None:
        daemon.process.stdout.close()  # helpers/daemon.py's kill() leaves the pipe open
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the orphaned first run
    (tmp_path / "block").unlink()
    daemon.start()
    done = wait_for("the re-run", lambda: [r for r in records(daemon, 0)
                                           if r.findtext("EXECUTION_RESULT/CODE") == "0"])
    codes = [r.findtext("EXECUTION_RESULT/CODE") for r in records(daemon, 0)]
    assert codes == ["-1", "0"] and len(done) == 1
    key = pid_file.name.removesuffix(".1.pid")
    assert sorted(p.name for p in runs.glob("*.pid")) == [f"{key}.1.pid", f"{key}.2.pid"]
    stderr = base64.b64decode(records(daemon, 0)[0].findtext("EXECUTION_RESULT/STDERR") or "")
    assert stderr.startswith(b"Interrupted") and key.encode() in stderr
    assert "INTERRUPTED" in cli(daemon, "hook", "log", "--error")
