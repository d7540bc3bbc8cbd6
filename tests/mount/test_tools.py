"""Must show 1: ordinary tools on a real mount (04-corefs §2, §3).

``mkdir``/``rmdir`` make and forget namespaces; ``touch``/``echo >>``/``cp`` create and append to
cores; ``cat``, ``grep``, ``wc``, ``dd``, ``cp -r``, ``rsync -a`` and ``tar`` read byte-identical
copies with every core exactly once (the symlinks of ``/.keys`` are never listed); ``find`` and
``ls -l`` show sizes, modes and times; inode numbers and mtimes survive a remount.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import stat
from pathlib import Path

import pytest

from spacecorestore import crypto
from spacecorestore.listing import core_dir

from ..vfs.storeutil import copy_core
from .conftest import populate, sh, shared_mount

rng = random.Random(1234)


def _random_blocks(total: int) -> list[bytes]:
    out, n = [], 0
    while n < total:
        size = min(total - n, rng.choice([1, 100, 4096, 5000, 65536, rng.randrange(1, 65537)]))
        out.append(rng.randbytes(size))
        n += size
    return out


LOG = [b"%05d the quick brown fox\n" % i for i in range(300)]
BIG = _random_blocks(3 * 1024 * 1024 + 17)
SMALL = _random_blocks(40_000)
EVENTS = [b"event %d\n" % i for i in range(20)]
EXPECTED: dict[str, bytes] = {}  # path in the mount -> content, filled by the store setup
KEYS: dict = {}


def setup_store(store: Path) -> None:
    keys = populate(store, {
        ((), "log"): LOG,
        ((), "big"): BIG,
        ((), "small"): SMALL,
        ((), "empty"): [],
        (("app",), "events"): EVENTS,
        (("app", "deep"), "x"): [b"deep"],
        (("hidden",), "secret"): [b"in an unknown namespace"],
        ((), "a/b"): [b"a name that is no file name"],
    }, namespaces=[("app",), ("app", "deep"), ("empty-ns",)])
    # a core this store cannot write: copied from another store (0444, only under /.keys)
    other = store.parent / "other-store"
    foreign = populate(other, {((), "log"): [b"foreign data\n"] * 3})[((), "log")]
    copy_core(other, store, foreign)  # without its secret key, as if downloaded from a peer
    KEYS.update(keys)
    KEYS["foreign"] = foreign
    EXPECTED.update({
        "log": b"".join(LOG), "big": b"".join(BIG), "small": b"".join(SMALL), "empty": b"",
        "app/events": b"".join(EVENTS), "app/deep/x": b"deep",
        f".keys/{keys[(('hidden',), 'secret')].hex()}": b"in an unknown namespace",
        f".keys/{keys[((), 'a/b')].hex()}": b"a name that is no file name",
        f".keys/{foreign.hex()}": b"foreign data\n" * 3,
    })


shared = shared_mount(setup_store)


@pytest.fixture
def m(shared, checked):
    return checked(shared)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def tree_of(root: Path) -> dict[str, bytes]:
    """Regular files under ``root`` (relative path -> content); fails on anything but files and dirs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            p = Path(dirpath) / n
            assert stat.S_ISREG(os.lstat(p).st_mode), f"{p} is not a regular file"
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_find_and_ls_show_sizes_modes_times(m):
    r = sh(f"find {m.mnt} -mindepth 1 -printf '%P\\t%y\\t%m\\t%s\\t%n\\t%U\\t%T@\\n'")
    rows = {p: rest for p, *rest in (ln.split("\t") for ln in r.stdout.splitlines())}
    files = {p for p in EXPECTED}
    dirs = {"app", "app/deep", "empty-ns", ".keys"}
    assert set(rows) == files | dirs  # the /.keys symlinks of cores with a path are never listed
    for p in dirs:
        kind, mode, size, nlink, uid, _ = rows[p]
        assert (kind, mode, uid) == ("d", "755", str(os.getuid()))
    assert rows["app"][3] == "3" and rows["app/deep"][3] == "2" and rows[".keys"][3] == "2"
    for p in files:
        kind, mode, size, nlink, uid, mtime = rows[p]
        assert kind == "f" and int(size) == len(EXPECTED[p]) and nlink == "1", p
        assert mode == ("444" if p == f".keys/{KEYS['foreign'].hex()}" else "644"), p
        # the modification time of the core's files on disk
        oplog = m.store / core_dir(crypto.discovery_key(bytes.fromhex(
            os.getxattr(m.path(p), "user.spacecore.key").decode()))) / "oplog"
        assert abs(float(mtime) - os.stat(oplog).st_mtime) < 1e-6, p
    st = os.stat(m.path("log"))
    assert st.st_mtime_ns == st.st_ctime_ns
    assert st.st_blocks == (len(EXPECTED["log"]) + 511) // 512
    # ls -l: the same modes and sizes
    ls = sh(f"ls -l --time-style=+%s {m.mnt} {m.mnt}/.keys").stdout
    assert any(ln.startswith("-rw-r--r-- 1 ") and ln.endswith(" big") and f" {len(EXPECTED['big'])} " in ln
               for ln in ls.splitlines()), ls
    assert any(ln.startswith("-r--r--r-- 1 ") and ln.endswith(KEYS["foreign"].hex()) for ln in ls.splitlines()), ls
    assert any(ln.startswith("drwxr-xr-x 3 ") and ln.endswith(" app") for ln in ls.splitlines()), ls
    # stat -f: the store's file system
    assert sh(f"stat -f -c %l {m.mnt}").stdout.strip() == "255"
    # findmnt: fuse.corefs with the store as source
    fm = json.loads(sh(f"findmnt -J -t fuse.corefs {m.mnt}").stdout)
    assert fm["filesystems"][0]["source"] == str(m.store)


