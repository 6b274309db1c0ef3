"""`lazarus sim ...`: break and repair the daemon's simulated hosts (hosts with VM_MAD "sim").

For the demo and for operators trying Lazarus without hardware: a thin shell over the
lazarus.sim.* methods of the daemon (app/sim_api.py). HOST is the host's name.
"""

from __future__ import annotations

import click

from .context import Api, pass_api
from .simcmd import fuzz, run


@click.group()
def sim() -> None:
    """Power off, cut off or hang simulated hosts (VM_MAD "sim").

    \b
    Example: lazarus sim power node2 off
    """


@sim.command()
@click.argument("host_name", metavar="HOST")
@click.argument("action", type=click.Choice(["on", "off", "status"]))
@pass_api
def power(api: Api, host_name: str, action: str) -> None:
    """Power a simulated host on or off (its VMs die with it), or print its power state.

    \b
    Example: lazarus sim power node2 off
    """
    state = api.call("lazarus.sim.power", host_name, action)
    click.echo(f"{host_name}: power {state}")


@sim.command()
@click.argument("host_name", metavar="HOST")
@click.argument("action", type=click.Choice(["cut", "restore"]))
@pass_api
def network(api: Api, host_name: str, action: str) -> None:
    """Cut a simulated host off the network (its VMs keep running), or restore it.

    \b
    Example: lazarus sim network node2 cut
    """
    api.call("lazarus.sim.network", host_name, action)
    click.echo(f"{host_name}: network {'cut' if action == 'cut' else 'restored'}")


@sim.command()
@click.argument("host_name", metavar="HOST")
@click.argument("action", type=click.Choice(["on", "off"]))
@pass_api
def hang(api: Api, host_name: str, action: str) -> None:
    """Make a simulated host's hypervisor hang (probes time out), or un-hang it.

    \b
    Example: lazarus sim hang node2 on
    """
    api.call("lazarus.sim.hang", host_name, action == "on")
    click.echo(f"{host_name}: {'hung' if action == 'on' else 'answering'}")


# The in-process simulator (cli/simcmd.py): no daemon needed.
sim.add_command(run)
sim.add_command(fuzz)
