"""Random-access storage: the small protocol a core's files are read and written through.

A *storage* maps a path inside the store (``"cores/ab/cd/<dk>/oplog"``, or
``"oplog"`` for a standalone core) to a *file*.  A file supports::

    read(offset, length) -> bytes   # fewer bytes if the range runs past the end
    read_all() -> bytes
    write(offset, data)             # extends the file; gaps read as zeros
    truncate(size); size() -> int; punch(offset, length)   # punch keeps the size
    sync(); close(); lock()         # lock: exclusive OFD lock, LockedError if held

Files are created lazily by their first write (parent directories too), and a
missing file reads as empty, as random-access-file does.  I/O is done inline
with ``os.pread``/``os.pwrite``: page-cache I/O costs microseconds, a thread
hop costs ~160 µs, so there is no thread pool here.

A *factory* (any callable taking a path and returning a file) is accepted
wherever a storage is: ``as_storage`` wraps it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import resource
import struct
from pathlib import Path
from typing import Callable, Protocol

from .errors import BadArgumentError, InvalidOperationError, LockedError

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_FALLOC_FL_KEEP_SIZE = 1
_FALLOC_FL_PUNCH_HOLE = 2
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_SYNC_FILE_RANGE_WRITE = 2


class RandomAccessFile(Protocol):
    def read(self, offset: int, length: int) -> bytes: ...
    def read_all(self) -> bytes: ...
    def write(self, offset: int, data: bytes) -> None: ...
    def truncate(self, size: int) -> None: ...
    def size(self) -> int: ...
    def punch(self, offset: int, length: int) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...
    def lock(self) -> None: ...


class Storage(Protocol):
    def open(self, path: str) -> RandomAccessFile: ...
    def list_dir(self, path: str) -> list[str]: ...


class FileBackedFile:
    """One file on disk, opened on first use; created on first write."""

    __slots__ = ("path", "fd", "_locked", "read_only")

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False) -> None:
        self.path = os.fspath(path)
        self.fd = -1
        self._locked = False
        self.read_only = read_only
        self._open(create=False)

    def _open(self, create: bool) -> bool:
        if self.fd >= 0:
            return True
        try:
            return self._open_fd(create)
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            raise InvalidOperationError(
                f"too many open files (limit {soft}, hard limit {hard}) opening {self.path}: close sessions "
                f"or raise the limit (ulimit -n)") from None

    def _open_fd(self, create: bool) -> bool:
        flags = os.O_RDONLY if self.read_only else os.O_RDWR
        if create:
            flags |= os.O_CREAT
        try:
            self.fd = os.open(self.path, flags | os.O_CLOEXEC, 0o600 if create else 0o666)
        except FileNotFoundError:
            if not create:
                return False
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.fd = os.open(self.path, flags | os.O_CLOEXEC, 0o600)
        return True

    def read(self, offset: int, length: int) -> bytes:
        if self.fd < 0:
            return b""
        return os.pread(self.fd, length, offset)

    def read_all(self) -> bytes:
        if self.fd < 0:
            return b""
        size = os.fstat(self.fd).st_size
        return os.pread(self.fd, size, 0) if size else b""

    def write(self, offset: int, data: bytes) -> None:
        if self.fd < 0:
            self._open(create=True)
        n = os.pwrite(self.fd, data, offset)
        while n < len(data):  # short writes are rare but legal
            n += os.pwrite(self.fd, memoryview(data)[n:], offset + n)

    def writev(self, offset: int, chunks: list[bytes]) -> None:
        """Write consecutive chunks at ``offset`` without joining them (pwritev)."""
        if self.fd < 0:
            self._open(create=True)
        for k in range(0, len(chunks), 512):
            part = chunks[k : k + 512]
            total = sum(len(c) for c in part)
            n = os.pwritev(self.fd, part, offset)
            if n < total:
                self.write(offset + n, b"".join(part)[n:])
            offset += total

    def truncate(self, size: int) -> None:
        if self.fd < 0:
            if size == 0:
                return
            self._open(create=True)
        os.ftruncate(self.fd, size)

    def size(self) -> int:
        if self.fd < 0:
            return 0
        return os.fstat(self.fd).st_size

    def exists(self) -> bool:
        return self.fd >= 0

    def punch(self, offset: int, length: int) -> None:
        if self.fd < 0 or length <= 0:
            return
        r = _libc.fallocate(self.fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE,
                            ctypes.c_long(offset), ctypes.c_long(length))
        if r != 0:
            e = ctypes.get_errno()
            if e in (errno.EOPNOTSUPP, errno.ENOSYS):  # no hole punching: write zeros instead
                self.write(offset, bytes(length))
            else:
                raise OSError(e, os.strerror(e), self.path)

    def sync(self) -> None:
        if self.fd >= 0:
            os.fdatasync(self.fd)

    def start_writeback(self, offset: int, length: int) -> None:
        """Start writing that range to disk without waiting (sync_file_range WRITE), so a later
        sync has less left to do.  Durability still comes only from ``sync``."""
        if self.fd >= 0 and length > 0:
            _libc.sync_file_range(self.fd, ctypes.c_longlong(offset), ctypes.c_longlong(length),
                                  ctypes.c_uint(_SYNC_FILE_RANGE_WRITE))  # advisory: errors ignored

    def lock(self) -> None:
        """Exclusive OFD lock on the whole file, as the reference takes it (01-core §6.1)."""
        self._open(create=True)
        try:
            fcntl.fcntl(self.fd, _F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise LockedError(f"File is locked: {self.path}") from None
            raise
        self._locked = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the fd releases its OFD lock
            self.fd = -1


class FileStorage:
    """A directory on disk."""

    def __init__(self, root: str | os.PathLike, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only

    def open(self, path: str) -> FileBackedFile:
        return FileBackedFile(self.root / path, read_only=self.read_only)

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / path))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def __repr__(self) -> str:
        return f"FileStorage({str(self.root)!r})"


class MemoryFile:
    """A file held in a bytearray (what random-access-memory is to the reference)."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.buf = bytearray()
        self.exists_ = False
        self.locked = False

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.buf[offset : offset + length])

    def read_all(self) -> bytes:
        return bytes(self.buf)

    def write(self, offset: int, data: bytes) -> None:
        self.exists_ = True
        end = offset + len(data)
        if end > len(self.buf):
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[offset:end] = data

    def truncate(self, size: int) -> None:
        if size > len(self.buf):
            self.buf.extend(bytes(size - len(self.buf)))
        else:
            del self.buf[size:]
        self.exists_ = self.exists_ or size > 0

    def size(self) -> int:
        return len(self.buf)

    def exists(self) -> bool:
        return self.exists_

    def punch(self, offset: int, length: int) -> None:
        end = min(offset + length, len(self.buf))
        if end > offset:
            self.buf[offset:end] = bytes(end - offset)

    def sync(self) -> None:
        pass

    def lock(self) -> None:
        if self.locked:
            raise LockedError(f"File is locked: {self.path}")
        self.locked = True

    def close(self) -> None:
        self.locked = False


