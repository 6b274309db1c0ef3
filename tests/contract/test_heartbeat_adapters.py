"""Contracts of the heartbeat channel's adapters: the heartbeat files (drivers/heartbeat.py:
atomic replace, what the controller reads) and the watchdog (drivers/watchdog.py: the device
protocol, spoken to a regular file since no machine here has /dev/watchdog; the fake)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from lazarus.domain.heartbeat import Beat, decode
from lazarus.drivers.heartbeat import FileBeats
from lazarus.drivers.watchdog import DeviceWatchdog, FakeWatchdog


def _beat(counter: int) -> Beat:
    return Beat("node1", 1, counter, 10.0, 1.0, 17.0)


def test_file_beats_write_read_and_continue(tmp_path: Path) -> None:
    beats = FileBeats(tmp_path)
    assert asyncio.run(beats.read("node1")) is None
    assert asyncio.run(beats.last("node1")) is None
    for counter in (1, 2, 3):
        asyncio.run(beats.write(_beat(counter)))
    data = asyncio.run(beats.read("node1"))
    assert data is not None and decode(data).counter == 3
    last = asyncio.run(beats.last("node1"))
    assert last is not None and last.counter == 3
    files = sorted(p.name for p in (tmp_path / ".lazarus-heartbeat").iterdir())
    assert files == ["node1.hb"]  # no temporary file left behind


def test_file_beats_replace_atomically(tmp_path: Path) -> None:
    """The file is replaced by rename: a reader holding the old one keeps a whole old beat."""
    beats = FileBeats(tmp_path)
    asyncio.run(beats.write(_beat(1)))
    path = beats.path("node1")
    with open(path, "rb") as old:
        inode = os.fstat(old.fileno()).st_ino
        asyncio.run(beats.write(_beat(2)))
        assert decode(old.read()).counter == 1
    assert os.stat(path).st_ino != inode
    assert decode(path.read_bytes()).counter == 2


def test_file_beats_unreadable_storage_raises(tmp_path: Path) -> None:
    (tmp_path / ".lazarus-heartbeat").write_text("not a directory")
    beats = FileBeats(tmp_path)
    with pytest.raises(OSError):
        asyncio.run(beats.read("node1"))
    with pytest.raises(OSError):
        asyncio.run(beats.write(_beat(1)))


def test_file_beats_refuse_a_path_in_the_host_name(tmp_path: Path) -> None:
    assert asyncio.run(FileBeats(tmp_path).read("../../etc/passwd")) is None


def test_device_watchdog_protocol(tmp_path: Path) -> None:
    device = tmp_path / "watchdog"
    device.write_bytes(b"")
    wd = DeviceWatchdog(device, timeout=10)
    wd.disarm()  # never armed: nothing written
    assert device.read_bytes() == b""
    wd.feed()
    wd.feed()
    wd.disarm()
    assert device.read_bytes() == b"\0\0V"  # two feeds, then the magic close


def test_fake_watchdog_fires_once_after_its_timeout() -> None:
    now = [0.0]
    fired: list[float] = []
    wd = FakeWatchdog(lambda: now[0], 10.0, on_fire=lambda: fired.append(now[0]))
    assert not wd.check()  # not armed until the first feed
    wd.feed()
    now[0] = 9.9
    assert not wd.check()
    wd.feed()
    now[0] = 19.9
    assert not wd.check()
    now[0] = 20.0
    assert wd.check() and fired == [20.0]
    assert not wd.check()  # once
    wd2 = FakeWatchdog(lambda: now[0], 10.0)
    wd2.feed()
    wd2.disarm()
    now[0] = 100.0
    assert not wd2.check()


# -- the same contract for the real adapters and the simulator's/fakes ------------------------
@pytest.fixture(params=["device", "fake"])
def watchdog(request: pytest.FixtureRequest, tmp_path: Path) -> DeviceWatchdog | FakeWatchdog:
    if request.param == "device":
        (tmp_path / "watchdog").write_bytes(b"")
        return DeviceWatchdog(tmp_path / "watchdog", timeout=10)
    return FakeWatchdog(lambda: 0.0, timeout=10)


def test_watchdog_contract(watchdog: DeviceWatchdog | FakeWatchdog) -> None:
    assert watchdog.timeout == 10
    watchdog.disarm()  # before any feed: a no-op
    watchdog.feed()
    watchdog.feed()
    watchdog.disarm()
    watchdog.disarm()  # twice: still fine
    watchdog.feed()  # armed again
    watchdog.disarm()


@pytest.fixture(params=["files", "sim"])
def channel(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[object, object, object]:
    """(sink for node1, the controller's source, a switch that breaks the storage)."""
    if request.param == "files":
        beats = FileBeats(tmp_path)

        def break_files() -> None:
            import shutil

            shutil.rmtree(tmp_path / ".lazarus-heartbeat", ignore_errors=True)
            (tmp_path / ".lazarus-heartbeat").write_text("not a directory")

        return beats, beats, break_files
    from lazarus.sim.agents import SimStorage, _Sink

    cut: set[tuple[str, str]] = set()
    storage = SimStorage(lambda a, b: (min(a, b), max(a, b)) in cut)

    def break_sim() -> None:
        cut.update({("node1", "storage"), ("controller", "storage")})

    return _Sink(storage, "node1"), storage, break_sim


def test_heartbeat_channel_contract(channel: tuple[object, object, object]) -> None:
    sink, source, breaks = channel
    assert asyncio.run(source.read("node1")) is None  # type: ignore[attr-defined]
    assert asyncio.run(sink.last("node1")) is None  # type: ignore[attr-defined]
    asyncio.run(sink.write(_beat(1)))  # type: ignore[attr-defined]
    asyncio.run(sink.write(_beat(2)))  # type: ignore[attr-defined]
    data = asyncio.run(source.read("node1"))  # type: ignore[attr-defined]
    assert data is not None and decode(data).counter == 2
    last = asyncio.run(sink.last("node1"))  # type: ignore[attr-defined]
    assert last is not None and last.counter == 2
    breaks()  # type: ignore[operator]
    with pytest.raises(OSError):
        asyncio.run(sink.write(_beat(3)))  # type: ignore[attr-defined]
    with pytest.raises(OSError):
        asyncio.run(source.read("node1"))  # type: ignore[attr-defined]
