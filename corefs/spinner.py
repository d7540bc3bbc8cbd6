"""Bounded busy-waiting for the next WRITE of a writer that sends them back to back.

A program appending in small writes (``dd bs=4k``, a logger, ``cp`` into the mount) waits
for each reply before it sends the next WRITE, so the daemon sleeps in epoll for the few
tens of microseconds in between, and on a virtual machine the idle CPU and cold caches then
make the next append cost half as much again.  After a WRITE whose idle gap before it was
short (< ``MAX_SPIN``), this task keeps the trio loop turning (``checkpoint``: the loop
polls the FUSE fd without sleeping) for at most twice that gap, so the next request is
picked up hot.  A writer slower than that never causes spinning; with fewer than two CPUs
it is off (spinning would take the CPU the writer needs).
"""
from __future__ import annotations

import os
import time

import trio

MAX_SPIN = 150e-6  # seconds


def cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class WriteSpinner:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = cpus_available() >= 2 if enabled is None else enabled
        self._last_end = 0.0
        self._gap = 1.0
        self._wake = trio.Event()
        self.turns = 0  # loop turns spent spinning, for status and tests

    def write_started(self) -> None:
        self._gap = time.perf_counter() - self._last_end

    def write_done(self) -> None:
        self._last_end = time.perf_counter()
        if self._gap < MAX_SPIN:
            self._wake.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.enabled:
            return
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            until = self._last_end + 2 * self._gap
            while time.perf_counter() < until:  # bounded: at most 2 * MAX_SPIN
                self.turns += 1
                await trio.lowlevel.checkpoint()
