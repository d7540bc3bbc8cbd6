"""The invalidator: one worker, de-duplicated, data invalidation wins over attribute-only."""
from __future__ import annotations

import threading

import trio

from corefs.invalidator import Invalidator


async def test_queue_is_deduplicated_and_runs_in_a_thread():
    calls = []
    main = threading.get_ident()

    def invalidate(ino, attr_only):
        calls.append((ino, attr_only, threading.get_ident() != main))

    inv = Invalidator(invalidate)
    async with trio.open_nursery() as n:
        await n.start(inv.run)
        for _ in range(5):
            inv.queue(7)
        inv.queue(9)
        inv.queue(9, attr_only=False)
        inv.queue(9)
        for _ in range(100):
            if len(calls) >= 2:
                break
            await trio.sleep(0.01)
        n.cancel_scope.cancel()
    assert sorted(calls) == [(7, True, True), (9, False, True)]


async def test_errors_from_the_kernel_are_not_fatal():
    seen = []

    def invalidate(ino, attr_only):
        seen.append(ino)
        if ino == 1:
            raise FileNotFoundError("forgotten")

    inv = Invalidator(invalidate)
    async with trio.open_nursery() as n:
        await n.start(inv.run)
        inv.queue(1)
        await trio.sleep(0.05)
        inv.queue(2)
        for _ in range(100):
            if 2 in seen:
                break
            await trio.sleep(0.01)
        n.cancel_scope.cancel()
    assert seen == [1, 2] and inv.count == 1
