"""Run real ClusterLabs fence agents (`/usr/sbin/fence_*`) as subprocesses.

The FenceAgentRunner adapter used by app/fence_host.py. The agent binary is looked up in a
fixed search path (never through a shell or $PATH tricks), started in its own process group
with the parameters as `key=value` lines on stdin (so the password is never in argv), and the
whole group (ipmitool, curl, ... children included) is killed when the timeout expires or
the run is cancelled, and after the agent exits (drivers/process.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from lazarus.domain.errors import PermanentDriverError, TemporaryDriverError
from lazarus.drivers.process import run_process
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
            # The agent may leave children (ipmitool) holding nothing we wait for: kill them.
            result = await run_process([str(path)], stdin, timeout, env=self.env, cwd="/",
                                       kill_leftovers=True)  # fmt: skip
        except OSError as exc:
            raise TemporaryDriverError(f"cannot start {path}: {exc.strerror}") from exc
        if result.timed_out or result.rc is None:
            return AgentResult(RC_TIMEOUT, "", "", timed_out=True)
        out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        return AgentResult(result.rc, out, err)
