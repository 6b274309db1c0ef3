"""Run real ClusterLabs fence agents (`/usr/sbin/fence_*`) as subprocesses.

The FenceAgentRunner adapter used by app/fence_host.py. The agent binary is looked up in a
fixed search path (never through a shell or $PATH tricks), started in its own process group
with the parameters as `key=value` lines on stdin (so the password is never in argv), and the
whole group (ipmitool, curl, ... children included) is killed when the timeout expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from lazarus.domain.errors import PermanentDriverError, TemporaryDriverError
from lazarus.ports.fence import RC_TIMEOUT, AgentResult

DEFAULT_SEARCH_PATH = (
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
)
_AGENT_RE = re.compile(r"^fence_[a-z0-9_]+$")
# fence_ipmilan and others import the deprecated `pipes` module and warn on every run.
_QUIET = {"PYTHONWARNINGS": "ignore::DeprecationWarning"}


class SubprocessAgentRunner:
    def __init__(
        self,
        search_path: Sequence[str] = DEFAULT_SEARCH_PATH,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: the agents' environment (default: ours, which hooks inherit anyway)."""
        self.search_path = tuple(search_path)
        self.env = dict(os.environ if env is None else env) | _QUIET

    def find(self, agent: str) -> Path:
        if not _AGENT_RE.match(agent):
            raise PermanentDriverError(f"{agent!r} is not a fence agent name")
        for folder in self.search_path:
            path = Path(folder) / agent
            if path.is_file() and os.access(path, os.X_OK):
                return path
        raise PermanentDriverError(
            f"fence agent {agent} not found in {':'.join(self.search_path)}"
        )

    async def run(self, agent: str, params: Mapping[str, str], timeout: float) -> AgentResult:
        path = self.find(agent)
        stdin = "".join(f"{key}={value}\n" for key, value in params.items()).encode()
        try:
            proc = await asyncio.create_subprocess_exec(
                str(path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as a whole
                env=self.env,
                cwd="/",
            )
        except OSError as exc:
            raise TemporaryDriverError(f"cannot start {path}: {exc.strerror}") from exc
        try:
            async with asyncio.timeout(max(0.0, timeout)):  # not wait_for: see core/waits.py
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            _kill_group(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
            return AgentResult(RC_TIMEOUT, "", "", timed_out=True)
        except BaseException:
            _kill_group(proc.pid)  # cancelled: never leave an agent behind
            raise
        # The agent may have left children (ipmitool) holding nothing we wait for: reap them.
        _kill_group(proc.pid)
        rc = proc.returncode if proc.returncode is not None else await proc.wait()
        return AgentResult(rc, out.decode(errors="replace"), err.decode(errors="replace"))


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
