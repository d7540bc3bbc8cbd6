"""The Spacecore session API of 00-api §2: lifecycle, sessions, snapshots, events, streams, seek, clear."""
from __future__ import annotations

import os

import pytest
import trio

from spacecorestore import AppendResult, Info, Spacecore, crypto
from spacecorestore.storage import MemoryStorage


def open_fds(path) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path)):
                n += 1
        except OSError:
            pass
    return n


async def test_before_ready_and_after_close(tmp_path):
    core = Spacecore(tmp_path)
    assert core.key is None and core.discovery_key is None and core.length == 0
    await core.ready()
    assert len(core.key) == 32 and core.discovery_key == crypto.discovery_key(core.key)
    assert core.writable and core.readable
    await core.close()
    assert not core.readable and not core.writable


async def test_append_returns_and_info(tmp_path):
    async with Spacecore(tmp_path) as core:
        assert await core.append(b"abc") == AppendResult(1, 3)
        assert await core.append([b"de", b""]) == AppendResult(3, 5)
        assert await core.append([]) == AppendResult(3, 5)
        info = core.info()
        assert isinstance(info, Info)
        assert (info.length, info.byte_length, info.contiguous_length, info.fork, info.padding) == (3, 5, 3, 0, 0)
        assert await core.get(2) == b""


async def test_sessions_share_one_core_and_release_files_with_the_last(tmp_path):
    core = Spacecore(tmp_path)
    await core.ready()
    await core.append(b"x")
    others = [core.session() for _ in range(9)]
    assert all(o.core is core.core for o in others)
    fds = open_fds(tmp_path)
    assert fds >= 1
    await others[0].append(b"y")
    assert core.length == 2 and others[5].length == 2
    for o in others:
        await o.close()
    assert open_fds(tmp_path) == fds
    await core.close()
    assert open_fds(tmp_path) == 0


async def test_snapshot_freezes_until_update(tmp_path):
    async with Spacecore(tmp_path) as core:
        await core.append([b"a", b"b"])
        snap = core.snapshot()
        await core.append(b"c")
        assert snap.length == 2 and core.length == 3
        with pytest.raises(Exception) as ei:
            await snap.get(2)
        assert ei.value.code == "SNAPSHOT_NOT_AVAILABLE"
        assert await snap.update() is True
        assert snap.length == 3 and await snap.get(2) == b"c"
        assert await snap.update() is False
        await snap.close()


async def test_events(tmp_path):
    seen = []
    async with Spacecore(tmp_path) as core:
        other = core.session()
        other.on("append", lambda: seen.append(("append", other.length)))
        other.on("truncate", lambda length, fork: seen.append(("truncate", length, fork)))
        other.on("close", lambda: seen.append(("close",)))

        def bad():
            raise RuntimeError("listener bug")

        core.on("append", bad)  # a raising listener is detached, the core is unharmed
        await core.append(b"a")
        await core.append(b"b")
        await core.truncate(1)
        await other.close()
        assert core.length == 1
    assert seen == [("append", 1), ("append", 2), ("truncate", 1, 1), ("close",)]


async def test_read_stream_and_live(tmp_path):
    async with Spacecore(tmp_path) as core:
        await core.append([b"0", b"1", b"2"])
        assert [b async for b in core.read_stream()] == [b"0", b"1", b"2"]
        assert [b async for b in core.read_stream(1, 2)] == [b"1"]
        got = []

        async def reader():
            async for b in core.read_stream(2, live=True):
                got.append(b)
                if len(got) == 3:
                    return

        async with trio.open_nursery() as n:
            n.start_soon(reader)
            await trio.sleep(0.01)
            await core.append(b"3")
            await core.append(b"4")
        assert got == [b"2", b"3", b"4"]


async def test_seek_and_has(tmp_path):
    async with Spacecore(tmp_path) as core:
        await core.append([b"ab", b"", b"", b"cdefg"])
        assert await core.seek(0) == (0, 0)
        assert await core.seek(1) == (0, 1)
        assert await core.seek(2) == (2, 0)  # the reference's answer with empty blocks
        assert await core.seek(3) == (3, 1)
        assert await core.seek(7) == (4, 0)
        assert await core.seek(8, wait=False) is None
        assert await core.has(0) and await core.has(0, 4) and not await core.has(4)


async def test_clear_then_get_waits(tmp_path):
    async with Spacecore(tmp_path) as core:
        await core.append([b"a" * 5000, b"b" * 5000, b"c" * 5000])
        await core.clear(1)
        assert not await core.has(1)
        assert core.contiguous_length == 1
        assert await core.get(1, wait=False) is None
        assert await core.get(2) == b"c" * 5000
    async with Spacecore(tmp_path) as core:
        assert not await core.has(1) and core.contiguous_length == 1


