"""The one way the adapters run a child process (fence agents, the fence script, hooks).

    result = await run_process([path, *args], stdin=b"...", timeout=20.0, env=env, cwd="/")

- never a shell: `argv` is executed as is;
- the child runs in its own session, so it leads a new process group that holds everything
  it starts (ipmitool, curl, `sleep &` ...);
- on timeout *and* on cancellation (or any other exception while waiting) the whole group is
  killed with SIGKILL (after SIGTERM and `term_grace` seconds when `term_grace` > 0), then the
  leader is reaped before returning or re-raising: nothing the child started outlives the
  call, and no transport is left open;
- a timeout gives `ProcessResult(rc=None, timed_out=True)` with no output; a cancellation is
  re-raised;
- stdout and stderr are read to the end concurrently (stderr into stdout with
  `merge_stderr`), each kept up to `output_limit` bytes when one is given (the rest is read
  and dropped, so a chatty child cannot fill the pipe and hang);
- `stdin` None gives the child /dev/null; bytes are written and the pipe closed (a child that
  does not read its stdin is its business);
- `on_start(pid)` is called once the child runs (the hook executor records the group);
- `kill_leftovers`: also SIGKILL the group after a normal exit (children the leader left);
- OSError when the program cannot be started: the caller says what that means.

Timeouts use the event loop's clock (asyncio.timeout, not wait_for: see core/waits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessResult:
    rc: int | None  # the leader's return code (negative: killed by that signal); None: timeout
    stdout: bytes = b""
    stderr: bytes = b""  # b"" with merge_stderr
    timed_out: bool = False


async def run_process(
    argv: Sequence[str],
    stdin: bytes | None,
    timeout: float | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    merge_stderr: bool = False,
    output_limit: int | None = None,
    term_grace: float = 0.0,
    kill_leftovers: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,  # its own process group, killed as a whole
        close_fds=True,
    )
    if on_start is not None:
        on_start(proc.pid)
    try:
        async with asyncio.timeout(None if timeout is None else max(0.0, timeout)):
            out, err = await _communicate(proc, stdin, output_limit)
            rc = await proc.wait()
    except TimeoutError:
        await stop_group(proc, term_grace)
        return ProcessResult(None, timed_out=True)
    except BaseException:  # cancelled (or broken): never leave the group behind
        await stop_group(proc, term_grace)
        raise
    if kill_leftovers:
        kill_group(proc.pid)
    return ProcessResult(rc, out, err)


async def stop_group(proc: asyncio.subprocess.Process, term_grace: float = 0.0) -> None:
    """Kill the process group `proc` leads and reap `proc`: SIGTERM and up to `term_grace` s
    for the leader to exit when `term_grace` > 0, then SIGKILL for the group (the rest of it
    when the leader exited: children that ignored SIGTERM must not outlive it)."""
    if term_grace > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(term_grace):
                await proc.wait()
    kill_group(proc.pid)
    # Reap even when cancelled again meanwhile: the group is dead, so this is quick.
    await asyncio.shield(proc.wait())


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _communicate(
    proc: asyncio.subprocess.Process, data: bytes | None, limit: int | None
) -> tuple[bytes, bytes]:
    assert proc.stdout is not None
    feed = asyncio.ensure_future(_feed(proc, data))
    try:
        out, err = await asyncio.gather(_read(proc.stdout, limit), _read(proc.stderr, limit))
        await feed
    finally:
        feed.cancel()
    return out, err


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if data is None or proc.stdin is None:
        return
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child did not read its stdin: its business
    finally:
        proc.stdin.close()


async def _read(stream: asyncio.StreamReader | None, limit: int | None) -> bytes:
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        room = len(chunk) if limit is None else limit - len(kept)
        if room > 0:
            kept += chunk[:room]
    return bytes(kept)
