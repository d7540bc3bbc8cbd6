"""The ceiling of any pyfuse3 mount: a minimal pyfuse3 (trio) filesystem over one directory.

    .venv/bin/python scripts/minimal_fs.py [--xattrs] SRC_DIR MNT   (foreground; SIGTERM/SIGINT unmount)

The tree under SRC_DIR is scanned once at start; lookup, getattr and readdir(plus)
are answered from memory (entry/attr timeouts 1 s).  Reads are ``os.pread`` on the
real file; writes are accepted only at the end of file (``os.pwrite``), anything else
is EPERM.  ``create`` makes an empty file.  No writeback cache, default read_ahead_kb,
``keep_cache`` on like corefs.  Prints ``ready`` on stdout once the mount is live.

Extended attributes are not implemented: the first GETXATTR gets ENOSYS and the
kernel never asks again.  ``--xattrs`` answers every GETXATTR with ENODATA instead,
as a filesystem with xattrs of its own must, so each write(2) then costs a second
request (the kernel's security.capability check; FUSE never caches xattrs).
"""
from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import time

import pyfuse3
import trio

TIMEOUT = 1.0


class MinimalFs(pyfuse3.Operations):
    enable_writeback_cache = False
    supports_dot_lookup = False

    def __init__(self, src: str, xattrs: bool = False) -> None:
        super().__init__()
        self.xattrs = xattrs
        self.paths: dict[int, str] = {}
        self.attrs: dict[int, pyfuse3.EntryAttributes] = {}
        self.children: dict[int, dict[bytes, int]] = {}
        self.fds: dict[int, int] = {}  # fd -> inode
        self.dirs: dict[int, list[tuple[bytes, int]]] = {}  # directory handle -> sorted entries
        self._next = pyfuse3.ROOT_INODE + 1
        self._next_dh = 0
        self._add(pyfuse3.ROOT_INODE, os.path.abspath(src), os.stat(src))
        stack = [pyfuse3.ROOT_INODE]
        while stack:
            d = stack.pop()
            with os.scandir(self.paths[d]) as it:
                for de in it:
                    st = de.stat(follow_symlinks=False)
                    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                        continue
                    ino = self._add_child(d, de.name.encode(), de.path, st)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(ino)

    def _add(self, ino: int, path: str, st: os.stat_result) -> None:
        a = pyfuse3.EntryAttributes()
        for f in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks", "st_atime_ns",
                  "st_mtime_ns", "st_ctime_ns"):
            setattr(a, f, getattr(st, f))
        a.st_ino, a.generation, a.st_blksize = ino, 0, 65536
        a.entry_timeout = a.attr_timeout = TIMEOUT
        self.paths[ino], self.attrs[ino] = path, a
        if stat.S_ISDIR(st.st_mode):
            self.children[ino] = {}

    def _add_child(self, parent: int, name: bytes, path: str, st: os.stat_result) -> int:
        ino, self._next = self._next, self._next + 1
        self._add(ino, path, st)
        self.children[parent][name] = ino
        return ino

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        a = self.attrs.get(ino)
        if a is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return a

    async def lookup(self, parent_inode, name, ctx=None):
        ino = self.children.get(parent_inode, {}).get(name)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.attrs[ino]

    async def getattr(self, inode, ctx=None):
        return self._attr(inode)

    async def setattr(self, inode, attr, fields, fh, ctx):
        a = self._attr(inode)
        if fields.update_size and attr.st_size != a.st_size or fields.update_mode or fields.update_uid \
                or fields.update_gid:
            raise pyfuse3.FUSEError(errno.EPERM)
        return a  # utimens: accepted, no effect

    async def getxattr(self, inode, name, ctx):
        raise pyfuse3.FUSEError(errno.ENODATA if self.xattrs else errno.ENOSYS)

    async def opendir(self, inode, ctx):
        if inode not in self.children:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = self._next_dh = self._next_dh + 1
        self.dirs[fh] = sorted(self.children[inode].items())
        return fh

    async def readdir(self, fh, start_id, token):
        entries = self.dirs[fh]
        for i in range(start_id, len(entries)):
            if not pyfuse3.readdir_reply(token, entries[i][0], self.attrs[entries[i][1]], i + 1):
                break

    async def releasedir(self, fh):
        del self.dirs[fh]

    async def open(self, inode, flags, ctx):
        self._attr(inode)
        acc = flags & os.O_ACCMODE
        fd = os.open(self.paths[inode], os.O_RDONLY if acc == os.O_RDONLY else os.O_RDWR)
        self.fds[fd] = inode
        return pyfuse3.FileInfo(fh=fd, keep_cache=True, direct_io=False)

    async def create(self, parent_inode, name, mode, flags, ctx):
        if parent_inode not in self.children or name in self.children[parent_inode]:
            raise pyfuse3.FUSEError(errno.EEXIST)
        path = os.path.join(self.paths[parent_inode], os.fsdecode(name))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        ino = self._add_child(parent_inode, name, path, os.fstat(fd))
        self.fds[fd] = ino
        return pyfuse3.FileInfo(fh=fd, keep_cache=True, direct_io=False), self.attrs[ino]

    async def read(self, fh, off, size):
        return os.pread(fh, size, off)

    async def write(self, fh, off, buf):
        a = self.attrs[self.fds[fh]]
        if off != a.st_size:
            raise pyfuse3.FUSEError(errno.EPERM)
        n = os.pwrite(fh, buf, off)
        a.st_size += n
        a.st_blocks = (a.st_size + 511) // 512
        a.st_mtime_ns = a.st_ctime_ns = time.time_ns()
        return n

    async def release(self, fh):
        self.fds.pop(fh, None)
        os.close(fh)


async def _serve() -> None:
    async with trio.open_nursery() as nursery:
        async def on_signal():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    pyfuse3.terminate()
        nursery.start_soon(on_signal)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main() -> int:
    args = sys.argv[1:]
    xattrs = "--xattrs" in args
    args = [x for x in args if x != "--xattrs"]
    if len(args) != 2:
        print("usage: " + __doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    src, mnt = args
    ops = MinimalFs(src, xattrs)
    opts = set(pyfuse3.default_options) | {"fsname=" + os.path.abspath(src), "subtype=minimalfs"}
    pyfuse3.init(ops, mnt, opts)
    print("ready", flush=True)
    try:
        trio.run(_serve)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
