"""The only module that imports pyfuse3: Operations -> Vfs, the errno map, the catch-all.

Every handler goes through ``_call``: corefs/spacecorestore typed errors become
their errno (refusals logged at INFO, damage at WARNING), anything else is
logged with its traceback and answered with EIO, so nothing but ``FUSEError``
ever reaches pyfuse3 (04-corefs §8).  Also the thin wrappers the daemon uses:
``mount``, ``serve``, ``terminate``, ``unmount``, ``invalidate``.
"""
from __future__ import annotations

import errno
import logging
import os

import pyfuse3
import trio

from spacecorestore.errors import SpacecoreError

from .errors import FsError, StoreIOError
from .spinner import WriteSpinner
from .vfs import ATTR_TIMEOUT, ENTRY_TIMEOUT, Attr, Vfs

log = logging.getLogger("corefs")

_CODE_ERRNO = {
    "SESSION_NOT_WRITABLE": errno.EROFS,
    "SESSION_CLOSED": errno.EBADF,
    "REQUEST_TIMEOUT": errno.EIO,
    "REQUEST_CANCELLED": errno.EIO,
    "BAD_ARGUMENT": errno.EINVAL,
    "STORAGE_CORRUPT": errno.EIO,
    "OPLOG_CORRUPT": errno.EIO,
    "INVALID_SIGNATURE": errno.EIO,
    "INVALID_PROOF": errno.EIO,
    "STORAGE_EMPTY": errno.ENOENT,
    "STORAGE_CONFLICT": errno.EIO,
    "ELOCKED": errno.EBUSY,
    "SNAPSHOT_NOT_AVAILABLE": errno.EIO,
}
_DAMAGE = {"STORAGE_CORRUPT", "OPLOG_CORRUPT", "INVALID_SIGNATURE", "INVALID_PROOF", "REQUEST_TIMEOUT"}


def errno_of(e: BaseException) -> int:
    """The one place an error becomes an errno."""
    if isinstance(e, FsError):
        return e.errno
    if isinstance(e, SpacecoreError):
        return _CODE_ERRNO.get(e.code, errno.EIO)
    return errno.EIO


_ENTRY_CACHE: dict[Attr, pyfuse3.EntryAttributes] = {}


def _entry(a: Attr) -> pyfuse3.EntryAttributes:
    """EntryAttributes for ``a``; unchanged attributes reuse the object built last time
    (listings of thousands of cores answer the same attributes again and again)."""
    ea = _ENTRY_CACHE.get(a)
    if ea is not None:
        return ea
    if len(_ENTRY_CACHE) > 200_000:
        _ENTRY_CACHE.clear()
    ea = _ENTRY_CACHE[a] = _build_entry(a)
    return ea


def _build_entry(a: Attr) -> pyfuse3.EntryAttributes:
    ea = pyfuse3.EntryAttributes()
    ea.st_ino = a.ino
    ea.generation = 0
    ea.entry_timeout = ENTRY_TIMEOUT
    ea.attr_timeout = ATTR_TIMEOUT
    ea.st_mode = a.mode
    ea.st_nlink = a.nlink
    ea.st_uid = a.uid
    ea.st_gid = a.gid
    ea.st_size = a.size
    ea.st_blksize = 65536
    ea.st_blocks = a.blocks
    ea.st_atime_ns = a.mtime_ns
    ea.st_mtime_ns = a.mtime_ns
    ea.st_ctime_ns = a.mtime_ns
    return ea


