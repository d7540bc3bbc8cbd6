"""corefs.spinner: busy-waits only after back-to-back writes, and only for a bounded time."""
from __future__ import annotations

import time

import trio

from corefs.spinner import MAX_SPIN, WriteSpinner


async def _writes(sp: WriteSpinner, n: int, gap: float) -> None:
    for _ in range(n):
        sp.write_started()
        sp.write_done()
        t = time.perf_counter() + gap
        while time.perf_counter() < t:  # a writer that answers within ``gap`` (no trio sleep: µs)
            pass
        await trio.lowlevel.checkpoint()


async def test_back_to_back_writes_spin_then_it_stops():
    sp = WriteSpinner(True)
    async with trio.open_nursery() as nursery:
        await nursery.start(sp.run)
        await _writes(sp, 50, 10e-6)
        assert sp.turns > 0
        await trio.sleep(0.02)  # far beyond 2 * MAX_SPIN after the last write
        turns = sp.turns
        await trio.sleep(0.02)
        assert sp.turns == turns  # idle: waiting, not spinning
        nursery.cancel_scope.cancel()


async def test_slow_writers_and_disabled_spinners_never_spin():
    slow, off = WriteSpinner(True), WriteSpinner(False)
    async with trio.open_nursery() as nursery:
        await nursery.start(slow.run)
        await nursery.start(off.run)
        await _writes(slow, 5, 3 * MAX_SPIN)
        await _writes(off, 50, 10e-6)
        await trio.sleep(0.01)
        assert slow.turns == 0 and off.turns == 0
        nursery.cancel_scope.cancel()