@pytest.mark.parametrize("name", ["big", "small", "log", "app/events", "empty"])
def test_readers_give_identical_bytes(m, name):
    want = EXPECTED[name]
    p = m.path(name)
    assert sh(f"cat {p} | sha256sum").stdout.split()[0] == sha(want)
    assert int(sh(f"wc -c < {p}").stdout) == len(want)
    assert int(sh(f"wc -l < {p}").stdout) == want.count(b"\n")
    for bs in (["1"] if len(want) <= 100_000 else []) + ["4k", "64k", "1M"]:
        r = sh(f"dd if={p} bs={bs} status=none | sha256sum")
        assert r.stdout.split()[0] == sha(want), bs
    # dd from the middle: skip and count in bytes
    r = sh(f"dd if={p} bs=1000 skip=7 count=3 status=none | sha256sum")
    assert r.stdout.split()[0] == sha(want[7000:10000])
    with open(p, "rb") as f:  # and random reads with Python
        for _ in range(50):
            off = rng.randrange(0, len(want) + 10)
            n = rng.randrange(0, 200_000)
            f.seek(off)
            assert f.read(n) == want[off : off + n]


def test_grep(m):
    r = sh(f"grep -c fox {m.path('log')}")
    assert r.stdout.strip() == "300"
    r = sh(f"grep -rl 'event 19' {m.mnt}")
    assert r.stdout.split() == [str(m.path("app", "events"))]
    r = sh(f"grep -rc quick {m.mnt} | grep -v ':0$'")
    assert r.stdout.split() == [f"{m.path('log')}:300"]


@pytest.mark.parametrize("tool", ["cp -r", "rsync -a", "tar"])
def test_copies_out_are_identical_and_each_core_once(m, tool, tmp_path):
    # a lookup of a key with a path makes a symlink appear in the kernel's cache; still listed nowhere
    link = m.path(".keys", os.getxattr(m.path("log"), "user.spacecore.key").decode())
    assert os.readlink(link) == "../log" and link.read_bytes() == EXPECTED["log"]
    dst = tmp_path / "copy"
    if tool == "cp -r":
        sh(f"cp -r {m.mnt} {dst}")
    elif tool == "rsync -a":
        sh(f"rsync -a {m.mnt}/ {dst}/")
    else:
        dst.mkdir()
        sh(f"tar -C {m.mnt} -cf - . | tar -C {dst} -xf -")
    got = tree_of(dst)
    assert sorted(got) == sorted(EXPECTED)
    for p, want in EXPECTED.items():
        assert got[p] == want, p
    assert sum(len(v) for v in got.values()) == sum(c["byte_length"] for c in m.status()["cores"])
    assert len(got) == len(m.status()["cores"])  # every core of the store, once
    assert (dst / "empty-ns").is_dir() and os.listdir(dst / "empty-ns") == []
    if tool != "cp -r":  # times are preserved: the core's mtime (tar: whole seconds)
        assert int(os.stat(dst / "big").st_mtime) == int(os.stat(m.path("big")).st_mtime)


def test_tar_listing(m):
    r = sh(f"tar -C {m.mnt} -cvf /dev/null .")
    listed = {ln.removeprefix("./").rstrip("/") for ln in r.stdout.splitlines()} - {".", ""}
    assert listed == set(EXPECTED) | {"app", "app/deep", "empty-ns", ".keys"}
    assert "changed as we read it" not in r.stderr


