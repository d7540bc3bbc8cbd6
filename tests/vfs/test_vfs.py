"""corefs semantics on ``corefs.vfs.Vfs`` directly, over a real store in tmp_path (no kernel).

The same behaviour is checked through a real mount in ``tests/mount/``; here every
refusal of 04-corefs §3 is a typed error whose errno (``fuse_ops.errno_of``, the one
map) is the table's.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from corefs import errors as fserr
from corefs.fuse_ops import errno_of
from corefs.vfs import KEYS_INO, MAX_BLOCK, NAMESPACES_FILE, ROOT_INO, Vfs
from spacecorestore import Corestore, crypto
from spacecorestore.encoding import z32_encode
from spacecorestore.errors import RequestTimeoutError, SpacecoreError, StorageCorruptError
from spacecorestore.listing import core_dir

from .storeutil import copy_core, populate

WR = os.O_WRONLY
CREAT = os.O_WRONLY | os.O_CREAT


@contextmanager
def refused(code: int, cls: type | None = None):
    """The block raises a typed error (corefs or spacecorestore) that maps to ``code``."""
    with pytest.raises((fserr.FsError, SpacecoreError)) as info:
        yield info
    got = errno_of(info.value)
    assert got == code, f"{info.value!r}: {errno.errorcode.get(got)} instead of {errno.errorcode[code]}"
    if cls is not None:
        assert isinstance(info.value, cls), repr(info.value)


class Fs:
    """A Vfs over ``root`` that can be closed and opened again (a remount without a kernel)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store: Corestore | None = None
        self.vfs: Vfs | None = None

    async def open(self, **opts) -> Vfs:
        self.store = Corestore(str(self.root), writable=not opts.get("read_only", False))
        await self.store.ready()
        self.vfs = Vfs(self.store, self.root, **opts)
        await self.vfs.load()
        return self.vfs

    async def close(self) -> None:
        if self.vfs is not None:
            await self.vfs.close()
            await self.store.close()
            self.vfs = self.store = None

    async def reopen(self, **opts) -> Vfs:
        await self.close()
        return await self.open(**opts)


@pytest.fixture
async def fs(tmp_path):
    f = Fs(tmp_path / "store")
    await f.open()
    yield f
    await f.close()


async def walk(vfs: Vfs, path: str):
    """Lookup of each component of ``path`` (relative to the root); the last Attr."""
    ino = ROOT_INO
    attr = await vfs.getattr(ino)
    for part in [p for p in path.split("/") if p]:
        attr = await vfs.lookup(ino, part.encode())
        ino = attr.ino
    return attr


async def read_all(vfs: Vfs, ino: int, chunk: int = 4096) -> bytes:
    fh = await vfs.open(ino, os.O_RDONLY)
    try:
        out = bytearray()
        while True:
            b = await vfs.read(fh, len(out), chunk)
            if not b:
                return bytes(out)
            out += b
    finally:
        await vfs.release(fh)


async def append(vfs: Vfs, ino: int, data: bytes) -> None:
    fh = await vfs.open(ino, WR | os.O_APPEND)
    try:
        size = (await vfs.getattr(ino)).size
        assert await vfs.write(fh, size, data) == len(data)
        await vfs.flush(fh)
    finally:
        await vfs.release(fh)


def names(entries) -> list[str]:
    return [n for n, _ in entries]


# the tree ------------------------------------------------------------------------------------

async def test_root_and_keys(fs):
    v = fs.vfs
    root = await v.getattr(ROOT_INO)
    assert stat.S_ISDIR(root.mode) and stat.S_IMODE(root.mode) == 0o755
    assert root.nlink == 3  # ., .. and /.keys
    keys = await v.lookup(ROOT_INO, b".keys")
    assert keys.ino == KEYS_INO and stat.S_ISDIR(keys.mode) and stat.S_IMODE(keys.mode) == 0o755
    assert names(v.list_dir(ROOT_INO)) == [".keys"]
    assert v.list_dir(KEYS_INO) == []
    with refused(errno.ENOENT, fserr.NotFound):
        await v.lookup(ROOT_INO, b"nothing")
    with refused(errno.ENOENT):
        await v.getattr(123456789)
    f = await _make_core(v, ROOT_INO, b"f")
    with refused(errno.ENOTDIR, fserr.NotADirectory):
        await v.lookup(f.ino, b"x")


async def _make_core(v: Vfs, parent: int, name: bytes, data: bytes = b""):
    fh, attr = await v.create(parent, name, CREAT)
    if data:
        await v.write(fh, 0, data)
    await v.release(fh)
    return await v.lookup(parent, name)


