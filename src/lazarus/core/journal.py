"""The journal: every state change goes through here, inside one store transaction.

    with journal.tx() as t:
        vm = t.store.vm(5)
        t.vm_state(vm, (VmState.ACTIVE, LcmState.RUNNING), "deploy ok on host/1 node1")

`vm_state` / `host_state` change the object, save it and record the Event (with the object's
XML at that instant, for hooks' $TEMPLATE) in the same transaction. The fixed, greppable line
(`vm/5 web: ACTIVE/BOOT => ACTIVE/RUNNING (deploy ok on host/1 node1)`) is logged once, after
the commit, and listeners (monitor, scheduler, hook manager) are told which events landed.
Every event is typed (domain/entities.py EventKind, ObjType): listeners read its fields; the
line is output only, so rewording one changes no behaviour (tests/unit/test_event_fields.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from lazarus.domain import xml as docs
from lazarus.domain.entities import VM, Cluster, Datastore, Event, EventKind, Host, ObjType
from lazarus.domain.secrets import mask_words
from lazarus.domain.states import HostState, LcmState, VmState, vm_state_name
from lazarus.ports.clock import Clock
from lazarus.ports.store import Store, StoreTx

log = logging.getLogger("lazarus.events")

Listener = Callable[[list[Event]], None]
Subject = VM | Host | Datastore | Cluster
_OBJ_TYPES: dict[type, ObjType] = {
    VM: ObjType.VM, Host: ObjType.HOST, Datastore: ObjType.DATASTORE, Cluster: ObjType.CLUSTER
}


@dataclass
class Tx:
    store: StoreTx
    clock: Clock
    events: list[Event] = field(default_factory=list)

    def _record(self, event: Event) -> None:
        event.line = mask_words(event.line)  # lines are logged and shown: the one rule
        event.time = self.clock.now()
        event.id = self.store.record(event)
        self.events.append(event)

    def vm_state(self, vm: VM, target: tuple[VmState, LcmState], reason: str) -> bool:
        """Move `vm` to `target`; False (and nothing written) when it is already there."""
        state, lcm = target
        if state is not VmState.ACTIVE:
            lcm = LcmState.LCM_INIT
        if (vm.state, vm.lcm_state) == (state, lcm):
            return False
        before = vm_state_name(vm.state, vm.lcm_state)
        vm.prev_state, vm.prev_lcm_state = vm.state, vm.lcm_state
        vm.state, vm.lcm_state = state, lcm
        self.store.save_vm(vm)
        line = f"{vm.subject}: {before} => {vm_state_name(state, lcm)} ({reason})"
        self._record(
            Event(
                kind=EventKind.STATE,
                line=line,
                obj=ObjType.VM,
                obj_id=vm.id,
                state=state.name,
                lcm_state=lcm.name,
                body=docs.vm_xml(vm),
                host_id=-1 if vm.host_id is None else vm.host_id,
            )
        )
        return True

    def host_state(self, host: Host, state: HostState, reason: str) -> bool:
        if host.state is state:
            return False
        before = host.state
        host.prev_state, host.state = host.state, state
        self.store.save_host(host)
        line = f"{host.subject}: {before.name} => {state.name} ({reason})"
        self._record(
            Event(
                kind=EventKind.STATE,
                line=line,
                obj=ObjType.HOST,
                obj_id=host.id,
                state=state.name,
                body=docs.host_xml(host),  # secrets masked, as every document
            )
        )
        return True

    def vm_flag(self, vm: VM, name: str, value: int, reason: str) -> None:
        """A flag change that is not a state change (RESCHED): saved and recorded."""
        self.store.save_vm(vm)
        self._record(
            Event(kind=EventKind.FLAG, line=f"{vm.subject}: {name}={value} ({reason})",
                  obj=ObjType.VM, obj_id=vm.id, state=vm.state.name,
                  lcm_state=vm.lcm_state.name, flag=name, value=str(value))
        )

    def note(self, about: Subject, text: str, kind: EventKind = EventKind.NOTE) -> None:
        """A fact that is not a state change, about one object: NOTE (e.g. 'cleanup
        skipped: host in ERROR'), or a typed one (TEMPLATE, CREATED, ...) listeners act on."""
        if kind in (EventKind.STATE, EventKind.FLAG, EventKind.API_CALL):
            raise ValueError(f"note() records no {kind.name} event")
        self._record(Event(kind=kind, line=f"{about.subject}: {text}",
                           obj=_OBJ_TYPES[type(about)], obj_id=about.id))


class Journal:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.listeners: list[Listener] = []

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        with self.store.transaction() as stx:
            t = Tx(stx, self.clock)
            yield t
        for event in t.events:
            log.info(event.line)
        if t.events:
            for listener in self.listeners:
                try:
                    listener(t.events)
                except Exception:  # the change is committed: a listener bug must not undo
                    log.exception("journal listener %r failed", listener)  # the caller's success
