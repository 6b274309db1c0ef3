"""A controller (not started) behind the real API stack with users in every role, for the
authorization tests: oneadmin, a readonly user, the HA user (its login token), alice (group
users, owner of VMs 0 and 1) and bob (group users).

    with RoleWorld() as w:
        w.call("alice", "one.vm.action", "poweroff", 0)   # the result array
"""

from __future__ import annotations

import asyncio
from typing import Any

from lazarus.api.auth import Authenticator, hash_password
from lazarus.api.roles import ensure_roles, issue_ha_token
from lazarus.api.stack import build_dispatcher
from lazarus.core.controller import Controller
from lazarus.core.settings import Settings
from lazarus.domain.entities import User
from lazarus.domain.template import Template
from lazarus.drivers.clock import VirtualClock, VirtualEventLoop
from lazarus.drivers.hooks.fake import FakeHookExecutor
from lazarus.drivers.vmm.sim import SimCluster, SimHypervisor
from lazarus.store.sqlite import SqliteStore

FENCE_KEY = "k" * 32
ROLES = ("oneadmin", "reader", "ha", "alice", "bob")
VM_TEXT = 'NAME = "{name}"\nCPU = "0.5"\nMEMORY = "64"\n'


class RoleWorld:
    def __init__(self) -> None:
        self.loop = VirtualEventLoop()
        self.clock = VirtualClock(self.loop)
        self.sim = SimCluster(self.clock)
        self.store = SqliteStore.memory()
        self.controller = Controller(
            self.store,
            self.clock,
            {"sim": SimHypervisor(self.sim)},
            Settings(),
            hook_executor=FakeHookExecutor(self.clock),
        )
        with self.store.transaction() as tx:
            tx.add_user(User(id=-1, name="oneadmin", password_hash=hash_password("adminpw")))
        self.roles = ensure_roles(self.store)
        self.sessions = {"oneadmin": "oneadmin:adminpw", "ha": issue_ha_token(self.store)}
        with self.store.transaction() as tx:
            for name, gid, gname in (
                ("reader", self.roles.readonly_gid, "readonly"),
                ("alice", 1, "users"),
                ("bob", 1, "users"),
            ):
                tx.add_user(
                    User(
                        id=-1,
                        name=name,
                        password_hash=hash_password(name + "pw"),
                        gid=gid,
                        gname=gname,
                    )
                )
                self.sessions[name] = f"{name}:{name}pw"
        self.uid = {u.name: u.id for u in self.store.users()}
        self.dispatcher = build_dispatcher(
            self.controller,
            Authenticator(self.store.user_by_name, self.clock.now),
            run=self.run_fn,
            fence_key=FENCE_KEY,
        )
        for name in ("node1", "node2"):
            self.sim.add_host(name, 800, 8 * 1024 * 1024)
            self.run_fn(lambda n=name: self.controller.inventory.allocate_host(n, "sim", "sim"))
        for name in ("a0", "a1"):
            template = Template.parse(VM_TEXT.format(name=name))
            self.run_fn(
                lambda t=template: self.controller.lifecycle.allocate(
                    t, True, self.uid["alice"], (1, "alice", "users")
                )
            )
        hook = 'NAME = "h0"\nTYPE = "api"\nCOMMAND = "/bin/true"\nCALL = "one.vm.allocate"\n'
        assert self.call("oneadmin", "one.hook.allocate", hook)[0] is True
        assert self.call("oneadmin", "one.template.allocate", VM_TEXT.format(name="t0"))[0]

    def run_fn(self, fn: Any) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self.loop.run_until_complete(wrapper())

    def call(self, role: str, method: str, *params: object) -> list[Any]:
        return self.dispatcher.call(method, [self.sessions[role], *params])

    def close(self) -> None:
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    def __enter__(self) -> RoleWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
