"""The reference's store directory (tests/fixtures/js-corestore6-store) read core by core.

Every core is opened on its own (``Spacecore(SubStorage(FileStorage(copy), dir),
key=...)``) from a copy in tmp_path, and everything the fixture manifest lists
must come out: keys, lengths, fork, tree hash, signature, user data and every
block.  Several cores are not flushed (pending oplog entries, 01-core §7.6,
§7.8), so this also checks replay.  Opening and reading must not change a
single byte of any file, nor create one (the fixture has no torn tail).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from spacecorestore import Spacecore
from spacecorestore import crypto
from spacecorestore.core import oplog
from spacecorestore.encoding import z32_encode
from spacecorestore.errors import BadArgumentError, StorageConflictError
from spacecorestore.storage import FileStorage, SubStorage
from vectors_util import h

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STORE = FIXTURES / "js-corestore6-store"
MANIFEST = json.loads((FIXTURES / "js-corestore6-store.manifest.json").read_text())
CORES = MANIFEST["cores"]
CORE_IDS = [f"{'/'.join(c['namespacePath'] or ['<key>'])}:{c['name']}" for c in CORES]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def store(fixture_store) -> Path:
    return fixture_store


def open_core(store: Path, c: dict, **opts) -> Spacecore:
    if c["encryptionKey"] is not None:
        opts.setdefault("encryption_key", h(c["encryptionKey"]))
    return Spacecore(SubStorage(FileStorage(store), c["dir"]), key=h(c["key"]), **opts)


def test_fixture_copy_is_intact():
    """tests/fixtures holds exactly the files the manifest lists, byte for byte."""
    files = snapshot(STORE)
    want = {f["path"]: f for f in MANIFEST["files"]}
    assert set(files) == set(want)
    for path, f in want.items():
        assert len(files[path]) == f["size"], path
        assert hashlib.sha256(files[path]).hexdigest() == f["sha256"], path
    assert files["primary-key"] == h(MANIFEST["primaryKey"])
    assert sum(len(b) for b in files.values()) == MANIFEST["totalBytes"]
    assert len(CORES) == 11
    assert len({c["dir"] for c in CORES}) == len(CORES)


@pytest.mark.parametrize("c", CORES, ids=CORE_IDS)
def test_oplog_state_as_described(c):
    """The manifest's account of each oplog (active slot, stale header, pending entries)."""
    buf = (STORE / c["dir"] / "oplog").read_bytes()
    st = oplog.parse(buf)
    o = c["oplog"]
    assert (st.bits[0] + st.bits[1]) & 1 == o["activeSlot"]
    assert st.header.tree.length == o["headerTreeLength"]
    assert st.header.tree.fork == o["headerTreeFork"]
    assert [k for k, _ in st.header.user_data] == o["headerUserDataKeys"]
    assert (st.header.key_pair is not None) == o["headerHasKeyPair"]
    assert len(st.entries) == o["pendingEntries"]
    assert not st.torn_tail
    assert st.entries_end == len(buf)
    m = st.header.manifest
    if o["headerManifest"] is None:
        assert m is None
    else:
        hm = o["headerManifest"]
        assert (m.version, m.quorum, m.allow_patch, m.prologue) == (hm["version"], hm["quorum"], hm["allowPatch"], None)
        assert [(s.namespace.hex(), s.public_key.hex()) for s in m.signers] == [
            (s["namespace"], s["publicKey"]) for s in hm["signers"]]