class MemoryStorage:
    """Files in memory, keyed by path; files persist across open/close of a core."""

    def __init__(self) -> None:
        self.files: dict[str, MemoryFile] = {}

    def open(self, path: str) -> MemoryFile:
        f = self.files.get(path)
        if f is None:
            f = self.files[path] = MemoryFile(path)
        return f

    def list_dir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/" if path else ""
        names = {p[len(prefix):].split("/", 1)[0] for p, f in self.files.items() if p.startswith(prefix) and f.exists_}
        return sorted(names)


class FactoryStorage:
    """Adapts a callable ``path -> file`` (the reference's storage function)."""

    def __init__(self, factory: Callable[[str], RandomAccessFile]) -> None:
        self.factory = factory

    def open(self, path: str) -> RandomAccessFile:
        return self.factory(path)

    def list_dir(self, path: str) -> list[str]:
        return []


class SubStorage:
    """A view of a storage under a directory prefix."""

    def __init__(self, parent: Storage, prefix: str) -> None:
        self.parent = parent
        self.prefix = prefix.rstrip("/")

    def open(self, path: str) -> RandomAccessFile:
        return self.parent.open(f"{self.prefix}/{path}" if self.prefix else path)

    def list_dir(self, path: str) -> list[str]:
        return self.parent.list_dir(f"{self.prefix}/{path}" if path else self.prefix)


def as_storage(storage) -> Storage:
    """A directory path, a storage object or a factory, as a storage object."""
    if isinstance(storage, (str, os.PathLike)):
        return FileStorage(storage)
    if hasattr(storage, "open") and hasattr(storage, "list_dir"):
        return storage
    if callable(storage):
        return FactoryStorage(storage)
    raise BadArgumentError(f"not a storage: {storage!r}")
