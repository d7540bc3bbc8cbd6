"""Must show 3: every row of the errno table of 04-corefs §3 through a real mount, from Python
(``os.*``, checking ``e.errno``) and from shell tools, each refusal with an INFO log line naming
the path (never a traceback; WARNING only for damage)."""
from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
from pathlib import Path

import pytest

from spacecorestore import Corestore, crypto
from spacecorestore.listing import core_dir

from ..vfs.storeutil import copy_core
from .conftest import populate, sh, shared_mount

STRERROR = {code: os.strerror(code) for code in (errno.EPERM, errno.EROFS, errno.EOPNOTSUPP, errno.EEXIST,
                                                 errno.ENAMETOOLONG, errno.EINVAL, errno.EIO)}
CONTENT = b"0123456789\n" * 10
FOREIGN: list[bytes] = []


def setup_store(store: Path) -> None:
    populate(store, {((), "log"): [CONTENT], ((), "empty"): [], (("app",), "inner"): [b"inner\n"]},
             namespaces=[("app",)])
    other = store.parent / "other-store"
    key = populate(other, {((), "x"): [b"not ours\n"]})[((), "x")]
    copy_core(other, store, key)  # without its secret key, as if downloaded from a peer
    FOREIGN.append(key)


shared = shared_mount(setup_store)


@pytest.fixture
def m(shared, checked):
    m = checked(shared)
    yield m
    # nothing refused changed anything
    assert m.path("log").read_bytes() == CONTENT
    assert m.path("app", "inner").read_bytes() == b"inner\n"
    assert m.path(".keys", FOREIGN[0].hex()).read_bytes() == b"not ours\n"


def logged(m, mark: int, code: int, where: str) -> str:
    """The INFO line of a refusal with errno ``code`` naming ``where``."""
    line = m.wait_log(mark, rf" INFO corefs: .*refused \({errno.errorcode[code]}\).*{re.escape(where)}")
    return line


def py_refused(m, code: int, where: str | None, fn, *args) -> None:
    """``fn(*args)`` fails with ``code``; the daemon logged it at INFO naming ``where`` (None: the
    kernel answers alone and the daemon never sees the request)."""
    mark = m.log_mark()
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == code, f"{fn.__name__}{args}: {info.value!r}"
    if where is not None:
        logged(m, mark, code, where)
    assert not any("Traceback" in ln for ln in m.log_since(mark))


def sh_refused(m, code: int, where: str | None, cmd: str) -> None:
    """A shell command fails, printing the errno's message; logged like ``py_refused``."""
    mark = m.log_mark()
    r = sh(cmd, check=False)
    assert r.returncode != 0, f"{cmd!r} succeeded"
    assert STRERROR[code] in r.stderr, f"{cmd!r}: {r.stderr}"
    if where is not None:
        logged(m, mark, code, where)


# EPERM: the core can only grow ---------------------------------------------------------------------------

def test_write_not_at_the_end(m):
    p = m.path("log")
    fd = os.open(p, os.O_WRONLY)
    try:
        for off in (0, 5, len(CONTENT) - 1, len(CONTENT) + 1, 1 << 40):
            py_refused(m, errno.EPERM, "/log", os.pwrite, fd, b"X", off)
    finally:
        os.close(fd)
    assert p.read_bytes() == CONTENT  # the kernel's page cache did not keep the refused bytes
    sh_refused(m, errno.EPERM, "/log", f"printf X | dd of={p} bs=1 seek=3 conv=notrunc status=none")
    sh_refused(m, errno.EPERM, "/app/inner", f"printf X | dd of={m.path('app', 'inner')} bs=1 seek=0 conv=notrunc")


def test_o_trunc_of_a_non_empty_core(m, tmp_path):
    p = m.path("log")
    py_refused(m, errno.EPERM, "/log", os.open, p, os.O_WRONLY | os.O_TRUNC)
    py_refused(m, errno.EPERM, "/log", os.open, p, os.O_RDWR | os.O_TRUNC | os.O_CREAT)
    py_refused(m, errno.EPERM, "/log", open, p, "wb")
    sh_refused(m, errno.EPERM, "/log", f": > {p}")
    sh_refused(m, errno.EPERM, "/log", f"echo x > {p}")
    (tmp_path / "src").write_bytes(b"src")
    sh_refused(m, errno.EPERM, "/log", f"cp {tmp_path / 'src'} {p}")


