"""`lazarus lab`: bring up, inspect, break and tear down the lab of real qemu hosts (root only).

A thin click group over `lazarus.lab.Lab`; the main CLI mounts it as `lazarus lab`. Every
command takes `--dir` (default $LAZARUS_LAB_DIR or /tmp/lazarus-lab), so any shell can operate
or remove a lab another one brought up. Output is plain text; `status --json` is for scripts
(and for registering the hosts in a controller: each host has LIBVIRT_URI and MIGRATE_URI).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from lazarus.lab import FAIL_MODES, Lab, LabError, LabStatus, missing_requirements
from lazarus.lab.lab import DEFAULT_SUBNET

DEFAULT_DIR = "/tmp/lazarus-lab"
F = TypeVar("F", bound=Callable[..., Any])


def _dir_option(func: F) -> F:
    option = click.option(
        "--dir",
        "root_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=lambda: os.environ.get("LAZARUS_LAB_DIR", DEFAULT_DIR),
        show_default="$LAZARUS_LAB_DIR or " + DEFAULT_DIR,
        help="The lab's directory (state, host files, shared datastore).",
    )
    return option(func)


def _lab(root_dir: Path, *, full: bool = False, subnet: str = DEFAULT_SUBNET) -> Lab:
    not_root = [] if os.geteuid() == 0 else ["must run as root"]
    problems = missing_requirements() if full else not_root
    if problems:
        raise click.ClickException("the lab cannot run here: " + "; ".join(problems))
    try:
        return Lab(root_dir, subnet=subnet)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc


def _print_status(st: LabStatus) -> None:
    if not st.up:
        click.echo(f"no lab is up in {st.root_dir}")
        return
    click.echo(f"lab {st.root_dir} (prefix {st.prefix}), controller side {st.controller_address}")
    click.echo(f"datastore {st.datastore} (guest image {Path(st.image).name})")
    rows = [("HOST", "ADDRESS", "POWER", "FAULT", "LIBVIRTD", "QEMUS", "LIBVIRT_URI",
             "MIGRATE_URI")]  # fmt: skip
    for h in st.hosts:
        daemon = "-"
        if h.libvirtd_pid:
            daemon = f"{h.libvirtd_pid} {'up' if h.libvirtd_alive else 'gone'}"
        qemus = len([p for p in h.pids if p != h.libvirtd_pid])
        rows.append((h.name, h.address, h.power, h.fault or "-", daemon, str(qemus),
                     h.libvirt_uri, h.migrate_uri))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@click.group()
def lab() -> None:
    """Real qemu/libvirt hosts in network namespaces on this machine (needs root).

    Example: lazarus lab up --hosts 3 && lazarus lab status && lazarus lab down
    """


@lab.command()
@click.option("--hosts", "count", type=click.IntRange(1, 9), default=3, show_default=True,
              help="How many hosts (each a namespace with its own libvirtd).")
@click.option(
    "--subnet",
    default=DEFAULT_SUBNET,
    show_default=True,
    help="First three octets of the lab's /24 (hosts .1.., controller side .10).",
)
@_dir_option
def up(count: int, subnet: str, root_dir: Path) -> None:
    """Bring up COUNT hosts (hv1.. at 10.250.0.1..), each with its own libvirtd.

    Example: lazarus lab up --hosts 2 --dir /tmp/mylab
    """
    started = time.monotonic()
    try:
        st = _lab(root_dir, full=True, subnet=subnet).up(count)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"lab up: {len(st.hosts)} hosts in {time.monotonic() - started:.1f} s")
    _print_status(st)


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full status as JSON.")
@_dir_option
def status(as_json: bool, root_dir: Path) -> None:
    """Show the hosts, their power, faults, processes and URIs.

    Example: lazarus lab status --json
    """
    st = _lab(root_dir).status()
    if as_json:
        click.echo(json.dumps(st.as_dict(), indent=2))
    else:
        _print_status(st)


@lab.command()
@_dir_option
def down(root_dir: Path) -> None:
    """Kill every lab process and remove its mounts, namespaces and links.

    Example: lazarus lab down --dir /tmp/mylab
    """
    try:
        _lab(root_dir).down()
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"lab down: {root_dir}")


@lab.command()
@click.argument("host")
@click.option("--power", "mode", flag_value="power", help="Power cut: kill libvirtd + qemus.")
@click.option("--network", "mode", flag_value="network", help="Cable pulled; VMs keep running.")
@click.option("--hang", "mode", flag_value="hang", help="SIGSTOP the host's libvirtd.")
@_dir_option
def fail(host: str, mode: str | None, root_dir: Path) -> None:
    """Inject a fault into HOST.

    Example: lazarus lab fail hv2 --network
    """
    if mode not in FAIL_MODES:
        raise click.UsageError("say how to fail: --power, --network or --hang")
    try:
        _lab(root_dir).fail(host, mode)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{host}: {mode} fault injected")


def _act(root_dir: Path, host: str, method: str, done: str) -> None:
    try:
        getattr(_lab(root_dir), method)(host)
    except LabError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{host}: {done}")


@lab.command("power-on")
@click.argument("host")
@_dir_option
def power_on(host: str, root_dir: Path) -> None:
    """Boot HOST (its persistent domains come back shut off, none autostarts).

    Example: lazarus lab power-on hv2
    """
    _act(root_dir, host, "power_on", "powered on")


@lab.command("power-off")
@click.argument("host")
@_dir_option
def power_off(host: str, root_dir: Path) -> None:
    """Cut HOST's power (the same as fail --power).

    Example: lazarus lab power-off hv2
    """
    _act(root_dir, host, "power_off", "powered off")


@lab.command()
@click.argument("host")
@_dir_option
def repair(host: str, root_dir: Path) -> None:
    """Undo a fault on HOST: cable plugged back, libvirtd resumed, or powered on.

    Example: lazarus lab repair hv2
    """
    _act(root_dir, host, "repair", "repaired")


@lab.command()
@click.option("--quick", is_flag=True, help="Only check root and the needed programs.")
@click.option("--vms", "vm_count", type=click.IntRange(1, 60), default=6, show_default=True,
              help="Tiny guests to run before the failure.")
@click.option("--fence", type=click.Choice(["redfish", "ipmi"]), default="redfish",
              show_default=True, help="Which BMC powers the host off and fences it.")
def check(quick: bool, vm_count: int, fence: str) -> None:
    """Check the lab end to end: a failover on real hosts, timed.

    Brings up 3 hosts with BMCs under a real `lazarus serve` (default settings, the shipped
    HA hook: ft/host_error -m -p 5), runs VMs, powers the host with the most VMs off through
    its BMC, waits for its VMs to run elsewhere and brings everything down. The last line is the
    seconds from the power-off to all its VMs RUNNING; exit 0 only if all came back.

    Example: lazarus lab check
    """
    problems = missing_requirements()
    if problems:
        raise click.ClickException("the lab cannot run here: " + "; ".join(problems))
    click.echo("requirements: ok")
    if quick:
        return
    from lazarus.lab.demo import follow_failover
    from lazarus.lab.e2e import LabCluster

    seconds: float | None = None
    with tempfile.TemporaryDirectory(prefix="lazarus-lab-check-", dir="/tmp") as tmp:
        started = time.monotonic()
        try:
            with LabCluster(Path(tmp), hosts=3, fence=fence, subnet="10.250.254") as cl:
                click.echo(f"3-host lab, {fence} BMCs and controller up in "
                           f"{time.monotonic() - started:.1f} s")  # fmt: skip
                views = cl.wait_running(cl.create_vms(vm_count), timeout=120)
                counts: dict[str, list[int]] = {}
                for v in views:
                    counts.setdefault(v.host, []).append(v.id)
                victim = max(sorted(counts), key=lambda h: len(counts[h]))
                click.echo(f"{vm_count} VMs RUNNING; powering {victim} off through its BMC "
                           f"(VMs {', '.join(map(str, counts[victim]))})")  # fmt: skip
                fault_at = time.monotonic()
                cl.bmc_power_off(victim)
                seconds = follow_failover(cl, victim, counts[victim], fault_at, click.echo)
                if seconds is None:
                    click.echo(cl.hook_log())
        except LabError as exc:
            raise click.ClickException(f"lab check failed: {exc}") from exc
    click.echo("lab down")
    if seconds is None:
        raise click.ClickException("lab check failed: the VMs did not all come back")
    click.echo(f"{seconds:.2f} s from power-off to all VMs RUNNING")
