"""core-merkle.json through a real Spacecore: nodes, roots, tree hash, lengths and signatures.

Each of the three sequences is replayed op by op in every key mode of the
vector (compat; manifest version 0; manifest version 1 with its multisig
encoding), and after every op the whole state of the core is compared with
what the reference held at that point (01-core §4, §5, §7.10).  The seek
table of the last step is checked through ``Spacecore.seek``.  Finally the
core is reopened from disk and its replayed state must be the same.
"""
from __future__ import annotations

import hashlib

import pytest

from spacecorestore import KeyPair, Spacecore
from spacecorestore import crypto
from spacecorestore.core.messages import Manifest, encode_manifest, manifest_hash
from spacecorestore.storage import MemoryStorage
from vectors_util import h, load_vector

V = load_vector("core-merkle")
KP = KeyPair(h(V["keyPair"]["publicKey"]), h(V["keyPair"]["secretKey"]))
SEQUENCES = {s["name"]: s for s in V["sequences"]}
MODES = ("compat", "manifestV0", "manifestV1")


def block_bytes(b) -> bytes:
    """A block as given in the vector: hex, or {size, sha256, pattern} for large ones."""
    if isinstance(b, str):
        return bytes.fromhex(b)
    p = b["pattern"]
    assert p["rule"] == "byte j = (31*k + 7*j + 3) mod 256"
    k, size = p["k"], p["size"]
    data = bytes((31 * k + 7 * j + 3) % 256 for j in range(size))
    assert len(data) == b["size"]
    assert hashlib.sha256(data).hexdigest() == b["sha256"]
    return data


def open_opts(mode: str) -> dict:
    if mode == "compat":
        return {"key_pair": KP}
    version = 0 if mode == "manifestV0" else 1
    return {"key_pair": KP, "manifest": Manifest.default(KP.public_key, version=version), "compat": False}


def node_tuple(n: dict) -> tuple:
    return (n["index"], n["size"], h(n["hash"]))


def check_state(core: Spacecore, step: dict, mode: str, where: str) -> None:
    tree = core.core.tree
    length = step["length"]
    assert core.length == length, where
    assert tree.length == length, where
    assert core.byte_length == step["byteLength"], where
    assert tree.byte_length == step["byteLength"], where
    assert core.fork == step["fork"], where

    want_nodes = {n["index"]: node_tuple(n) for n in step["nodes"]}
    assert all(i < 2 * length - 1 for i in want_nodes), where
    # every index below 2*length-1, plus a margin beyond: present exactly when the reference had it
    for i in range(2 * length + 8):
        assert tree.get_node(i) == want_nodes.get(i), f"{where}: node {i}"

    assert [tuple(r) for r in tree.roots] == [node_tuple(r) for r in step["roots"]], where
    th = tree.tree_hash()
    assert th.hex() == step["treeHash"], where
    assert crypto.tree_hash(tree.roots) == th, where

    sig_v = step["signatures"][mode]
    assert core.key.hex() == sig_v["key"], where
    assert core.discovery_key == crypto.discovery_key(core.key), where
    signature = tree.signature
    if sig_v["signature"] is None:
        assert signature is None, where
        assert sig_v["signable"] is None
        return
    assert signature is not None, where
    assert signature.hex() == sig_v["signature"], f"{where}: signature"
    signable = h(sig_v["signable"])
    if mode == "compat":
        assert crypto.compat_signable(th, length, step["fork"]) == signable, where
        assert crypto.verify(signable, signature, KP.public_key), where
    else:
        ctx = crypto.DEFAULT_NAMESPACE if mode == "manifestV0" else core.key
        assert crypto.manifest_signable(ctx, th, length, step["fork"]) == signable, where
        raw = signature if mode == "manifestV0" else h(sig_v["ed25519"])
        if mode == "manifestV1":
            # one proof (signer 0, patch 0), no patch nodes: 01 00 <sig> 00 00
            assert signature == b"\x01\x00" + raw + b"\x00\x00", where
        assert crypto.verify(signable, raw, KP.public_key), where
    assert core.core.verify_signature(th, length, step["fork"], signature), where
    # the header the next flush would write carries the same tree state
    ht = core.core.header.tree
    assert (ht.fork, ht.length, ht.root_hash, ht.signature) == (step["fork"], length, th, signature), where


