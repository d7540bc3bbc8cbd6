"""Spacecorestore on its own (01-core §6, 00-api §2): no node needed.

1. The reference's store directory (tests/fixtures/js-corestore6-store, copied
   to tmp_path) opened as a whole store: every core found by name and namespace
   (``store.namespace(...).get(name=...)``) or by key, with the key, discovery
   key, user data, length, fork and every block the manifest lists; the named
   cores are writable through our key derivation; ``list_cores()`` lists exactly
   the manifest's cores; opening and reading change no file.
2. Sessions: one set of open files per core, released with the last session;
   namespaces give different cores, views of one namespace share one core;
   closing a view or the store closes what it should and releases the lock.
3. Bad input: typed errors with a clear message, and nothing on disk changes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from spacecorestore import Corestore, CoreRecord
from spacecorestore import crypto
from spacecorestore.errors import (
    BadArgumentError,
    LockedError,
    NotAStoreError,
    SessionClosedError,
    SessionNotWritableError,
    SpacecoreError,
    StorageEmptyError,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "js-corestore6-store.manifest.json").read_text())
CORES = MANIFEST["cores"]
PRIMARY = bytes.fromhex(MANIFEST["primaryKey"])
CORE_IDS = [f"{'/'.join(c['namespacePath']) if c['namespacePath'] is not None else '<key>'}:{c['name']}"
            for c in CORES]


def h(s):
    return None if s is None else bytes.fromhex(s)


def digest(root: Path) -> dict[str, str | None]:
    """Every file (sha256 of its bytes) and directory (None) under root."""
    out: dict[str, str | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return out


def view(store: Corestore, path) -> Corestore:
    for p in path:
        store = store.namespace(p)
    return store


def ns_hash(path) -> bytes:
    ns = crypto.ZERO_NAMESPACE
    for p in path:
        ns = crypto.child_namespace(ns, p)
    return ns


def open_fixture_core(store: Corestore, c: dict, **opts):
    """The manifest core ``c`` through the store: by name and namespace, or by key."""
    if c["encryptionKey"] is not None:
        opts.setdefault("encryption_key", h(c["encryptionKey"]))
    if c["name"] is None:
        return store.get(c["key"], **opts)
    return view(store, c["namespacePath"]).get(name=c["name"], **opts)


def fds_under(directory: Path) -> int:
    """How many of this process's file descriptors point into ``directory``."""
    prefix = str(directory.resolve()) + os.sep
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            n += 1
    return n


# ------------------------------------------------------------- 1. the fixture store


def test_manifest_covers_the_cases():
    assert len(CORES) == 11
    assert {tuple(c["namespacePath"]) for c in CORES if c["name"]} == {(), ("app",), ("app", "sub")}
    assert sum(c["name"] is None for c in CORES) == 1
    assert any(c["encryptionKey"] for c in CORES) and any(c["valueEncoding"] == "json" for c in CORES)
    assert any(c["oplog"]["pendingEntries"] for c in CORES)  # not flushed: replay needed


async def test_fixture_store_every_core(fixture_store):
    before = digest(fixture_store)
    async with Corestore(fixture_store) as store:  # the primary key is read from the file
        assert store.primary_key == PRIMARY
        for c in CORES:
            sessions = [open_fixture_core(store, c)]
            if c["valueEncoding"] == "json":
                sessions.append(open_fixture_core(store, c, value_encoding="json"))
            for s in sessions:
                await s.ready()
            s = sessions[0]
            what = CORE_IDS[CORES.index(c)]
            assert s.key == h(c["key"]), what
            assert s.discovery_key.hex() == c["discoveryKey"], what
            assert (s.length, s.byte_length, s.fork, s.padding) == (c["length"], c["byteLength"], c["fork"],
                                                                    c["padding"]), what
            assert s.writable == c["writable"], what
            if c["name"] is not None:
                assert s.key_pair == (h(c["publicKey"]), h(c["secretKey"])), what
                assert crypto.derive_key_pair(PRIMARY, ns_hash(c["namespacePath"]), c["name"]) == s.key_pair
                assert ns_hash(c["namespacePath"]).hex() == c["namespace"]
            else:
                assert s.key_pair is None
            # every user-data entry, and nothing else
            assert {k: v.hex() for k, v in s.core.header.user_data} == {k: v["hex"] for k, v in c["userData"].items()}
            for k, v in c["userData"].items():
                assert await s.get_user_data(k) == h(v["hex"])
            if c["name"] is not None:
                assert await s.get_user_data("corestore/name") == c["name"].encode()
                assert await s.get_user_data("corestore/namespace") == h(c["namespace"])
            # every block (decrypted with the encryption key)
            assert len(c["blocks"]) == c["length"]
            for b in c["blocks"]:
                raw = await s.get(b["index"])
                assert len(raw) == b["size"] and hashlib.sha256(raw).hexdigest() == b["sha256"], (what, b["index"])
                if "hex" in b:
                    assert raw.hex() == b["hex"]
                if c["valueEncoding"] == "json":
                    assert await sessions[1].get(b["index"]) == json.loads(raw)
            for x in sessions:
                await x.close()
    assert digest(fixture_store) == before  # opening and reading wrote nothing, created nothing