def test_truncate_to_another_size(m):
    p = m.path("log")
    for size in (0, 1, len(CONTENT) - 1, len(CONTENT) + 1):
        py_refused(m, errno.EPERM, "/log", os.truncate, p, size)
    fd = os.open(p, os.O_WRONLY)
    try:
        py_refused(m, errno.EPERM, "/log", os.ftruncate, fd, 0)
        os.ftruncate(fd, len(CONTENT))  # to the size it has: fine
    finally:
        os.close(fd)
    os.truncate(p, len(CONTENT))
    sh_refused(m, errno.EPERM, "/log", f"truncate -s 0 {p}")
    sh_refused(m, errno.EPERM, "/log", f"truncate -s +10 {p}")
    sh(f"truncate -s {len(CONTENT)} {p}")


def test_unlink(m):
    py_refused(m, errno.EPERM, "/log", os.unlink, m.path("log"))
    py_refused(m, errno.EPERM, "/app/inner", os.unlink, m.path("app", "inner"))
    sh_refused(m, errno.EPERM, "/log", f"rm -f {m.path('log')}")
    sh_refused(m, errno.EPERM, "/app/inner", f"rm -rf {m.path('app')}")
    assert m.path("app").is_dir()


def test_rename(m):
    py_refused(m, errno.EPERM, "/log", os.rename, m.path("log"), m.path("log2"))
    py_refused(m, errno.EPERM, "/log", os.rename, m.path("log"), m.path("app", "log"))
    py_refused(m, errno.EPERM, "/log", os.replace, m.path("log"), m.path("empty"))
    py_refused(m, errno.EPERM, "/app", os.rename, m.path("app"), m.path("app2"))
    sh_refused(m, errno.EPERM, "/log", f"mv {m.path('log')} {m.path('moved')}")
    assert not m.path("moved").exists() and not m.path("log2").exists()


def test_link_and_symlink(m):
    py_refused(m, errno.EPERM, "/hard", os.link, m.path("log"), m.path("hard"))
    py_refused(m, errno.EPERM, "/soft", os.symlink, "log", m.path("soft"))
    sh_refused(m, errno.EPERM, "/app/hard", f"ln {m.path('log')} {m.path('app', 'hard')}")
    sh_refused(m, errno.EPERM, "/app/soft", f"ln -s ../log {m.path('app', 'soft')}")
    assert sorted(os.listdir(m.mnt)) == [".keys", "app", "empty", "log"]


def test_mknod_and_mkfifo(m):
    py_refused(m, errno.EPERM, "/fifo", os.mkfifo, m.path("fifo"))
    py_refused(m, errno.EPERM, "/node", os.mknod, m.path("node"), stat.S_IFREG | 0o644)
    sh_refused(m, errno.EPERM, "/app/fifo", f"mkfifo {m.path('app', 'fifo')}")
    assert not m.path("fifo").exists()


def test_chmod_and_chown(m):
    p = m.path("log")
    py_refused(m, errno.EPERM, "/log", os.chmod, p, 0o600)
    py_refused(m, errno.EPERM, "/log", os.chown, p, 1, 1)
    py_refused(m, errno.EPERM, "/app", os.chmod, m.path("app"), 0o700)
    sh_refused(m, errno.EPERM, "/log", f"chmod 600 {p}")
    sh_refused(m, errno.EPERM, "/log", f"chown 1:1 {p}")
    st = os.stat(p)
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.getuid()


def test_setxattr_and_removexattr(m):
    p = m.path("log")
    py_refused(m, errno.EPERM, "/log", os.setxattr, p, "user.mine", b"1")
    py_refused(m, errno.EPERM, "/log", os.setxattr, p, "user.spacecore.length", b"0")
    py_refused(m, errno.EPERM, "/log", os.removexattr, p, "user.spacecore.key")
    py_refused(m, errno.EPERM, "/app", os.setxattr, m.path("app"), "user.mine", b"1")
    sh_refused(m, errno.EPERM, "/log", f"setfattr -n user.mine -v 1 {p}")
    sh_refused(m, errno.EPERM, "/log", f"setfattr -x user.spacecore.key {p}")
    assert os.getxattr(p, "user.spacecore.length") == b"1"


def test_utimens_succeeds_without_effect(m):
    p = m.path("log")
    before = os.stat(p)
    mark = m.log_mark()
    os.utime(p, (1, 1))
    os.utime(p)
    sh(f"touch {p} && touch -m -d 2001-01-01 {p} && touch {m.path('app')}")
    after = os.stat(p)
    assert (after.st_mtime_ns, after.st_ctime_ns, after.st_size) == \
        (before.st_mtime_ns, before.st_ctime_ns, before.st_size)
    assert not any("refused" in ln for ln in m.log_since(mark))