async def test_memory_storage_and_factory():
    st = MemoryStorage()
    async with Spacecore(st) as core:
        await core.append(b"in memory")
        key = core.key
    async with Spacecore(st) as core:
        assert core.key == key and await core.get(0) == b"in memory"
    files = {}

    def factory(path):
        from spacecorestore.storage import MemoryFile
        return files.setdefault(path, MemoryFile(path))

    async with Spacecore(factory) as core:
        await core.append(b"x")
    assert set(files) >= {"oplog", "data"}


async def test_json_and_utf8_encodings(tmp_path):
    async with Spacecore(tmp_path, value_encoding="json") as core:
        await core.append([{"a": 1}, [1, 2]])
        await core.append([[1, 2, 3]])  # a single block holding a list
        assert core.length == 3
        assert await core.get(0) == {"a": 1} and await core.get(2) == [1, 2, 3]
        assert await core.get(0, value_encoding="utf-8") == '{"a":1}'


async def test_user_data_roundtrip(tmp_path):
    async with Spacecore(tmp_path) as core:
        await core.set_user_data("k", b"v")
        await core.set_user_data("gone", b"x")
        await core.set_user_data("gone", None)
    async with Spacecore(tmp_path) as core:
        assert await core.get_user_data("k") == b"v"
        assert await core.get_user_data("gone") is None


async def test_durable_sync(tmp_path):
    async with Spacecore(tmp_path) as core:
        await core.append(b"x")
        await core.sync()
        assert (tmp_path / "data").read_bytes() == b"x"


@pytest.mark.parametrize("bad", [5, 30, 57, 79])  # in the first window, the prefetched ones, the last block
async def test_sequential_read_ahead_still_checks_every_block(tmp_path, bad):
    blocks = [bytes([i]) * 40000 for i in range(80)]  # 1 MiB windows of 27 blocks
    async with Spacecore(tmp_path) as core:
        await core.append(blocks)
    p = tmp_path / "data"
    raw = bytearray(p.read_bytes())
    raw[bad * 40000 + 123] ^= 1
    p.write_bytes(bytes(raw))
    async with Spacecore(tmp_path) as core:
        for i in range(bad):
            assert await core.get(i) == blocks[i]
        with pytest.raises(Exception) as ei:
            await core.get(bad)
        assert ei.value.code == "STORAGE_CORRUPT"
        for i in range(bad + 1, 80):
            assert await core.get(i) == blocks[i]
        with pytest.raises(Exception):
            await core.get(bad)


async def test_read_ahead_forgets_what_clear_and_truncate_removed(tmp_path):
    blocks = [bytes([i]) * 40000 for i in range(80)]
    async with Spacecore(tmp_path) as core:
        await core.append(blocks)
    async with Spacecore(tmp_path) as core:
        for i in range(27):  # the first window (0-26) is served, the next one (27-53) prefetched
            assert await core.get(i) == blocks[i]
        await core.clear(30, 32)
        for i in range(27, 30):
            assert await core.get(i) == blocks[i]
        for i in range(30, 32):
            assert await core.get(i, wait=False) is None
    async with Spacecore(tmp_path) as core:
        for i in range(20):
            assert await core.get(i) == blocks[i]
        await core.clear(25, 35)
        for i in range(20, 25):
            assert await core.get(i) == blocks[i]
        for i in range(25, 35):
            assert await core.get(i, wait=False) is None
        for i in range(35, 60):
            assert await core.get(i) == blocks[i]
        await core.truncate(62)
        await core.append([b"new %d" % i for i in range(3)])
        assert [await core.get(i) for i in range(60, 65)] == blocks[60:62] + [b"new %d" % i for i in range(3)]


async def test_core_seek_agrees_with_the_tree_walk(tmp_path):
    import random

    rnd = random.Random(7)
    blocks = [bytes([i % 251]) * rnd.choice([1, 100, 17000, 40000, 65536]) for i in range(120)]
    async with Spacecore(tmp_path) as core:
        await core.append(blocks)
    async with Spacecore(tmp_path) as core:
        c = core.core
        total = c.tree.byte_length
        probes = [0, 1, total - 1] + [rnd.randrange(total) for _ in range(300)]
        starts = [0]
        for b in blocks:
            starts.append(starts[-1] + len(b))
        for i in range(len(blocks)):  # sequential reads build read-ahead windows; seek after each
            assert await core.get(i) == blocks[i]
            for off in (starts[i], starts[i + 1] - 1, starts[i + 1], *probes[i * 2 : i * 2 + 3]):
                if off < total:
                    assert c.seek(off) == c.tree.seek(off), (i, off)
