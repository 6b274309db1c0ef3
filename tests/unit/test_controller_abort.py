"""Controller.abort(): the simulator's controller crash (sim/world.py) as a public operation.

Every task ends at once and nothing more happens in the old controller's name; a new
Controller on the same store resumes the interrupted work, as after a SIGKILL and restart."""

from __future__ import annotations

import asyncio

from helpers.core import Harness
from lazarus.core.controller import Controller
from lazarus.domain.entities import Event
from lazarus.domain.states import LcmState, VmState


def test_abort_ends_every_task_and_a_new_controller_resumes() -> None:
    with Harness(hosts=2) as h:
        h.monitored()
        vm_id = h.create_vm()
        h.wait_for(lambda: h.state(vm_id)[0] is VmState.ACTIVE)
        interrupted = h.state(vm_id)
        assert interrupted[1] is not LcmState.RUNNING  # a driver step is in flight
        heard: list[list[Event]] = []
        h.controller.journal.listeners.append(heard.append)

        h.run(h.controller.abort())
        h.started = False
        assert [t for t in asyncio.all_tasks(h.loop) if not t.done()] == []
        h.advance(60)  # nobody drives the VM, nobody hears of anything
        assert h.state(vm_id) == interrupted
        assert heard == []

        h.controller = Controller(h.store, h.clock, {"sim": h.driver}, h.settings)
        h.run(h.controller.start())
        h.started = True
        h.wait_for(lambda: h.state(vm_id) == (VmState.ACTIVE, LcmState.RUNNING))
