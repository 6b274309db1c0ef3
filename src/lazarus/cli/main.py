"""`lazarus`: the command-line entry point (console script `lazarus = lazarus.cli.main:main`).

`lazarus serve` runs the controller daemon (app/daemon.py); every other group is a thin client
of its XML-RPC API: host, vm, datastore, sim (one module each), plus `lab` and `hook` when
their modules import. Global options say where the daemon is and how to log in; each falls
back to the environment and then to the defaults the daemon uses (api/defaults.py), so a
daemon and a CLI started with no options find each other. `python -m lazarus.cli.main` works
too (the test fixtures start the daemon that way).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from lazarus import __version__
from lazarus.domain.errors import LazarusError

from .context import Api
from .datastore import datastore
from .db import db
from .host import host
from .output import CliError
from .sim import sim
from .vm import vm

OPTIONAL_GROUPS = (("lazarus.cli.lab", "lab"), ("lazarus.cli.hook", "hook"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lazarus")
@click.option("--endpoint", "-e", metavar="URL", default=None,
              help="XML-RPC endpoint of the daemon [default: $LAZARUS_XMLRPC, $ONE_XMLRPC or "
                   "http://127.0.0.1:2633/RPC2].")
@click.option("--auth-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding 'user:password' [default: $LAZARUS_AUTH, $ONE_AUTH or "
                   "<data dir>/one_auth].")
@click.pass_context
def lazarus(ctx: click.Context, endpoint: str | None, auth_file: Path | None) -> None:
    """Lazarus: high availability for VMs on KVM/libvirt, speaking OpenNebula's API.

    \b
    Example: lazarus serve &  lazarus host create node1 --vm-mad sim && lazarus host list
    """
    api = Api.from_options(endpoint, auth_file)
    ctx.obj = api
    ctx.call_on_close(api.close)


@lazarus.command()
@click.option("--listen", metavar="ADDRESS", default=None,
              help="Address to listen on [default: 127.0.0.1, or LISTEN_ADDRESS].")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port; 0 picks a free one [default: 2633, or PORT].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Database and credentials [default: $LAZARUS_DATA_DIR, /var/lib/lazarus "
                   "as root, else ~/.local/share/lazarus].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Config file [default: <data dir>/lazarus.conf if present].")
@click.option("--auth-file", "serve_auth_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where the oneadmin credentials are written or read "
                                 "[default: <data dir>/one_auth].")
@click.option("--db", metavar="URL", default=None,
              help="Store: sqlite:PATH or postgresql://USER@HOST:PORT/DB, never with a "
                   "password [default: <data dir>/lazarus.db, or DB].")
@click.option("--db-password-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="File (mode 0600) holding the PostgreSQL password [default: "
                                 "DB_PASSWORD_FILE, else ~/.pgpass, PGPASSFILE, PGPASSWORD].")
@click.option("--ha", is_flag=True,
              help="One of several controllers on a shared store (--db): stand by until etcd "
                   "elects this one, lead, exit 75 when no longer the leader (for the "
                   "supervisor to restart it).")
@click.option("--etcd", metavar="URLS", default=None,
              help="--ha: etcd client URLs, comma-separated [default: $LAZARUS_ETCD, else "
                   "http://127.0.0.1:2379].")
def serve(listen: str | None, port: int | None, data_dir: Path | None,
          config_file: Path | None, serve_auth_file: Path | None, db: str | None,
          db_password_file: Path | None, ha: bool, etcd: str | None) -> None:
    """Run the controller daemon in the foreground until SIGTERM or Ctrl-C.

    Settings come from the flags, then $LAZARUS_<NAME> variables, then the config file
    (OpenNebula template syntax, e.g. MONITORING_INTERVAL_HOST = 5). When ready it prints
    "Lazarus controller listening on URL" and the path of the oneadmin credentials.

    With --ha it is one of several controllers on a shared store: it stands by until etcd
    elects it, and exits 75 when it stops leading (docs/architecture.md, "Several
    controllers").

    \b
    Example: lazarus serve --port 0 --data-dir /tmp/lz
    Example: lazarus serve --ha --etcd http://10.0.0.1:2379,http://10.0.0.2:2379 --db postgresql://lazarus@10.0.0.9/lazarus
    """
    from lazarus.app import config, daemon  # the daemon's dependencies load only for serve

    overrides: dict[str, str] = {}
    if listen is not None:
        overrides["LISTEN_ADDRESS"] = listen
    if port is not None:
        overrides["PORT"] = str(port)
    if db is not None:
        overrides["DB"] = db
    if db_password_file is not None:
        overrides["DB_PASSWORD_FILE"] = str(db_password_file)
    try:
        settings, data = config.load(data_dir, config_file, overrides=overrides)
    except config.ConfigError as exc:
        raise CliError(str(exc)) from exc
    options = None
    if ha:
        from lazarus.app.standby import HaOptions

        urls = (etcd or os.environ.get("LAZARUS_ETCD") or "http://127.0.0.1:2379").split(",")
        try:
            options = HaOptions(etcd=[u.strip() for u in urls if u.strip()])
        except ValueError as exc:
            raise CliError(f"--etcd: {exc}") from exc
    elif etcd is not None:
        raise CliError("--etcd is for --ha")
    try:
        code = daemon.serve(settings, data, serve_auth_file, options)
    except OSError as exc:  # e.g. the port is taken: one line, not a traceback
        raise CliError(f"cannot start the daemon: {exc}") from exc
    except LazarusError as exc:  # a bad store URL or password file, an unreachable database
        raise CliError(f"cannot start the daemon: {exc}") from exc
    raise SystemExit(code)


@lazarus.command()
@click.option("--lab/--sim", "use_lab", default=None,
              help="Real qemu hosts in network namespaces (root) or the simulated cluster "
                   "[default: the lab when it can run here, else the simulated cluster].")
@click.option("--keep", is_flag=True, help="Keep the demo's data directory.")
@click.option("--db", "db", type=click.Choice(["sqlite", "postgresql"]), default="sqlite",
              show_default=True,
              help="The controller's store: its SQLite file, or a throwaway PostgreSQL 15 "
                   "server started for the demo (simulated cluster only).")
@click.option("--no-wait", is_flag=True,
              help="Stop at the end instead of keeping the dashboard up until Enter "
                   "(implied when stdin is not a terminal, e.g. CI).")
def demo(use_lab: bool | None, keep: bool, db: str, no_wait: bool) -> None:
    """Show a host failure and the recovery of its VMs, end to end, in under a minute.

    Starts a controller on embedded defaults, creates the shipped error_hook with
    `lazarus hook create`, runs VMs, powers one host off and prints the timeline: host
    ERROR, hook started, fence confirmed, each VM RUNNING on another host. The simulated
    demo prints the web dashboard's URL and keeps it up until Enter (see --no-wait).

    \b
    Example: lazarus demo --sim;  lazarus demo --db postgresql
    """
    if db == "postgresql" and use_lab:
        raise CliError("--db postgresql runs with the simulated cluster (--sim)")
    if db == "postgresql":
        use_lab = False
    if use_lab is None:
        use_lab, why = _lab_available()
        print(f"Using the {'lab (real qemu hosts)' if use_lab else 'simulated cluster'}: {why}.")
    if use_lab:
        from lazarus.lab.demo import run_lab_demo

        raise SystemExit(int(run_lab_demo(print)))
    from lazarus.app.demo import run_sim_demo

    wait = None if no_wait or not sys.stdin.isatty() else input
    raise SystemExit(run_sim_demo(print, keep, wait, db))


@lazarus.command()
@click.option("--host", "host_name", required=True, help="This host's name, as the controller "
              "knows it.")
@click.option("--datastore", required=True, type=click.Path(file_okay=False),
              help="The shared system datastore directory, as this host mounts it.")
@click.option("--controller", required=True, help="HOST:PORT of the controller's API.")
@click.option("--period", type=float, default=1.0, show_default=True,
              help="Seconds between heartbeats.")
@click.option("--loss-timeout", type=float, default=5.0, show_default=True,
              help="Seconds without the controller and the storage before self-fencing.")
@click.option("--watchdog", "watchdog_path", type=click.Path(dir_okay=False), default=None,
              help="The watchdog device to feed (/dev/watchdog).")
@click.option("--watchdog-timeout", type=float, default=10.0, show_default=True,
              help="The device's timeout: it resets the host this long after the last feed.")
@click.option("--fake-watchdog", is_flag=True,
              help="A watchdog that only logs when it would reset the host (lab, tests).")
@click.option("--isolation-response", type=click.Choice(["none", "stop"]), default="none",
              show_default=True, help="stop: destroy the local VMs when isolated.")
@click.option("--isolation-time", type=float, default=10.0, show_default=True,
              help="Seconds without the controller (storage working) before the response.")
@click.option("--libvirt-uri", default="qemu:///system", show_default=True,
              help="The local libvirtd, for the isolation response.")
def agent(host_name: str, datastore: str, controller: str, period: float, loss_timeout: float,
          watchdog_path: str | None, watchdog_timeout: float, fake_watchdog: bool,
          isolation_response: str, isolation_time: float, libvirt_uri: str) -> None:
    """Run the host agent: the storage heartbeat and the watchdog (docs/ha.md).

    Writes DATASTORE/.lazarus-heartbeat/HOST.hb every period and feeds the watchdog while
    the controller or the storage answers; it never calls the API (no credentials).

    \b
    Example: lazarus agent --host node1 --datastore /var/lib/one/datastores/0 \\
                 --controller 10.0.0.1:2633 --watchdog /dev/watchdog
    """
    from lazarus.app.agent import main as agent_main

    argv = ["--host", host_name, "--datastore", datastore, "--controller", controller,
            "--period", str(period), "--loss-timeout", str(loss_timeout),
            "--watchdog-timeout", str(watchdog_timeout),
            "--isolation-response", isolation_response,
            "--isolation-time", str(isolation_time), "--libvirt-uri", libvirt_uri]
    if watchdog_path:
        argv += ["--watchdog", watchdog_path]
    if fake_watchdog:
        argv.append("--fake-watchdog")
    try:
        code = agent_main(argv)
    except ValueError as exc:  # AgentConfig's refusals
        raise CliError(str(exc)) from exc
    raise SystemExit(code)


def _lab_available() -> tuple[bool, str]:
    """The demo's two compositions live in app/ (simulated) and lab/ (above app/); the choice
    between them is made here, above both."""
    try:
        from lazarus.lab.demo import lab_available
    except ImportError as exc:
        return False, f"the lab is not available ({exc})"
    return lab_available()


for _group in (host, vm, datastore, sim, db):
    lazarus.add_command(_group)


def _mount_optional() -> None:
    """Groups other modules provide; a missing module only means a missing command."""
    for module_name, attr in OPTIONAL_GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        command = getattr(module, attr, None)
        if isinstance(command, click.Command):
            lazarus.add_command(command, attr)


_mount_optional()


def main() -> None:
    """The console script."""
    lazarus(prog_name="lazarus")


if __name__ == "__main__":
    main()