async def _call(op: str, coro):
    try:
        return await coro
    except pyfuse3.FUSEError:
        raise
    except FsError as e:
        # a missing xattr or name is an answer, not a refusal: keep those out of the INFO log
        if isinstance(e, StoreIOError):
            level = logging.WARNING  # the disk failed us: not a refusal
        elif e.errno in (errno.ENODATA, errno.ENOENT) or (op == "getxattr" and e.errno == errno.EOPNOTSUPP):
            level = logging.DEBUG
        else:
            level = logging.INFO
        log.log(level, "%s refused (%s): %s", op, errno.errorcode.get(e.errno, e.errno), e.message)
        raise pyfuse3.FUSEError(e.errno) from None
    except SpacecoreError as e:
        if e.code in _DAMAGE:
            log.warning("%s failed: %s", op, e)
        else:
            log.info("%s refused: %s", op, e)
        raise pyfuse3.FUSEError(errno_of(e)) from None
    except trio.Cancelled:
        raise
    except BaseException as e:  # a bug: log it with its traceback, keep the mount alive
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        log.exception("%s: internal error", op)
        raise pyfuse3.FUSEError(errno.EIO) from None


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, vfs: Vfs, *, direct_io: bool = False, spinner: WriteSpinner | None = None) -> None:
        super().__init__()
        self.vfs = vfs
        self.direct_io = direct_io
        self.spinner = spinner if spinner is not None else WriteSpinner(False)

    def warm(self) -> None:
        """Prepare the attributes of every core before the first request (see ``Vfs.warm``)."""
        for a in self.vfs.warm():
            _entry(a)

    def _fi(self, fh: int) -> pyfuse3.FileInfo:
        # A handle that can write bypasses the page cache: the kernel then skips its
        # security.capability GETXATTR before each WRITE (file_remove_privs is only on the
        # cached write path; FUSE clears SB_NOSEC), halving the round trips of an append.
        # Readers' cached pages stay right: each append moves the core's mtime (Vfs.write),
        # and the kernel (auto_inval_data) drops a file's pages when its mtime changes.
        direct = self.direct_io or self.vfs.handle_writable(fh)
        return pyfuse3.FileInfo(fh=fh, direct_io=direct, keep_cache=not self.direct_io)

    async def lookup(self, parent_inode, name, ctx=None):
        return _entry(await _call("lookup", self.vfs.lookup(parent_inode, name)))

    async def getattr(self, inode, ctx=None):
        return _entry(await _call("getattr", self.vfs.getattr(inode)))

    async def setattr(self, inode, attr, fields, fh, ctx):
        async def go():
            return await self.vfs.setattr(
                inode,
                size=attr.st_size if fields.update_size else None,
                mode=attr.st_mode if fields.update_mode else None,
                uid=attr.st_uid if fields.update_uid else None,
                gid=attr.st_gid if fields.update_gid else None,
                times=bool(fields.update_atime or fields.update_mtime),
            )
        return _entry(await _call("setattr", go()))

    async def readlink(self, inode, ctx):
        return await _call("readlink", self.vfs.readlink(inode))

    async def opendir(self, inode, ctx):
        return await _call("opendir", self.vfs.opendir(inode))

    async def readdir(self, fh, start_id, token):
        entries = await _call("readdir", self.vfs.readdir(fh, start_id))
        for name, attr, next_id in entries:
            if not pyfuse3.readdir_reply(token, name, _entry(attr), next_id):
                break

    async def releasedir(self, fh):
        await _call("releasedir", self.vfs.releasedir(fh))

    async def mkdir(self, parent_inode, name, mode, ctx):
        return _entry(await _call("mkdir", self.vfs.mkdir(parent_inode, name)))

    async def rmdir(self, parent_inode, name, ctx):
        await _call("rmdir", self.vfs.rmdir(parent_inode, name))

    async def open(self, inode, flags, ctx):
        return self._fi(await _call("open", self.vfs.open(inode, flags)))

    async def create(self, parent_inode, name, mode, flags, ctx):
        fh, attr = await _call("create", self.vfs.create(parent_inode, name, flags))
        return self._fi(fh), _entry(attr)

    async def read(self, fh, off, size):
        return await _call("read", self.vfs.read(fh, off, size))

    async def write(self, fh, off, buf):
        self.spinner.write_started()
        try:
            return await _call("write", self.vfs.write(fh, off, buf))
        finally:
            self.spinner.write_done()

    async def flush(self, fh):
        await _call("flush", self.vfs.flush(fh))

    async def fsync(self, fh, datasync):
        await _call("fsync", self.vfs.fsync(fh))

    async def release(self, fh):
        await _call("release", self.vfs.release(fh))

    async def unlink(self, parent_inode, name, ctx):
        await _call("unlink", self.vfs.refuse("unlink", parent_inode, name))

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        await _call("rename", self.vfs.refuse("rename", parent_inode_old, name_old))

    async def link(self, inode, new_parent_inode, new_name, ctx):
        await _call("link", self.vfs.refuse("link", new_parent_inode, new_name))

    async def symlink(self, parent_inode, name, target, ctx):
        await _call("symlink", self.vfs.refuse("symlink", parent_inode, name))

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        await _call("mknod", self.vfs.refuse("mknod", parent_inode, name))

    async def setxattr(self, inode, name, value, ctx):
        await _call("setxattr", self.vfs.refuse("setxattr", inode))

    async def removexattr(self, inode, name, ctx):
        await _call("removexattr", self.vfs.refuse("removexattr", inode))

    async def getxattr(self, inode, name, ctx):
        if name == b"security.capability":
            # the kernel asks before every write (FUSE clears SB_NOSEC): answer at once
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        return await _call("getxattr", self.vfs.getxattr(inode, name))

    async def listxattr(self, inode, ctx):
        return await _call("listxattr", self.vfs.listxattr(inode))

    async def statfs(self, ctx):
        return await _call("statfs", self._statfs())

    async def _statfs(self):
        st = os.statvfs(self.vfs.store_dir)  # an OSError here becomes EIO in _call, not a dead mount
        s = pyfuse3.StatvfsData()
        for f in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
            setattr(s, f, getattr(st, f))
        s.f_namemax = 255
        return s

    async def access(self, inode, mode, ctx):
        return True

    async def forget(self, inode_list):
        return None


def mount(ops: Operations, mountpoint: str, store_dir: str, *, read_only: bool, allow_other: bool,
          debug: bool) -> None:
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    options |= {"fsname=" + os.path.abspath(store_dir), "subtype=corefs", "default_permissions"}
    if read_only:
        options.add("ro")
    if allow_other:
        options.add("allow_other")
    if debug:
        options.add("debug")
    pyfuse3.init(ops, mountpoint, options)


async def serve() -> None:
    await pyfuse3.main()


def terminate() -> None:
    pyfuse3.terminate()


def unmount(clean: bool = True) -> None:
    pyfuse3.close(unmount=clean)


def invalidate(ino: int, attr_only: bool = True) -> None:
    """Blocks in the kernel: call only from the invalidator's worker thread."""
    pyfuse3.invalidate_inode(ino, attr_only)
