"""Spacecorestore <-> reference Corestore 6.18.4 on one directory (01-core §6).

The reference is driven through tests/interop/refstore.js (build / read /
lock / trylock, see its header):

1. The reference builds a store -- nested namespaces ``[]``, ``["app"]``,
   ``["app", "sub"]``, 22 named cores (one name in all three namespaces, a
   non-ASCII name, empty cores, a 300-block core, several batches per core),
   2 cores opened by key only, user data set and deleted.  Python lists every
   core (key, discovery key, name, namespace hash, length, byte length), reads
   every block by name and namespace, finds the named cores writable (same
   primary key, read from the file) and appends; the reference then reads and
   verifies the new blocks.
2. Python builds a store the same way; the reference opens it, finds every
   named core by name and namespace with the same key and blocks, reads the
   user data, changes no file; it appends, and Python reads the result.
3. The OFD lock on ``primary-key``, both ways: refused with ``ELOCKED`` while
   the other side holds it, nothing on disk changes by the refused open, both
   open once it is released.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import tempfile
from pathlib import Path

import pytest

from spacecorestore import Corestore
from spacecorestore import crypto
from spacecorestore.errors import LockedError
from tests.interop.refnode import INTEROP_DIR, ensure_installed, node_available

pytestmark = pytest.mark.skipif(
    not node_available(),
    reason="Node.js (`node`, with npm or tests/interop/node_modules) is not available: "
           "the reference Corestore interop tests need it",
)

REFSTORE_JS = INTEROP_DIR / "refstore.js"
PRIMARY_A = bytes(range(0x40, 0x60))
PRIMARY_B = hashlib.sha256(b"spacecorestore interop primary key B").digest()
NS_PATHS = ([], ["app"], ["app", "sub"])


@pytest.fixture(scope="module", autouse=True)
def reference_installed():
    ensure_installed()


# ------------------------------------------------------------------ helpers


def run_refstore(*args, script: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
    """``node refstore.js ARGS [script file]`` -> (exit status, the last JSON line)."""
    name = None
    try:
        if script is not None:
            fd, name = tempfile.mkstemp(prefix="refstore-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(script, f)
            args = (*args, name)
        proc = subprocess.run(["node", str(REFSTORE_JS), *map(str, args)], cwd=INTEROP_DIR,
                              capture_output=True, text=True, timeout=timeout)
    finally:
        if name:
            os.unlink(name)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise AssertionError(f"refstore.js {args} printed nothing (exit {proc.returncode})\n{proc.stderr[-4000:]}")
    return proc.returncode, json.loads(lines[-1])


def refstore(*args, script: dict | None = None) -> dict:
    code, out = run_refstore(*args, script=script)
    assert code == 0, f"refstore.js {args[0]} failed: {out}"
    return out


def ns_hash(path) -> bytes:
    ns = crypto.ZERO_NAMESPACE
    for p in path:
        ns = crypto.child_namespace(ns, p)
    return ns


def view(store: Corestore, path) -> Corestore:
    v = store
    for p in path:
        v = v.namespace(p)
    return v


def tree_digest(root: Path) -> dict[str, str | None]:
    """Every file (sha256) and directory (None) under root, by relative path."""
    out: dict[str, str | None] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return out


class Model:
    """What a build script does: blocks per named core, user data, key-only keys."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.ops: list[dict] = []
        self.blocks: dict[tuple, list[bytes]] = {}
        self.user_data: dict[tuple, dict[str, bytes]] = {}
        names = ["core-0", "core-1", "core-2", "core-3", "core-4", "core-5", "shared"]
        for path in NS_PATHS:
            for name in names + (["nåme-名前"] if path == ["app"] else []):
                self.blocks[(tuple(path), name)] = []
        for (path, name) in self.blocks:
            n = rng.choice([0, 1, 2, 3, 5, 8, 13])
            if name == "core-5" and path == ("app",):
                n = 300
            self.append(path, name, [rng.randbytes(rng.choice([0, 1, 7, 40, 200, 1500])) for _ in range(n)])
        # a second batch on some cores, so the oplog holds several entries
        for (path, name) in list(self.blocks)[::3]:
            self.append(path, name, [rng.randbytes(rng.randint(1, 64)) for _ in range(rng.randint(1, 4))])
        # user data: set, overwrite, delete
        self.set_user_data(("app",), "core-1", "app/meta", b"hello meta")
        self.set_user_data(("app",), "core-1", "app/tmp", b"gone soon")
        self.set_user_data(("app",), "core-1", "app/tmp", None)
        self.set_user_data(("app", "sub"), "shared", "owner", "ünï".encode())
        self.set_user_data((), "core-2", "owner", b"v1")
        self.set_user_data((), "core-2", "owner", b"v2")
        # opened by key only (not in the store before): created empty, not writable
        self.key_only = [crypto.key_pair(hashlib.sha256(f"key-only {seed} {i}".encode()).digest()).public_key
                         for i in range(2)]
        for k in self.key_only:
            self.ops.append({"get": {"key": k.hex()}})

    def append(self, path, name, blocks):
        self.blocks[(tuple(path), name)].extend(blocks)
        self.ops.append({"get": {"name": name, "namespace": list(path)}, "append": [b.hex() for b in blocks]})

    def set_user_data(self, path, name, key, value):
        ud = self.user_data.setdefault((tuple(path), name), {})
        if value is None:
            ud.pop(key, None)
        else:
            ud[key] = value
        self.ops.append({"setUserData": {"name": name, "namespace": list(path), "key": key,
                                         "value": value.hex() if value is not None else None}})

    def targets(self) -> list[dict]:
        return ([{"name": n, "namespace": list(p)} for (p, n) in self.blocks]
                + [{"key": k.hex()} for k in self.key_only])