async def test_fixture_store_list_cores(fixture_store):
    before = digest(fixture_store)
    async with Corestore(fixture_store) as store:
        records = [r async for r in store.list_cores()]
    assert all(isinstance(r, CoreRecord) for r in records)
    want = {
        # the listing reports the tree's byte length (padding included); named cores hold their key pair
        h(c["key"]): CoreRecord(h(c["key"]), h(c["discoveryKey"]), c["name"], h(c["namespace"]), c["length"],
                                c["treeByteLength"], c["name"] is not None)
        for c in CORES
    }
    assert len(records) == len(want)
    assert {r.key: r for r in records} == want
    assert digest(fixture_store) == before


@pytest.mark.parametrize("c", [c for c in CORES if c["name"] is not None],
                         ids=[i for i, c in zip(CORE_IDS, CORES) if c["name"] is not None])
async def test_fixture_named_cores_writable(fixture_store, c):
    """Our key derivation gives the reference's key pairs: every named core takes appends."""
    value = {"py": True} if c["valueEncoding"] == "json" else b"appended by python"
    enc = {"value_encoding": "json"} if c["valueEncoding"] == "json" else {}
    async with Corestore(fixture_store) as store:
        async with open_fixture_core(store, c, **enc) as s:
            assert s.writable
            await s.append(value)
            assert s.length == c["length"] + 1
    async with Corestore(fixture_store) as store:
        async with open_fixture_core(store, c, **enc) as s:
            assert (s.length, s.fork) == (c["length"] + 1, c["fork"])
            assert await s.get(c["length"]) == value
            tree = s.core.tree
            assert s.core.verify_signature(tree.tree_hash(), tree.length, tree.fork, tree.signature)
            for b in c["blocks"][:5]:
                raw = await s.session(value_encoding="binary").get(b["index"])
                assert hashlib.sha256(raw).hexdigest() == b["sha256"]
        async for r in store.list_cores():
            if r.key == h(c["key"]):
                assert r.length == c["length"] + 1


async def test_fixture_key_only_core_not_writable(fixture_store):
    c = next(c for c in CORES if c["name"] is None)
    async with Corestore(fixture_store) as store:
        for form in (h(c["key"]), c["key"], c["id"]):  # bytes, hex, z32
            async with store.get(form) as s:
                assert (s.key, s.length, s.writable) == (h(c["key"]), 0, False)
                with pytest.raises(SessionNotWritableError):
                    await s.append(b"x")


# ------------------------------------------------------------------ 2. sessions


async def test_ten_sessions_share_one_set_of_files(tmp_path):
    root = tmp_path / "s"
    async with Corestore(root) as store:
        async with store.get(name="x") as s:
            await s.append([b"a", b"b"])
            await s.set_user_data("k", b"v", flush=True)  # flush: tree and bitfield files exist too
            core_dir = root / "cores" / s.discovery_key.hex()[:2] / s.discovery_key.hex()[2:4] / s.discovery_key.hex()
        assert fds_under(core_dir) == 0  # released with its only session
        sessions = [store.get(name="x") for _ in range(10)]
        for s in sessions:
            await s.ready()
        n = fds_under(core_dir)
        assert 0 < n <= 5
        assert len({id(s.core) for s in sessions}) == 1
        for s in sessions[:9]:
            await s.close()
            assert fds_under(core_dir) == n
        assert await sessions[9].get(1) == b"b"
        await sessions[9].close()
        assert fds_under(core_dir) == 0
        assert fds_under(root) == 1  # only primary-key (the lock) is left
    assert fds_under(root) == 0


