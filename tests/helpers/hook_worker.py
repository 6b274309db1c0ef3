"""A hook manager in its own process, which SIGKILLs itself at a chosen kill point.

    python tests/helpers/hook_worker.py DB EVENTS KILL_POINT N

Opens the SQLite store DB, records EVENTS new events (host ERROR / VM UNKNOWN transitions,
each in its own transaction, as the journal does), then runs the real HookManager with the
real SubprocessHookExecutor until every event is dispatched and every job has finished, and
exits 0. With KILL_POINT it sends itself SIGKILL the N-th time the run passes that point:

    event      after an event's transaction committed (before any dispatch)
    dispatch   after a dispatch transaction (jobs + cursor) committed
    running    after a job was marked running, before its command starts
    executed   after a command finished, before its record is stored
    recorded   after a record was stored and its job deleted

Used by tests/integration/test_hooks_sigkill.py (the at-least-once / exactly-once loop).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from lazarus.core.hooks import CURSOR, HookManager
from lazarus.core.settings import Settings
from lazarus.domain.entities import Event
from lazarus.domain.hooks import ExecutionResult
from lazarus.drivers.clock import SystemClock
from lazarus.drivers.hooks.subprocess import SubprocessHookExecutor
from lazarus.ports.hooks import HookRequest, HookStore
from lazarus.ports.store import Store
from lazarus.store.url import open_store


class Killer:
    def __init__(self, point: str, nth: int) -> None:
        self.point, self.nth, self.seen = point, nth, 0

    def at(self, point: str) -> None:
        if point == self.point:
            self.seen += 1
            if self.seen == self.nth:
                os.kill(os.getpid(), signal.SIGKILL)


class _TxSpy:
    def __init__(self, tx: Any) -> None:
        self._tx = tx
        self.calls: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.calls.add(name)
        return getattr(self._tx, name)


class KillingStore:
    """The store, telling the killer what each committed transaction did."""

    def __init__(self, store: Store, killer: Killer) -> None:
        self._store = store
        self._killer = killer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._store.transaction() as tx:
            spy = _TxSpy(tx)
            yield spy
        calls = spy.calls
        if "add_hook_record" in calls and "delete_hook_job" in calls:
            self._killer.at("recorded")
        elif "add_hook_job" in calls and "set_meta" in calls:
            self._killer.at("dispatch")
        elif calls == {"save_hook_job"}:
            self._killer.at("running")


class KillingExecutor:
    def __init__(self, inner: SubprocessHookExecutor, killer: Killer) -> None:
        self.inner, self.killer = inner, killer

    async def run(self, request: HookRequest) -> ExecutionResult:
        result = await self.inner.run(request)
        self.killer.at("executed")
        return result


def record_events(store: Store, count: int, killer: Killer, clock: SystemClock) -> None:
    for index in range(count):
        host = index % 3 != 2
        event = Event(
            kind="state", line=f"event {index}", obj="HOST" if host else "VM", obj_id=index,
            state="ERROR" if host else "ACTIVE", lcm_state="" if host else "UNKNOWN",
            body=f"<{'HOST' if host else 'VM'}><ID>{index}</ID></{'HOST' if host else 'VM'}>",
        )
        with store.transaction() as tx:
            event.time = clock.now()
            tx.record(event)
        killer.at("event")


async def drain(manager: HookManager, store: Store) -> None:
    task = asyncio.get_running_loop().create_task(manager.run())
    try:
        while True:
            await asyncio.sleep(0.02)
            if task.done():
                task.result()
            cursor = int(store.get_meta(CURSOR) or 0)
            if cursor >= store.last_event_id() and not store.hook_jobs():
                return
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def main(argv: list[str]) -> int:
    """argv: WORKDIR EVENTS POINT NTH [STORE_URL]: the store is STORE_URL (store/url.py;
    default sqlite:WORKDIR/lazarus.db), the hook commands are in WORKDIR/hooks."""
    workdir, events, point, nth = Path(argv[0]), int(argv[1]), argv[2], int(argv[3])
    url = argv[4] if len(argv) > 4 else f"sqlite:{workdir / 'lazarus.db'}"
    killer = Killer(point, nth)
    store = open_store(url, data_dir=workdir)
    clock = SystemClock()
    settings = Settings(hook_concurrency=3, hook_log_retention=100_000)
    executor = KillingExecutor(SubprocessHookExecutor(workdir / "hooks"), killer)
    manager = HookManager(cast(HookStore, KillingStore(store, killer)), clock, executor, settings)
    record_events(store, events, killer, clock)
    asyncio.run(drain(manager, store))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