def test_fallocate_is_eopnotsupp(m):
    # pyfuse3 has no fallocate handler: libfuse answers ENOSYS and the kernel turns it into
    # EOPNOTSUPP, so the daemon never sees (nor logs) this one
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    fd = os.open(m.path("log"), os.O_WRONLY)
    try:
        for mode, off, n in ((0, len(CONTENT), 100), (0, 0, 10), (1, 0, 10)):  # 1: FALLOC_FL_KEEP_SIZE
            assert libc.fallocate(fd, mode, off, n) == -1
            assert ctypes.get_errno() == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    sh_refused(m, errno.EOPNOTSUPP, None, f"fallocate -l 1000 {m.path('log')}")
    sh_refused(m, errno.EOPNOTSUPP, None, f"fallocate -o 0 -l 10 {m.path('empty')}")
    assert os.stat(m.path("empty")).st_size == 0


# EROFS: a core this store cannot write --------------------------------------------------------------------

def test_core_this_store_cannot_write(m):
    p = m.path(".keys", FOREIGN[0].hex())
    where = "/.keys/" + FOREIGN[0].hex()
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o444
    py_refused(m, errno.EROFS, where, os.open, p, os.O_WRONLY | os.O_APPEND)
    py_refused(m, errno.EROFS, where, os.open, p, os.O_RDWR)
    py_refused(m, errno.EROFS, where, os.truncate, p, 0)
    sh_refused(m, errno.EROFS, where, f"echo more >> {p}")
    sh_refused(m, errno.EROFS, where, f"truncate -s 0 {p}")
    # an unknown key looked up in /.keys is added as an empty core of someone else: 0444 too
    other = crypto.key_pair().public_key.hex()
    q = m.path(".keys", other)
    assert os.stat(q).st_size == 0 and stat.S_IMODE(os.stat(q).st_mode) == 0o444
    py_refused(m, errno.EROFS, "/.keys/" + other, os.open, q, os.O_WRONLY)
    # reading the empty remote core: nothing to wait for
    assert q.read_bytes() == b""


# /.keys and namespaces -------------------------------------------------------------------------------------

def test_keys_directory_refusals(m):
    k = m.path(".keys")
    py_refused(m, errno.EPERM, "/.keys/newdir", os.mkdir, k / "newdir")
    py_refused(m, errno.EPERM, "/.keys/newfile", os.open, k / "newfile", os.O_CREAT | os.O_WRONLY)
    py_refused(m, errno.EPERM, "/.keys", os.rmdir, k)
    py_refused(m, errno.EPERM, "/.keys", os.rename, k, m.path("keys2"))
    sh_refused(m, errno.EPERM, "/.keys/dir2", f"mkdir {k / 'dir2'}")
    sh_refused(m, errno.EPERM, "/.keys/file2", f"touch {k / 'file2'}")
    sh_refused(m, errno.EPERM, "/.keys", f"rmdir {k}")
    sh_refused(m, errno.EPERM, "/.keys", f"mv {k} {m.path('keys3')}")
    assert k.is_dir() and not (k / "newdir").exists()