async def test_namespaces_and_views(tmp_path):
    async with Corestore(tmp_path / "s") as store:
        a = store.namespace("a").get(name="x")
        root_x = store.get(name="x")
        await a.ready()
        await root_x.ready()
        assert a.key != root_x.key and a.core is not root_x.core
        assert a.key == crypto.derive_key_pair(store.primary_key, ns_hash(["a"]), "x").public_key
        assert store.namespace("a").namespace_key == ns_hash(["a"])
        assert store.namespace("a").namespace("b").namespace_key == ns_hash(["a", "b"])
        assert store.namespace(b"a").namespace_key == ns_hash(["a"])
        # two views of the same namespace: one core
        v1, v2 = store.namespace("a"), store.namespace("a")
        s1, s2 = v1.get(name="y"), v2.get(name="y")
        await s1.ready()
        await s2.ready()
        assert s1.core is s2.core
        s3 = store.session(namespace=ns_hash(["a"])).get(name="y")
        await s3.ready()
        assert s3.core is s1.core
        # by key: the same core again, writable (key pair re-derived)
        s4 = store.get(s1.key)
        await s4.ready()
        assert s4.core is s1.core and s4.writable
        # the namespace of a core's user data
        assert store.namespace(s1).namespace_key == ns_hash(["a"])


async def test_closing_a_view_closes_only_its_sessions(tmp_path):
    async with Corestore(tmp_path / "s") as store:
        v = store.namespace("a")
        sub = v.namespace("b")
        s1 = v.get(name="x")
        s_sub = sub.get(name="z")
        s2 = store.get(name="y")
        s3 = store.namespace("a").get(name="x")  # same core as s1, another view
        for s in (s1, s_sub, s2, s3):
            await s.ready()
        await s1.append(b"1")
        await v.close()
        assert s1.closed and s_sub.closed
        assert not s2.closed and not s3.closed
        assert not s3.core.closed and await s3.get(0) == b"1"
        with pytest.raises(SessionClosedError):
            v.get(name="x")
        with pytest.raises(SessionClosedError):
            sub.get(name="z")
        # the store and other views still work
        async with store.namespace("a").get(name="x") as s:
            assert s.core is s3.core
        await s2.append(b"y")
    assert store.closed


async def test_store_close_closes_everything_and_releases_the_lock(tmp_path):
    root = tmp_path / "s"
    store = Corestore(root)
    await store.ready()
    sessions = [store.get(name="a"), store.namespace("n").get(name="b"), store.session().get(name="c")]
    for s in sessions:
        await s.ready()
        await s.append(b"x")
    snap = sessions[0].session()
    with pytest.raises(LockedError):
        await Corestore(root).ready()
    await store.close()
    assert store.closed
    assert all(s.closed for s in sessions) and snap.closed
    assert all(s.core.closed for s in sessions)
    assert fds_under(root) == 0
    for call in (lambda: store.get(name="a"), lambda: store.namespace("n"), lambda: store.session()):
        with pytest.raises(SessionClosedError):
            call()
    with pytest.raises(SessionClosedError):
        await store.ready()
    with pytest.raises(SessionClosedError):
        await sessions[0].get(0)
    async with Corestore(root) as again:  # the lock was released
        async with again.namespace("n").get(name="b") as s:
            assert await s.get(0) == b"x" and s.writable


# ----------------------------------------------------------------- 3. bad input


@pytest.fixture
async def filled(tmp_path):
    """A closed store with one named core, and the digest of its files."""
    root = tmp_path / "s"
    async with Corestore(root) as store:
        async with store.get(name="x") as s:
            await s.append(b"x")
    return root, digest(root)


BAD_GETS = [
    ("name-int", lambda st: st.get(name=5), "name must be a string"),
    ("name-bytes", lambda st: st.get(name=b"x"), "name must be a string"),
    ("name-empty", lambda st: st.get(name=""), "name"),
    ("key-31", lambda st: st.get(bytes(31)), "32 bytes"),
    ("key-33", lambda st: st.get(bytes(33)), "32 bytes"),
    ("key-hex-bad", lambda st: st.get("zz" * 32), "invalid"),
    ("key-hex-short", lambda st: st.get("ab" * 31), "invalid"),
    ("key-hex-space", lambda st: st.get("00 " + "ab" * 30 + "c"), "invalid"),
    ("key-z32-bad", lambda st: st.get("l" * 52), "invalid"),
    ("key-z32-short", lambda st: st.get("y" * 51), "invalid"),
    ("key-int", lambda st: st.get(12), "key"),
    ("nothing", lambda st: st.get(), "Must provide either a name or a publicKey"),
    ("only-opts", lambda st: st.get(value_encoding="json"), "Must provide either a name or a publicKey"),
    ("unknown-opt", lambda st: st.get(name="x", nmae="y"), "unknown option"),
    ("ns-name-int", lambda st: st.namespace(3), "namespace name"),
    ("session-ns-31", lambda st: st.session(namespace=bytes(31)), "namespace must be 32 bytes"),
    ("session-ns-str", lambda st: st.session(namespace="a" * 32), "namespace must be 32 bytes"),
]