async def test_create_write_read_at_end(fs):
    v = fs.vfs
    fh, attr = await v.create(ROOT_INO, b"log", CREAT)
    assert attr.size == 0 and stat.S_ISREG(attr.mode) and stat.S_IMODE(attr.mode) == 0o644 and attr.nlink == 1
    assert attr.uid == os.getuid() and attr.gid == os.getgid()
    big = bytes(range(256)) * 1000  # 256000 bytes: four blocks of at most 64 KiB in one write
    assert await v.write(fh, 0, b"hello\n") == 6
    assert await v.write(fh, 6, big) == len(big)
    assert await v.write(fh, 6 + len(big), b"") == 0
    h = v.handles[fh]
    core = h.session.core
    assert core.tree.length == 1 + 4  # one block per write, big split at 64 KiB
    assert [len(core.read_block(i)) for i in range(5)] == [6, MAX_BLOCK, MAX_BLOCK, MAX_BLOCK, len(big) - 3 * MAX_BLOCK]
    assert (await v.getattr(attr.ino)).size == 6 + len(big)  # published before the write returned
    await v.fsync(fh)
    await v.release(fh)
    content = b"hello\n" + big
    assert await read_all(v, attr.ino) == content
    assert await read_all(v, attr.ino, chunk=MAX_BLOCK + 7) == content
    fh = await v.open(attr.ino, os.O_RDONLY)
    for off, size in [(0, 1), (5, 2), (3, 100000), (65540, 65536), (len(content) - 3, 100), (len(content), 10),
                      (len(content) + 5, 10)]:
        assert await v.read(fh, off, size) == content[off : off + size], (off, size)
    await v.release(fh)
    st = await v.getattr(attr.ino)
    assert st.size == len(content) and st.blocks == (len(content) + 511) // 512


async def test_write_elsewhere_is_eperm(fs):
    v = fs.vfs
    a = await _make_core(v, ROOT_INO, b"log", b"0123456789")
    fh = await v.open(a.ino, WR)
    for off in (0, 5, 9, 11, 1 << 40):
        with refused(errno.EPERM, fserr.NotPermitted):
            await v.write(fh, off, b"x")
    assert await v.write(fh, 10, b"ab") == 2
    await v.release(fh)
    assert await read_all(v, a.ino) == b"0123456789ab"


async def test_o_trunc(fs):
    v = fs.vfs
    empty = await _make_core(v, ROOT_INO, b"empty")
    full = await _make_core(v, ROOT_INO, b"full", b"data")
    with refused(errno.EPERM, fserr.NotPermitted):
        await v.open(full.ino, WR | os.O_TRUNC)
    with refused(errno.EPERM):
        await v.create(ROOT_INO, b"full", CREAT | os.O_TRUNC)
    fh = await v.open(empty.ino, WR | os.O_TRUNC)  # cp file empty: works
    await v.write(fh, 0, b"copied")
    await v.release(fh)
    assert await read_all(v, empty.ino) == b"copied"
    assert v.handles == {}


async def test_create_existing(fs):
    v = fs.vfs
    a = await _make_core(v, ROOT_INO, b"log", b"abc")
    with refused(errno.EEXIST, fserr.Exists):
        await v.create(ROOT_INO, b"log", CREAT | os.O_EXCL)
    fh, attr = await v.create(ROOT_INO, b"log", CREAT)  # plain O_CREAT opens it
    assert attr.ino == a.ino and attr.size == 3
    await v.write(fh, 3, b"d")
    await v.release(fh)
    assert await read_all(v, a.ino) == b"abcd"


async def test_create_key_is_the_reference_derivation(fs):
    v = fs.vfs
    await v.mkdir(ROOT_INO, b"app")
    app = await walk(v, "app")
    await _make_core(v, app.ino, b"log", b"x")
    key = (await v.getxattr((await walk(v, "app/log")).ino, b"user.spacecore.key")).decode()
    s = fs.store.namespace("app").get(name="log")
    await s.ready()
    assert s.key.hex() == key and s.length == 1
    await s.close()


async def test_setattr_rules(fs):
    v = fs.vfs
    a = await _make_core(v, ROOT_INO, b"log", b"12345")
    before = await v.getattr(a.ino)
    assert (await v.setattr(a.ino, size=5)).size == 5  # truncate to the size it has: no-op
    for size in (0, 4, 6):
        with refused(errno.EPERM, fserr.NotPermitted):
            await v.setattr(a.ino, size=size)
    with refused(errno.EPERM):
        await v.setattr(a.ino, mode=0o600)
    with refused(errno.EPERM):
        await v.setattr(a.ino, uid=1234)
    with refused(errno.EPERM):
        await v.setattr(a.ino, gid=1234)
    after = await v.setattr(a.ino, times=True)  # touch of an existing core: succeeds, no effect
    assert after.mtime_ns == before.mtime_ns and after.size == 5
    await v.setattr(ROOT_INO, times=True)
    with refused(errno.EPERM):
        await v.setattr(ROOT_INO, mode=0o700)
    with refused(errno.EPERM):
        await v.setattr(KEYS_INO, size=0)
    assert await read_all(v, a.ino) == b"12345"


