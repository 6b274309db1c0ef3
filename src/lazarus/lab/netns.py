"""The lab's network: a bridge in its own namespace, one veth per host, one into the root netns.

Used by lab.lab. Topology (names carry the lab's prefix, e.g. "lz3fa2", so two labs never
collide and `down` finds every object it made):

    netns <p>-lan:  bridge br0, ports hv1, hv2, ... and ctl
    netns <p>-hvN:  eth0 = 10.250.0.N/24 (peer of port hvN)
    root netns:     <p>-ctl = 10.250.0.10/24 (peer of port ctl): a controller in the root
                    netns reaches every host's libvirtd over qemu+tcp through it

Cutting a host's cable sets its bridge port down (the host keeps its address and routes, as a
pulled cable at the switch would leave it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lazarus.lab.proc import run

NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
HOST_IF = "eth0"
CTL_PORT = "ctl"


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns(prefix: str) -> list[str]:
    """Named network namespaces whose name starts with `prefix`."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def root_links(prefix: str) -> list[str]:
    """Links in the root network namespace whose name starts with `prefix`."""
    links = json.loads(run(["ip", "-j", "link", "show"]) or "[]")
    return sorted(str(link["ifname"]) for link in links if str(link["ifname"]).startswith(prefix))


def root_addresses() -> list[str]:
    """Every IPv4 address (without prefix length) configured in the root network namespace."""
    found = []
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        for info in link.get("addr_info", []):
            found.append(str(info["local"]))
    return found


def ensure_lan(lan: str) -> None:
    """Create the LAN namespace with its bridge (idempotent)."""
    if not exists(lan):
        run(["ip", "netns", "add", lan])
    run(["ip", "-n", lan, "link", "set", "lo", "up"])
    if run(["ip", "-n", lan, "link", "show", BRIDGE], check=False) == "":
        run(["ip", "-n", lan, "link", "add", BRIDGE, "type", "bridge"])
        # Forward at once (no STP listening/learning delay for new ports).
        run(["ip", "-n", lan, "link", "set", BRIDGE, "type", "bridge", "forward_delay", "0"])
    run(["ip", "-n", lan, "link", "set", BRIDGE, "up"])


def add_host(lan: str, host_ns: str, port: str, cidr: str) -> None:
    """Create the host's namespace and plug it into the bridge as `port` with address `cidr`."""
    if not exists(host_ns):
        run(["ip", "netns", "add", host_ns])
    if run(["ip", "-n", lan, "link", "show", port], check=False) == "":
        run(
            ["ip", "link", "add", HOST_IF, "netns", host_ns, "type", "veth",
             "peer", "name", port, "netns", lan]
        )  # fmt: skip
        run(["ip", "-n", host_ns, "addr", "add", cidr, "dev", HOST_IF])
    run(["ip", "-n", lan, "link", "set", port, "master", BRIDGE, "up"])
    run(["ip", "-n", host_ns, "link", "set", HOST_IF, "up"])
    run(["ip", "-n", host_ns, "link", "set", "lo", "up"])


def add_root_link(lan: str, link: str, cidr: str) -> None:
    """A veth from the root netns (`link`, address `cidr`) to the bridge (port `ctl`)."""
    if link not in root_links(link):
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", CTL_PORT, "netns", lan])
        run(["ip", "addr", "add", cidr, "dev", link])
    run(["ip", "-n", lan, "link", "set", CTL_PORT, "master", BRIDGE, "up"])
    run(["ip", "link", "set", link, "up"])


def set_port(lan: str, port: str, up: bool) -> None:
    """Plug (up) or pull (down) the cable of bridge port `port`."""
    run(["ip", "-n", lan, "link", "set", port, "up" if up else "down"])


def port_is_up(lan: str, port: str) -> bool:
    out = json.loads(run(["ip", "-j", "-n", lan, "link", "show", port], check=False) or "[]")
    return bool(out) and "UP" in out[0].get("flags", [])


def delete_root_link(link: str) -> None:
    run(["ip", "link", "del", link], check=False)


def delete_netns(name: str) -> None:
    run(["ip", "netns", "del", name], check=False)
