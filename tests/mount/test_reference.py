"""Must show 2: stores move between a corefs mount and the reference (corestore 6.18.4, via npm).

A store written through the mount opens in the reference with the same cores
by name and namespace and identical blocks; a store the reference wrote shows
up in the mount with its names, including a namespace made known by mkdir.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from tests.interop.refnode import INTEROP_DIR, ensure_installed, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason="Node.js is not available: the reference cannot run")

REFSTORE_JS = INTEROP_DIR / "refstore.js"


def refstore(*args, script: dict) -> dict:
    fd, name = tempfile.mkstemp(prefix="refstore-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(script, f)
        p = subprocess.run(["node", str(REFSTORE_JS), *map(str, args), name], cwd=INTEROP_DIR,
                           capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(name)
    assert p.returncode == 0, f"refstore.js {args[0]} failed: {p.stdout}{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", autouse=True)
def reference():
    ensure_installed()


def test_store_written_through_the_mount_opens_in_the_reference(mounts):
    m = mounts().start()
    (m.path("app")).mkdir()
    (m.path("app", "sub")).mkdir()
    want = {}
    for path, name, writes in [((), "log", [b"one\n", b"two\n"]), (("app",), "notes", [b"x" * 70000]),
                               (("app", "sub"), "deep", [b"deep\n"]), ((), "empty", [])]:
        p = m.path(*path, name)
        p.touch()
        for w in writes:
            with open(p, "ab") as f:
                f.write(w)
        want[(path, name)] = writes
    m.umount()
    # one write(2) = one FUSE WRITE = one batch of blocks of at most 64 KiB
    blocks = {k: [c[i : i + 65536] for c in v for i in range(0, len(c), 65536)] for k, v in want.items()}
    out = refstore("read", m.store, script={"cores": [{"name": n, "namespace": list(p)} for (p, n) in want]})
    assert out["filesChanged"] == []
    for c in out["cores"]:
        assert "error" not in c, c
        t = c["target"]
        got = [bytes.fromhex(b) for b in c["blocks"]]
        assert got == blocks[(tuple(t["namespace"]), t["name"])], t
        assert c["writable"] is True
        if got:
            assert c["signatureValid"] is True and c["verifierAccepts"] is True


def test_store_written_by_the_reference_shows_up_in_the_mount(mounts, tmp_path):
    store = tmp_path / "ref-store"
    ops = [
        {"get": {"name": "readme", "namespace": []}, "append": [b"hello from node\n".hex()]},
        {"get": {"name": "log", "namespace": ["app"]}, "append": [b"a\n".hex(), b"b\n".hex()]},
        {"get": {"name": "inner", "namespace": ["app", "sub"]}, "append": [b"deep\n".hex()]},
    ]
    built = refstore("build", store, script={"primaryKey": None, "ops": ops})
    keys = {(tuple(c["namespace"]), c["name"]): c["key"] for c in built["cores"]}
    m = mounts(store=store).start()
    assert m.path("readme").read_bytes() == b"hello from node\n"
    # namespaces are only hashes on disk: app's cores are listed under /.keys until app is known
    assert not m.path("app").exists()
    in_keys = set(os.listdir(m.path(".keys")))
    assert {keys[(("app",), "log")], keys[(("app", "sub"), "inner")]} <= in_keys
    m.path("app").mkdir()
    assert sorted(os.listdir(m.path("app"))) == ["log"]
    assert m.path("app", "log").read_bytes() == b"a\nb\n"
    m.path("app", "sub").mkdir()
    assert m.path("app", "sub", "inner").read_bytes() == b"deep\n"
    assert keys[(("app",), "log")] not in os.listdir(m.path(".keys"))  # one path per core
    with open(m.path("app", "log"), "ab") as f:
        f.write(b"c\n")
    assert os.getxattr(m.path("app", "log"), "user.spacecore.key").decode() == keys[(("app",), "log")]
    m.umount()
    m.start()  # the namespaces made known by mkdir survive a remount
    assert m.path("app", "sub", "inner").read_bytes() == b"deep\n"
    m.umount()
    out = refstore("read", store, script={"cores": [{"name": "log", "namespace": ["app"]}]})
    c = out["cores"][0]
    assert [bytes.fromhex(b) for b in c["blocks"]] == [b"a\n", b"b\n", b"c\n"]
    assert c["signatureValid"] is True
