"""Bad input gets a clear typed error and changes nothing on disk (issue: engine-log, must show 4)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from spacecorestore import (
    BadArgumentError,
    LockedError,
    OplogCorruptError,
    RequestCancelledError,
    RequestTimeoutError,
    SessionClosedError,
    SessionNotWritableError,
    SnapshotNotAvailableError,
    Spacecore,
    StorageConflictError,
    StorageEmptyError,
)
from spacecorestore.crypto import key_pair


def digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture
async def core_dir(tmp_path):
    d = tmp_path / "core"
    async with Spacecore(d, key_pair=key_pair(bytes(32))) as core:
        await core.append([b"a", b"bb", b"ccc"])
    return d


async def test_append_to_a_read_only_session(core_dir):
    before = digest(core_dir)
    async with Spacecore(core_dir, writable=False) as core:
        with pytest.raises(SessionNotWritableError):
            await core.append(b"x")
        with pytest.raises(SessionNotWritableError):
            await core.truncate(1)
        assert core.length == 3
    assert digest(core_dir) == before


async def test_append_without_a_secret_key(tmp_path, core_dir):
    async with Spacecore(core_dir) as writer:
        key = writer.key
    other = tmp_path / "by-key"
    async with Spacecore(other, key=key) as core:  # created from the key alone: not writable
        assert not core.writable
        before = digest(other)
        with pytest.raises(SessionNotWritableError):
            await core.append(b"x")
        assert digest(other) == before


async def test_get_timeout(core_dir):
    before = digest(core_dir)
    async with Spacecore(core_dir) as core:
        t0 = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            await core.get(10, timeout=0.05)
        assert trio.current_time() - t0 >= 0.05
        assert await core.get(10, wait=False) is None
    assert digest(core_dir) == before


async def test_waiting_get_is_cancelled_by_close(core_dir):
    async with Spacecore(core_dir) as core:
        result = []

        async def waiter():
            with pytest.raises(RequestCancelledError):
                await core.get(5)
            result.append("cancelled")

        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            await trio.sleep(0.01)
            await core.close()
        assert result == ["cancelled"]


async def test_waiting_get_resolves_on_append(core_dir):
    async with Spacecore(core_dir) as core:
        got = []

        async def waiter():
            got.append(await core.get(3, timeout=5))

        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            await trio.sleep(0.01)
            await core.append(b"late")
        assert got == [b"late"]


async def test_truncated_away_while_waiting_fails_snapshot(core_dir):
    async with Spacecore(core_dir) as core:
        snap = core.snapshot()
        await core.truncate(1)
        with pytest.raises(SnapshotNotAvailableError):
            await snap.get(2)
        await snap.close()


@pytest.mark.parametrize("damage", ["truncate-100", "garble-slot-0", "zero-first-8192"])
async def test_garbled_or_short_oplog_header(core_dir, damage):
    p = core_dir / "oplog"
    b = bytearray(p.read_bytes())
    if damage == "truncate-100":
        b = b[:100]
    elif damage == "garble-slot-0":
        for i in range(8, 40):
            b[i] ^= 0x5A
        for i in range(4096 + 8, 4096 + 40):
            b[i] ^= 0x5A
    else:
        b[:8192] = bytes(8192)
    p.write_bytes(bytes(b))
    before = digest(core_dir)
    with pytest.raises(OplogCorruptError) as ei:
        await Spacecore(core_dir).ready()
    assert "oplog" in str(ei.value)
    assert digest(core_dir) == before


@pytest.mark.parametrize("key", [b"short", bytes(33), "abc", "zz" * 32, 42])
async def test_wrong_key(tmp_path, key):
    with pytest.raises(BadArgumentError):
        Spacecore(tmp_path / "x", key=key)
    assert not (tmp_path / "x").exists()


async def test_key_of_another_core(core_dir):
    before = digest(core_dir)
    with pytest.raises(StorageConflictError):
        await Spacecore(core_dir, key=bytes(32)).ready()
    assert digest(core_dir) == before


async def test_closed_session(core_dir):
    core = Spacecore(core_dir)
    await core.ready()
    await core.close()
    for call in (lambda: core.get(0), lambda: core.append(b"x"), lambda: core.truncate(0), lambda: core.has(0)):
        with pytest.raises(SessionClosedError):
            await call()


async def test_value_the_encoding_cannot_encode(core_dir):
    before = digest(core_dir)
    async with Spacecore(core_dir, value_encoding="json") as core:
        with pytest.raises(BadArgumentError):
            await core.append({"not json": {1, 2}})
        with pytest.raises(BadArgumentError):
            await core.append([b"fine", float("nan")])  # the batch fails as a whole
        assert core.length == 3
    async with Spacecore(core_dir, value_encoding="ascii") as core:
        with pytest.raises(BadArgumentError):
            await core.append("naïve")
    with pytest.raises(BadArgumentError):
        Spacecore(core_dir, value_encoding="no-such-encoding")
    assert digest(core_dir) == before


async def test_block_too_large(core_dir):
    before = digest(core_dir)
    async with Spacecore(core_dir) as core:
        with pytest.raises(BadArgumentError):
            await core.append(bytes(15 * 1024 * 1024 + 1))
    assert digest(core_dir) == before


async def test_truncate_beyond_length(core_dir):
    before = digest(core_dir)
    async with Spacecore(core_dir) as core:
        with pytest.raises(BadArgumentError):
            await core.truncate(4)
    assert digest(core_dir) == before


async def test_user_data_must_be_bytes(core_dir):
    before = digest(core_dir)
    async with Spacecore(core_dir) as core:
        with pytest.raises(BadArgumentError):
            await core.set_user_data("k", "a string")
    assert digest(core_dir) == before


async def test_locked_by_another_session_object(core_dir):
    async with Spacecore(core_dir):
        with pytest.raises(LockedError):
            await Spacecore(core_dir).ready()


async def test_create_if_missing_false(tmp_path):
    with pytest.raises(StorageEmptyError):
        await Spacecore(tmp_path / "none", create_if_missing=False).ready()
    assert not (tmp_path / "none").exists()
