"""core-encryption.json through Spacecore sessions with ``encryption_key`` (01-core §8.9).

The vector's blocks are: ``top``, ``secret``, ``third block`` appended at fork
0, then (after a truncation to 2, fork 1) ``after fork`` as block 2.  Both the
compat core and the manifest-v1 core of the merkle vector's key pair are
covered.
"""
from __future__ import annotations

import pytest

from spacecorestore import KeyPair, Spacecore
from spacecorestore import crypto
from spacecorestore.core.messages import Manifest
from spacecorestore.errors import BadArgumentError
from spacecorestore.storage import MemoryStorage
from vectors_util import h, load_vector

V = load_vector("core-encryption")
M = load_vector("core-merkle")
KP = KeyPair(h(M["keyPair"]["publicKey"]), h(M["keyPair"]["secretKey"]))
CASES = {c["mode"]: c for c in V["cases"]}


def open_opts(case: dict) -> dict:
    opts = {"key_pair": KP, "encryption_key": h(case["encryptionKey"])}
    if not case["compat"]:
        assert case["mode"] == "manifestV1"
        opts.update(manifest=Manifest.default(KP.public_key, version=1), compat=False)
    return opts


def split_blocks(case: dict) -> tuple[list[dict], list[dict]]:
    """(blocks written at fork 0, blocks written after the truncation)."""
    blocks = case["blocks"]
    first = [b for b in blocks if b["fork"] == 0]
    after = [b for b in blocks if b["fork"] != 0]
    assert [b["index"] for b in first] == list(range(len(first)))
    return first, after


def test_vector_shape():
    assert set(CASES) == {"compat", "manifestV1"}
    for c in V["cases"]:
        first, after = split_blocks(c)
        assert len(first) == 3 and len(after) == 1
        assert after[0]["index"] == 2 and after[0]["fork"] == 1
        assert c["padding"] == 8


@pytest.mark.parametrize("mode", list(CASES))
def test_derived_keys(mode):
    c = CASES[mode]
    enc = crypto.BlockEncryption(h(c["encryptionKey"]), h(c["key"]), compat=c["compat"])
    assert enc.block_key.hex() == c["blockKey"]
    assert enc.blinding_key.hex() == c["blindingKey"]
    for b in c["blocks"]:
        stored = enc.encrypt(b["index"], h(b["plaintext"]), b["fork"])
        assert stored.hex() == b["stored"]
        assert enc.decrypt(b["index"], stored) == h(b["plaintext"])


async def replay_case(core: Spacecore, c: dict) -> None:
    first, after = split_blocks(c)
    tree_bytes = 0
    for n, b in enumerate(first):
        res = await core.append(h(b["plaintext"]))
        tree_bytes += len(h(b["stored"]))
        assert res.length == n + 1
        # §8.2: append returns the *tree* byte length, padding included (the reference returns
        # the end offset of the data write); the session's byte_length excludes the padding
        assert res.byte_length == tree_bytes
        assert core.byte_length == tree_bytes - 8 * (n + 1)
        assert await core.get(b["index"], raw=True) == h(b["stored"])
        assert await core.get(b["index"]) == h(b["plaintext"])
    await core.truncate(2)
    assert core.fork == 1
    assert core.length == 2
    for b in after:
        await core.append(h(b["plaintext"]))
        assert await core.get(b["index"], raw=True) == h(b["stored"])


def check_final(core: Spacecore, c: dict) -> None:
    first, after = split_blocks(c)
    assert core.key.hex() == c["key"]
    assert core.length == c["length"]
    assert core.byte_length == c["byteLength"]
    assert core.core.tree.byte_length == c["treeByteLength"]
    assert core.padding == 8
    assert core.info().padding == 8
    assert core.info().byte_length == c["byteLength"]
    assert core.core.tree.tree_hash().hex() == c["treeHash"]
    # every leaf is the hash of the stored (padded, encrypted) bytes
    final = first[:2] + after
    for b in final:
        node = core.core.tree.get_node(2 * b["index"])
        stored = h(b["stored"])
        assert node[1] == len(stored) == len(h(b["plaintext"])) + 8
        assert node[2] == crypto.leaf_hash(stored)


@pytest.mark.parametrize("mode", list(CASES))
async def test_append_get_and_reopen(mode, tmp_path):
    c = CASES[mode]
    async with Spacecore(tmp_path, **open_opts(c)) as core:
        await replay_case(core, c)
        check_final(core, c)
    first, after = split_blocks(c)
    final = first[:2] + after
    # reopen with the key: plaintext again
    async with Spacecore(tmp_path, **open_opts(c)) as core:
        check_final(core, c)
        for b in final:
            assert await core.get(b["index"]) == h(b["plaintext"])
            assert await core.get(b["index"], raw=True) == h(b["stored"])
            assert await core.get(b["index"], decrypt=False) == h(b["stored"])
    # reopen by key without the encryption key: the stored bytes, and lengths with the padding
    async with Spacecore(tmp_path, key=h(c["key"])) as core:
        assert core.padding == 0
        assert core.length == c["length"]
        assert core.byte_length == c["treeByteLength"]
        for b in final:
            assert await core.get(b["index"]) == h(b["stored"])
        assert core.core.tree.tree_hash().hex() == c["treeHash"]


@pytest.mark.parametrize("mode", list(CASES))
async def test_session_without_key_reads_stored_bytes(mode):
    c = CASES[mode]
    async with Spacecore(MemoryStorage(), **open_opts(c)) as core:
        await replay_case(core, c)
        first, after = split_blocks(c)
        final = first[:2] + after
        plain = core.session(encryption_key=None)
        # a session of an encrypted core inherits its encryption; an explicit other key does not decrypt
        other = core.session(encryption_key=bytes(32))
        try:
            for b in final:
                assert await plain.get(b["index"]) == h(b["plaintext"])
                got = await other.get(b["index"])
                assert got != h(b["plaintext"]) and len(got) == len(h(b["plaintext"]))
                assert await other.get(b["index"], raw=True) == h(b["stored"])
        finally:
            await plain.close()
            await other.close()


@pytest.mark.parametrize("mode", list(CASES))
async def test_seek_excludes_padding(mode):
    c = CASES[mode]
    async with Spacecore(MemoryStorage(), **open_opts(c)) as core:
        await replay_case(core, c)
        sizes = [len(h(b["plaintext"])) for b in split_blocks(c)[0][:2] + split_blocks(c)[1]]
        assert sizes == [3, 6, 10]
        assert await core.seek(0) == (0, 0)
        assert await core.seek(2) == (0, 2)
        assert await core.seek(3) == (1, 0)
        assert await core.seek(8) == (1, 5)
        assert await core.seek(9) == (2, 0)
        assert await core.seek(18) == (2, 9)
        assert await core.seek(19) == (3, 0)
        assert await core.seek(20, wait=False) is None


async def test_append_result_includes_padding():
    """Checked against hypercore 10.38.2: append returns the tree byte length, also for []."""
    c = CASES["compat"]
    async with Spacecore(MemoryStorage(), **open_opts(c)) as core:
        assert tuple(await core.append(b"top")) == (1, 11)
        assert core.byte_length == 3
        assert tuple(await core.append([b"secret", b"x"])) == (3, 34)
        assert tuple(await core.append([])) == (3, 34)
        assert core.byte_length == 10


async def test_bad_encryption_key():
    with pytest.raises(BadArgumentError):
        Spacecore(MemoryStorage(), key_pair=KP, encryption_key=b"short")
