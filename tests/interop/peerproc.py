"""A running tests/interop/transport_peer.js (the reference's secret stream + protomux), for tests.

``async with transport_peer(*args) as peer`` starts it (killed by PID on exit);
its JSON lines are collected and awaited by event name.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import asynccontextmanager
from typing import Any

import trio

from .refnode import INTEROP_DIR

PEER_JS = INTEROP_DIR / "transport_peer.js"


class NodePeer:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.events: list[dict] = []
        self.eof = False
        self._new = trio.Event()

    async def pump(self) -> None:
        buf = b""
        assert self.proc.stdout is not None
        while data := await self.proc.stdout.receive_some(1 << 16):
            buf += data
            *lines, buf = buf.split(b"\n")
            self.events += [json.loads(x) for x in lines if x.strip()]
            self._wake()
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        self._new.set()
        self._new = trio.Event()

    def all(self, name: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == name]

    async def event(self, name: str, timeout: float = 15) -> dict:
        """The first event ``name``, waiting for it; fails if the peer exits without one."""
        with trio.fail_after(timeout):
            while not self.all(name):
                if self.eof:
                    raise AssertionError(f"peer exited without a {name!r} event: {self.events}")
                await self._new.wait()
        return self.all(name)[0]

    async def wait(self, timeout: float = 15) -> int:
        """The peer's exit status."""
        with trio.fail_after(timeout):
            return await self.proc.wait()

    async def exit_status(self, timeout: float = 20) -> int:
        return await self.wait(timeout)


@asynccontextmanager
async def transport_peer(*args: Any):
    cmd = [shutil.which("node") or "node", str(PEER_JS), *map(str, args)]
    async with trio.open_nursery() as nursery:
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, cwd=INTEROP_DIR)
        peer = NodePeer(proc)
        nursery.start_soon(peer.pump)
        try:
            yield peer
        finally:
            if proc.returncode is None:
                proc.kill()  # by PID
            with trio.CancelScope(shield=True):
                await proc.wait()
