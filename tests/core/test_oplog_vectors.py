"""core-oplog.json: our Spacecore writes the reference's files byte for byte after every step."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from spacecorestore import KeyPair, Spacecore
from spacecorestore.core import oplog
from vectors_util import h, load_vector

V = load_vector("core-oplog")
KP = KeyPair(h(V["keyPair"]["publicKey"]), h(V["keyPair"]["secretKey"]))


def check_files(d: Path, files: dict, step: int) -> None:
    for name in ("oplog", "tree", "bitfield", "data"):
        p = d / name
        if name not in files:
            assert not p.exists() or p.stat().st_size == 0, f"step {step}: {name} should not exist"
            continue
        want = files[name]
        got = p.read_bytes()
        assert len(got) == want["size"], f"step {step}: {name} size {len(got)} != {want['size']}"
        assert hashlib.sha256(got).hexdigest() == want["sha256"], f"step {step}: {name} bytes differ"


async def test_every_step_is_byte_identical(tmp_path):
    core = Spacecore(tmp_path, key_pair=KP)
    await core.ready()
    try:
        for n, step in enumerate(V["steps"]):
            op = step["op"]
            if "append" in op:
                await core.append([h(b) for b in op["append"]])
            elif "truncate" in op:
                await core.truncate(op["truncate"])
            elif "setUserData" in op:
                await core.set_user_data(op["setUserData"]["key"], h(op["setUserData"]["value"]))
            elif "closeAndReopen" in op:
                await core.close()
                core = Spacecore(tmp_path, key_pair=KP)
                await core.ready()
            check_files(tmp_path, step["files"], n)
            api = step["api"]
            assert core.length == api["length"]
            assert core.byte_length == api["byteLength"]
            assert core.fork == api["fork"]
            assert core.contiguous_length == api["contiguousLength"]
            assert core.core.tree.tree_hash().hex() == api["treeHash"]
    finally:
        await core.close()


@pytest.mark.parametrize("n", range(len(V["steps"])))
def test_parse_matches_decoded_oplog(n):
    step = V["steps"][n]
    buf = h(step["files"]["oplog"]["hex"])
    st = oplog.parse(buf)
    want = step["oplog"]
    assert st.bits[0] + st.bits[1] & 1 == want["activeSlot"]
    assert len(st.entries) == len(want["entries"])
    assert st.header.tree.length == want["header"]["tree"]["length"]
    assert st.header.key.hex() == want["header"]["key"]


@pytest.mark.parametrize("n", range(len(V["steps"])))
async def test_reopen_every_step_gives_api_values(tmp_path, n):
    step = V["steps"][n]
    for name, f in step["files"].items():
        if "hex" in f:
            data = h(f["hex"])
        else:
            data = h(f["hexWithoutTrailingZeros"]).ljust(f["size"], b"\0")
        (tmp_path / name).write_bytes(data)
    async with Spacecore(tmp_path) as core:
        api = step["api"]
        assert (core.length, core.byte_length, core.fork, core.contiguous_length) == (
            api["length"], api["byteLength"], api["fork"], api["contiguousLength"])
        assert core.writable  # the key pair is in the header
        blocks = [await core.get(i) for i in range(core.length)]
        data = h(step["files"]["data"]["hex"]) if "data" in step["files"] else b""
        assert b"".join(blocks) == data[: core.byte_length]
