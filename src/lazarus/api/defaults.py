"""Where Lazarus keeps its data and where its API listens, decided in one place.

The daemon configuration (app/) and the API client (api/client.py, used by the CLI and the
hook commands) both call these functions, so a daemon started with the defaults and a CLI
started with the defaults find each other without any configuration.

- data directory: $LAZARUS_DATA_DIR, else /var/lib/lazarus for root, else
  $XDG_DATA_HOME/lazarus, else ~/.local/share/lazarus.
- XML-RPC endpoint (client side): $LAZARUS_XMLRPC, else $ONE_XMLRPC (OpenNebula's variable, so
  an OpenNebula-configured shell works unchanged), else http://127.0.0.1:2633/RPC2.
- listen address (server side): 127.0.0.1:2633, path /RPC2 (OpenNebula's port and path).

Every function takes the environment as a mapping (default: os.environ) so tests pass their
own; an empty variable counts as unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_LISTEN_HOST = "127.0.0.1"
DEFAULT_PORT = 2633
DEFAULT_PATH = "/RPC2"
DEFAULT_ENDPOINT = f"http://{DEFAULT_LISTEN_HOST}:{DEFAULT_PORT}{DEFAULT_PATH}"
ROOT_DATA_DIR = Path("/var/lib/lazarus")
AUTH_FILE_NAME = "one_auth"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "")
    return value or None


def _home(env: Mapping[str, str]) -> Path:
    home = _get(env, "HOME")
    return Path(home) if home else Path.home()


def data_dir(env: Mapping[str, str] | None = None, *, is_root: bool | None = None) -> Path:
    """The directory for the embedded database, the generated credentials and the like."""
    env = os.environ if env is None else env
    explicit = _get(env, "LAZARUS_DATA_DIR")
    if explicit:
        return Path(explicit)
    if is_root is None:
        is_root = os.geteuid() == 0
    if is_root:
        return ROOT_DATA_DIR
    xdg = _get(env, "XDG_DATA_HOME")
    base = Path(xdg) if xdg else _home(env) / ".local" / "share"
    return base / "lazarus"


def default_auth_file(env: Mapping[str, str] | None = None, *, is_root: bool | None = None) -> Path:
    """<data_dir>/one_auth: where the daemon writes the generated oneadmin credentials."""
    return data_dir(env, is_root=is_root) / AUTH_FILE_NAME


def endpoint(env: Mapping[str, str] | None = None) -> str:
    """The XML-RPC URL a client should call: $LAZARUS_XMLRPC > $ONE_XMLRPC > the default."""
    env = os.environ if env is None else env
    return _get(env, "LAZARUS_XMLRPC") or _get(env, "ONE_XMLRPC") or DEFAULT_ENDPOINT