@pytest.mark.parametrize("c", CORES, ids=CORE_IDS)
async def test_core_matches_manifest(store, c):
    before = snapshot(store)
    async with open_core(store, c) as core:
        key = h(c["key"])
        assert core.key == key
        assert core.discovery_key.hex() == c["discoveryKey"]
        assert crypto.discovery_key(key) == core.discovery_key
        assert core.id == c["id"] == z32_encode(key)
        assert c["dir"] == f"cores/{c['discoveryKey'][:2]}/{c['discoveryKey'][2:4]}/{c['discoveryKey']}"
        assert core.length == c["length"]
        assert core.byte_length == c["byteLength"]
        assert core.core.tree.byte_length == c["treeByteLength"]
        assert core.padding == c["padding"]
        assert core.fork == c["fork"]
        assert core.contiguous_length == c["contiguousLength"]
        assert core.writable == c["writable"]
        assert core.core.compat == c["compat"]
        tree = core.core.tree
        assert tree.tree_hash().hex() == c["treeHash"]
        assert [(i, s, hh.hex()) for i, s, hh in tree.roots] == [(r["index"], r["size"], r["hash"]) for r in c["roots"]]
        assert tree.signature == h(c["signature"])
        if c["signature"] is not None:
            assert core.core.verify_signature(tree.tree_hash(), c["length"], c["fork"], tree.signature)
        if c["secretKey"] is not None:
            assert core.key_pair == (h(c["publicKey"]), h(c["secretKey"]))
        else:
            assert core.key_pair is None

        # user data: exactly the listed keys, with their values
        ud = c["userData"]
        assert [k for k, _ in core.core.header.user_data] == list(ud)
        for k, v in ud.items():
            assert await core.get_user_data(k) == h(v["hex"])
        assert await core.get_user_data("no-such-key") is None

        # every block
        assert len(c["blocks"]) == c["length"]
        for b in c["blocks"]:
            i = b["index"]
            assert await core.has(i)
            data = await core.get(i)
            assert len(data) == b["size"], f"block {i}"
            assert hashlib.sha256(data).hexdigest() == b["sha256"], f"block {i}"
            if "hex" in b:
                assert data.hex() == b["hex"]
            if "storedHex" in b:
                stored = await core.get(i, raw=True)
                assert stored.hex() == b["storedHex"]
                assert len(stored) == b["storedSize"] == b["size"] + 8
        assert not await core.has(c["length"])
        assert await core.get(c["length"], wait=False) is None
        # the byte offsets agree with the block sizes
        off = 0
        for b in c["blocks"]:
            if b["size"]:
                assert await core.seek(off) == (b["index"], 0)
            off += b["size"]
        assert off == c["byteLength"]
    after = snapshot(store)
    assert after.keys() == before.keys(), "opening created or removed files"
    changed = [p for p in before if before[p] != after[p]]
    assert not changed, f"opening modified {changed}"


async def test_opening_every_core_in_turn_leaves_store_untouched(store):
    before = snapshot(store)
    for c in CORES:
        async with open_core(store, c) as core:
            assert core.length == c["length"]
        # and once more without the key (found from the header)
        async with Spacecore(SubStorage(FileStorage(store), c["dir"])) as core:
            assert core.key.hex() == c["key"]
            assert core.length == c["length"]
    assert snapshot(store) == before


async def test_json_core_decodes(store):
    c = next(c for c in CORES if c["valueEncoding"] == "json")
    async with open_core(store, c, value_encoding="json") as core:
        for b in c["blocks"]:
            assert await core.get(b["index"]) == json.loads(b["text"])


async def test_encrypted_core_without_key_gives_stored_bytes(store):
    c = next(c for c in CORES if c["encryptionKey"] is not None)
    before = snapshot(store)
    async with open_core(store, c, encryption_key=None) as core:
        assert core.padding == 0
        assert core.byte_length == c["treeByteLength"]
        for b in c["blocks"]:
            assert (await core.get(b["index"])).hex() == b["storedHex"]
    async with open_core(store, c, encryption_key=bytes(32)) as core:
        for b in c["blocks"]:
            got = await core.get(b["index"])
            assert len(got) == b["size"] and got.hex() != b["hex"]
    assert snapshot(store) == before


async def test_wrong_key_is_a_conflict(store):
    c, other = CORES[0], CORES[1]
    before = snapshot(store)
    with pytest.raises(StorageConflictError):
        async with Spacecore(SubStorage(FileStorage(store), c["dir"]), key=h(other["key"])):
            pass
    with pytest.raises(BadArgumentError):
        async with Spacecore(SubStorage(FileStorage(store), c["dir"]), key=h(c["key"]),
                             key_pair=(h(other["publicKey"]), h(other["secretKey"]))):
            pass
    assert snapshot(store) == before


async def test_append_after_replay_continues_the_tree(store):
    """A write to a replayed (unflushed) core: the new state is consistent and survives reopen."""
    c = next(c for c in CORES if c["name"] == "alpha" and c["namespacePath"] == [])
    assert c["oplog"]["pendingEntries"] > 0
    async with open_core(store, c) as core:
        res = await core.append(b"more")
        assert res == (c["length"] + 1, c["byteLength"] + 4)
        th = core.core.tree.tree_hash()
        assert core.core.verify_signature(th, core.length, core.fork, core.core.tree.signature)
    async with open_core(store, c) as core:
        assert core.length == c["length"] + 1
        assert core.core.tree.tree_hash() == th
        for b in c["blocks"]:
            assert (await core.get(b["index"])).hex() == b["hex"]
        assert await core.get(c["length"]) == b"more"