def test_namespaces_with_mkdir_and_rmdir(m):
    sh(f"mkdir {m.path('ns1')} && mkdir -p {m.path('ns1', 'a', 'b')}")
    assert json.loads((m.store / "corefs" / "namespaces.json").read_text()) == \
        [["app"], ["app", "deep"], ["empty-ns"], ["ns1"], ["ns1", "a"], ["ns1", "a", "b"]]
    assert os.getxattr(m.path("ns1", "a"), "user.spacecore.namespace").decode() == \
        crypto.child_namespace(crypto.child_namespace(crypto.ZERO_NAMESPACE, "ns1"), "a").hex()
    r = sh(f"mkdir {m.path('ns1')}", check=False)
    assert r.returncode != 0 and "File exists" in r.stderr
    r = sh(f"rmdir {m.path('app')}", check=False)
    assert r.returncode != 0 and "not empty" in r.stderr
    sh(f"rmdir {m.path('ns1', 'a', 'b')} {m.path('ns1', 'a')}")
    assert sorted(os.listdir(m.path("ns1"))) == []
    sh(f"rmdir {m.path('ns1')}")
    assert not m.path("ns1").exists()
    assert json.loads((m.store / "corefs" / "namespaces.json").read_text()) == \
        [["app"], ["app", "deep"], ["empty-ns"]]


def test_touch_echo_cp_into_new_cores(m, tmp_path):
    sh(f"mkdir {m.path('w')}")
    sh(f"touch {m.path('w', 't')}")
    st = os.stat(m.path("w", "t"))
    assert st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o644
    assert os.getxattr(m.path("w", "t"), "user.spacecore.length") == b"0"
    before = os.stat(m.path("w", "t")).st_mtime_ns
    sh(f"touch {m.path('w', 't')} && touch -d 2001-01-01 {m.path('w', 't')}")  # succeeds, changes nothing
    assert os.stat(m.path("w", "t")).st_mtime_ns == before

    for i in range(3):
        sh(f"echo line {i} >> {m.path('w', 'log')}")
    assert m.path("w", "log").read_bytes() == b"line 0\nline 1\nline 2\n"
    assert os.getxattr(m.path("w", "log"), "user.spacecore.length") == b"3"  # one block per echo
    assert os.getxattr(m.path("w", "log"), "user.spacecore.byte_length") == b"21"

    src = tmp_path / "src"
    src.write_bytes(rng.randbytes(1_000_003))
    sh(f"cp {src} {m.path('w', 'copy')}")
    assert sh(f"cmp {src} {m.path('w', 'copy')}").returncode == 0
    n = int(os.getxattr(m.path("w", "copy"), "user.spacecore.length"))
    assert n >= 1_000_003 // 65536 + 1  # blocks of at most 64 KiB
    # cp onto an existing empty core works (O_TRUNC of an empty core)
    sh(f"cp {src} {m.path('w', 't')}")
    assert m.path("w", "t").read_bytes() == src.read_bytes()
    # Python's buffered writer: 8 KiB blocks
    with open(m.path("w", "py"), "ab") as f:
        f.write(b"p" * 20000)
    assert m.path("w", "py").read_bytes() == b"p" * 20000
    # dd appending at the end with seek=<size> conv=notrunc works
    size = os.stat(m.path("w", "log")).st_size
    sh(f"printf 'tail\\n' | dd of={m.path('w', 'log')} bs=1 seek={size} conv=notrunc status=none")
    assert m.path("w", "log").read_bytes().endswith(b"line 2\ntail\n")
    st = m.status()
    assert {c["path"] for c in st["cores"]} >= {"/w/t", "/w/log", "/w/copy", "/w/py"}


def test_keys_directory(m):
    keys = sorted(os.listdir(m.path(".keys")))
    assert keys == sorted(p.removeprefix(".keys/") for p in EXPECTED if p.startswith(".keys/"))
    # a key with a path is a relative symlink (hex or z32), to the same file
    for name in ("log", "app/events", "app/deep/x"):
        key = os.getxattr(m.path(name), "user.spacecore.key").decode()
        link = m.path(".keys", key)
        assert os.path.islink(link) and os.readlink(link) == "../" + name
        assert os.stat(link).st_ino == os.stat(m.path(name)).st_ino
        assert link.read_bytes() == EXPECTED[name]
    assert key not in os.listdir(m.path(".keys"))
    assert not m.path(".keys", "not-a-key").exists()
    r = sh(f"getfattr -d {m.path('.keys', KEYS['foreign'].hex())}")
    assert 'user.spacecore.writable="0"' in r.stdout and 'user.spacecore.length="3"' in r.stdout


