"""`lazarus serve --ha` options: bad input is a clear usage error, nothing starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lazarus.app.standby import HaOptions
from lazarus.cli.main import lazarus


@pytest.mark.parametrize(("args", "message"), [
    (["--etcd", "http://127.0.0.1:2379"], "--etcd is for --ha"),
    (["--ha", "--etcd", "ftp://127.0.0.1:2379"], "only http://host:port"),
    (["--ha", "--etcd", " , "], "no etcd endpoints"),
])
def test_bad_ha_options_are_refused(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(lazarus, ["serve", "--data-dir", str(tmp_path / "d"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "d" / "lazarus.db").exists()


def test_ha_options_keep_the_endpoints() -> None:
    assert HaOptions(etcd=["http://a:2379", "b:2380"]).etcd == ["http://a:2379", "b:2380"]