async def apply_op(core: Spacecore, op: dict, where: str) -> None:
    if "init" in op:
        return
    if "append" in op:
        res = await core.append([block_bytes(b) for b in op["append"]])
        assert (res.length, res.byte_length) == (op["returned"]["length"], op["returned"]["byteLength"]), where
        return
    if "truncate" in op:
        if "fork" in op:
            await core.truncate(op["truncate"], op["fork"])
        else:
            await core.truncate(op["truncate"])
        return
    raise AssertionError(f"unknown op {op}")


def test_vector_shape():
    assert set(SEQUENCES) == {"letters", "binary-batches", "truncate-and-fork"}
    for s in V["sequences"]:
        assert s["steps"][0]["op"] == {"init": True}
        assert "seek" in s["steps"][-1]
        for step in s["steps"]:
            assert set(step["signatures"]) == set(MODES)


@pytest.mark.parametrize("mode", MODES)
def test_manifest_keys(mode):
    """The keys of the three modes follow from the key pair (01-core §5.1, §5.2)."""
    key = h(V["sequences"][0]["steps"][0]["signatures"][mode]["key"])
    if mode == "compat":
        assert key == KP.public_key
        return
    m = open_opts(mode)["manifest"]
    assert manifest_hash(m) == key
    ns = crypto.DEFAULT_NAMESPACE
    if mode == "manifestV0":
        assert encode_manifest(m) == b"\x00\x00\x01\x00" + ns + KP.public_key
    else:
        assert encode_manifest(m) == b"\x01\x00\x00\x01\x01\x00" + ns + KP.public_key


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seq", list(SEQUENCES))
async def test_sequence(seq, mode, tmp_path):
    s = SEQUENCES[seq]
    core = Spacecore(MemoryStorage(), **open_opts(mode))
    async with core:
        assert core.core.compat == (mode == "compat")
        for n, step in enumerate(s["steps"]):
            where = f"{seq}/{mode} step {n} {step['op']}"
            await apply_op(core, step["op"], where)
            check_state(core, step, mode, where)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seq", list(SEQUENCES))
async def test_sequence_reopened_after_every_step(seq, mode, tmp_path):
    """On disk: after each op, close and reopen; the replayed state equals the vector."""
    s = SEQUENCES[seq]
    opts = open_opts(mode)
    for n, step in enumerate(s["steps"]):
        where = f"{seq}/{mode} step {n} {step['op']} (reopened)"
        async with Spacecore(tmp_path, **opts) as core:
            await apply_op(core, step["op"], where)
        # reopen twice: with the key pair, and by key only (the key pair comes from the header, §7.4)
        async with Spacecore(tmp_path, **opts) as core:
            check_state(core, step, mode, where)
        key = h(step["signatures"][mode]["key"])
        async with Spacecore(tmp_path, key=key) as core:
            assert core.length == step["length"]
            assert core.core.tree.tree_hash().hex() == step["treeHash"]
            assert core.key_pair == KP
            assert core.core.tree.signature == h(step["signatures"][mode]["signature"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seq", list(SEQUENCES))
async def test_seek_table(seq, mode):
    s = SEQUENCES[seq]
    async with Spacecore(MemoryStorage(), **open_opts(mode)) as core:
        for step in s["steps"]:
            await apply_op(core, step["op"], seq)
        last = s["steps"][-1]
        assert core.byte_length == last["byteLength"]
        for b, want in last["seek"]:
            got = await core.seek(b, wait=False)
            if want is None:
                assert got is None, f"seek({b})"
                assert core.core.tree.seek(b) is None
            else:
                assert got == tuple(want), f"seek({b})"
                assert isinstance(got, tuple)


async def test_seek_with_empty_blocks_depends_on_tree_shape():
    """§4.4: block sizes [2,0,0,5] as one batch: seek(2) is [2, 0] although block 2 is empty."""
    async with Spacecore(MemoryStorage(), key_pair=KP) as core:
        await core.append([b"ab", b"", b"", b"cdefg"])
        assert await core.seek(0) == (0, 0)
        assert await core.seek(1) == (0, 1)
        assert await core.seek(2) == (2, 0)
        assert await core.seek(3) == (3, 1)
        assert await core.seek(7) == (4, 0)
        assert await core.seek(8, wait=False) is None