@pytest.mark.parametrize("op", ["unlink", "rename", "link", "symlink", "mknod", "setxattr", "removexattr"])
async def test_refusals_eperm(fs, op, caplog):
    v = fs.vfs
    await v.mkdir(ROOT_INO, b"app")
    app = await walk(v, "app")
    a = await _make_core(v, app.ino, b"log", b"x")
    if op in ("setxattr", "removexattr"):
        with refused(errno.EPERM, fserr.NotPermitted) as info:
            await v.refuse(op, a.ino)
    else:
        with refused(errno.EPERM, fserr.NotPermitted) as info:
            await v.refuse(op, app.ino, b"log")
    assert "/app/log" in info.value.message and "//" not in info.value.message
    assert await read_all(v, a.ino) == b"x"


async def test_fallocate_eopnotsupp(fs):
    v = fs.vfs
    a = await _make_core(v, ROOT_INO, b"log")
    fh = await v.open(a.ino, WR)
    with refused(errno.EOPNOTSUPP, fserr.NotSupported):
        await v.fallocate(fh)
    await v.release(fh)


async def test_bad_handles(fs):
    v = fs.vfs
    with refused(errno.EBADF):
        await v.read(42, 0, 1)
    with refused(errno.EBADF):
        await v.write(42, 0, b"x")
    with refused(errno.EBADF):
        await v.readdir(42, 0)
    await v.release(42)  # release of an unknown handle is not an error
    a = await _make_core(v, ROOT_INO, b"log", b"x")
    with refused(errno.EISDIR):
        await v.open(ROOT_INO, os.O_RDONLY)
    with refused(errno.ENOTDIR):
        await v.opendir(a.ino)
    fh = await v.open(a.ino, os.O_RDONLY)
    with refused(errno.EROFS, fserr.ReadOnly):  # a read handle never writes
        await v.write(fh, 1, b"y")
    await v.release(fh)


async def test_names(fs):
    v = fs.vfs
    long = b"n" * 256
    ok = b"n" * 255
    for call in (lambda n: v.lookup(ROOT_INO, n), lambda n: v.create(ROOT_INO, n, CREAT),
                 lambda n: v.mkdir(ROOT_INO, n), lambda n: v.rmdir(ROOT_INO, n)):
        with refused(errno.ENAMETOOLONG, fserr.NameTooLong):
            await call(long)
        with refused(errno.EINVAL, fserr.InvalidName):
            await call(b"bad\xff\xfename")
    a = await _make_core(v, ROOT_INO, ok, b"x")
    assert (await v.lookup(ROOT_INO, ok)).ino == a.ino
    await _make_core(v, ROOT_INO, "žluťoučký kůň".encode(), b"utf8")
    assert "žluťoučký kůň" in names(v.list_dir(ROOT_INO))


# namespaces ------------------------------------------------------------------------------------

def ns_file(fs) -> list:
    return json.loads((fs.root / NAMESPACES_FILE).read_text())


async def test_mkdir_rmdir_and_namespaces_json(fs):
    v = fs.vfs
    a = await v.mkdir(ROOT_INO, b"app")
    assert stat.S_ISDIR(a.mode) and stat.S_IMODE(a.mode) == 0o755 and a.nlink == 2
    assert ns_file(fs) == [["app"]]
    with refused(errno.EEXIST, fserr.Exists):
        await v.mkdir(ROOT_INO, b"app")
    with refused(errno.EEXIST):
        await v.mkdir(ROOT_INO, b".keys")
    sub = await v.mkdir(a.ino, b"sub")
    assert ns_file(fs) == [["app"], ["app", "sub"]]
    assert (await v.getattr(a.ino)).nlink == 3 and (await v.getattr(ROOT_INO)).nlink == 4
    assert (await v.getxattr(sub.ino, b"user.spacecore.namespace")).decode() == \
        crypto.child_namespace(crypto.child_namespace(crypto.ZERO_NAMESPACE, "app"), "sub").hex()
    assert not list(fs.root.joinpath("corefs").glob("*.tmp"))
    assert stat.S_IMODE(os.stat(fs.root / "corefs").st_mode) == 0o700

    # an empty namespace survives a reload; inode numbers too
    v = await fs.reopen()
    assert (await walk(v, "app")).ino == a.ino and (await walk(v, "app/sub")).ino == sub.ino
    app = await walk(v, "app")
    with refused(errno.ENOTEMPTY, fserr.NotEmpty):
        await v.rmdir(ROOT_INO, b"app")  # has a subdirectory
    await _make_core(v, (await walk(v, "app/sub")).ino, b"log", b"x")
    with refused(errno.ENOTEMPTY):
        await v.rmdir(app.ino, b"sub")  # has a core
    with refused(errno.ENOENT):
        await v.rmdir(ROOT_INO, b"nothing")
    await _make_core(v, ROOT_INO, b"file")
    with refused(errno.ENOTDIR):
        await v.rmdir(ROOT_INO, b"file")
    with refused(errno.EPERM, fserr.NotPermitted):
        await v.rmdir(ROOT_INO, b".keys")
    await v.mkdir(app.ino, b"empty")
    await v.rmdir(app.ino, b"empty")
    assert ns_file(fs) == [["app"], ["app", "sub"]]
    with refused(errno.ENOENT):
        await v.lookup(app.ino, b"empty")
    assert names(v.list_dir(app.ino)) == ["sub"]

    v = await fs.reopen()
    assert names(v.list_dir(ROOT_INO)) == [".keys", "app", "file"]
    assert (await read_all(v, (await walk(v, "app/sub/log")).ino)) == b"x"


