"""One background task that tells the kernel about growth it cannot see (04-corefs §8).

Appends through the mount already update the kernel's size.  Growth from
elsewhere (replication) and truncation/fork must be invalidated, but
``invalidate_inode`` blocks inside the kernel and can deadlock against a
pending request if called from a handler.  So handlers and core events only
``queue`` an inode (after the new length is published); this task,
de-duplicating, hands each to a worker thread: attributes only for growth,
data too for a truncation.
"""
from __future__ import annotations

import logging
from typing import Callable

import trio

log = logging.getLogger("corefs")


class Invalidator:
    def __init__(self, invalidate: Callable[[int, bool], None]) -> None:
        """``invalidate(ino, attr_only)`` is called in a worker thread, one at a time."""
        self._invalidate = invalidate
        self._pending: dict[int, bool] = {}  # ino -> attr_only (False wins)
        self._wakeup = trio.Event()
        self.count = 0

    def queue(self, ino: int, *, attr_only: bool = True) -> None:
        """Non-blocking; safe from any trio task (handlers, core event callbacks)."""
        self._pending[ino] = self._pending.get(ino, True) and attr_only
        self._wakeup.set()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            while self._pending:
                ino, attr_only = next(iter(self._pending.items()))
                del self._pending[ino]
                try:
                    await trio.to_thread.run_sync(self._invalidate, ino, attr_only)
                    self.count += 1
                except OSError as e:  # ENOENT: the kernel has forgotten the inode; nothing to do
                    log.debug("invalidate inode %d: %s", ino, e)