async def py_build(root: Path, model: Model, primary_key: bytes) -> dict[tuple, bytes]:
    """Run the model's ops with Spacecorestore, one session per op (as refstore.js build)."""
    keys = {}
    async with Corestore(root, primary_key=primary_key) as store:
        for op in model.ops:
            if "setUserData" in op:
                u = op["setUserData"]
                op = {"get": {"name": u["name"], "namespace": u["namespace"]},
                      "ud": (u["key"], bytes.fromhex(u["value"]) if u["value"] is not None else None)}
            t = op["get"]
            if "key" in t:
                s = store.get(t["key"])
            else:
                s = view(store, t["namespace"]).get(name=t["name"])
            async with s:
                if op.get("append"):
                    await s.append([bytes.fromhex(b) for b in op["append"]])
                if "ud" in op:
                    await s.set_user_data(*op["ud"])
                if "name" in t:
                    keys[(tuple(t["namespace"]), t["name"])] = s.key
    return keys


# ------------------------------------------------------ 1. reference -> Python


async def test_reference_store_read_and_continued_by_python(tmp_path):
    root = tmp_path / "store"
    model = Model(1)
    built = refstore("build", root, script={"primaryKey": PRIMARY_A.hex(), "ops": model.ops})
    assert built["primaryKey"] == PRIMARY_A.hex()
    assert (root / "primary-key").read_bytes() == PRIMARY_A
    ref = {bytes.fromhex(c["key"]): c for c in built["cores"]}
    assert len(ref) == len(model.blocks) + len(model.key_only) == 24

    async with Corestore(root) as store:  # primary key read from the file
        assert store.primary_key == PRIMARY_A
        records = [r async for r in store.list_cores()]
        assert len(records) == len(ref)
        listed = {r.key: r for r in records}
        assert set(listed) == set(ref)
        for key, c in ref.items():
            r = listed[key]
            assert r.discovery_key.hex() == c["discoveryKey"] == crypto.discovery_key(key).hex()
            assert (r.length, r.byte_length) == (c["length"], c["byteLength"])
            if c["name"] is None:
                assert key in model.key_only
                assert (r.name, r.namespace, r.length) == (None, None, 0)
            else:
                blocks = model.blocks[(tuple(c["namespace"]), c["name"])]
                assert r.name == c["name"]
                assert r.namespace == ns_hash(c["namespace"]) == bytes.fromhex(c["namespaceHash"])
                assert r.length == len(blocks)
                assert r.byte_length == sum(map(len, blocks))

        # every named core by name and namespace: same key, same blocks, writable
        by_name = {(tuple(c["namespace"]), c["name"]): c for c in built["cores"] if c["name"] is not None}
        assert set(by_name) == set(model.blocks)
        for (path, name), blocks in model.blocks.items():
            async with view(store, path).get(name=name) as s:
                assert s.key.hex() == by_name[(path, name)]["key"]
                assert s.key == view(store, path).create_key_pair(name).public_key
                assert s.writable
                assert s.length == len(blocks)
                assert [await s.get(i) for i in range(s.length)] == blocks
                for k, v in model.user_data.get((path, name), {}).items():
                    assert await s.get_user_data(k) == v
                assert await s.get_user_data("app/tmp") is None
                assert await s.get_user_data("corestore/name") == name.encode()
                assert await s.get_user_data("corestore/namespace") == ns_hash(path)
        for k in model.key_only:
            async with store.get(k.hex()) as s:
                assert (s.key, s.length, s.writable) == (k, 0, False)

        # Python continues every named core
        added = {}
        for n, (path, name) in enumerate(model.blocks):
            new = [f"py {n} {i}".encode() * (i + 1) for i in range(n % 3 + 1)] + ([b""] if n % 4 == 0 else [])
            async with view(store, path).get(name=name) as s:
                res = await s.append(new)
                assert res.length == len(model.blocks[(path, name)]) + len(new)
            added[(path, name)] = new

    out = refstore("read", root, script={"cores": model.targets()})
    assert out["primaryKey"] == PRIMARY_A.hex()
    assert out["filesChanged"] == []  # the reference reading Python's writes changes nothing
    for c in out["cores"]:
        assert "error" not in c, c
        t = c["target"]
        if "key" in t:
            assert (c["key"], c["length"], c["writable"]) == (t["key"], 0, False)
            continue
        want = model.blocks[(tuple(t["namespace"]), t["name"])] + added[(tuple(t["namespace"]), t["name"])]
        assert [bytes.fromhex(b) for b in c["blocks"]] == want, t
        assert (c["length"], c["byteLength"], c["fork"]) == (len(want), sum(map(len, want)), 0)
        assert c["writable"] is True
        assert c["signatureValid"] is True and c["verifierAccepts"] is True, t


