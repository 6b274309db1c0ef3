"""The `lazarus` CLI end to end: a real `lazarus serve` daemon (tests/helpers/daemon.py) driven
through the CLI over XML-RPC with simulated hosts (VM_MAD "sim"), no root needed.

Most commands run in-process with click's CliRunner (fast; still real HTTP to the daemon);
a few run as `python -m lazarus.cli.main` subprocesses to check what a shell sees: exit codes
and exactly one line on stderr. The daemon runs in real time, so tests wait with bounded
polling (a deadline, never a fixed sleep as synchronisation).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from helpers.daemon import Daemon, running_daemon, wait_for
from lazarus.cli.main import lazarus


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from running_daemon(tmp_path_factory.mktemp("cli"))


def cli(daemon: Daemon, *args: str, stdin: str | None = None, code: int = 0) -> Result:
    """Run `lazarus --endpoint URL --auth-file F ARGS` in-process; assert the exit code."""
    result = CliRunner().invoke(
        lazarus, ["--endpoint", daemon.url, "--auth-file", str(daemon.auth_file), *args],
        input=stdin, catch_exceptions=False,
    )
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result


def cli_json(daemon: Daemon, *args: str) -> Any:
    return json.loads(cli(daemon, *args, "--json").stdout)


def shell(daemon: Daemon, *args: str, stdin: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a separate process, configured only through the environment."""
    return subprocess.run(
        [sys.executable, "-m", "lazarus.cli.main", *args], input=stdin, text=True,
        capture_output=True, env=env or daemon.env(), timeout=60, check=False,
    )


def vms_by_id(daemon: Daemon, *extra: str) -> dict[int, dict[str, Any]]:
    return {v["ID"]: v for v in cli_json(daemon, "vm", "list", *extra)}


