"""Typed refusals of the corefs filesystem (04-corefs §3); each carries its errno.

The VFS raises these (and lets spacecorestore's typed errors through);
``fuse_ops.errno_of`` is the one place that turns any error into an errno.
"""
from __future__ import annotations

import errno


class FsError(Exception):
    """A refused filesystem operation: ``errno`` and a message naming the path."""

    errno = errno.EIO

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NotFound(FsError):
    errno = errno.ENOENT


class NotPermitted(FsError):
    """Writes not at the end, truncation, unlink, rename, chmod...: the core can only grow."""

    errno = errno.EPERM


class ReadOnly(FsError):
    """A core this store cannot write, or a --read-only mount."""

    errno = errno.EROFS


class Exists(FsError):
    errno = errno.EEXIST


class NotEmpty(FsError):
    errno = errno.ENOTEMPTY


class NameTooLong(FsError):
    errno = errno.ENAMETOOLONG


class InvalidName(FsError):
    errno = errno.EINVAL


class NoData(FsError):
    """No such extended attribute."""

    errno = errno.ENODATA


class NotSupported(FsError):
    errno = errno.EOPNOTSUPP


class NotADirectory(FsError):
    errno = errno.ENOTDIR


class IsADirectory(FsError):
    errno = errno.EISDIR


class BadHandle(FsError):
    errno = errno.EBADF


class StoreIOError(FsError):
    """The store directory itself failed (disk full, I/O error): the OS errno is kept."""

    def __init__(self, message: str = "", errno_: int = errno.EIO) -> None:
        super().__init__(message)
        self.errno = errno_