# ------------------------------------------------------ 2. Python -> reference


async def test_python_store_read_and_continued_by_reference(tmp_path):
    root = tmp_path / "store"
    model = Model(2)
    keys = await py_build(root, model, PRIMARY_B)
    assert (root / "primary-key").read_bytes() == PRIMARY_B
    # the keys are the reference's derivation (checked by the reference below, too)
    for (path, name), key in keys.items():
        assert key == crypto.derive_key_pair(PRIMARY_B, ns_hash(path), name).public_key

    before = tree_digest(root)
    out = refstore("read", root, script={"cores": model.targets()})  # primary key from the file
    assert out["primaryKey"] == PRIMARY_B.hex()
    assert out["filesChanged"] == []
    assert tree_digest(root) == before
    assert len(out["cores"]) == len(model.blocks) + 2
    for c in out["cores"]:
        assert "error" not in c, c  # found by name + namespace (created with createIfMissing: false)
        t = c["target"]
        if "key" in t:
            assert (c["key"], c["length"], c["writable"], c["userData"]) == (t["key"], 0, False, {})
            continue
        path, name = tuple(t["namespace"]), t["name"]
        want = model.blocks[(path, name)]
        assert c["key"] == keys[(path, name)].hex()
        assert [bytes.fromhex(b) for b in c["blocks"]] == want
        assert (c["length"], c["byteLength"], c["fork"], c["writable"]) == (len(want), sum(map(len, want)), 0, True)
        if want:
            assert c["signatureValid"] is True and c["verifierAccepts"] is True
        ud = {k: bytes.fromhex(v) for k, v in c["userData"].items()}
        assert ud == {"corestore/name": name.encode(), "corestore/namespace": ns_hash(path),
                      **model.user_data.get((path, name), {})}

    # the reference writes to cores Python created (it derives the same key pairs)
    extra = {}
    targets = []
    for n, (path, name) in enumerate(model.blocks):
        if n % 2:
            continue
        extra[(path, name)] = [f"js {n} {i}".encode() for i in range(n % 4 + 1)]
        targets.append({"name": name, "namespace": list(path), "append": [b.hex() for b in extra[(path, name)]]})
    out = refstore("read", root, script={"cores": targets})
    for c in out["cores"]:
        assert "error" not in c, c
        assert c["signatureValid"] is True and c["lengthBefore"] + c["appended"] == c["length"]

    async with Corestore(root) as store:
        listed = {r.key: r async for r in store.list_cores()}
        assert len(listed) == len(model.blocks) + 2
        for (path, name), blocks in model.blocks.items():
            want = blocks + extra.get((path, name), [])
            r = listed[keys[(path, name)]]
            assert (r.name, r.namespace, r.length, r.byte_length) == (name, ns_hash(path), len(want),
                                                                       sum(map(len, want)))
            async with view(store, path).get(name=name) as s:
                assert [await s.get(i) for i in range(s.length)] == want
                assert s.writable
                await s.append(b"python again")
        for k in model.key_only:
            assert (listed[k].name, listed[k].namespace, listed[k].length) == (None, None, 0)


