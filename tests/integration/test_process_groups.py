"""No process outlives its runner: a timed-out or cancelled fence script, fence agent or hook
command is killed with its whole process group, children included (drivers/process.py).

Each program starts `sleep 60 &` in its own (the runner's new) process group, writes the
child's pid to a file and waits; after the timeout or the cancellation the child must be
gone. Real processes need a real event loop (asyncio.run).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path

import pytest

from lazarus.domain.hooks import ExecutionResult
from lazarus.drivers.fence.agent import SubprocessAgentRunner
from lazarus.drivers.fence.script import script_fencer
from lazarus.drivers.hooks.subprocess import SubprocessHookExecutor
from lazarus.ports.hooks import HookRequest

HOST_XML = "<HOST><ID>0</ID><NAME>node1</NAME><TEMPLATE/></HOST>"


def spawner(path: Path, pidfile: Path) -> Path:
    """A program that leaves a child in its group, records the child's pid and waits."""
    path.write_text(f"#!/bin/sh\ncat >/dev/null\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    path.chmod(0o755)
    return path


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a reaped-by-nobody zombie is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def child_pid(pidfile: Path, wait: float = 5.0) -> int:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text:
            return int(text)
        time.sleep(0.02)
    raise AssertionError("the program did not start its child")


def gone_soon(pid: int, wait: float = 3.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def kill_left(pid: int) -> None:
    if alive(pid):  # clean up after a failing test
        os.kill(pid, 9)


async def started(pidfile: Path) -> None:
    while not (pidfile.exists() and pidfile.read_text().strip()):
        await asyncio.sleep(0.02)


def test_timed_out_fence_script_leaves_no_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    fencer = script_fencer(spawner(tmp_path / "fence_host", pidfile), timeout=0.5)
    began = time.monotonic()
    ok, output = asyncio.run(asyncio.wait_for(fencer(HOST_XML), 10))
    took = time.monotonic() - began
    pid = child_pid(pidfile)
    try:
        assert not ok and "timed out" in output
        assert took < 5, f"the timed-out fence took {took:.1f}s: it waited for the child"
        assert gone_soon(pid), "the fence script's child outlived its timeout"
    finally:
        kill_left(pid)


def test_cancelled_fence_script_leaves_no_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    fencer = script_fencer(spawner(tmp_path / "fence_host", pidfile), timeout=30)

    async def main() -> None:
        task = asyncio.ensure_future(fencer(HOST_XML))
        await asyncio.wait_for(started(pidfile), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    unraisable: list[str] = []
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: unraisable.append(str(u.exc_value))
    try:
        asyncio.run(main())
        gc.collect()
    finally:
        sys.unraisablehook = hook
    pid = child_pid(pidfile)
    try:
        assert gone_soon(pid), "the fence script's child outlived the cancellation"
        assert not unraisable, f"the cancelled script was not reaped: {unraisable[0]}"
    finally:
        kill_left(pid)


def test_timed_out_and_cancelled_agent_leave_no_child(tmp_path: Path) -> None:
    for mode in ("timeout", "cancel"):
        pidfile = tmp_path / f"{mode}.pid"
        folder = tmp_path / mode
        folder.mkdir()
        spawner(folder / "fence_spawner", pidfile)
        runner = SubprocessAgentRunner(search_path=[str(folder)])

        async def main(mode: str = mode, pidfile: Path = pidfile,
                       runner: SubprocessAgentRunner = runner) -> None:
            if mode == "timeout":
                result = await runner.run("fence_spawner", {"action": "off"}, 0.5)
                assert result.timed_out and result.rc != 0
                return
            task = asyncio.ensure_future(runner.run("fence_spawner", {"action": "off"}, 30))
            await asyncio.wait_for(started(pidfile), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        pid = child_pid(pidfile)
        try:
            assert gone_soon(pid), f"the agent's child outlived the {mode}"
        finally:
            kill_left(pid)


def test_timed_out_and_cancelled_hook_leave_no_child(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for mode in ("timeout", "cancel"):
        pidfile = tmp_path / f"{mode}.pid"
        spawner(hooks / mode, pidfile)
        executor = SubprocessHookExecutor(hooks_dir=hooks, kill_grace=0.2)
        request = HookRequest(hook_id=0, command=mode, arguments="",
                              timeout=0.5 if mode == "timeout" else 30)

        async def main(mode: str = mode, pidfile: Path = pidfile,
                       executor: SubprocessHookExecutor = executor,
                       request: HookRequest = request) -> ExecutionResult | None:
            if mode == "timeout":
                return await executor.run(request)
            task = asyncio.ensure_future(executor.run(request))
            await asyncio.wait_for(started(pidfile), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return None

        result = asyncio.run(main())
        pid = child_pid(pidfile)
        try:
            if result is not None:
                assert result.code == 255 and b"Timeout executing" in result.stderr
            assert gone_soon(pid), f"the hook's child outlived the {mode}"
        finally:
            kill_left(pid)
