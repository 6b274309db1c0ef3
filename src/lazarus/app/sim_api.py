"""`lazarus.sim.*`: XML-RPC methods that operate the daemon's simulated cluster.

The demo and operators trying Lazarus without hardware use them to break simulated hosts the
way real ones break; the `fence_sim` agent (app/fence_sim_agent.py) powers hosts off through
`lazarus.sim.power`, so simulated hosts are fenced through the same agent protocol as real
BMCs. Hosts created with VM_MAD=sim get a simulated machine of the same name automatically.
Like every method, these need an authenticated session.
"""

from __future__ import annotations

import json
from pathlib import Path

from lazarus.api.methods import Runner, direct
from lazarus.api.xmlrpc import CallContext, Registry
from lazarus.core.controller import Controller
from lazarus.domain.entities import Host
from lazarus.domain.errors import NoExistsError, RpcApiError
from lazarus.drivers.vmm.sim import SimCluster

DEFAULT_CPU = 800  # 8 cores
DEFAULT_MEMORY_KIB = 16 * 1024 * 1024


class SimApi:
    def __init__(
        self,
        sim: SimCluster,
        controller: Controller,
        run: Runner = direct,
        state_file: Path | None = None,
    ) -> None:
        self.sim = sim
        self.controller = controller
        self.run = run
        self.state_file = state_file
        controller.inventory.on_host_created.append(self._provision)
        if state_file is not None:
            self._load(state_file)
            sim.watchers.append(lambda *_: self._save())
        for host in controller.store.hosts():  # hosts older than the state file
            self._provision(host)

    def _load(self, path: Path) -> None:
        """Simulated machines outlive the controller, like real ones: their state (power,
        network, running domains) is kept in the data directory across daemon restarts."""
        if path.exists():
            self.sim.restore(json.loads(path.read_text()))

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.sim.snapshot()))
        tmp.replace(self.state_file)

    def _provision(self, host: Host) -> None:
        if host.vm_mad == "sim" and host.name not in self.sim.hosts:
            cpu = host.template.get_int("SIM_CPU", DEFAULT_CPU)
            mem = host.template.get_int("SIM_MEMORY", DEFAULT_MEMORY_KIB)
            self.sim.add_host(host.name, cpu, mem)

    def _known(self, name: str) -> str:
        if name not in self.sim.hosts:
            raise NoExistsError(f"Error getting simulated host [{name}].")
        return name

    def power(self, ctx: CallContext, name: str, action: str) -> str:
        """action: on | off | status -> the power state after the action ("on"/"off")."""
        self._known(name)
        if action == "off":
            self.run(lambda: self.sim.power_off(name))
        elif action == "on":
            self.run(lambda: self.sim.power_on(name))
        elif action != "status":
            raise RpcApiError(f"power action must be on, off or status, not {action!r}")
        return self.sim.power_state(name)

    def network(self, ctx: CallContext, name: str, action: str) -> str:
        """action: cut | restore (the host's VMs keep running while it is cut off)."""
        self._known(name)
        if action == "cut":
            self.run(lambda: self.sim.cut_network(name))
        elif action == "restore":
            self.run(lambda: self.sim.restore_network(name))
        else:
            raise RpcApiError(f"network action must be cut or restore, not {action!r}")
        return action

    def hang(self, ctx: CallContext, name: str, hung: bool) -> bool:
        self._known(name)
        self.run(lambda: self.sim.hang(name) if hung else self.sim.unhang(name))
        return hung

    def running(self, ctx: CallContext, vm_id: int) -> str:
        """Ground truth: space-separated simulated hosts where the VM runs right now."""
        return " ".join(self.sim.running_hosts(vm_id))

    def register(self, registry: Registry) -> None:
        registry.register("lazarus.sim.power", self.power, "A:sss")
        registry.register("lazarus.sim.network", self.network, "A:sss")
        registry.register("lazarus.sim.hang", self.hang, "A:ssb")
        registry.register("lazarus.sim.running", self.running, "A:si")