def test_mkdir_of_an_existing_namespace(m):
    # the kernel knows the entry and answers EEXIST itself
    py_refused(m, errno.EEXIST, None, os.mkdir, m.path("app"))
    py_refused(m, errno.EEXIST, None, os.mkdir, m.path(".keys"))
    py_refused(m, errno.EEXIST, None, os.mkdir, m.path("log"))  # a core is in the way
    sh_refused(m, errno.EEXIST, None, f"mkdir {m.path('app')}")
    # O_EXCL on an existing core
    py_refused(m, errno.EEXIST, None, os.open, m.path("log"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def test_name_too_long(m):
    long = "n" * 256
    where = "/" + "n" * 40
    py_refused(m, errno.ENAMETOOLONG, where, os.open, m.path(long), os.O_CREAT | os.O_WRONLY)
    py_refused(m, errno.ENAMETOOLONG, where, os.mkdir, m.path(long))
    py_refused(m, errno.ENAMETOOLONG, "/app/" + "n" * 40, os.stat, m.path("app", long))
    sh_refused(m, errno.ENAMETOOLONG, where, f"touch {m.path(long)}")
    with open(m.path("n" * 255), "wb") as f:  # 255 bytes is fine
        f.write(b"ok")
    assert m.path("n" * 255).read_bytes() == b"ok"


def test_name_not_utf8(m):
    bad = os.fsencode(m.mnt) + b"/bad\xff\xfename"
    where = "/bad\\xff\\xfename"
    py_refused(m, errno.EINVAL, where, os.open, bad, os.O_CREAT | os.O_WRONLY)
    py_refused(m, errno.EINVAL, where, os.mkdir, bad)
    py_refused(m, errno.EINVAL, where, os.stat, bad)
    sh_refused(m, errno.EINVAL, "/app/x\\xff", f"touch {m.path('app')}/x$'\\xff'")


# a --read-only mount: EROFS for every change ------------------------------------------------------------------

def test_read_only_mount(mounts):
    ro = mounts(name="ro")
    populate(ro.store, {((), "log"): [b"data\n"], (("app",), "x"): [b"x"]}, namespaces=[("app",)])
    ro.start("--read-only")
    assert "ro" in sh(f"findmnt -n -o OPTIONS {ro.mnt}").stdout.split(",")
    assert ro.status()["read_only"] is True
    p = ro.path("log")
    assert p.read_bytes() == b"data\n" and stat.S_IMODE(os.stat(p).st_mode) == 0o444
    assert os.getxattr(p, "user.spacecore.writable") == b"0"
    for fn, args in ((os.open, (p, os.O_WRONLY)), (os.open, (ro.path("new"), os.O_CREAT | os.O_WRONLY)),
                     (os.mkdir, (ro.path("dir"),)), (os.rmdir, (ro.path("app"),)), (os.unlink, (p,)),
                     (os.rename, (p, ro.path("y"))), (os.chmod, (p, 0o600)), (os.truncate, (p, 0)),
                     (os.setxattr, (p, "user.x", b"1")), (os.utime, (p, (1, 1))), (os.symlink, ("log", ro.path("s"))),
                     (os.mkfifo, (ro.path("f"),))):
        with pytest.raises(OSError) as info:
            fn(*args)
        assert info.value.errno == errno.EROFS, (fn.__name__, args, info.value)
    for cmd in (f"echo x >> {p}", f"touch {ro.path('new')}", f"mkdir {ro.path('d')}", f"rm -f {p}",
                f"truncate -s 0 {p}", f"setfattr -n user.x -v 1 {p}"):
        r = sh(cmd, check=False)
        assert r.returncode != 0 and STRERROR[errno.EROFS] in r.stderr, (cmd, r.stderr)
    # a key the store does not have is not added on a read-only mount
    assert not ro.path(".keys", crypto.key_pair().public_key.hex()).exists()
    assert os.listdir(ro.path(".keys")) == []
    assert p.read_bytes() == b"data\n" and ro.path("app", "x").read_bytes() == b"x"


# damage and missing blocks: EIO ---------------------------------------------------------------------------------

def test_damaged_block_is_eio_with_a_warning(mounts):
    dm = mounts(name="damaged")
    blocks = [b"A" * 5000, b"B" * 5000, b"C" * 5000]
    key = populate(dm.store, {((), "log"): blocks, ((), "fine"): [b"fine"]})[((), "log")]
    data = dm.store / core_dir(crypto.discovery_key(key)) / "data"
    raw = bytearray(data.read_bytes())
    raw[7000] ^= 0x20  # in block 1
    data.write_bytes(bytes(raw))
    dm.allow_log(r"WARNING corefs: read failed: STORAGE_CORRUPT: /log \(core [0-9a-f]{64}\), block 1:")
    dm.start()
    assert os.stat(dm.path("log")).st_size == 15000  # the listing does not need the data
    mark = dm.log_mark()
    with pytest.raises(OSError) as info:
        dm.path("log").read_bytes()
    assert info.value.errno == errno.EIO
    line = dm.wait_log(mark, r"WARNING")
    assert "/log" in line and key.hex() in line and "block 1" in line
    r = sh(f"cat {dm.path('log')}", check=False)
    assert r.returncode != 0 and STRERROR[errno.EIO] in r.stderr
    # a read inside the damaged block: EIO again (a failed read is not cached)
    fd = os.open(dm.path("log"), os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            os.pread(fd, 100, 6000)
        assert info.value.errno == errno.EIO
    finally:
        os.close(fd)
    assert dm.path("fine").read_bytes() == b"fine"  # other cores are not affected
    assert not any("Traceback" in ln for ln in dm.log_lines())


def test_block_not_held_locally_is_eio_after_read_timeout(mounts):
    import time

    import trio

    sm = mounts(name="sparse")

    async def make():
        async with Corestore(str(sm.store)) as store:
            s = store.get(name="log")
            await s.ready()
            await s.append([b"a" * 4096, b"b" * 4096, b"c" * 4096])
            await s.clear(1)
            await s.close()

    trio.run(make)
    sm.allow_log(r"WARNING corefs: read failed: REQUEST_TIMEOUT: /log: block 1 not available within 0.5 s")
    sm.start("--read-timeout", "0.5", "--direct-io")
    assert os.getxattr(sm.path("log"), "user.spacecore.contiguous_length") == b"1"
    fd = os.open(sm.path("log"), os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 0) == b"a" * 4096
        assert os.pread(fd, 4096, 8192) == b"c" * 4096
        t = time.monotonic()
        with pytest.raises(OSError) as info:
            os.pread(fd, 100, 4000)  # never short, never zero-filled
        assert info.value.errno == errno.EIO
        assert 0.4 < time.monotonic() - t < 5
    finally:
        os.close(fd)
