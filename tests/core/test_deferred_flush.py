"""Core.defer_flush (what corefs uses): the periodic flush waits for settle(), and nothing else changes.

Two cores with the same key run the same random operations, one flushing as the reference does
and one with ``defer_flush``.  After every operation the deferred core's files, once settled,
are byte-identical to the other's; and a copy of its files taken before settling (a crash
while the flush was pending) reopens to the same blocks.
"""
from __future__ import annotations

import copy

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacecorestore import Spacecore
from spacecorestore.crypto import key_pair
from spacecorestore.storage import MemoryStorage

KP = key_pair(bytes(range(32)))
block = st.binary(max_size=300)
op = st.one_of(
    st.tuples(st.just("append"), block),
    st.tuples(st.just("batch"), st.lists(block, min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 40)),
    st.tuples(st.just("clear"), st.integers(0, 40), st.integers(1, 5)),
    st.tuples(st.just("user"), st.sampled_from(["a", "b"]), st.one_of(st.none(), st.binary(max_size=5))),
    st.tuples(st.just("sync")),
)


def files(storage: MemoryStorage) -> dict[str, bytes]:
    return {p: f.read_all() for p, f in storage.files.items() if f.exists_}


async def apply(core: Spacecore, o: tuple) -> None:
    kind = o[0]
    if kind == "append":
        await core.append(o[1])
    elif kind == "batch":
        await core.append(list(o[1]))
    elif kind == "truncate":
        await core.truncate(min(o[1], core.length), core.fork + 1)
    elif kind == "clear":
        if core.length:
            start = o[1] % core.length
            await core.clear(start, start + o[2])
    elif kind == "user":
        await core.set_user_data(o[1], o[2])
    else:
        await core.sync()


async def two_cores() -> tuple[MemoryStorage, MemoryStorage, Spacecore, Spacecore]:
    """Two cores with one key pair: one flushing as the reference does, one with defer_flush."""
    ref_store, def_store = MemoryStorage(), MemoryStorage()
    ref = Spacecore(ref_store, key_pair=KP)
    deferred = Spacecore(def_store, key_pair=KP)
    await ref.ready()
    await deferred.ready()
    deferred.core.defer_flush = True
    return ref_store, def_store, ref, deferred


async def blocks(core: Spacecore) -> list[bytes | None]:
    return [await core.get(i, wait=False) for i in range(core.length)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=30))
def test_deferred_flush_writes_the_same_files(ops):
    async def main():
        ref_store, def_store, ref, deferred = await two_cores()
        for o in ops:
            await apply(ref, o)
            await apply(deferred, o)
            if deferred.core.flush_due:
                crashed = MemoryStorage()
                crashed.files = copy.deepcopy(def_store.files)
                for f in crashed.files.values():
                    f.locked = False  # the crashed process held the lock
                reopened = Spacecore(crashed, key_pair=KP)
                await reopened.ready()
                assert (reopened.length, reopened.fork) == (ref.length, ref.fork)
                assert await blocks(reopened) == await blocks(ref)
                await reopened.close()
            deferred.core.settle()
            assert not deferred.core.flush_due
            assert files(def_store) == files(ref_store), o
        await ref.close()
        await deferred.close()
        assert files(def_store) == files(ref_store)

    trio.run(main)


def test_close_and_the_next_append_run_a_pending_flush():
    async def main():
        ref_store, def_store, ref, deferred = await two_cores()
        for i in range(9):
            await ref.append(b"block %d" % i)
            await deferred.append(b"block %d" % i)
        # no settle() at all: each append ran the flush the one before left due
        assert deferred.core.flush_due
        assert files(def_store) != files(ref_store)
        await ref.close()
        await deferred.close()
        assert files(def_store) == files(ref_store)

    trio.run(main)


def test_start_writeback_hands_appended_data_to_the_disk_in_chunks(tmp_path):
    from spacecorestore.core.core import WRITEBACK_CHUNK

    async def main():
        core = Spacecore(tmp_path, key_pair=KP)
        await core.ready()
        c = core.core
        block = bytes(range(256)) * 256
        while not c.writeback_due:
            await core.append(block)
        assert c.tree.byte_length >= WRITEBACK_CHUNK
        c.start_writeback()  # sync_file_range on the data file: starts I/O, changes nothing
        assert not c.writeback_due
        await core.truncate(2)
        assert c._writeback_from == c.tree.byte_length == 2 * len(block)
        await core.append([block] * (WRITEBACK_CHUNK // len(block)))
        assert c.writeback_due
        c.start_writeback()
        await core.close()
        data = (tmp_path / "data").read_bytes()
        assert data[: (2 + WRITEBACK_CHUNK // len(block)) * len(block)] == block * (2 + WRITEBACK_CHUNK // len(block))
        reopened = Spacecore(tmp_path, key_pair=KP)
        await reopened.ready()
        assert not reopened.core.writeback_due  # what was there at open counts as handed over
        assert await reopened.get(reopened.length - 1) == block
        await reopened.close()

    trio.run(main)
