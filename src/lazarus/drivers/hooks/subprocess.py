"""Hook commands as local processes (or over SSH for REMOTE hooks): the production HookExecutor.

    executor = SubprocessHookExecutor(hooks_dir=Path(".../hooks"), env={"ONE_XMLRPC": url, ...})
    result = await executor.run(HookRequest(hook_id=0, command="ft/host_error", arguments=...))

Rules (those of OpenNebula's hook execution manager, with the differences in docs/hooks.md):
- never a shell: argv = [command, *arguments split on spaces], or [command] with the arguments
  on stdin when ARGUMENTS_STDIN is yes;
- a relative COMMAND is resolved in `hooks_dir`; one that leaves it (`..`) is refused
  (code 255, "Internal error ..."); an absolute COMMAND runs as is;
- each command runs in its own session (process group); TIMEOUT, and the cancellation of
  `run`, kill the whole group (SIGTERM, then SIGKILL after `kill_grace` seconds;
  drivers/process.py) and reap it; TIMEOUT gives code 255 with stderr
  "Timeout executing <command>";
- a command that cannot start gives code 255 and stderr "Internal error: <reason>";
- REMOTE: `ssh <ssh options> -- <host> <remote_dir>/<command> <args...>` (each token quoted
  for the remote shell; `-n` when nothing goes to stdin); `--` ends ssh's options, and a host
  starting with '-' is refused (code 255), so ADDRESS cannot smuggle `-oProxyCommand=...`;
- stdout and stderr are kept up to `output_limit` bytes each (the rest is read and dropped, so
  a chatty hook cannot fill the pipe and hang, nor fill the database);
- the environment is the daemon's plus `env` (ONE_XMLRPC, ONE_AUTH, LAZARUS_XMLRPC,
  LAZARUS_AUTH) plus the request's LAZARUS_HOOK_* values, plus LAZARUS_PARENT_PID;
- with `records` (lifeline.GroupRecords, under the data directory) each running command's
  process group is recorded until it ends, so a restarted daemon kills the groups its
  crashed predecessor left (`reap_orphans`) before it re-runs their executions.
Timeouts use the event loop's clock (asyncio.timeout): this adapter works with real processes
and must run on a real loop, not the virtual one.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from lazarus.domain.hooks import ExecutionResult, escapes_base
from lazarus.drivers.process import run_process
from lazarus.ports.hooks import HookRequest

from .lifeline import PARENT_ENV, GroupRecords

DEFAULT_HOOKS_DIR = Path(__file__).resolve().parents[2] / "hooks"  # src/lazarus/hooks (ft/)
DEFAULT_REMOTE_DIR = "/var/tmp/lazarus/hooks"
# OpenNebula's file names of the HA hooks -> Lazarus' programs in the hooks directory
OPENNEBULA_NAMES = {"ft/host_error.rb": "ft/host_error", "ft/fence_host.sh": "ft/fence_host"}
log = logging.getLogger("lazarus.hooks")
DEFAULT_SSH = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")
OUTPUT_LIMIT = 1024 * 1024
INTERNAL = 255


class SubprocessHookExecutor:
    def __init__(
        self,
        hooks_dir: Path = DEFAULT_HOOKS_DIR,
        remote_dir: str = DEFAULT_REMOTE_DIR,
        env: Mapping[str, str] | None = None,
        ssh: Sequence[str] = DEFAULT_SSH,
        output_limit: int = OUTPUT_LIMIT,
        kill_grace: float = 2.0,
        records: GroupRecords | None = None,
    ) -> None:
        self.hooks_dir = Path(hooks_dir).resolve()
        self.remote_dir = remote_dir.rstrip("/")
        self.env: dict[str, str] = dict(env or {})
        self.ssh = tuple(ssh)
        self.output_limit = output_limit
        self.kill_grace = kill_grace
        self.records = records

    async def reap_orphans(self) -> list[int]:
        """At start: kill and wait for the process groups a crashed daemon left running."""
        return await self.records.reap() if self.records is not None else []

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SubprocessHookExecutor:
        """$LAZARUS_HOOKS_DIR (default: the package's hooks/, with ft/) and
        $LAZARUS_REMOTE_HOOKS_DIR (default /var/tmp/lazarus/hooks). The daemon's Python comes
        first on PATH, so `#!/usr/bin/env python3` hooks (ft/) import this very lazarus."""
        path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
        return cls(
            hooks_dir=Path(env.get("LAZARUS_HOOKS_DIR") or DEFAULT_HOOKS_DIR),
            remote_dir=env.get("LAZARUS_REMOTE_HOOKS_DIR") or DEFAULT_REMOTE_DIR,
            env={"PATH": path},
        )

    def callback(self, url: str, auth_file: str) -> None:
        """Where hooks call back: the API endpoint and the credentials file (both names)."""
        self.env.update(
            ONE_XMLRPC=url, LAZARUS_XMLRPC=url, ONE_AUTH=auth_file, LAZARUS_AUTH=auth_file
        )

    def resolve(self, command: str) -> str:
        """The local path of COMMAND; ValueError when a relative one leaves hooks_dir.

        OpenNebula's own names of the HA hooks (`ft/host_error.rb`, as its oned.conf error
        hook names it, and `ft/fence_host.sh`) run Lazarus' programs when the hooks
        directory has no file of that name, so the seed's procedure works copied word for
        word; the substitution is logged (docs/hooks.md)."""
        if command.startswith("/"):
            return command
        if escapes_base(command):
            raise ValueError(f"COMMAND {command} leaves the hooks directory {self.hooks_dir}")
        ours = OPENNEBULA_NAMES.get(command)
        if ours is not None and not (self.hooks_dir / command).exists():
            log.info("hook COMMAND %s is OpenNebula's name: running Lazarus' %s", command, ours)
            return str(self.hooks_dir / ours)
        return str(self.hooks_dir / command)

    def argv(self, request: HookRequest) -> list[str]:
        """The argv to execute (local, or ssh for remote); ValueError for a refused COMMAND."""
        args = [] if request.stdin else request.arguments.split()
        if not request.remote_host:
            return [self.resolve(request.command), *args]
        if request.command.startswith("/"):
            remote = request.command
        elif request.command in OPENNEBULA_NAMES:
            ours = OPENNEBULA_NAMES[request.command]
            log.info("hook COMMAND %s is OpenNebula's name: running Lazarus' %s on %s",
                     request.command, ours, request.remote_host)
            remote = f"{self.remote_dir}/{ours}"
        elif escapes_base(request.command):
            raise ValueError(f"COMMAND {request.command} leaves the remote hooks directory")
        else:
            remote = f"{self.remote_dir}/{request.command}"
        if request.remote_host.lstrip().startswith("-"):
            # ADDRESS="-oProxyCommand=..." would run a local command: second line of defence
            # behind the `--` below (the API validates ADDRESS too).
            raise ValueError(f"remote host {request.remote_host!r} starts with '-'")
        line = " ".join(shlex.quote(token) for token in [remote, *args])
        no_stdin = [] if request.stdin else ["-n"]
        return [*self.ssh, *no_stdin, "--", request.remote_host, line]

    async def run(self, request: HookRequest) -> ExecutionResult:
        shown = request.command if request.stdin else f"{request.command} {request.arguments}"
        shown = shown.strip()
        try:
            argv = self.argv(request)
        except ValueError as exc:
            return ExecutionResult(shown, b"", f"Internal error: {exc}\n".encode(), INTERNAL)
        env = {**os.environ, **self.env, **request.env, PARENT_ENV: str(os.getpid())}
        started: list[int] = []

        def record(pid: int) -> None:
            started.append(pid)
            if self.records is not None:
                self.records.add(pid)

        try:
            result = await run_process(
                argv,
                request.arguments.encode("utf-8") if request.stdin else None,
                request.timeout,
                env=env,
                output_limit=self.output_limit,
                term_grace=self.kill_grace,  # own process group: TIMEOUT kills all of it
                on_start=record,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            text = f"Internal error: {reason}: {argv[0]}\n"
            return ExecutionResult(shown, b"", text.encode(), INTERNAL)
        finally:
            if self.records is not None:
                for pid in started:
                    self.records.remove(pid)
        if result.rc is None:
            return ExecutionResult(shown, b"", f"Timeout executing {shown}\n".encode(), INTERNAL)
        code = result.rc if result.rc >= 0 else 128 - result.rc  # killed by signal n: 128 + n
        return ExecutionResult(shown, result.stdout, result.stderr, code)