def wait_vm(daemon: Daemon, vm_id: int, stat: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        vm: dict[str, Any] = cli_json(daemon, "vm", "show", str(vm_id))
        return vm if vm["STAT"] == stat else None

    result: dict[str, Any] = wait_for(f"VM {vm_id} {stat}", probe)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_error_line(done: subprocess.CompletedProcess[str] | Result) -> str:
    stderr = done.stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("lazarus: "), stderr
    return lines[0]


VM_TEMPLATE = 'NAME="{name}"\nCPU="1"\nVCPU="1"\nMEMORY="1024"\n'


# --------------------------------------------------------------------------- lifecycle
def test_hosts_and_vms_through_the_cli(daemon: Daemon, tmp_path: Path) -> None:
    def new_id(result: Result) -> int:
        label, value = result.stdout.split()
        assert label == "ID:"
        return int(value)

    hids = [new_id(cli(daemon, "host", "create", f"cli-n{i}", "--vm-mad", "sim"))
            for i in range(1, 4)]
    wait_for("3 MONITORED hosts",
             lambda: all(h["STAT"] == "on" for h in cli_json(daemon, "host", "list")))

    # three VMs through stdin for the scheduler, one from a file on hold, deployed by hand
    ids = [new_id(cli(daemon, "vm", "create", "-", stdin=VM_TEMPLATE.format(name=f"web{i}")))
           for i in range(3)]
    path = tmp_path / "db.tmpl"
    path.write_text(VM_TEMPLATE.format(name="db"))
    ids.append(new_id(cli(daemon, "vm", "create", str(path), "--hold")))
    assert cli_json(daemon, "vm", "show", str(ids[3]))["STAT"] == "hold"
    cli(daemon, "vm", "deploy", str(ids[3]), str(hids[2]))
    for vm_id in ids:
        wait_vm(daemon, vm_id, "runn")

    vms = vms_by_id(daemon)
    assert set(ids) <= set(vms)
    assert vms[ids[3]]["HOST_ID"] == hids[2] and vms[ids[3]]["HOST"] == "cli-n3"
    assert {vms[i]["HOST"] for i in ids} <= {"cli-n1", "cli-n2", "cli-n3"}
    assert all(vms[i]["STATE"] == 3 and vms[i]["STATE_NAME"] == "ACTIVE"
               and vms[i]["LCM_STATE"] == 3 and vms[i]["LCM_STATE_NAME"] == "RUNNING"
               for i in ids)

    # tables like onehost/onevm list
    table = cli(daemon, "host", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "CLUSTER", "RVM", "ALLOCATED_CPU",
                                "ALLOCATED_MEM", "STAT"]
    rows = {row.split()[1]: row.split() for row in table[1:]}
    mine = [rows[f"cli-n{i}"] for i in range(1, 4)]
    assert all(row[2] == "default" and row[-1] == "on" for row in mine)
    assert sum(int(row[3]) for row in mine) == 4  # RVM
    assert "/ 800 (" in table[1]  # ALLOCATED_CPU like onehost: used / total (percent)
    table = cli(daemon, "vm", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STAT", "CPU", "MEM", "HOST", "TIME"]
    rows = {row.split()[0]: row.split() for row in table[1:]}
    assert rows[str(ids[3])][:6] == [str(ids[3]), "db", "runn", "1", "1G", "cli-n3"]

    # show: attributes, template, history
    shown = cli(daemon, "vm", "show", str(ids[3])).stdout
    assert f"VIRTUAL MACHINE {ids[3]} INFORMATION" in shown
    assert "LCM_STATE  : RUNNING" in shown and "HOST       : cli-n3" in shown
    assert 'MEMORY="1024"' in shown and "VIRTUAL MACHINE HISTORY" in shown
    full = cli_json(daemon, "vm", "show", str(ids[3]))
    assert full["HISTORY"][-1]["HOST"] == "cli-n3" and full["HISTORY"][-1]["ACTION_NAME"]
    assert full["TEMPLATE"]["MEMORY"] == "1024"
    host = cli_json(daemon, "host", "show", str(hids[2]))
    assert ids[3] in host["VMS"] and host["STATE_NAME"] == "MONITORED" and host["STATE"] == 2
    assert f"HOST {hids[2]} INFORMATION" in cli(daemon, "host", "show", str(hids[2])).stdout

    # terminate: DONE, hidden unless --all
    cli(daemon, "vm", "terminate", str(ids[0]))
    wait_for("terminated VM gone from the list", lambda: ids[0] not in vms_by_id(daemon))
    assert vms_by_id(daemon, "--all")[ids[0]]["STAT"] == "done"
    assert ids[0] in [v["ID"] for v in cli_json(daemon, "vm", "list", "--state", "done")]

    # poweroff --hard / resume
    cli(daemon, "vm", "poweroff", str(ids[1]), "--hard")
    wait_vm(daemon, ids[1], "poff")
    assert ids[1] in [v["ID"] for v in cli_json(daemon, "vm", "list", "--state", "poweroff")]
    cli(daemon, "vm", "resume", str(ids[1]))
    wait_vm(daemon, ids[1], "runn")
    running = {v["ID"] for v in cli_json(daemon, "vm", "list", "--state", "runn")}
    assert set(ids[1:]) <= running and ids[0] not in running


def test_host_failure_and_recover_through_the_cli(daemon: Daemon) -> None:
    """Power a simulated host off: it goes ERROR, its VMs UNKNOWN; recover --recreate puts
    them back through the scheduler on the surviving hosts."""
    for name in ("cli-f1", "cli-f2", "cli-f3"):  # self-contained: xdist may run it alone
        cli(daemon, "host", "create", name, "--vm-mad", "sim")
    hosts = {h["NAME"]: h for h in cli_json(daemon, "host", "list")}
    f1, f2, f3 = (hosts[f"cli-f{i}"]["ID"] for i in (1, 2, 3))
    wait_for("new hosts MONITORED", lambda: all(
        h["STAT"] == "on" for h in cli_json(daemon, "host", "list")))
    vm_id = int(cli(daemon, "vm", "create", "-", "--hold",
                    stdin=VM_TEMPLATE.format(name="ha")).stdout.split()[-1])
    cli(daemon, "vm", "deploy", str(vm_id), str(f1))
    wait_vm(daemon, vm_id, "runn")

    assert cli(daemon, "sim", "power", "cli-f1", "off").stdout.strip() == "cli-f1: power off"
    assert cli(daemon, "sim", "power", "cli-f1", "status").stdout.strip() == "cli-f1: power off"
    wait_for("host ERROR", lambda: cli_json(daemon, "host", "show", str(f1))["STAT"] == "err")
    wait_vm(daemon, vm_id, "unkn")
    assert [v["ID"] for v in cli_json(daemon, "vm", "list", "--state", "unknown")] == [vm_id]

    cli(daemon, "host", "disable", str(f2))  # the scheduler must not pick it
    cli(daemon, "vm", "recover", str(vm_id), "--recreate")
    moved = wait_vm(daemon, vm_id, "runn")
    assert moved["HOST_ID"] not in (f1, f2)
    assert f3 in {h["ID"] for h in cli_json(daemon, "host", "list")}
    cli(daemon, "host", "enable", str(f2))
    cli(daemon, "sim", "power", "cli-f1", "on")
    wait_for("host back", lambda: cli_json(daemon, "host", "show", str(f1))["STAT"] == "on")
    history = cli_json(daemon, "vm", "show", str(vm_id))["HISTORY"]
    assert [h["HOST_ID"] for h in history][:1] == [f1] and history[-1]["HOST_ID"] == moved[
        "HOST_ID"]


def test_host_admin_commands(daemon: Daemon) -> None:
    host_id = cli(daemon, "host", "create", "cli-adm", "--vm-mad", "sim").stdout.split()[-1]
    cli(daemon, "host", "offline", host_id)
    assert cli_json(daemon, "host", "show", host_id)["STATE_NAME"] == "OFFLINE"
    cli(daemon, "host", "enable", host_id)
    wait_for("enabled host MONITORED",
             lambda: cli_json(daemon, "host", "show", host_id)["STAT"] == "on")
    cli(daemon, "host", "disable", host_id)
    assert cli_json(daemon, "host", "show", host_id)["STAT"] == "dsbl"

    secret = "s3cret-pw-for-cli"
    cli(daemon, "host", "update", host_id, "-", "--append",
        stdin=f'FENCE=[AGENT="fence_sim", PASSWORD="{secret}"]\nRACK="r7"\n')
    shown = cli(daemon, "host", "show", host_id).stdout
    assert 'RACK="r7"' in shown and 'AGENT="fence_sim"' in shown
    assert secret not in shown and 'PASSWORD="****"' in shown
    data = cli_json(daemon, "host", "show", host_id)
    assert data["TEMPLATE"]["FENCE"]["PASSWORD"] == "****"
    assert "HOSTNAME" in data["TEMPLATE"]  # --append kept the monitored attributes

    cli(daemon, "host", "rename", host_id, "cli-adm2")
    assert cli_json(daemon, "host", "show", host_id)["NAME"] == "cli-adm2"
    cli(daemon, "host", "delete", host_id)
    done = cli(daemon, "host", "show", host_id, code=1)
    assert one_error_line(done).startswith("lazarus: [one.host.info]")


def test_datastores_and_sim_switches(daemon: Daemon) -> None:
    names = {d["NAME"]: d for d in cli_json(daemon, "datastore", "list")}
    assert names["system"]["TYPE_NAME"] == "sys" and names["system"]["SHARED"] == "YES"
    assert "SHARED" in cli(daemon, "datastore", "list").stdout.splitlines()[0]
    new_id = cli(daemon, "datastore", "create", "-",
                 stdin='NAME="ha-sys"\nTYPE="SYSTEM_DS"\nTM_MAD="shared"\n').stdout.split()[-1]
    shown = cli_json(daemon, "datastore", "show", new_id)
    assert shown["NAME"] == "ha-sys" and shown["TYPE"] == 1
    assert "DATASTORE TEMPLATE" in cli(daemon, "datastore", "show", new_id).stdout

    cli(daemon, "host", "create", "cli-sw", "--vm-mad", "sim")
    assert cli(daemon, "sim", "network", "cli-sw", "cut").stdout.strip() == "cli-sw: network cut"
    assert cli(daemon, "sim", "network", "cli-sw", "restore").stdout.strip().endswith("restored")
    assert cli(daemon, "sim", "hang", "cli-sw", "on").stdout.strip() == "cli-sw: hung"
    assert cli(daemon, "sim", "hang", "cli-sw", "off").stdout.strip() == "cli-sw: answering"


# ----------------------------------------------------------------------------- errors
def test_missing_vm_is_one_line_exit_1(daemon: Daemon) -> None:
    done = shell(daemon, "vm", "show", "4242")
    assert done.returncode == 1 and done.stdout == ""
    assert one_error_line(done) == "lazarus: [one.vm.info] Error getting virtual machine [4242]."


def test_refused_action_is_one_line_exit_1(daemon: Daemon) -> None:
    vm_id = cli(daemon, "vm", "create", "-", "--hold",
                stdin=VM_TEMPLATE.format(name="refused")).stdout.split()[-1]
    done = shell(daemon, "vm", "resume", vm_id)
    assert done.returncode == 1
    assert one_error_line(done) == (
        "lazarus: [one.vm.action] This action is not available for state HOLD"
    )
    cli(daemon, "vm", "recover", vm_id, "--delete")


def test_bad_template_is_one_line_exit_1(daemon: Daemon) -> None:
    done = shell(daemon, "vm", "create", "-", stdin='NAME="x"\nCPU=[unterminated\n')
    assert done.returncode == 1
    assert one_error_line(done).startswith("lazarus: [one.vm.allocate] Error parsing template")


def test_unreachable_daemon_is_one_line_exit_1(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{free_port()}/RPC2"
    done = shell(daemon, "--endpoint", url, "host", "list")
    assert done.returncode == 1
    assert one_error_line(done).startswith(f"lazarus: cannot reach the Lazarus daemon at {url}")


def test_credentials_errors(daemon: Daemon, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    done = shell(daemon, "--auth-file", str(missing), "host", "list")
    assert done.returncode == 1
    assert one_error_line(done) == f"lazarus: credentials file {missing} does not exist"

    wrong = tmp_path / "wrong"
    wrong.write_text("oneadmin:not-the-password\n")
    env = daemon.env() | {"LAZARUS_AUTH": str(wrong)}
    done = shell(daemon, "host", "list", env=env)
    assert done.returncode == 1
    assert one_error_line(done) == (
        "lazarus: [one.hostpool.info] User couldn't be authenticated, aborting call."
    )
    password = daemon.session().partition(":")[2]
    assert password not in done.stdout + done.stderr


def test_usage_errors_exit_2(daemon: Daemon) -> None:
    assert cli(daemon, "vm", "recover", "1", code=2).exit_code == 2
    assert cli(daemon, "vm", "recover", "1", "--success", "--delete", code=2).exit_code == 2
    assert cli(daemon, "vm", "show", "abc", code=2).exit_code == 2
    assert cli(daemon, "vm", "list", "--state", "sleepy", code=2).exit_code == 2
    assert cli(daemon, "sim", "power", "x", "sideways", code=2).exit_code == 2
    assert shell(daemon, "host", "frobnicate").returncode == 2


def test_unknown_simulated_host(daemon: Daemon) -> None:
    done = cli(daemon, "sim", "power", "no-such-host", "off", code=1)
    assert one_error_line(done) == (
        "lazarus: [lazarus.sim.power] Error getting simulated host [no-such-host]."
    )


# ------------------------------------------------------------------------ restarts
def test_daemon_survives_sigkill_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The fixture's restart path: SIGKILL, start again on the same data dir, same state and
    credentials; SIGTERM is an orderly stop with exit code 0."""
    with Daemon(tmp_path / "data") as own:
        own.start()
        session = own.session()
        cli(own, "host", "create", "keep", "--vm-mad", "sim")
        vm_id = cli(own, "vm", "create", "-", "--hold",
                    stdin=VM_TEMPLATE.format(name="kept")).stdout.split()[-1]
        first_pid = own.pid
        own.restart(crash=True)
        assert own.pid != first_pid and own.session() == session
        assert [h["NAME"] for h in cli_json(own, "host", "list")] == ["keep"]
        assert cli_json(own, "vm", "show", vm_id)["STAT"] == "hold"
        assert own.stop() == 0
        done = shell(own, "host", "list")
        assert done.returncode == 1 and "cannot reach the Lazarus daemon" in done.stderr


def test_second_daemon_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    """Two controllers on one database would drive the same VMs: the second is refused with
    one clear line, the first keeps serving."""
    with Daemon(tmp_path / "data") as own:
        own.start()
        second = subprocess.run(
            [sys.executable, "-m", "lazarus.cli.main", "serve", "--port", "0",
             "--listen", "127.0.0.1", "--data-dir", str(own.data_dir)],
            capture_output=True, text=True, env=own.env(), timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 1, second
        assert "another lazarus serve (pid " in second.stderr
        assert str(own.pid) in second.stderr
        assert "Traceback" not in second.stderr
        assert cli_json(own, "host", "list") == []
        assert own.running()


CALLBACK_HOOK = """#!{python}
from lazarus.api.client import Client
Client.from_env().call("one.hostpool.info")
print("authenticated")
"""


def test_lost_one_auth_is_recreated_consistently(tmp_path: Path) -> None:
    """The credentials file gone while the user exists: after a restart the CLI and a hook
    (calling back with $ONE_AUTH) authenticate with the new password."""
    script = tmp_path / "callback"
    script.write_text(CALLBACK_HOOK.format(python=sys.executable))
    script.chmod(0o755)
    with Daemon(tmp_path / "data") as own:
        own.start()
        old = own.session()
        hook = f'NAME = "cb"\nTYPE = "api"\nCOMMAND = "{script}"\nCALL = "one.host.allocate"\n'
        hook_id = cli(own, "hook", "create", "-", stdin=hook).stdout.split()[-1]
        own.stop()
        own.auth_file.unlink()
        own.start()
        assert own.session() != old
        cli(own, "host", "create", "after", "--vm-mad", "sim")
        assert [h["NAME"] for h in cli_json(own, "host", "list")] == ["after"]

        def record() -> Any:
            with own.client() as client:
                doc = client.call("one.hook.info", int(hook_id))
            return "<CODE>" in doc and doc

        doc = wait_for("the hook's record", record)
        assert "<CODE>0</CODE>" in doc, doc
        assert "missing" in own.log_path.read_text() and old not in own.log_path.read_text()


def test_host_fenced_confirmation(daemon: Daemon) -> None:
    """`host fenced --confirm` records the operator's word in the host's template (with the
    user), only for a host in ERROR, and never without --confirm."""
    cli(daemon, "host", "create", "cli-fence", "--vm-mad", "sim")
    host_id = next(h["ID"] for h in cli_json(daemon, "host", "list") if h["NAME"] == "cli-fence")
    wait_for("host MONITORED",
             lambda: cli_json(daemon, "host", "show", str(host_id))["STAT"] == "on")
    refused = cli(daemon, "host", "fenced", str(host_id), code=2)
    assert "--confirm" in refused.stderr
    not_error = cli(daemon, "host", "fenced", str(host_id), "--confirm", code=1)
    assert "not ERROR" in not_error.stderr
    cli(daemon, "sim", "power", "cli-fence", "off")
    wait_for("host ERROR",
             lambda: cli_json(daemon, "host", "show", str(host_id))["STAT"] == "err")
    cli(daemon, "host", "fenced", str(host_id), "--confirm")
    template = cli(daemon, "host", "show", str(host_id)).stdout
    assert "FENCE_CONFIRMED" in template and "oneadmin" in template