@pytest.mark.parametrize("call,text", [(c, t) for _, c, t in BAD_GETS], ids=[i for i, _, _ in BAD_GETS])
async def test_bad_get_arguments(filled, call, text):
    root, before = filled
    async with Corestore(root) as store:
        with pytest.raises(BadArgumentError) as ei:
            s = call(store)
            await s.ready()  # (every one of these is refused before this)
        assert ei.value.code == "BAD_ARGUMENT"
        assert text in str(ei.value)
        # the store is still usable
        async with store.get(name="x") as s:
            assert await s.get(0) == b"x"
    assert digest(root) == before


@pytest.mark.parametrize("kwargs,text", [
    ({"namespace": bytes(31)}, "namespace must be 32 bytes"),
    ({"namespace": bytes(33)}, "namespace must be 32 bytes"),
    ({"namespace": "00" * 32}, "namespace must be 32 bytes"),
    ({"primary_key": bytes(31)}, "primary_key must be 32 bytes"),
    ({"primary_key": "00" * 32}, "primary_key must be 32 bytes"),
], ids=["ns-31", "ns-33", "ns-hex", "pk-31", "pk-hex"])
async def test_bad_constructor_arguments(filled, kwargs, text):
    root, before = filled
    with pytest.raises(BadArgumentError) as ei:
        Corestore(root, **kwargs)
    assert text in str(ei.value)
    assert digest(root) == before


async def test_non_empty_directory_without_primary_key(tmp_path):
    root = tmp_path / "not-a-store"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    (root / "cores").mkdir()
    before = digest(root)
    store = Corestore(root)
    with pytest.raises(NotAStoreError) as ei:
        await store.ready()
    assert ei.value.code == "NOT_A_STORE"
    assert "primary-key" in str(ei.value) and str(root) in str(ei.value)
    assert digest(root) == before  # no primary-key, nothing created
    with pytest.raises(NotAStoreError):  # a get opens the store the same way
        await Corestore(root).get(name="x").ready()
    assert digest(root) == before
    # a file where the directory should be
    f = tmp_path / "file"
    f.write_bytes(b"data")
    with pytest.raises(NotAStoreError):
        await Corestore(f).ready()
    assert f.read_bytes() == b"data"


async def test_empty_or_missing_directory_becomes_a_store(tmp_path):
    for root in (tmp_path / "missing", tmp_path / "empty"):
        if root.name == "empty":
            root.mkdir()
        async with Corestore(root, primary_key=PRIMARY) as store:
            assert store.primary_key == PRIMARY
        assert (root / "primary-key").read_bytes() == PRIMARY


async def test_read_only_store(tmp_path, filled):
    root, before = filled
    async with Corestore(root, writable=False) as store:
        async with store.get(name="x") as s:
            assert await s.get(0) == b"x" and not s.writable
            with pytest.raises(SessionNotWritableError):
                await s.append(b"y")
        assert [r.name async for r in store.list_cores()] == ["x"]
    assert digest(root) == before
    # a read-only store where there is none: refused, and nothing is created (not even the directory)
    with pytest.raises(StorageEmptyError):
        await Corestore(tmp_path / "missing", writable=False).ready()
    assert not (tmp_path / "missing").exists()


async def test_locked_store_in_one_process(filled):
    root, before = filled
    async with Corestore(root) as first:
        second = Corestore(root)
        with pytest.raises(LockedError) as ei:
            await second.ready()
        assert ei.value.code == "ELOCKED" and "primary-key" in str(ei.value)
        with pytest.raises(LockedError):  # and so does a get through it
            await second.get(name="x").ready()
        assert digest(root) == before
        async with first.get(name="x") as s:  # the holder is unaffected
            assert await s.get(0) == b"x"
    async with Corestore(root) as store:  # released with the first
        assert store.primary_key == (root / "primary-key").read_bytes()


async def test_given_primary_key_leaves_the_file_unchanged(filled):
    """01-core §6.1: a primaryKey option over an existing file is used but not written."""
    root, before = filled
    other = hashlib.sha256(b"other").digest()
    async with Corestore(root, primary_key=other) as store:
        assert store.primary_key == other
        s = store.get(name="x")
        await s.ready()
        assert s.key == crypto.derive_key_pair(other, crypto.ZERO_NAMESPACE, "x").public_key
        assert s.length == 0  # another key: another (new) core
        await s.close()
    assert (root / "primary-key").read_bytes() != other


def test_errors_are_typed():
    for cls in (BadArgumentError, LockedError, NotAStoreError, SessionClosedError):
        assert issubclass(cls, SpacecoreError)