# ------------------------------------------------------------------ 3. locks


async def test_lock_reference_holds_python_refused(tmp_path):
    root = tmp_path / "store"
    refstore("build", root, script={"primaryKey": PRIMARY_A.hex(), "ops": [{"get": {"name": "a"}, "append": ["01"]}]})
    proc = subprocess.Popen(["node", str(REFSTORE_JS), "lock", str(root), "60", "--until-stdin-eof"],
                            cwd=INTEROP_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert json.loads(line) == {"event": "locked"}, (line, proc.stderr.read() if proc.poll() is not None else "")
        before = tree_digest(root)
        for _ in range(2):  # a second attempt is refused too (the first left nothing behind)
            store = Corestore(root)
            with pytest.raises(LockedError) as ei:
                await store.ready()
            assert ei.value.code == "ELOCKED"
            assert "primary-key" in str(ei.value)
            await store.close()
        assert tree_digest(root) == before
    finally:
        proc.stdin.close()  # EOF: the reference releases the lock and exits
        proc.wait(timeout=30)
        rest, err = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == 0, err
    assert json.loads(rest.strip().splitlines()[-1]) == {"event": "released"}
    async with Corestore(root) as store:
        async with store.get(name="a") as s:
            assert await s.get(0) == b"\x01"
            await s.append(b"\x02")


async def test_lock_python_holds_reference_refused(tmp_path):
    root = tmp_path / "store"
    async with Corestore(root, primary_key=PRIMARY_B) as store:
        async with store.get(name="a") as s:
            await s.append(b"x")
        before = tree_digest(root)
        code, out = run_refstore("trylock", root)
        assert (code, out.get("code")) == (1, "ELOCKED"), out
        # a second Corestore object in this process is refused as well (OFD locks are per open file)
        other = Corestore(root)
        with pytest.raises(LockedError):
            await other.ready()
        assert tree_digest(root) == before
    assert refstore("trylock", root) == {"ok": True}
    out = refstore("read", root, script={"cores": [{"name": "a", "append": ["79"]}]})
    assert out["cores"][0]["blocks"] == ["78", "79"]
    async with Corestore(root) as store:
        async with store.get(name="a") as s:
            assert s.length == 2


# ------------------------------------------- 4. the reference's fixture store


FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "js-corestore6-store"


async def test_fixture_store_continued_by_python_verified_by_reference(tmp_path):
    """A copy of the reference's fixture: Python appends to every named core (writable through
    our key derivation), then the reference reopens the store and reads and verifies them."""
    import shutil

    manifest = json.loads((FIXTURE.parent / "js-corestore6-store.manifest.json").read_text())
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root)
    named = [c for c in manifest["cores"] if c["name"] is not None]
    assert len(named) >= 10
    added = {}
    async with Corestore(root) as store:
        for n, c in enumerate(named):
            path = c["namespacePath"]
            opts = {}
            if c["encryptionKey"] is not None:
                opts["encryption_key"] = bytes.fromhex(c["encryptionKey"])
            async with view(store, path).get(name=c["name"], **opts) as s:
                assert s.key.hex() == c["key"] and s.writable
                new = [f"python block {n}.{i}".encode() for i in range(2)]
                await s.append(new)
                raw = [await s.get(i, raw=True) for i in range(s.length - 2, s.length)]
            added[c["key"]] = (path, c["name"], raw)
    targets = [{"name": name, "namespace": path} for (path, name, _) in added.values()]
    out = refstore("read", root, script={"cores": targets})
    assert out["filesChanged"] == []
    assert len(out["cores"]) == len(added)
    for c in out["cores"]:
        assert "error" not in c, c
        path, name, raw = added[c["key"]]
        assert c["signatureValid"] is True and c["verifierAccepts"] is True, name
        assert c["writable"] is True
        assert [bytes.fromhex(b) for b in c["blocks"][-2:]] == raw, name
