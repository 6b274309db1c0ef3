"""app/runtime.py: HTTP threads' calls onto the controller's loop. HA callers' calls run first,
other API calls are admitted one per loop turn so the loop's own tasks (monitor, scheduler,
VM life cycle) keep their turns, and at most `api_workers` API handlers run at once
(before the lanes a failover took 41 s under a 50-client API load instead of 11 s)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator

import pytest

from lazarus.api.xmlrpc import call_lane
from lazarus.app.runtime import Runtime


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def submit(rt: Runtime, order: list[str], name: str, lane: str = "") -> threading.Thread:
    def work() -> None:
        call_lane.set(lane)  # what the Dispatcher sets for an authenticated call
        rt.call(lambda: order.append(name))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_ha_first_and_one_api_call_per_loop_turn(loop: asyncio.AbstractEventLoop) -> None:
    rt = Runtime(loop)
    order: list[str] = []
    threads = [submit(rt, order, f"api{i}") for i in range(3)]
    rt.wait_queued(3)
    threads.append(submit(rt, order, "ha", lane="ha"))
    rt.wait_queued(4)

    async def ha_work() -> None:  # a loop task: e.g. a VM driver step after another
        for step in range(4):
            order.append(f"task{step}")
            await asyncio.sleep(0)

    loop.run_until_complete(ha_work())
    loop.run_until_complete(asyncio.sleep(0))
    for thread in threads:
        thread.join(10)
    assert order.index("ha") < order.index("api0")  # queued last, run first
    api_at = [i for i, name in enumerate(order) if name.startswith("api")]
    assert [order[i] for i in api_at] == ["api0", "api1", "api2"]  # FIFO within the lane
    assert all(b - a > 1 for a, b in itertools.pairwise(api_at))  # never back to back


def test_api_handlers_are_admitted_a_few_at_a_time(loop: asyncio.AbstractEventLoop) -> None:
    rt = Runtime(loop, api_workers=2)
    with rt.admit(""), rt.admit(""):
        assert not rt.try_admit("")  # a third API handler waits
        assert rt.try_admit("ha")  # an HA caller never waits for a slot
    assert rt.try_admit("")


def test_on_the_loop_thread_calls_run_inline(loop: asyncio.AbstractEventLoop) -> None:
    rt = Runtime(loop)

    async def inline() -> int:
        rt.bind()
        return rt.call(lambda: 7)

    assert loop.run_until_complete(inline()) == 7


def test_exceptions_come_back_to_the_caller(loop: asyncio.AbstractEventLoop) -> None:
    rt = Runtime(loop)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            rt.call(lambda: 1 // 0)
        except ZeroDivisionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    rt.wait_queued(1)
    loop.run_until_complete(asyncio.sleep(0))
    thread.join(10)
    assert len(errors) == 1
