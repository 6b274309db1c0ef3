"""The CLI's connection to the daemon: endpoint, credentials and one API client per command.

Who uses it: cli/main.py creates an `Api` from the global options (--endpoint, --auth-file)
and stores it as the click context object; the command modules get it with `@pass_api` and
call `api.call("one.vm.info", 7)`. Every error of the call (refused connection, missing or
unreadable credentials, an OpenNebula failure such as NO_EXISTS or ACTION, an XML-RPC fault)
becomes a `CliError`: one line on stderr, exit code 1. The session string never appears in any
message: the client keeps it private and errors name only the endpoint or the file.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from lazarus.api import auth, defaults
from lazarus.api.client import Client
from lazarus.api.validation import MAX_TEMPLATE_CHARS
from lazarus.domain.errors import LazarusError

from .output import CliError

R = TypeVar("R")

DEFAULT_TIMEOUT = 60.0


@dataclass
class Api:
    """Where the daemon is and how to log in; the client is made on the first call."""

    endpoint: str
    auth_file: Path
    timeout: float = DEFAULT_TIMEOUT
    _client: Client | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_options(cls, endpoint: str | None, auth_file: Path | None) -> Api:
        """Options win over the environment ($LAZARUS_XMLRPC / $ONE_XMLRPC, $LAZARUS_AUTH /
        $ONE_AUTH), which wins over the defaults (api/defaults.py)."""
        env = os.environ
        return cls(
            endpoint=endpoint or defaults.endpoint(env),
            auth_file=auth_file or auth.resolve_auth_file(env),
        )

    def client(self) -> Client:
        if self._client is None:
            try:
                session = auth.read_auth_file(self.auth_file)
                self._client = Client(self.endpoint, session, timeout=self.timeout)
            except LazarusError as exc:
                raise CliError(str(exc)) from exc
        return self._client

    def call(self, method: str, *params: object) -> Any:
        """The value of a successful call; CliError with the daemon's message otherwise."""
        client = self.client()
        try:
            return client.call(method, *params)
        except LazarusError as exc:
            raise CliError(str(exc)) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def pass_api(func: Callable[..., R]) -> Callable[..., R]:
    """Decorator: the command receives the `Api` of the `lazarus` group as first argument."""

    def wrapper(*args: Any, **kwargs: Any) -> R:
        api = click.get_current_context().find_object(Api)
        if api is None:  # a group used on its own (tests, other entry points)
            api = Api.from_options(None, None)
        return func(api, *args, **kwargs)

    functools.update_wrapper(wrapper, func)
    return wrapper


def read_template(source: str | None, what: str = "template") -> str:
    """The text of a template argument: a file name, '-' for stdin, or nothing (stdin when
    it is not a terminal; a usage error otherwise, so the command never waits on a tty)."""
    stdin = sys.stdin
    if source is None:
        if stdin.isatty():
            raise click.UsageError(f"give a {what} FILE, or - to read it from stdin")
        source = "-"
    # Bounded: `yes | lazarus vm create` must not fill the memory (the API refuses more).
    if source == "-":
        return _bounded(stdin.read(MAX_TEMPLATE_CHARS + 1), f"the {what} on stdin")
    try:
        with Path(source).open(encoding="utf-8") as handle:
            return _bounded(handle.read(MAX_TEMPLATE_CHARS + 1), f"{what} file {source}")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CliError(f"cannot read {what} file {source}: {reason}") from exc


def _bounded(text: str, where: str) -> str:
    if len(text) > MAX_TEMPLATE_CHARS:
        raise CliError(f"{where} is larger than {MAX_TEMPLATE_CHARS} characters")
    return text
