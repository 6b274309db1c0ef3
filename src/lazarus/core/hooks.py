"""The hook manager: matches recorded events to hooks and runs them, never losing one.

The events table is the outbox. Every state change is recorded with its Event in the same
transaction (core/journal.py); API calls someone hooked are recorded as
Event(kind=API_CALL, method=...) by
`record_api` before the caller gets its answer. The manager keeps a cursor (meta key
`hooks.cursor`) of the last event it has dispatched:

    dispatch:  one transaction = a pending HookJob per matching hook + the cursor moved on
    run:       job marked running (attempt += 1) -> command runs (executor port) ->
               one transaction = ExecutionRecord stored + job deleted
    start:     jobs found running were interrupted by a crash: each gets a record with
               CODE -1 ("Interrupted ...") and runs again; pending jobs simply run

So a SIGKILL at any point loses no event and runs no hook twice for one event, except an
execution that was running when the controller died: that one is recorded as interrupted and
run again (at-least-once; docs/hooks.md). LAZARUS_HOOK_EXECUTION="<hook id>:<job id>" is the
same for every run of one job, so a hook can make itself idempotent.

At most `settings.hook_concurrency` commands run at once in each of two lanes: HA hooks
(state hooks on hosts such as ft/host_error, or HA = YES) and all others; HA jobs start
first. Hook CRUD (the one.hook.* API, core/hook_crud.py mixed in here)
goes through this object on the controller's loop thread, which also keeps the in-memory
index (key -> hooks) and `hooked_calls`, read by the API observer from HTTP threads.

Built by core/controller.py when a HookExecutor is given; the executor (drivers/hooks/) is the
only place that starts processes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Collection
from typing import TypeGuard

from lazarus.domain.entities import Event, EventKind, ObjType
from lazarus.domain.errors import NoExistsError
from lazarus.domain.hooks import (
    INTERRUPTED_CODE,
    PENDING,
    RUNNING,
    ExecutionRecord,
    ExecutionResult,
    Hook,
    HookJob,
    b64,
    event_key,
    substitute,
)
from lazarus.domain.secrets import mask_bytes, mask_words
from lazarus.ports.clock import Clock
from lazarus.ports.hooks import HookExecutor, HookRequest, HookStore, HookTx
from lazarus.ports.store import Store

from .hook_crud import HookCrud, bounded
from .settings import Settings
from .waits import within

log = logging.getLogger("lazarus.hooks")

CURSOR = "hooks.cursor"
BATCH = 500
POLL_INTERVAL = 5.0  # also picks up events recorded without telling the manager
STORE_RETRY_FIRST, STORE_RETRY_MAX = 1.0, 60.0  # backoff of writes the store refused
_HOOKED_KINDS = (EventKind.STATE, EventKind.API_CALL)  # the kinds hooks can match (event_key)


def is_hook_store(store: object) -> TypeGuard[HookStore]:
    return isinstance(store, HookStore)


class HookManager(HookCrud):
    def __init__(
        self,
        store: HookStore,
        clock: Clock,
        executor: HookExecutor,
        settings: Settings,
        hosts: Store | None = None,
    ) -> None:
        self.store = store
        self.hosts = hosts  # host / VM lookups for REMOTE hooks
        self.clock = clock
        self.executor = executor
        self.settings = settings
        self.known_calls: Collection[str] | None = None  # set by the API once it registered
        self.hooked_calls: frozenset[str] = frozenset()
        self._index: dict[str, list[Hook]] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        self._ha_jobs: set[int] = set()  # the running jobs that hold an HA-lane slot
        self._by_id: dict[int, Hook] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.reload()

    # -- index --------------------------------------------------------------------------------
    def reload(self) -> None:
        index: dict[str, list[Hook]] = {}
        for hook in self.store.hooks():
            index.setdefault(hook.key, []).append(hook)
        self._index = index
        self._by_id = {h.id: h for hooks in index.values() for h in hooks}
        self.hooked_calls = frozenset(
            h.template.get("CALL") or "" for hooks in index.values() for h in hooks
            if h.type == "api"
        )

    def matching(self, event: Event) -> list[Hook]:
        key = event_key(event.kind, event.obj, event.state, event.lcm_state, event.method)
        if key is None:
            return []
        return [h for h in self._index.get(key, []) if event.id > h.since_event]

    # -- waking -------------------------------------------------------------------------------
    def notify(self, events: list[Event] | None = None) -> None:
        """Journal listener (and anything that recorded an event): dispatch soon."""
        if events is not None and not any(e.kind in _HOOKED_KINDS for e in events):
            return
        if self._wake is None or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        """The controller service: resume interrupted work, then dispatch and run forever."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self.reload()
        self.recover()
        try:
            delay = STORE_RETRY_FIRST
            while True:
                self._wake.clear()
                try:
                    while self.dispatch():
                        pass
                    self._start_jobs()
                except Exception as exc:  # the store fails: running hooks must go on
                    log.error("hooks: cannot dispatch events, retrying in %g s: %s", delay, exc)
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, STORE_RETRY_MAX)
                    continue
                delay = STORE_RETRY_FIRST
                try:
                    await within(self._wake.wait(), POLL_INTERVAL)
                except TimeoutError:
                    pass
        finally:
            tasks = list(self._running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._running.clear()
            self._ha_jobs.clear()

    def abort(self) -> list[asyncio.Task[None]]:
        """Cancel the running hook tasks without waiting (a crash: Controller.abort)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        return tasks

    def recover(self) -> int:
        """Jobs left running by a crash: record them as interrupted, queue them again."""
        interrupted = self.store.hook_jobs(RUNNING)
        if not interrupted:
            return 0
        with self.store.transaction() as tx:
            for job in interrupted:
                try:
                    hook = tx.hook(job.hook_id)
                except NoExistsError:
                    tx.delete_hook_job(job.id)
                    continue
                text = (
                    f"Interrupted: the controller stopped while this execution was running "
                    f"(attempt {job.attempt}, LAZARUS_HOOK_EXECUTION={job.execution_key}); "
                    "it runs again.\n"
                )
                result = ExecutionResult(hook.command, b"", text.encode(), INTERRUPTED_CODE)
                self._store_record(tx, job, result)
                job.status = PENDING
                tx.save_hook_job(job)
        log.warning("hooks: %d execution(s) interrupted by a restart; running them again",
                    len(interrupted))
        return len(interrupted)

    def dispatch(self) -> int:
        """Turn the next batch of events into jobs; the number of events consumed."""
        cursor = int(self.store.get_meta(CURSOR) or 0)
        if not self._index:
            last = self.store.last_event_id()
            if last > cursor:
                with self.store.transaction() as tx:
                    tx.set_meta(CURSOR, str(last))
                    self.prune(tx, last)
            return 0
        events = self.store.events(after_id=cursor, limit=BATCH)
        if not events:
            return 0
        with self.store.transaction() as tx:
            for event in events:
                for hook in self.matching(event):
                    tx.add_hook_job(self._job(hook, event))
            tx.set_meta(CURSOR, str(events[-1].id))
            self.prune(tx, events[-1].id)
        return len(events)

    def prune(self, tx: HookTx, cursor: int) -> None:
        """EVENT_RETENTION: drop the events the outbox has dispatched (id <= cursor) beyond the
        newest `event_retention` (the newest always stays: last_event_id reads it), and
        dispatched API events at once. The outbox is the only reader of old events; new
        readers must move this bound."""
        keep, last = self.settings.event_retention, tx.last_event_id()
        if keep > 0:
            tx.prune_events(min(cursor, last - keep))
        # A hooked call's event (obj API: its masked parameters, up to 256 KiB) has no
        # reader once dispatched (its jobs hold $API): it goes at once, whatever the setting.
        tx.prune_events(min(cursor, last - 1), obj="API")

    def _job(self, hook: Hook, event: Event) -> HookJob:
        encoded = b64(event.body) if event.body else ""
        if event.kind == EventKind.API_CALL:
            arguments = substitute(hook.arguments, api_b64=encoded)
        else:
            arguments = substitute(hook.arguments, template_b64=encoded)
        remote = self._remote_host(event) if hook.remote else ""
        return HookJob(
            id=-1,
            hook_id=hook.id,
            event_id=event.id,
            arguments=arguments,
            remote_host=remote,
            created=self.clock.now(),
        )

    def _remote_host(self, event: Event) -> str:
        """REMOTE_HOST: the host itself (its ADDRESS if set, else its name) for host hooks,
        the VM's current host for VM hooks; empty when unknown."""
        if self.hosts is None:
            return ""
        try:
            if event.obj == "HOST":
                host = self.hosts.host(event.obj_id)
                return host.template.get("ADDRESS") or host.name
            if event.obj == "VM":
                last = self.hosts.vm(event.obj_id).last
                return last.hostname if last is not None else ""
        except NoExistsError:
            return ""
        return ""

    def _start_jobs(self) -> None:
        """Start pending jobs in two lanes of `hook_concurrency` slots each: HA hooks
        (Hook.ha: ft/host_error) first and in their own lane, so a flood of API-hook jobs
        can never make a failover wait (500 of them once delayed one by a minute)."""
        cap = max(1, self.settings.hook_concurrency)
        ha_busy = len(self._ha_jobs)
        free = {True: cap - ha_busy, False: cap - (len(self._running) - ha_busy)}
        if free[True] <= 0 and free[False] <= 0:
            return
        pending = [job for job in self.store.hook_jobs(PENDING) if job.id not in self._running]
        for job in sorted(pending, key=lambda job: not self._is_ha(job)):  # stable: by id
            lane = self._is_ha(job)
            if free[lane] <= 0:
                continue
            task = asyncio.get_running_loop().create_task(self._execute(job))
            self._running[job.id] = task
            if lane:
                self._ha_jobs.add(job.id)
            free[lane] -= 1

    def _is_ha(self, job: HookJob) -> bool:
        hook = self._by_id.get(job.hook_id)
        return hook is not None and hook.ha

    async def _execute(self, job: HookJob) -> None:
        try:
            await self._execute_job(job)
        finally:
            self._done(job)

    async def _persist(self, what: str, write: Callable[[], None]) -> None:
        """Run a store write until it works. A failing store (full disk, read-only file) is
        logged at every attempt and retried with backoff, so a hook job is never left
        "running" with nobody to finish it (it was, until a restart, and held its slot)."""
        delay = STORE_RETRY_FIRST
        attempt = 1
        while True:
            try:
                write()
                if attempt > 1:
                    log.warning("hooks: %s written after %d attempts", what, attempt)
                return
            except Exception as exc:
                log.error("hooks: cannot write %s (attempt %d), retrying in %g s: %s",
                          what, attempt, delay, exc)
            await self.clock.sleep(delay)
            delay = min(delay * 2, STORE_RETRY_MAX)
            attempt += 1

    async def _execute_job(self, job: HookJob) -> None:
        try:
            hook = self.store.hook(job.hook_id)
        except NoExistsError:
            def drop() -> None:
                with self.store.transaction() as tx:
                    tx.delete_hook_job(job.id)

            await self._persist(f"the end of job {job.id}", drop)
            return
        if not hook.remote:
            job.remote_host = ""
        job.status = RUNNING
        job.attempt += 1

        def mark() -> None:
            with self.store.transaction() as tx:
                tx.save_hook_job(job)

        await self._persist(f"the start of job {job.id} (hook {hook.id})", mark)
        request = HookRequest(
            hook_id=hook.id,
            command=hook.command,
            arguments=job.arguments,
            stdin=hook.stdin,
            remote_host=job.remote_host if hook.remote else "",
            timeout=hook.timeout,
            env={
                "LAZARUS_HOOK_EXECUTION": job.execution_key,
                "LAZARUS_HOOK_ID": str(hook.id),
                "LAZARUS_HOOK_EVENT": str(job.event_id),
                "LAZARUS_HOOK_ATTEMPT": str(job.attempt),
            },
        )
        try:
            if hook.remote and not job.remote_host:
                text = "Internal error: no remote host for this remote hook (REMOTE = YES)\n"
                result = ExecutionResult(hook.command, b"", text.encode(), 255)
            else:
                result = await self.executor.run(request)
        except asyncio.CancelledError:
            raise  # stopping: the job stays running and is recorded as interrupted next start
        except Exception as exc:  # an executor bug must not lose the record
            log.exception("hooks: executor failed for hook %d", hook.id)
            result = ExecutionResult(hook.command, b"", f"Internal error: {exc}\n".encode(), 255)

        def finish() -> None:
            with self.store.transaction() as tx:
                try:
                    tx.hook(job.hook_id)
                except NoExistsError:
                    pass  # deleted while it ran: its log is gone too
                else:
                    record = self._store_record(tx, job, result)
                    log.info(
                        "hook/%d %s: execution %d exited %d", hook.id, hook.name,
                        record.execution_id, result.code,
                    )
                tx.delete_hook_job(job.id)

        await self._persist(f"the record of job {job.id} (hook {hook.id})", finish)

    def _done(self, job: HookJob) -> None:
        self._running.pop(job.id, None)
        self._ha_jobs.discard(job.id)
        self.notify()

    def _store_record(self, tx: HookTx, job: HookJob, result: ExecutionResult) -> ExecutionRecord:
        # Records are shown (one.hook.info, hooklog) and kept: secrets masked by the one rule,
        # and bounded (HOOK_RECORD_LIMIT). A retry runs the recorded arguments, so a literal
        # secret in ARGUMENTS is retried masked (docs/security.md: put secrets in files).
        limit = self.settings.hook_record_limit
        shown = ExecutionResult(
            mask_words(result.command), bounded(mask_bytes(result.stdout), limit),
            bounded(mask_bytes(result.stderr), limit), result.code,
        )
        record = ExecutionRecord(
            hook_id=job.hook_id,
            execution_id=-1,
            timestamp=int(self.clock.now()),
            arguments=bounded(mask_words(job.arguments).encode(), limit).decode(
                errors="replace"),
            result=shown,
            remote_host=job.remote_host,
            retry=job.retry,
            job_id=job.id,
            event_id=job.event_id,
        )
        return tx.add_hook_record(record, self.settings.hook_log_retention)

    # -- API events ---------------------------------------------------------------------------
    def record_api(self, method: str, call_info: str) -> int | None:
        """Record an API event (before the caller is answered); None if nobody hooks it."""
        if method not in self.hooked_calls:
            return None
        event = Event(kind=EventKind.API_CALL, line=method, obj=ObjType.API, body=call_info,
                      method=method)
        with self.store.transaction() as tx:
            event.time = self.clock.now()
            event_id = tx.record(event)
        self.notify()
        return event_id
