"""The one.hook.* operations of the hook manager: allocate, delete, update, rename, lock,
unlock and retry, on the controller's loop thread (api/hook_methods.py calls them).

`HookCrud` is mixed into core/hooks.py HookManager, which owns the store, the clock and the
in-memory index (`reload`) that each change refreshes; the dispatch and run loop stay there.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from lazarus.domain.errors import RpcApiError
from lazarus.domain.hooks import HookJob, lock_check, parse_hook, updated_template
from lazarus.domain.template import Template
from lazarus.ports.clock import Clock
from lazarus.ports.hooks import HookStore

log = logging.getLogger("lazarus.hooks")

MANAGE, ALL = 2, 4  # OpenNebula lock / operation levels
TRUNCATED = b" [truncated: "


def bounded(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of `data`, then a marker saying how much was dropped."""
    if limit <= 0 or len(data) <= limit:
        return data
    return data[:limit] + TRUNCATED + f"{len(data) - limit} bytes dropped]".encode()


class HookCrud:
    store: HookStore
    clock: Clock
    known_calls: Collection[str] | None

    def reload(self) -> None:
        raise NotImplementedError  # HookManager's: rebuild the index from the store

    def notify(self) -> None:
        raise NotImplementedError  # HookManager's: dispatch soon

    def allocate(self, template: Template) -> int:
        hook = parse_hook(template, self.known_calls)
        with self.store.transaction() as tx:
            hook.since_event = tx.last_event_id()
            tx.add_hook(hook)
        self.reload()
        log.info("hook/%d %s: created (%s %s)", hook.id, hook.name, hook.type, hook.key)
        return hook.id

    def delete(self, hook_id: int) -> int:
        with self.store.transaction() as tx:
            lock_check(tx.hook(hook_id), MANAGE)
            tx.delete_hook(hook_id)
        self.reload()
        return hook_id

    def update(self, hook_id: int, template: Template, append: bool) -> int:
        with self.store.transaction() as tx:
            hook = tx.hook(hook_id)
            lock_check(hook, MANAGE)
            hook.template = updated_template(hook, template, append, self.known_calls)
            tx.save_hook(hook)
        self.reload()
        return hook_id

    def rename(self, hook_id: int, name: str) -> int:
        if not name.strip():
            raise RpcApiError("New name cannot be empty.")
        with self.store.transaction() as tx:
            hook = tx.hook(hook_id)
            lock_check(hook, MANAGE)
            hook.name = name.strip()
            tx.save_hook(hook)
        self.reload()
        return hook_id

    def lock(self, hook_id: int, level: int, test: bool = False) -> int:
        if level not in (1, 2, 3, 4):
            raise RpcApiError(f"Invalid lock level {level}: use 1 (use) to 4 (all).")
        with self.store.transaction() as tx:
            hook = tx.hook(hook_id)
            if test:
                lock_check(hook, ALL)  # already locked at any level: refused
            hook.lock = level
            hook.lock_time = int(self.clock.now())
            tx.save_hook(hook)
        return hook_id

    def unlock(self, hook_id: int) -> int:
        with self.store.transaction() as tx:
            hook = tx.hook(hook_id)
            hook.lock, hook.lock_time = 0, 0
            tx.save_hook(hook)
        return hook_id

    def retry(self, hook_id: int, execution_id: int) -> int:
        """Queue the recorded arguments again with the hook's current settings (RETRY=yes)."""
        with self.store.transaction() as tx:
            hook = tx.hook(hook_id)
            lock_check(hook, MANAGE)
            record = tx.hook_record(hook_id, execution_id)
            if TRUNCATED in record.arguments.encode():
                raise RpcApiError(
                    "The arguments of this execution were truncated when recorded "
                    "(HOOK_RECORD_LIMIT); it cannot be retried."
                )
            tx.add_hook_job(
                HookJob(
                    id=-1,
                    hook_id=hook_id,
                    event_id=-1,
                    arguments=record.arguments,
                    remote_host=record.remote_host,
                    retry=True,
                    created=self.clock.now(),
                )
            )
        self.notify()
        return hook_id
