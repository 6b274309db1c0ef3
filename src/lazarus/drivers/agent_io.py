"""The real host agent's other two ports (ports/heartbeat.py): `TcpLink` (does the
controller's API endpoint accept a TCP connection within the bound?) and `VirshVms` (the
isolation response: destroy every running domain of the local libvirtd with virsh)."""

from __future__ import annotations

import asyncio

from lazarus.drivers.process import run_process


class TcpLink:
    def __init__(self, host: str, port: int, timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    async def reachable(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True


class VirshVms:
    def __init__(self, uri: str = "qemu:///system", timeout: float = 20.0) -> None:
        self.uri = uri
        self.timeout = timeout

    async def stop_all(self) -> int:
        listed = await run_process(
            ["virsh", "-c", self.uri, "list", "--name"], None, timeout=self.timeout
        )
        if listed.rc != 0:
            raise OSError(f"virsh list failed: {listed.stderr.decode(errors='replace')[:200]}")
        names = [n for n in listed.stdout.decode(errors="replace").split() if n]
        for name in names:
            done = await run_process(
                ["virsh", "-c", self.uri, "destroy", name], None, timeout=self.timeout
            )
            if done.rc != 0:
                raise OSError(
                    f"virsh destroy {name} failed: {done.stderr.decode(errors='replace')[:200]}"
                )
        return len(names)
