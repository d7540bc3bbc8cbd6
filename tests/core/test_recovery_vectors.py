"""core-recovery.json: stale header-slot tails (§7.2) and the pending-clear replay (§7.9)."""
from __future__ import annotations

import pytest

from spacecorestore import Spacecore
from spacecorestore.crypto import key_pair
from vectors_util import h, load_vector

R = load_vector("core-recovery")


def _value(v):
    if v is None:
        return None
    if " bytes of " in v:
        n, _, _, byte = v.split()
        return bytes.fromhex(byte) * int(n)
    return h(v)


async def test_header_slot_tails_byte_identical_and_reopen(tmp_path):
    t = R["headerSlotTails"]
    kp = key_pair(h(t["keyPair"]["seed"]))
    async with Spacecore(tmp_path, key_pair=kp) as core:
        for n, step in enumerate(t["steps"]):
            op = step["op"]
            if "setUserData" in op:
                u = op["setUserData"]
                await core.set_user_data(u["key"], _value(u["value"]), flush=op.get("flush", False))
            assert (tmp_path / "oplog").read_bytes() == h(step["oplog"]), f"step {n}"
    async with Spacecore(tmp_path) as core:
        for k, v in t["reopened"]["userData"].items():
            assert await core.get_user_data(k) == _value(v)
        assert core.length == t["reopened"]["length"]


@pytest.mark.parametrize("case", range(3))
async def test_pending_clear_replays_to_the_correct_contiguous_length(tmp_path, case):
    c = R["clearReplay"]["cases"][case]
    kp = key_pair(h(R["clearReplay"]["keyPair"]["seed"]))
    start, end = (int(x) for x in c["ops"][1].split("(")[1].split(")")[0].split(","))
    ours = tmp_path / "ours"
    async with Spacecore(ours, key_pair=kp) as core:
        await core.append([f"b{i}".encode() for i in range(10)])
        await core.clear(start, end)
        assert core.contiguous_length == c["live"]["contiguousLength"]
    for name, hexdata in c["files"].items():
        assert (ours / name).read_bytes() == h(hexdata), name
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name, hexdata in c["files"].items():
        (theirs / name).write_bytes(h(hexdata))
    async with Spacecore(theirs, key_pair=kp) as core:
        assert core.contiguous_length == c["correctContiguousLength"]
        has = "".join(["1" if await core.has(i) else "0" for i in range(10)])
        assert has == c["referenceAfterReopen"]["has"]
        await core.append(b"flush me")  # first mutation after open flushes: the hint written must be right
    async with Spacecore(theirs, key_pair=kp) as core:
        assert core.contiguous_length == c["correctContiguousLength"]
        assert core.core.header.contiguous_length == c["correctContiguousLength"]
