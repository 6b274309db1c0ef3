"""Heartbeat files on a shared directory (the system datastore): the agent's `BeatSink` and
the controller's `HeartbeatSource` (ports/heartbeat.py; format in domain/heartbeat.py).

    <root>/.lazarus-heartbeat/<host>.hb

A write is atomic: the beat goes to a temporary file in the same directory, is fsynced,
renamed over the old one, and the directory is fsynced; a reader sees the old beat or the
new one, never half of one. The blocking file calls run in a worker thread so a hung NFS
mount delays only that call (the agent and the controller bound it); a thread stuck in the
kernel stays stuck until the mount answers (documented in docs/ha.md).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lazarus.domain.heartbeat import DIRECTORY, Beat, HeartbeatError, decode, file_name


class FileBeats:
    def __init__(self, root: Path | str) -> None:
        self.directory = Path(root) / DIRECTORY

    def path(self, host: str) -> Path:
        return self.directory / file_name(host)

    # -- the agent -----------------------------------------------------------------------------
    async def write(self, beat: Beat) -> None:
        await asyncio.to_thread(self._write, beat)

    def _write(self, beat: Beat) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        final = self.path(beat.host)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, beat.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    async def last(self, host: str) -> Beat | None:
        data = await self.read(host)
        if data is None:
            return None
        try:
            return decode(data)
        except HeartbeatError:
            return None

    # -- the controller ------------------------------------------------------------------------
    async def read(self, host: str) -> bytes | None:
        return await asyncio.to_thread(self._read, host)

    def _read(self, host: str) -> bytes | None:
        try:
            path = self.path(host)
        except HeartbeatError:
            return None  # a name no agent can have written
        try:
            with open(path, "rb") as f:
                return f.read(8192)
        except FileNotFoundError:
            return None
