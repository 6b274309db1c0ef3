"""Daemon configuration: defaults < config file < environment < command-line flags.

The config file uses the OpenNebula template syntax operators know from oned.conf:

    # /var/lib/lazarus/lazarus.conf
    LISTEN_ADDRESS = "127.0.0.1"
    PORT = 2633
    MONITORING_INTERVAL_HOST = 5
    MONITOR_FAILURES = 3

Every Settings field can be set there by its upper-case name, and in the environment as
LAZARUS_<NAME> (e.g. LAZARUS_MONITORING_INTERVAL_HOST=10). The data directory comes from
--data-dir, $LAZARUS_DATA_DIR or the default (api/defaults.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from lazarus.api import defaults
from lazarus.core.settings import Settings
from lazarus.domain.errors import LazarusError, TemplateSyntaxError
from lazarus.domain.template import Template


class ConfigError(LazarusError):
    pass


_ALIASES = {"LISTEN_ADDRESS": "api_listen", "PORT": "api_port"}


def _coerce(field: dataclasses.Field[object], raw: str, source: str) -> object:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{source}: {field.name.upper()} must be a {kind}, got {raw!r}") from None
    return raw


def _apply(settings: Settings, values: Mapping[str, str], source: str, strict: bool) -> None:
    fields = {f.name: f for f in dataclasses.fields(settings)}
    for key, raw in values.items():
        name = _ALIASES.get(key.upper(), key.lower())
        field = fields.get(name)
        if field is None:
            if strict:
                raise ConfigError(f"{source}: unknown setting {key}")
            continue
        setattr(settings, name, _coerce(field, raw, source))


def load(
    data_dir: Path | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> tuple[Settings, Path]:
    """Settings and the data directory, from every source in precedence order."""
    import os

    env = os.environ if env is None else env
    data = data_dir or defaults.data_dir(env)
    settings = Settings()
    path = config_file or (data / "lazarus.conf")
    if path.exists():
        try:
            template = Template.parse(path.read_text())
        except TemplateSyntaxError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        file_values = {k: v for k, v in template.items if isinstance(v, str)}
        _apply(settings, file_values, str(path), strict=True)
    elif config_file is not None:
        raise ConfigError(f"config file {config_file} does not exist")
    env_values = {k[len("LAZARUS_"):]: v for k, v in env.items() if k.startswith("LAZARUS_")}
    _apply(settings, env_values, "environment", strict=False)
    _apply(settings, dict(overrides or {}), "command line", strict=True)
    return settings, data