async def test_namespaces_json_is_replaced_atomically(fs, monkeypatch):
    v = fs.vfs
    await v.mkdir(ROOT_INO, b"one")
    before = (fs.root / NAMESPACES_FILE).read_bytes()

    def boom(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with refused(errno.ENOSPC, fserr.StoreIOError):
        await v.mkdir(ROOT_INO, b"two")
    with refused(errno.ENOSPC):
        await v.rmdir(ROOT_INO, b"one")
    monkeypatch.undo()
    # the file and the tree are both as before the failed calls; nothing half-written is left
    assert (fs.root / NAMESPACES_FILE).read_bytes() == before
    assert not list(fs.root.joinpath("corefs").glob("*.tmp"))
    assert names(v.list_dir(ROOT_INO)) == [".keys", "one"]
    await v.mkdir(ROOT_INO, b"two")
    assert ns_file(fs) == [["one"], ["two"]]


async def test_unreadable_namespaces_json_is_ignored(tmp_path, caplog):
    root = tmp_path / "store"
    await populate(root, {((), "log"): [b"x"]})
    (root / "corefs").mkdir()
    (root / NAMESPACES_FILE).write_text("{not json")
    f = Fs(root)
    v = await f.open()
    try:
        assert names(v.list_dir(ROOT_INO)) == [".keys", "log"]
        assert "namespaces.json" in caplog.text
    finally:
        await f.close()


async def test_known_namespace_shows_existing_cores(tmp_path):
    root = tmp_path / "store"
    keys = await populate(root, {(("app",), "log"): [b"a", b"b"], (("app", "deep"), "x"): [b"y"]})
    f = Fs(root)
    v = await f.open()
    try:
        # namespaces are only hashes on disk: unknown namespace -> /.keys
        k1, k2 = keys[(("app",), "log")].hex(), keys[(("app", "deep"), "x")].hex()
        assert sorted(names(v.list_dir(KEYS_INO))) == sorted([k1, k2])
        ino = (await v.lookup(KEYS_INO, k1.encode())).ino
        await v.mkdir(ROOT_INO, b"app")  # makes it known: the core appears at once
        assert names(v.list_dir((await walk(v, "app")).ino)) == ["log"]
        assert (await walk(v, "app/log")).ino == ino
        assert names(v.list_dir(KEYS_INO)) == [k2]
        link = await v.lookup(KEYS_INO, k1.encode())
        assert stat.S_ISLNK(link.mode) and await v.readlink(link.ino) == b"../app/log"
        await v.mkdir((await walk(v, "app")).ino, b"deep")
        assert v.list_dir(KEYS_INO) == []
        assert await v.readlink((await v.lookup(KEYS_INO, k2.encode())).ino) == b"../app/deep/x"
        assert await read_all(v, (await walk(v, "app/deep/x")).ino) == b"y"
    finally:
        await f.close()


async def test_directory_wins_over_core(tmp_path):
    root = tmp_path / "store"
    keys = await populate(root, {((), "a"): [b"root core a"], (("a",), "inner"): [b"inner"]})
    f = Fs(root)
    v = await f.open()
    try:
        a_core = await walk(v, "a")
        assert stat.S_ISREG(a_core.mode)
        key = keys[((), "a")].hex()
        link = await v.lookup(KEYS_INO, key.encode())
        assert stat.S_ISLNK(link.mode) and await v.readlink(link.ino) == b"../a"
        await v.mkdir(ROOT_INO, b"a")  # beside the core a: the namespace wins
        a_dir = await walk(v, "a")
        assert stat.S_ISDIR(a_dir.mode)
        assert names(v.list_dir(ROOT_INO)) == [".keys", "a"]
        assert names(v.list_dir(a_dir.ino)) == ["inner"]
        assert names(v.list_dir(KEYS_INO)) == [key]
        # the symlink the kernel may still hold is gone, not a dangling link or an error
        with refused(errno.ENOENT):
            await v.getattr(link.ino)
        with refused(errno.EINVAL):
            await v.readlink(link.ino)
        moved = await v.lookup(KEYS_INO, key.encode())
        assert stat.S_ISREG(moved.mode) and moved.ino == a_core.ino
        assert await read_all(v, moved.ino) == b"root core a"
        with refused(errno.EISDIR):
            await v.create(ROOT_INO, b"a", CREAT)
        v = await f.reopen()  # the same after a remount
        assert stat.S_ISDIR((await walk(v, "a")).mode)
        assert names(v.list_dir(KEYS_INO)) == [key]
    finally:
        await f.close()


async def test_mkdir_and_create_in_keys_refused(fs):
    v = fs.vfs
    with refused(errno.EPERM, fserr.NotPermitted):
        await v.mkdir(KEYS_INO, b"dir")
    with refused(errno.EPERM, fserr.NotPermitted):
        await v.create(KEYS_INO, b"file", CREAT)
    with refused(errno.EPERM):
        await v.refuse("rename", ROOT_INO, b".keys")


# /.keys ---------------------------------------------------------------------------------------------

async def test_keys_lists_cores_without_a_path(tmp_path):
    root = tmp_path / "store"
    weird = ["a/b", "..", ".", "x" * 256, "nul\0name", ".keys"]
    keys = await populate(root, {((), "log"): [b"L"], (("app",), "in"): [b"I"],
                                 **{((), w): [w.encode()[:10]] for w in weird}})
    f = Fs(root)
    v = await f.open()
    try:
        listed = names(v.list_dir(KEYS_INO))
        expect = sorted([keys[(("app",), "in")].hex()] + [keys[((), w)].hex() for w in weird])
        assert listed == expect
        assert names(v.list_dir(ROOT_INO)) == [".keys", "log"]  # the root core ".keys" is only in /.keys
        for w in weird:
            a = await v.lookup(KEYS_INO, keys[((), w)].hex().encode())
            assert stat.S_ISREG(a.mode) and stat.S_IMODE(a.mode) == 0o644
            assert await read_all(v, a.ino) == w.encode()[:10]
        # a core with a path: a relative symlink, not a second copy (also by z32 key)
        log_key = keys[((), "log")]
        link = await v.lookup(KEYS_INO, log_key.hex().encode())
        assert stat.S_ISLNK(link.mode) and await v.readlink(link.ino) == b"../log"
        assert link.size == len("../log") and link.ino != (await walk(v, "log")).ino
        assert (await v.lookup(KEYS_INO, z32_encode(log_key).encode())).ino == link.ino
        assert (await v.getattr(link.ino)).mode == link.mode
        with refused(errno.ENODATA):
            await v.getxattr(link.ino, b"user.spacecore.key")
        assert await v.listxattr(link.ino) == []
        with refused(errno.EINVAL):
            await v.readlink((await walk(v, "log")).ino)
        with refused(errno.ENOENT):
            await v.lookup(KEYS_INO, b"not-a-key")
        with refused(errno.ENOENT):
            await v.lookup(KEYS_INO, b"ab" * 31)
    finally:
        await f.close()


async def test_keys_lookup_of_unknown_key_adds_core(fs):
    v = fs.vfs
    key = crypto.key_pair().public_key
    a = await v.lookup(KEYS_INO, key.hex().encode())
    assert stat.S_ISREG(a.mode) and stat.S_IMODE(a.mode) == 0o444 and a.size == 0
    assert names(v.list_dir(KEYS_INO)) == [key.hex()]
    assert (await v.getxattr(a.ino, b"user.spacecore.writable")) == b"0"
    assert (await v.getxattr(a.ino, b"user.spacecore.peers")) == b"0"
    with refused(errno.EROFS, fserr.ReadOnly):
        await v.open(a.ino, WR)
    with refused(errno.EROFS, fserr.ReadOnly):
        await v.setattr(a.ino, size=10)
    assert await read_all(v, a.ino) == b""
    v = await fs.reopen()  # it is in the store now
    assert names(v.list_dir(KEYS_INO)) == [key.hex()]
    assert (await v.lookup(KEYS_INO, z32_encode(key).encode())).ino == a.ino
    # on a read-only mount an unknown key is ENOENT and nothing is added
    v = await fs.reopen(read_only=True)
    other = crypto.key_pair().public_key
    with refused(errno.ENOENT):
        await v.lookup(KEYS_INO, other.hex().encode())
    assert names(v.list_dir(KEYS_INO)) == [key.hex()]


async def test_core_of_another_store_stays_under_keys(tmp_path):
    """A core directory copied from another store carries a name its key was not derived for."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    our_keys = await populate(ours, {((), "log"): [b"ours"]})
    their_keys = await populate(theirs, {((), "log"): [b"theirs"], ((), "other"): [b"o"]})
    copy_core(theirs, ours, their_keys[((), "log")])  # without its secret key, as if downloaded
    copy_core(theirs, ours, their_keys[((), "other")], keep_secret_key=True)
    f = Fs(ours)
    v = await f.open()
    try:
        assert names(v.list_dir(ROOT_INO)) == [".keys", "log"]
        assert await read_all(v, (await walk(v, "log")).ino) == b"ours"
        assert (await v.getxattr((await walk(v, "log")).ino, b"user.spacecore.key")).decode() == \
            our_keys[((), "log")].hex()
        assert sorted(names(v.list_dir(KEYS_INO))) == sorted(k.hex() for k in their_keys.values())
        a = await v.lookup(KEYS_INO, their_keys[((), "log")].hex().encode())
        assert stat.S_IMODE(a.mode) == 0o444 and await read_all(v, a.ino) == b"theirs"
        assert await v.getxattr(a.ino, b"user.spacecore.writable") == b"0"
        with refused(errno.EROFS):
            await v.open(a.ino, WR)
        assert stat.S_IMODE((await v.getattr(a.ino)).mode) == 0o444  # also after it was opened
        # with its secret key in its header, this store can write it (but it has no path here)
        b = await v.lookup(KEYS_INO, their_keys[((), "other")].hex().encode())
        assert stat.S_IMODE(b.mode) == 0o644
        await append(v, b.ino, b"+")
        assert await read_all(v, b.ino) == b"o+"
        # touch other: a new core of ours, not the copied one
        fh, attr = await v.create(ROOT_INO, b"other", CREAT)
        await v.release(fh)
        assert attr.size == 0 and stat.S_IMODE(attr.mode) == 0o644
        assert (await v.getxattr(attr.ino, b"user.spacecore.key")).decode() != their_keys[((), "other")].hex()
        v = await f.reopen()
        a = await v.lookup(KEYS_INO, their_keys[((), "log")].hex().encode())
        b = await v.lookup(KEYS_INO, their_keys[((), "other")].hex().encode())
        assert (stat.S_IMODE(a.mode), stat.S_IMODE(b.mode)) == (0o444, 0o644)
    finally:
        await f.close()


# readdir ------------------------------------------------------------------------------------------

async def test_readdir_next_ids_are_stable(fs):
    v = fs.vfs
    for n in (b"b", b"d", b"f"):
        await _make_core(v, ROOT_INO, n, n)
    await v.mkdir(ROOT_INO, b"c")
    fh = await v.opendir(ROOT_INO)
    first = list(await v.readdir(fh, 0))
    assert [(n, i) for n, _, i in first] == [(b".keys", 1), (b"b", 2), (b"c", 3), (b"d", 4), (b"f", 5)]
    # the kernel stops after two entries; meanwhile entries come and go
    await _make_core(v, ROOT_INO, b"a", b"new")
    await _make_core(v, ROOT_INO, b"e", b"new")
    await v.rmdir(ROOT_INO, b"c")
    rest = list(await v.readdir(fh, 2))
    assert [(n, i) for n, _, i in rest] == [(b"d", 4), (b"f", 5)]  # nothing repeated or skipped
    assert list(await v.readdir(fh, 5)) == []
    # attributes are current, not those of the first call
    d_ino = (await walk(v, "d")).ino
    await append(v, d_ino, b"grown")
    name, attr, _ = next(await v.readdir(fh, 3))  # an iterator: the kernel may stop early
    assert name == b"d" and attr.size == 6
    await v.releasedir(fh)
    fh = await v.opendir(ROOT_INO)
    assert [n for n, _, _ in await v.readdir(fh, 0)] == [b".keys", b"a", b"b", b"d", b"e", b"f"]
    await v.releasedir(fh)
    assert v.dir_handles == {}


async def test_readdir_attributes(fs):
    v = fs.vfs
    await v.mkdir(ROOT_INO, b"ns")
    await _make_core(v, ROOT_INO, b"log", b"12345")
    fh = await v.opendir(ROOT_INO)
    got = {n: a for n, a, _ in await v.readdir(fh, 0)}
    await v.releasedir(fh)
    assert got[b"log"] == await v.getattr((await walk(v, "log")).ino)
    assert got[b"ns"] == await v.getattr((await walk(v, "ns")).ino)
    assert got[b".keys"].ino == KEYS_INO


# attributes and xattrs ------------------------------------------------------------------------------

async def test_xattrs(fs):
    v = fs.vfs
    await v.mkdir(ROOT_INO, b"app")
    app = await walk(v, "app")
    a = await _make_core(v, app.ino, b"log", b"one")
    await append(v, a.ino, b"two")
    x = {n.decode(): (await v.getxattr(a.ino, n)).decode() for n in await v.listxattr(a.ino)}
    s = fs.store.namespace("app").get(name="log")
    await s.ready()
    assert x == {
        "user.spacecore.key": s.key.hex(),
        "user.spacecore.discovery_key": s.discovery_key.hex(),
        "user.spacecore.length": "2",
        "user.spacecore.byte_length": "6",
        "user.spacecore.contiguous_length": "2",
        "user.spacecore.fork": "0",
        "user.spacecore.writable": "1",
        "user.spacecore.peers": "0",
    }
    await s.close()
    assert await v.listxattr(app.ino) == [b"user.spacecore.namespace"]
    assert await v.getxattr(ROOT_INO, b"user.spacecore.namespace") == b"0" * 64
    assert await v.getxattr(app.ino, b"user.spacecore.namespace") == \
        crypto.child_namespace(crypto.ZERO_NAMESPACE, "app").hex().encode()
    assert await v.listxattr(KEYS_INO) == []
    for ino, name in ((a.ino, b"user.unknown"), (a.ino, b"user.spacecore.namespace"), (app.ino, b"user.spacecore.key"),
                      (KEYS_INO, b"user.spacecore.namespace")):
        with refused(errno.ENODATA, fserr.NoData):
            await v.getxattr(ino, name)
    for ino, name in ((a.ino, b"security.selinux"), (a.ino, b"system.posix_acl_access"), (app.ino, b"trusted.x")):
        with refused(errno.EOPNOTSUPP, fserr.NotSupported):  # ls -l then stops asking for this device
            await v.getxattr(ino, name)
    # the same without the core being open (values from the listing)
    v = await fs.reopen()
    a2 = await walk(v, "app/log")
    assert {n.decode(): (await v.getxattr(a2.ino, n)).decode() for n in await v.listxattr(a2.ino)} == x


async def test_modes_sizes_times_and_inodes_survive_a_reload(fs):
    v = fs.vfs
    await v.mkdir(ROOT_INO, b"app")
    app = await walk(v, "app")
    log = await _make_core(v, app.ino, b"log", b"x" * 1000)
    for k in range(5):
        await append(v, log.ino, b"line %d\n" % k)
    key = crypto.key_pair().public_key
    remote = await v.lookup(KEYS_INO, key.hex().encode())
    before = {p: await walk(v, p) for p in ("", "app", "app/log", ".keys")}
    before["remote"] = await v.getattr(remote.ino)
    oplog = fs.root / core_dir(v.by_ino[log.ino].discovery_key) / "oplog"
    assert before["app/log"].mtime_ns == os.stat(oplog).st_mtime_ns  # the core's files, not a clock
    await read_all(v, log.ino)  # reading changes nothing on disk
    assert (await v.getattr(log.ino)).mtime_ns == before["app/log"].mtime_ns == os.stat(oplog).st_mtime_ns
    await trio.sleep(0.01)
    v = await fs.reopen()
    after = {p: await walk(v, p) for p in ("", "app", "app/log", ".keys")}
    after["remote"] = await v.lookup(KEYS_INO, key.hex().encode())
    assert after == before
    mtimes = [os.stat(p).st_mtime_ns for p in oplog.parent.iterdir()]
    for n in await v.listxattr(log.ino):  # opening a core to answer does not touch its files
        await v.getxattr(log.ino, n)
    assert [os.stat(p).st_mtime_ns for p in oplog.parent.iterdir()] == mtimes
    assert stat.S_IMODE(after["app/log"].mode) == 0o644 and after["app/log"].size == 1000 + 5 * 7
    assert stat.S_IMODE(after["remote"].mode) == 0o444
    v = await fs.reopen(read_only=True)  # nothing writable on a read-only mount
    assert stat.S_IMODE((await walk(v, "app/log")).mode) == 0o444
    assert (await walk(v, "app/log")).ino == before["app/log"].ino


async def test_inode_numbers_come_from_discovery_keys(fs):
    v = fs.vfs
    a = await _make_core(v, ROOT_INO, b"log")
    dk = v.by_ino[a.ino].discovery_key
    n = int.from_bytes(dk[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
    assert a.ino == (n if n > 16 else n + 17)
    assert a.ino not in (ROOT_INO, KEYS_INO)


# sessions and handles -----------------------------------------------------------------------------

async def test_handles_count_per_core(fs):
    v = fs.vfs
    a = await _make_core(v, ROOT_INO, b"a", b"1")
    b = await _make_core(v, ROOT_INO, b"b", b"2")
    dk = v.by_ino[a.ino].discovery_key
    assert dk not in fs.store._state.cores  # released after the create handle closed
    fhs = [await v.open(a.ino, os.O_RDONLY) for _ in range(3)] + [await v.open(a.ino, WR)]
    fb = await v.open(b.ino, os.O_RDONLY)
    st = {c["path"]: c for c in v.status()}
    assert st["/a"]["handles"] == 4 and st["/b"]["handles"] == 1
    assert st["/a"]["replication_sessions"] == 0 and st["/a"]["peers"] == 0
    assert set(st["/a"]) == {"path", "key", "length", "byte_length", "contiguous_length", "handles",
                             "replication_sessions", "peers"}
    assert dk in fs.store._state.cores  # one core shared by the four sessions
    await v.write(fhs[3], 1, b"more")
    assert await v.read(fhs[0], 0, 100) == b"1more"  # every reader sees the append at once
    for fh in fhs:
        await v.release(fh)
    st = {c["path"]: c for c in v.status()}
    assert st["/a"]["handles"] == 0 and st["/b"]["handles"] == 1
    assert st["/a"]["length"] == 2 and st["/a"]["byte_length"] == 5
    assert dk not in fs.store._state.cores  # the core is released with its last handle
    await v.release(fb)
    assert fs.store._state.cores == {}
    # status of a core only under /.keys
    key = crypto.key_pair().public_key
    await v.lookup(KEYS_INO, key.hex().encode())
    assert {c["key"]: c["path"] for c in v.status()}[key.hex()] is None


async def test_close_releases_everything(fs):
    v = fs.vfs
    a = await _make_core(v, ROOT_INO, b"a", b"1")
    await v.mkdir(ROOT_INO, b"ns")
    await _make_core(v, (await walk(v, "ns")).ino, b"x", b"2")
    for _ in range(3):
        await v.open(a.ino, os.O_RDONLY)
    await v.close()
    assert v.handles == {} and fs.store._state.cores == {}
    await fs.store.close()
    fs.vfs = None
    async with Corestore(str(fs.root)) as store:  # lock released, store whole
        s = store.namespace("ns").get(name="x")
        await s.ready()
        assert await s.get(0) == b"2"


# damage and missing blocks ----------------------------------------------------------------------------

async def test_damaged_block_is_eio_naming_core_and_block(tmp_path):
    root = tmp_path / "store"
    keys = await populate(root, {((), "log"): [b"A" * 100, b"B" * 100, b"C" * 100]})
    data = root / core_dir(crypto.discovery_key(keys[((), "log")])) / "data"
    raw = bytearray(data.read_bytes())
    raw[150] ^= 0x01  # inside block 1
    data.write_bytes(bytes(raw))
    f = Fs(root)
    v = await f.open()
    try:
        a = await walk(v, "log")
        assert a.size == 300  # attributes do not need the data
        fh = await v.open(a.ino, os.O_RDONLY)
        assert await v.read(fh, 0, 100) == b"A" * 100
        with refused(errno.EIO, StorageCorruptError) as info:
            await v.read(fh, 0, 300)
        msg = str(info.value)
        assert "/log" in msg and keys[((), "log")].hex() in msg and "block 1" in msg
        assert await v.read(fh, 200, 100) == b"C" * 100
        await v.release(fh)
    finally:
        await f.close()


async def test_block_not_held_locally_times_out_with_eio(tmp_path):
    root = tmp_path / "store"
    async with Corestore(str(root)) as store:
        s = store.get(name="log")
        await s.ready()
        await s.append([b"a" * 10, b"b" * 10, b"c" * 10])
        await s.clear(1)
        await s.close()
    f = Fs(root)
    v = await f.open(read_timeout=0.2)
    try:
        a = await walk(v, "log")
        assert a.size == 30
        assert (await v.getxattr(a.ino, b"user.spacecore.contiguous_length")) == b"1"
        assert {c["path"]: c["contiguous_length"] for c in v.status()}["/log"] == 1
        fh = await v.open(a.ino, os.O_RDONLY)
        assert await v.read(fh, 0, 10) == b"a" * 10
        assert await v.read(fh, 20, 10) == b"c" * 10
        with trio.fail_after(5):
            with refused(errno.EIO, RequestTimeoutError) as info:
                await v.read(fh, 5, 10)  # never a short or zero-filled read
        assert "block 1" in str(info.value)
        await v.release(fh)
    finally:
        await f.close()


# read-only ----------------------------------------------------------------------------------------------

async def test_read_only_mount_refuses_changes(tmp_path):
    root = tmp_path / "store"
    await populate(root, {((), "log"): [b"x"]})
    (root / "corefs").mkdir()
    (root / NAMESPACES_FILE).write_text('[["app"]]')
    f = Fs(root)
    v = await f.open(read_only=True)
    try:
        a = await walk(v, "log")
        assert stat.S_IMODE(a.mode) == 0o444
        assert (await v.getxattr(a.ino, b"user.spacecore.writable")) == b"0"
        with refused(errno.EROFS, fserr.ReadOnly):
            await v.open(a.ino, WR)
        with refused(errno.EROFS):
            await v.create(ROOT_INO, b"new", CREAT)
        with refused(errno.EROFS):
            await v.mkdir(ROOT_INO, b"dir")
        with refused(errno.EROFS):
            await v.rmdir(ROOT_INO, b"app")
        with refused(errno.EROFS):
            await v.setattr(a.ino, size=0)
        for op in ("unlink", "rename", "link", "symlink", "mknod"):
            with refused(errno.EROFS):
                await v.refuse(op, ROOT_INO, b"log")
        assert await read_all(v, a.ino) == b"x"
        fh, attr = await v.create(ROOT_INO, b"log", os.O_RDONLY | os.O_CREAT)  # opens the existing core
        await v.release(fh)
        assert attr.ino == a.ino
    finally:
        await f.close()


# growth the kernel cannot see -------------------------------------------------------------

async def test_growth_from_outside_the_mount_is_queued_for_invalidation(fs):
    """Appends through a FUSE handle are seen by the kernel; an append by another session of the
    same core (as replication will make) and a truncation are queued for invalidation."""
    v = fs.vfs
    queued = []
    v.on_growth = lambda ino, attr_only: queued.append((ino, attr_only, (v.by_ino[ino].byte_length)))
    fh, attr = await v.create(ROOT_INO, b"log", CREAT)
    await v.write(fh, 0, b"through the mount\n")
    assert queued == []
    other = fs.store.get(name="log")
    await other.append(b"from elsewhere")
    assert queued == [(attr.ino, True, 18 + 14)]  # the new length is published before the queue
    await other.truncate(1)
    assert queued[-1] == (attr.ino, False, 18)
    await other.close()
    await v.release(fh)