def test_getfattr(m):
    r = sh(f"getfattr -d --absolute-names {m.path('app', 'events')}")
    values = dict(ln.split("=", 1) for ln in r.stdout.splitlines() if "=" in ln)
    key = KEYS[(("app",), "events")]
    assert values == {
        "user.spacecore.byte_length": f'"{len(EXPECTED["app/events"])}"',
        "user.spacecore.contiguous_length": '"20"',
        "user.spacecore.discovery_key": f'"{crypto.discovery_key(key).hex()}"',
        "user.spacecore.fork": '"0"',
        "user.spacecore.key": f'"{key.hex()}"',
        "user.spacecore.length": '"20"',
        "user.spacecore.peers": '"0"',
        "user.spacecore.writable": '"1"',
    }
    r = sh(f"getfattr -n user.spacecore.namespace --only-values {m.path('app')}")
    assert r.stdout == crypto.child_namespace(crypto.ZERO_NAMESPACE, "app").hex()
    r = sh(f"getfattr -n user.nothing {m.path('log')}", check=False)
    assert r.returncode != 0 and "No such attribute" in r.stderr


def test_inodes_and_mtimes_survive_a_remount(mounts):
    mt = mounts()
    populate(mt.store, {((), "log"): LOG[:10], (("app",), "x"): [b"x"], (("zz",), "hidden"): [b"h"]},
             namespaces=[("app",), ("app", "sub")])
    mt.start()
    sh(f"echo more >> {mt.path('log')} && mkdir {mt.path('new')} && echo n > {mt.path('new', 'core')}")
    key = os.getxattr(mt.path("log"), "user.spacecore.key").decode()
    os.readlink(mt.path(".keys", key))

    def snapshot() -> dict:
        out = {}
        for dirpath, dirnames, filenames in os.walk(mt.mnt):
            for n in dirnames + filenames + ([key] if dirpath.endswith(".keys") else []):
                p = Path(dirpath) / n
                st = os.lstat(p)
                out[str(p.relative_to(mt.mnt))] = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size,
                                                   st.st_mode, st.st_nlink)
        out["."] = tuple(getattr(os.stat(mt.mnt), a) for a in ("st_ino", "st_mtime_ns", "st_mode", "st_nlink"))
        return out

    first = snapshot()
    assert len(first) == 10  # ., .keys, .keys/<hidden>, .keys/<log link>, log, app, app/x, app/sub, new, new/core
    ls1 = sh(f"ls -liR --time-style=+%s.%N {mt.mnt}").stdout
    assert mt.umount() == 0
    mt.start()
    assert snapshot() == first
    assert sh(f"ls -liR --time-style=+%s.%N {mt.mnt}").stdout == ls1


def test_large_directory_listing_during_creation(mounts):
    """readdir over many kernel calls: next ids stay stable while cores are created."""
    import threading

    md = mounts(name="many")
    populate(md.store, {((), "c%04d" % i): [b"%d" % i] for i in range(400)})
    md.start()
    stop = threading.Event()
    made = []

    def creator():
        i = 0
        while not stop.is_set() and i < 300:
            p = md.path("new%04d" % i)
            with open(p, "ab") as f:
                f.write(b"n")
            made.append(p.name)
            i += 1

    t = threading.Thread(target=creator)
    t.start()
    try:
        for _ in range(5):
            names = [e.name for e in os.scandir(md.mnt)]
            assert len(names) == len(set(names)), "an entry was listed twice"
            assert {"c%04d" % i for i in range(400)} <= set(names), "an entry was skipped"
    finally:
        stop.set()
        t.join()
    names = os.listdir(md.mnt)
    assert sorted(names) == sorted([".keys"] + ["c%04d" % i for i in range(400)] + made)
    out = sh(f"ls -l {md.mnt} | grep -c '^-rw-r--r-- 1 '").stdout.strip()
    assert int(out) == 400 + len(made)


def test_directory_wins_over_a_core_of_the_same_name(mounts, tmp_path):
    """A known namespace and a core share a name: the directory is shown, the core is under /.keys.
    (Through the kernel, ``mkdir`` beside a visible core is EEXIST: the kernel sees the file
    first.  A namespace made known otherwise, here namespaces.json, takes the name.)"""
    md = mounts(name="both")
    keys = populate(md.store, {((), "app"): [b"the core app\n"], (("app",), "log"): [b"inside\n"]},
                    namespaces=[("app",)])
    md.start()
    assert md.path("app").is_dir() and os.listdir(md.path("app")) == ["log"]
    key = keys[((), "app")].hex()
    assert os.listdir(md.path(".keys")) == [key]
    assert md.path(".keys", key).read_bytes() == b"the core app\n"
    sh(f"rsync -a {md.mnt}/ {tmp_path / 'copy'}/")
    got = tree_of(tmp_path / "copy")
    assert got == {"app/log": b"inside\n", f".keys/{key}": b"the core app\n"}
