"""The public Spacecore session (00-api §2): values, encryption, waiting, snapshots, events.

A session is a view of a shared ``Core``: it encodes and decodes values,
encrypts blocks, waits for blocks and lengths, freezes its length when it is
a snapshot, and delivers events.  Opening is lazy: ``ready()`` (awaited by
every async method) runs the opener once.  Closing a session rejects its
waiting calls with ``RequestCancelledError``; the core is released when its
last session closes.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, NamedTuple

import trio

from .. import crypto
from ..encoding import parse_key, z32_encode
from ..errors import (
    BadArgumentError,
    RequestCancelledError,
    RequestTimeoutError,
    SessionClosedError,
    SessionNotWritableError,
    SnapshotNotAvailableError,
)
from ..storage import as_storage
from .core import Core
from .value_encoding import get_encoding

log = logging.getLogger(__name__)

EVENTS = {"ready", "append", "truncate", "peer-add", "peer-remove", "download", "upload", "close"}


class AppendResult(NamedTuple):
    length: int
    byte_length: int


@dataclass(frozen=True)
class Info:
    key: bytes
    discovery_key: bytes
    length: int
    contiguous_length: int
    byte_length: int
    fork: int
    padding: int
    writable: bool


def _as_key_pair(kp) -> crypto.KeyPair | None:
    if kp is None:
        return None
    if isinstance(kp, crypto.KeyPair):
        return kp
    if isinstance(kp, dict):
        return crypto.KeyPair(kp.get("public_key") or kp.get("publicKey"), kp.get("secret_key") or kp.get("secretKey"))
    if isinstance(kp, tuple) and len(kp) == 2:
        return crypto.KeyPair(*kp)
    raise BadArgumentError(f"key_pair must be a KeyPair, not {type(kp).__name__}")


class Spacecore:
    """A session on one core.

    ``Spacecore(storage, key=None, **opts)`` opens a core on its own: ``storage``
    is a directory path, a storage object or a factory; the core's files live at
    its top and its ``oplog`` is locked (``LockedError`` if another holds it).
    Options: ``key_pair``, ``value_encoding``, ``encryption_key``,
    ``create_if_missing``, ``overwrite``, ``writable``, ``wait``, ``timeout``,
    ``sparse``, ``manifest``, ``compat``.
    """

    def __init__(self, storage=None, key=None, *, _opener: Callable[[], Awaitable[Core]] | None = None,
                 _parent: "Spacecore | None" = None, snapshot: bool = False, **opts: Any) -> None:
        self._opts = opts
        self._value_encoding = get_encoding(opts.get("value_encoding"))
        ek = opts.get("encryption_key")
        if ek is not None and (not isinstance(ek, (bytes, bytearray)) or len(ek) != 32):
            raise BadArgumentError("encryption_key must be 32 bytes")
        self._encryption_key = bytes(ek) if ek is not None else None
        self._encryption: crypto.BlockEncryption | None = None
        self._want_writable = opts.get("writable", True)
        self._wait_default = opts.get("wait", True)
        self._timeout_default = opts.get("timeout")
        self._snapshot = snapshot
        self._snap: tuple[int, int, int] | None = None  # (length, tree byte length, fork) when a snapshot
        self._listeners: dict[str, list[Callable]] = {}
        self._waits: set[trio.CancelScope] = set()
        self.core: Core | None = None
        self.closed = False
        self._close_hooks: list[Callable[["Spacecore"], None]] = []  # owners (a store view) forget us
        self._ready_event: trio.Event | None = None
        self._open_error: BaseException | None = None
        if _parent is not None:
            self._opener = None
            self._attach(_parent.core)
            if self._encryption_key is None and _parent._encryption is not None:
                self._encryption = _parent._encryption
                self._encryption_key = _parent._encryption_key
            self._want_writable = self._want_writable and _parent._want_writable
        elif _opener is not None:
            self._opener = _opener
        else:
            if storage is None:
                raise BadArgumentError("Spacecore needs a storage")
            self._opener = self._standalone_opener(storage, key, opts)

    @staticmethod
    def _standalone_opener(storage, key, opts):
        st = as_storage(storage)
        k = parse_key(key) if key is not None else None
        kp = _as_key_pair(opts.get("key_pair"))

        async def opener() -> Core:
            return Core.open(st, label=str(getattr(st, "root", "")), key=k, key_pair=kp, manifest=opts.get("manifest"),
                             create_if_missing=opts.get("create_if_missing", True),
                             overwrite=opts.get("overwrite", False), writable=True,
                             compat=opts.get("compat", True), lock=True)
        return opener

    def _attach(self, core: Core) -> None:
        self.core = core
        core.sessions.add(self)
        if self._encryption_key is not None and self._encryption is None:
            self._encryption = crypto.BlockEncryption(self._encryption_key, core.key, compat=core.compat)
        if self._snapshot:
            t = core.tree
            self._snap = (t.length, t.byte_length, t.fork)
        ev = self._ready_event = trio.Event()
        ev.set()

    # lifecycle ------------------------------------------------------------------------

    async def ready(self) -> None:
        if self.core is not None:
            if self.closed:
                raise SessionClosedError("session is closed")
            return
        if self.closed:
            raise SessionClosedError("session is closed")
        if self._ready_event is None:
            self._ready_event = trio.Event()
            try:
                core = await self._opener()
            except BaseException as e:
                self._open_error = e
                self._ready_event.set()
                raise
            if self.closed:  # closed while opening
                self._release(core)
                raise SessionClosedError("session closed while opening")
            self._attach(core)
            self._emit("ready")
            return
        await self._ready_event.wait()
        if self._open_error is not None:
            raise self._open_error
        if self.closed or self.core is None:
            raise SessionClosedError("session is closed")

    def _release(self, core: Core) -> None:
        core.sessions.discard(self)
        if not core.sessions:
            core.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for cs in list(self._waits):
            cs.cancel()
        core = self.core
        if core is not None:
            self._release(core)
        for hook in self._close_hooks:
            hook(self)
        self._emit("close")
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> "Spacecore":
        await self.ready()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def session(self, **opts) -> "Spacecore":
        """Another session on the same (opened) core."""
        self._check_open()
        return Spacecore(_parent=self, **opts)

    def snapshot(self, **opts) -> "Spacecore":
        """A session whose length stays frozen until ``update()``."""
        self._check_open()
        return Spacecore(_parent=self, snapshot=True, **opts)

    def _check_open(self) -> Core:
        if self.closed:
            raise SessionClosedError("session is closed")
        if self.core is None:
            raise SessionClosedError("session is not ready: await ready() first")
        return self.core

    async def _core(self) -> Core:
        if self.core is None or self.closed:
            await self.ready()
        return self.core

    # properties -----------------------------------------------------------------------

    @property
    def key(self) -> bytes | None:
        return self.core.key if self.core else None

    @property
    def discovery_key(self) -> bytes | None:
        return self.core.discovery_key if self.core else None

    @property
    def id(self) -> str | None:
        return z32_encode(self.core.key) if self.core else None

    @property
    def key_pair(self) -> crypto.KeyPair | None:
        return self.core.key_pair if self.core else None

    @property
    def manifest(self):
        return self.core.manifest if self.core else None

    @property
    def padding(self) -> int:
        return crypto.PADDING if self._encryption is not None else 0

    @property
    def length(self) -> int:
        if self._snap is not None:
            return self._snap[0]
        return self.core.tree.length if self.core else 0

    @property
    def byte_length(self) -> int:
        if self.core is None:
            return 0
        if self._snap is not None:
            length, tbl, _ = self._snap
        else:
            length, tbl = self.core.tree.length, self.core.tree.byte_length
        return tbl - length * self.padding

    @property
    def contiguous_length(self) -> int:
        if self.core is None:
            return 0
        return min(self.length, self.core.contiguous)

    @property
    def fork(self) -> int:
        if self._snap is not None:
            return self._snap[2]
        return self.core.tree.fork if self.core else 0

    @property
    def writable(self) -> bool:
        return bool(self.core and not self.closed and self._want_writable and self.core.can_write and not self._snapshot)

    @property
    def readable(self) -> bool:
        return not self.closed

    @property
    def encryption_key(self) -> bytes | None:
        return self._encryption_key

    def info(self) -> Info:
        core = self._check_open()
        return Info(core.key, core.discovery_key, self.length, self.contiguous_length, self.byte_length,
                    self.fork, self.padding, self.writable)

    # writes ---------------------------------------------------------------------------

    async def append(self, value) -> AppendResult:
        """Append one value, or a list/tuple of values as one atomic batch (one signature).

        When this returns, the blocks, the tree nodes and the signature are in the
        oplog (page cache); call ``flush(sync=True)``-style durability through
        ``sync()`` when they must survive a power loss.
        """
        core = await self._core()
        if not self.writable:
            raise SessionNotWritableError("session is not writable")
        enc = self._value_encoding
        values = value if isinstance(value, (list, tuple)) else (value,)
        blocks = [enc.encode(v) for v in values]
        if self._encryption is not None:
            e = self._encryption
            base, fork = core.tree.length, core.tree.fork
            blocks = [e.encrypt(base + k, b, fork) for k, b in enumerate(blocks)]
        length, tbl = core.append(blocks)
        self._emit_all("append")
        # 01-core §8.2: the tree byte length, padding included (as the reference returns it);
        # ``self.byte_length`` is the one without padding
        return AppendResult(length, tbl)

    async def truncate(self, new_length: int = 0, fork: int | None = None) -> None:
        core = await self._core()
        if not self._want_writable and not (new_length == 0 and fork == core.fork):
            raise SessionNotWritableError("session is not writable")
        if not isinstance(new_length, int) or new_length < 0:
            raise BadArgumentError("new_length must be a non-negative integer")
        core.truncate(new_length, fork)
        self._emit_all("truncate", new_length, core.fork)

    async def clear(self, start: int, end: int | None = None) -> None:
        core = await self._core()
        if end is None:
            end = start + 1
        if start < 0 or end < 0:
            raise BadArgumentError("clear range must be non-negative")
        core.clear(start, end)
        await trio.lowlevel.checkpoint()

    async def set_user_data(self, key: str, value: bytes | None, *, flush: bool = False) -> None:
        core = await self._core()
        if self._opts.get("writable", True) is False:
            raise SessionNotWritableError("session is not writable")
        core.set_user_data(key, value, flush=flush)

    async def get_user_data(self, key: str) -> bytes | None:
        core = await self._core()
        return core.get_user_data(key)

    async def flush(self) -> None:
        """Write the header now (the reference's explicit ``flush()``)."""
        core = await self._core()
        # the reference's Core.flush() also restarts the auto-flush counter (`_autoFlush = 4`);
        # internal flushes (truncate, manifest) do not, so this is done here and not in Core.flush
        core.auto_flush = 4
        core.flush()

    async def sync(self) -> None:
        """Make everything written so far durable (fdatasync of every file)."""
        core = await self._core()
        core.sync()
        await trio.lowlevel.checkpoint()

    # reads ----------------------------------------------------------------------------

    def _check_index(self, index) -> None:
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise BadArgumentError(f"index must be a non-negative integer, not {index!r}")

    async def has(self, start: int, end: int | None = None) -> bool:
        core = await self._core()
        if end is None:
            return core.has(start)
        return all(core.has(i) for i in range(start, end))

    async def get(self, index: int, *, wait: bool | None = None, timeout: float | None = None,
                  value_encoding=None, raw: bool = False, decrypt: bool = True):
        """Block ``index``, decoded.  Waits for it unless ``wait=False`` (then None)."""
        core = self.core
        if core is None or self.closed:
            core = await self._core()
        if not isinstance(index, int) or index < 0:
            self._check_index(index)
        snap = self._snap
        if snap is not None and (index >= snap[0] or (core.tree.fork != snap[2] and index >= core.tree.length)):
            raise SnapshotNotAvailableError(f"block {index} is not in this snapshot")
        data = core.read_block(index)
        if data is None:
            if wait is None:
                wait = self._wait_default
            if not wait:
                return None
            data = await self._wait_block(core, index, self._timeout_default if timeout is None else timeout)
        if raw:
            return data
        if self._encryption is not None and decrypt:
            data = self._encryption.decrypt(index, data)
        enc = self._value_encoding if value_encoding is None else get_encoding(value_encoding)
        return enc.decode(data)

    async def _wait_block(self, core: Core, index: int, timeout: float | None) -> bytes:
        start_length, start_fork = core.tree.length, core.tree.fork
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        with trio.CancelScope() as cs:
            self._waits.add(cs)
            try:
                while True:
                    with trio.move_on_at(deadline):
                        await core.wait_change()
                    if core.closed or self.closed:
                        raise RequestCancelledError("session closed")
                    if core.tree.fork != start_fork and start_length > index >= core.tree.length:
                        raise SnapshotNotAvailableError(f"block {index} was truncated away")
                    data = core.read_block(index)
                    if data is not None:
                        return data
                    if trio.current_time() >= deadline:
                        raise RequestTimeoutError(f"block {index} did not arrive within {timeout} s")
            finally:
                self._waits.discard(cs)
        raise RequestCancelledError("session closed")

    async def seek(self, byte_offset: int, *, wait: bool | None = None, timeout: float | None = None):
        core = await self._core()
        if byte_offset < 0:
            raise BadArgumentError("byte offset must be non-negative")
        res = core.tree.seek(byte_offset, self.padding)
        if res is None and (wait is False or (wait is None and not self._wait_default)):
            return None
        if res is None:
            t = self._timeout_default if timeout is None else timeout
            deadline = math.inf if t is None else trio.current_time() + t
            while res is None:
                with trio.move_on_at(deadline):
                    await core.wait_change()
                if core.closed or self.closed:
                    raise RequestCancelledError("session closed")
                res = core.tree.seek(byte_offset, self.padding)
                if res is None and trio.current_time() >= deadline:
                    raise RequestTimeoutError(f"byte offset {byte_offset} not reached within {t} s")
        return res

    async def update(self) -> bool:
        """Refresh a snapshot's length (True if it changed); a no-op for a live session."""
        core = await self._core()
        if self._snap is not None:
            new = (core.tree.length, core.tree.byte_length, core.tree.fork)
            changed = new != self._snap
            self._snap = new
            return changed
        await trio.lowlevel.checkpoint()
        return False

    async def download(self, start: int = 0, end: int | None = None) -> "Download":
        await self._core()
        return Download(self, start, end)

    async def read_stream(self, start: int = 0, end: int | None = None, *, live: bool = False) -> AsyncIterator:
        """Blocks ``start..end`` (default: to the length, or forever with ``live``)."""
        await self._core()
        i = start
        while True:
            stop = end if end is not None else (None if live else self.length)
            if stop is not None and i >= stop:
                return
            yield await self.get(i)
            i += 1
            if i % 64 == 0:
                await trio.lowlevel.checkpoint()

    def __aiter__(self):
        return self.read_stream()

    # events ---------------------------------------------------------------------------

    def on(self, event: str, callback: Callable) -> None:
        if event not in EVENTS:
            raise BadArgumentError(f"unknown event {event!r}")
        self._listeners.setdefault(event, []).append(callback)

    def off(self, event: str, callback: Callable) -> None:
        cbs = self._listeners.get(event, [])
        if callback in cbs:
            cbs.remove(callback)

    def _emit(self, event: str, *args) -> None:
        for cb in list(self._listeners.get(event, ())):
            try:
                cb(*args)
            except Exception:
                log.exception("%s listener raised; detached", event)
                self.off(event, cb)

    def _emit_all(self, event: str, *args) -> None:
        for s in list(self.core.sessions):
            if s._listeners:
                s._emit(event, *args)


class Download:
    """A range download; everything local is already complete until replication exists."""

    def __init__(self, session: Spacecore, start: int, end: int | None) -> None:
        self.session = session
        self.start = start
        self.end = end
        self._cancelled = False

    async def done(self) -> None:
        end = self.end if self.end is not None else self.session.length
        for i in range(self.start, end):
            if self._cancelled:
                raise RequestCancelledError("download cancelled")
            await self.session.get(i, wait=True)

    def cancel(self) -> None:
        self._cancelled = True
