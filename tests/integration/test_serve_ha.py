"""Three `lazarus serve --ha` processes on a real 3-member etcd cluster and one shared store
(`--db`: a SQLite file, and a PostgreSQL database): one leads, the others stand by; SIGKILL of
the leader makes a standby lead on the same store; a leader frozen (SIGSTOP) past its lease
is replaced, and once resumed it exits 75 (EXIT_DEPOSED) without writing anything.

What is asserted is order and outcome, never a duration; the hand-over time is printed
(bench/ will measure it properly).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.daemon import FAST_SETTINGS
from helpers.etcd import EtcdCluster, etcd_cluster
from lazarus.app.serve_process import ServeProcess
from lazarus.app.standby import EXIT_DEPOSED
from lazarus.store.url import open_store

GIVE_UP = 60.0  # only so a broken build cannot hang the suite


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    yield from etcd_cluster(tmp_path / "etcd")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'shared' / 'lazarus.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def controllers(tmp_path: Path, etcd: EtcdCluster, db_url: str) -> Iterator[list[ServeProcess]]:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    args = ["--ha", "--etcd", ",".join(etcd.endpoints), "--db", db_url,
            "--auth-file", str(shared / "one_auth")]
    procs = [ServeProcess(tmp_path / f"ctl{i}", FAST_SETTINGS, args=args,
                          log_path=tmp_path / f"ctl{i}.log") for i in range(3)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.process is not None and p.process.poll() is None:
                p.process.send_signal(signal.SIGCONT)
            p.close()


def until(predicate: object, what: str) -> None:
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - start < GIVE_UP, f"never: {what}"
        time.sleep(0.05)


def standing_by(p: ServeProcess) -> bool:
    return p.running() and "standing by" in p.log_path.read_text(errors="replace")


def epoch(db: str, tmp_path: Path) -> int:
    store = open_store(db, data_dir=tmp_path)
    try:
        return int(store.get_meta("leader_epoch") or 0)
    finally:
        store.close()


def test_a_standby_takes_over_a_killed_leader_and_a_resumed_one_exits(
    controllers: list[ServeProcess], db_url: str, tmp_path: Path
) -> None:
    first, *standbys = controllers
    first.start()  # the first one up leads
    for p in standbys:
        p.start(wait=False)
    until(lambda: all(standing_by(p) for p in standbys), "two standbys")
    assert not any(p.ready() for p in standbys)
    first_epoch = epoch(db_url, tmp_path)

    with first.client() as api:
        host_id = api.call("one.host.allocate", "node1", "sim", "sim", -1)
        until(lambda: "<STATE>2</STATE>" in api.call("one.host.info", host_id),
              "node1 MONITORED")

    first.kill()
    killed = time.monotonic()
    until(lambda: any(p.ready() for p in standbys), "a standby leads")
    print(f"hand-over after SIGKILL: {time.monotonic() - killed:.2f} s")
    (second,) = [p for p in standbys if p.ready()]
    (third,) = [p for p in standbys if p is not second]
    second.wait_ready()
    assert epoch(db_url, tmp_path) > first_epoch
    with second.client() as api:
        info = api.call("one.host.info", host_id)
        assert "<NAME>node1</NAME>" in info
        api.call("lazarus.sim.power", "node1", "off")  # the new leader monitors and writes
        until(lambda: "<STATE>3</STATE>" in api.call("one.host.info", host_id),
              "the new leader sees node1 fail (ERROR)")

    second_epoch = epoch(db_url, tmp_path)
    assert second.process is not None
    second.process.send_signal(signal.SIGSTOP)
    until(third.ready, "the third leads while the second is frozen")
    third.wait_ready()
    assert epoch(db_url, tmp_path) > second_epoch
    second.process.send_signal(signal.SIGCONT)
    assert second.process.wait(GIVE_UP) == EXIT_DEPOSED
    assert "stopped leading" in second.log_path.read_text(errors="replace")
    assert epoch(db_url, tmp_path) > second_epoch  # the resumed one wrote nothing back
    with third.client() as api:
        assert "<NAME>node1</NAME>" in api.call("one.host.info", host_id)
