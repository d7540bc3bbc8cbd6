"""The corefs filesystem without a kernel: inodes, handles, namespaces, append rules, xattrs.

Data flows one way: a FUSE operation (``fuse_ops``) calls a method here, which
works on a Spacecore session (one per open file handle) of the store.  Every
refusal is a typed error (``corefs.errors`` or spacecorestore's); the errno
mapping lives in ``fuse_ops``.  Attributes come from memory only, never from
the network, so ``ls -l`` of thousands of cores never waits (04-corefs §8).

Invariants:
* inode numbers come from discovery keys / namespace hashes (stable across
  mounts); 1 is the root, 2 is ``/.keys``;
* a core has at most one path: its namespace directory (when the namespace is
  known and the name is a valid file name not shadowed by a directory), else
  it is listed under ``/.keys`` by its hex key;
* sizes only grow while a core is not truncated; the size reported is the
  stored (tree) byte length.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import trio

from spacecorestore import Corestore, crypto
from spacecorestore.core.session import Spacecore
from spacecorestore.encoding import parse_key
from spacecorestore.errors import BadArgumentError, RequestTimeoutError, StorageDamageError
from spacecorestore.listing import CoreRecord, core_dir

from .errors import (
    BadHandle,
    Exists,
    InvalidName,
    IsADirectory,
    NameTooLong,
    NoData,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotPermitted,
    NotSupported,
    ReadOnly,
    StoreIOError,
)

log = logging.getLogger("corefs")

ROOT_INO = 1
KEYS_INO = 2
KEYS_NAME = ".keys"
MAX_BLOCK = 64 * 1024
NAMESPACES_FILE = "corefs/namespaces.json"
ENTRY_TIMEOUT = 1.0
ATTR_TIMEOUT = 1.0


def _ino(h: bytes, salt: bytes = b"") -> int:
    if salt:
        h = crypto.hash32(salt + h)
    n = int.from_bytes(h[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF
    return n if n > 16 else n + 17


class Attr(NamedTuple):
    """What getattr/lookup answer (mapped to EntryAttributes by fuse_ops).  A tuple: cheap to
    build for every entry of a listing, and usable as a cache key."""

    ino: int
    mode: int
    size: int = 0
    nlink: int = 1
    mtime_ns: int = 0
    blocks: int = 0
    uid: int = 0
    gid: int = 0


@dataclass
class Namespace:
    path: tuple[str, ...]
    hash: bytes
    ino: int


@dataclass
class CoreEntry:
    key: bytes
    discovery_key: bytes
    name: str | None
    namespace: bytes | None
    length: int
    byte_length: int
    ino: int
    link_ino: int
    writable: bool | None = None  # computed lazily for cores that are not ``named``
    mtime_ns: int = 0
    handles: int = 0
    named: bool = False  # name and namespace given, and the key is the one this store derives for them
    contiguous: int | None = None  # last known contiguous length (None: never opened, assumed complete)
    has_secret_key: bool = False  # the stored header holds the secret key (a core copied from another store)
    oplog_path: str | None = None  # whose mtime is the core's mtime
    attr: "Attr | None" = None  # cached while the core is not open (nothing can change it then)
    mtime_stale: bool = False  # the oplog may have been written since mtime_ns was read: read it when asked
    mtime_must_move: bool = False  # appended since mtime_ns was reported: the next one must differ


@dataclass
class Handle:
    entry: CoreEntry
    session: Spacecore
    writable: bool
    fh: int = 0


@dataclass
class DirHandle:
    ino: int
    entries: list = field(default_factory=list)


def valid_file_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name \
        and len(name.encode()) <= 255


class Vfs:
    """The filesystem over one open store (``store`` must be ready)."""

    def __init__(self, store: Corestore, store_dir: str | os.PathLike, *, read_only: bool = False,
                 read_timeout: float = 30.0) -> None:
        self.store = store
        self.store_dir = Path(store_dir)
        self.read_only = read_only
        self.read_timeout = read_timeout
        self.uid = os.getuid()
        self.gid = os.getgid()
        root = Namespace((), crypto.ZERO_NAMESPACE, ROOT_INO)
        self.namespaces: dict[bytes, Namespace] = {root.hash: root}
        self.ns_by_ino: dict[int, Namespace] = {ROOT_INO: root}
        self.subdirs: dict[bytes, dict[str, bytes]] = {root.hash: {}}
        self.cores: dict[bytes, CoreEntry] = {}
        self.by_ino: dict[int, CoreEntry] = {}
        self.by_link: dict[int, CoreEntry] = {}
        self.by_name: dict[tuple[bytes, str], CoreEntry] = {}
        self.handles: dict[int, Handle] = {}
        self.dir_handles: dict[int, DirHandle] = {}
        self._views: dict[bytes, Corestore] = {}  # one store view per namespace cores are created in
        self._next_fh = 1
        self._tree_gen = 0  # bumped by every change of names in the tree (cores, namespaces)
        self._names_cache: dict[int, tuple[int, list[tuple[str, int]]]] = {}
        self.on_growth = None  # callback(ino, attr_only) for changes the kernel cannot see (replication)
        self._own_write: CoreEntry | None = None
        self._defer_flush = False  # True while run_settler() runs
        self._settle: dict[int, tuple[CoreEntry, object]] = {}  # id(core) -> (entry, core) with a flush due
        self._settle_wake = trio.Event()

    # start-up -------------------------------------------------------------------

    async def load(self) -> None:
        """Read the known namespaces and list every core (no core is opened)."""
        for path in self._read_namespaces_file():
            self._add_namespace(tuple(path))
        async for rec in self.store.list_cores():
            self._add_core(rec)

    def warm(self) -> list[Attr]:
        """Build every directory listing and core attribute now (at mount, not at the first
        ``ls -l``); returns the attributes so the FUSE layer can prepare its replies too."""
        for ino in list(self.ns_by_ino) + [KEYS_INO]:
            self._dir_names(ino)
        return [self.core_attr(e) for e in self.cores.values()]

    def _read_namespaces_file(self) -> list[list[str]]:
        p = self.store_dir / NAMESPACES_FILE
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s: %s", p, e)
            return []
        out = []
        for path in data if isinstance(data, list) else []:
            if isinstance(path, list) and all(isinstance(n, str) and valid_file_name(n) for n in path) and path:
                out.append(path)
        return out

    def _write_namespaces_file(self, paths: list[list[str]]) -> None:
        """Replace namespaces.json atomically (write, fsync, rename, fsync the directory).

        Called before the change is made in memory, so a failure leaves both as they were."""
        p = self.store_dir / NAMESPACES_FILE
        tmp = p.with_suffix(".tmp")
        try:
            p.parent.mkdir(mode=0o700, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(sorted(paths), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
            dfd = os.open(p.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise StoreIOError(f"cannot write {p}: {e.strerror or e}", e.errno or errno.EIO) from None

    def _namespace_paths(self) -> list[list[str]]:
        return [list(ns.path) for ns in self.namespaces.values() if ns.path]

    def _add_namespace(self, path: tuple[str, ...]) -> Namespace:
        h = crypto.ZERO_NAMESPACE
        parent = self.namespaces[h]
        for k in range(len(path)):
            h = crypto.child_namespace(h, path[k])
            ns = self.namespaces.get(h)
            if ns is None:
                ns = Namespace(path[: k + 1], h, _ino(h, b"ns"))
                self.namespaces[h] = ns
                self.ns_by_ino[ns.ino] = ns
                self.subdirs[h] = {}
                self.subdirs[parent.hash][path[k]] = h
                self._tree_gen += 1
            parent = ns
        return parent

    def _add_core(self, rec: CoreRecord) -> CoreEntry:
        e = self.cores.get(rec.discovery_key)
        if e is None:
            e = CoreEntry(rec.key, rec.discovery_key, rec.name, rec.namespace, rec.length, rec.byte_length,
                          _ino(rec.discovery_key), _ino(rec.discovery_key, b"link"),
                          has_secret_key=rec.has_secret_key)
            e.mtime_ns = self._disk_mtime(e)
            self._tree_gen += 1
            self.cores[e.discovery_key] = e
            self.by_ino[e.ino] = e
            self.by_link[e.link_ino] = e
            if e.name is not None and e.namespace is not None:
                # Only the core that store.namespace(...).get(name) returns has the path: a core
                # copied from another store keeps its name in its user data but not its key
                # (it stays under /.keys, and a local core of the same name is not hidden by it).
                kp = crypto.derive_key_pair(self.store.primary_key, e.namespace, e.name)
                if kp.public_key == e.key:
                    e.named = True
                    e.writable = True
                    self.by_name[(e.namespace, e.name)] = e
        return e

    def _next_mtime(self, e: CoreEntry) -> int:
        """The mtime after appends: the oplog's, made later than the one reported before when
        the disk's clock granularity gave the same value. Readers' cached pages depend on it
        (writers bypass the page cache; the kernel drops a file's pages when its mtime changes)
        and a remount reports the same value."""
        must_move, e.mtime_stale, e.mtime_must_move = e.mtime_must_move, False, False
        m = self._disk_mtime(e)
        floor = e.mtime_ns + 1 if must_move else e.mtime_ns  # never back (a coarse clock after a bump)
        if m < floor:
            m = floor
            try:
                os.utime(e.oplog_path, ns=(m, m))
            except OSError:
                pass
        return m

    def _disk_mtime(self, e: CoreEntry) -> int:
        """The oplog's mtime: every change of a core (append, truncate, user data) writes it."""
        if e.oplog_path is None:
            e.oplog_path = os.path.join(self.store_dir, core_dir(e.discovery_key), "oplog")
        try:
            return os.stat(e.oplog_path).st_mtime_ns
        except OSError:
            return time.time_ns()

    # paths --------------------------------------------------------------------

    def path_of(self, e: CoreEntry) -> tuple[Namespace, str] | None:
        """Where a core appears in the tree, or None (then only under /.keys)."""
        if not e.named:
            return None
        ns = self.namespaces.get(e.namespace)
        if ns is None or not valid_file_name(e.name) or e.name in self.subdirs[ns.hash]:
            return None
        if ns.hash == crypto.ZERO_NAMESPACE and e.name == KEYS_NAME:
            return None
        return ns, e.name

    def _rel_path(self, e: CoreEntry) -> str:
        ns, name = self.path_of(e)
        return "/".join((*ns.path, name))

    def _name(self, name: bytes, parent: int) -> str:
        """The name as text, or the refusal naming the path (04-corefs §3: over 255 bytes, not UTF-8)."""
        if len(name) > 255:
            raise NameTooLong(f"{self._child(parent, name[:40].decode(errors='backslashreplace'))}...: "
                              f"a name of {len(name)} bytes (at most 255)")
        try:
            return name.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidName(f"{self._child(parent, name.decode(errors='backslashreplace'))}: "
                              f"the name is not valid UTF-8") from None

    def _ns(self, ino: int) -> Namespace:
        ns = self.ns_by_ino.get(ino)
        if ns is None:
            if ino == KEYS_INO or ino in self.by_ino or ino in self.by_link:
                raise NotADirectory(f"inode {ino} is not a namespace")
            raise NotFound(f"no inode {ino}")
        return ns

    def _child(self, parent: int, name: str) -> str:
        return self._display(parent).rstrip("/") + "/" + name

    def _display(self, ino: int) -> str:
        if ino == ROOT_INO:
            return "/"
        if ino == KEYS_INO:
            return "/.keys"
        ns = self.ns_by_ino.get(ino)
        if ns is not None:
            return "/" + "/".join(ns.path)
        e = self.by_ino.get(ino)
        if e is not None:
            return "/" + self._rel_path(e) if self.path_of(e) else f"/.keys/{e.key.hex()}"
        e = self.by_link.get(ino)
        if e is not None:
            return f"/.keys/{e.key.hex()}"
        return f"inode {ino}"

    # attributes -----------------------------------------------------------------

    def _live(self, e: CoreEntry) -> None:
        """Refresh length and byte length from the open core, if it is open."""
        core = self.store._state.cores.get(e.discovery_key)
        if core is not None and not core.closed:
            e.length, e.byte_length = core.tree.length, core.tree.byte_length
            e.contiguous = min(core.contiguous, core.tree.length)

    def is_writable(self, e: CoreEntry) -> bool:
        if self.read_only:
            return False
        if e.writable is None:
            core = self.store._state.cores.get(e.discovery_key)
            if core is not None and not core.closed:
                e.writable = core.can_write
            else:
                e.writable = e.has_secret_key
        return e.writable

    def core_attr(self, e: CoreEntry) -> Attr:
        core = self.store._state.cores.get(e.discovery_key)
        closed = core is None or core.closed
        if closed:
            if e.attr is not None:
                return e.attr
        else:
            self._live(e)
        if e.mtime_stale:
            e.mtime_ns = self._next_mtime(e)
        mode = stat.S_IFREG | (0o644 if self.is_writable(e) else 0o444)
        a = Attr(e.ino, mode, e.byte_length, 1, e.mtime_ns, (e.byte_length + 511) // 512, self.uid, self.gid)
        if closed:
            e.attr = a
        return a

    def link_attr(self, e: CoreEntry) -> Attr:
        target = self._link_target(e)
        if e.mtime_stale:
            e.mtime_ns = self._next_mtime(e)
        return Attr(e.link_ino, stat.S_IFLNK | 0o777, len(target), 1, e.mtime_ns, 0, self.uid, self.gid)

    def dir_attr(self, ino: int) -> Attr:
        if ino == KEYS_INO:
            nsub = 0
        else:
            nsub = len(self.subdirs[self._ns(ino).hash]) + (1 if ino == ROOT_INO else 0)
        return Attr(ino, stat.S_IFDIR | 0o755, 0, 2 + nsub, self._dir_mtime(), 0, self.uid, self.gid)

    def _dir_mtime(self) -> int:
        try:
            return os.stat(self.store_dir / "primary-key").st_mtime_ns
        except OSError:
            return 0

    async def getattr(self, ino: int) -> Attr:
        if ino in (ROOT_INO, KEYS_INO) or ino in self.ns_by_ino:
            return self.dir_attr(ino)
        e = self.by_ino.get(ino)
        if e is not None:
            return self.core_attr(e)
        e = self.by_link.get(ino)
        if e is not None and self.path_of(e) is not None:  # else the core lost its path (a directory
            return self.link_attr(e)                        # took its name): /.keys shows the file
        raise NotFound(f"no inode {ino}")

    # lookup and listing ------------------------------------------------------------

    async def lookup(self, parent: int, name: bytes) -> Attr:
        n = self._name(name, parent)
        if parent == KEYS_INO:
            return await self._lookup_key(n)
        ns = self._ns(parent)
        if ns.hash == crypto.ZERO_NAMESPACE and n == KEYS_NAME:
            return self.dir_attr(KEYS_INO)
        sub = self.subdirs[ns.hash].get(n)
        if sub is not None:
            return self.dir_attr(self.namespaces[sub].ino)
        e = self.by_name.get((ns.hash, n))
        if e is not None and self.path_of(e) is not None:
            return self.core_attr(e)
        raise NotFound(self._child(parent, n))

    async def _lookup_key(self, n: str) -> Attr:
        try:
            key = parse_key(n)
        except BadArgumentError:
            raise NotFound(f"/.keys/{n}: not a key") from None
        dk = crypto.discovery_key(key)
        e = self.cores.get(dk)
        if e is None:
            if self.read_only:
                raise NotFound(f"/.keys/{n}: not in this store (read-only mount)")
            s = self.store.get(key)
            try:
                await s.ready()
                rec = CoreRecord(key, dk, None, None, s.length, s.core.tree.byte_length)
            finally:
                await s.close()
            e = self._add_core(rec)
            log.info("added core %s from a /.keys lookup", key.hex())
        if self.path_of(e) is not None:
            return self.link_attr(e)
        return self.core_attr(e)

    def _link_target(self, e: CoreEntry) -> str:
        return "../" + self._rel_path(e)

    async def readlink(self, ino: int) -> bytes:
        e = self.by_link.get(ino)
        if e is None or self.path_of(e) is None:
            raise InvalidName(f"inode {ino} is not a symlink")
        return self._link_target(e).encode()

    def _dir_names(self, ino: int) -> list[tuple[str, int]]:
        """(name, inode) of a directory's entries, sorted by name (cached until the tree changes)."""
        cached = self._names_cache.get(ino)
        if cached is not None and cached[0] == self._tree_gen:
            return cached[1]
        out = self._list_names(ino)
        self._names_cache[ino] = (self._tree_gen, out)
        return out

    def _list_names(self, ino: int) -> list[tuple[str, int]]:
        if ino == KEYS_INO:
            out = [(e.key.hex(), e.ino) for e in self.cores.values() if self.path_of(e) is None]
        else:
            ns = self._ns(ino)
            out = [(name, self.namespaces[h].ino) for name, h in self.subdirs[ns.hash].items()]
            if ino == ROOT_INO:
                out.append((KEYS_NAME, KEYS_INO))
            for (h, name), e in self.by_name.items():
                if h == ns.hash and self.path_of(e) is not None:
                    out.append((name, e.ino))
        out.sort()
        return out

    def _attr_now(self, ino: int) -> Attr | None:
        if ino in (ROOT_INO, KEYS_INO) or ino in self.ns_by_ino:
            return self.dir_attr(ino)
        e = self.by_ino.get(ino)
        return self.core_attr(e) if e is not None else None

    def list_dir(self, ino: int) -> list[tuple[str, Attr]]:
        """Entries of a directory, in a stable order (by name)."""
        return [(name, self._attr_now(i)) for name, i in self._dir_names(ino)]

    async def opendir(self, ino: int) -> int:
        if ino != KEYS_INO:
            self._ns(ino)
        fh = self._new_fh()
        self.dir_handles[fh] = DirHandle(ino)
        return fh

    async def readdir(self, fh: int, start_id: int) -> Iterator[tuple[bytes, Attr, int]]:
        """Entries after ``start_id``; each entry's next id is its position + 1 in the list of
        names taken at the first call (``start_id`` 0), so creation or removal between two calls
        never repeats or skips an entry.  Attributes are current (a readdirplus reply updates the
        kernel's inode: a stale size there would shrink a growing file).

        An iterator: the caller stops at the first entry the kernel's buffer cannot take (~400
        per READDIRPLUS), so listing N entries computes N attributes, not N per request."""
        dh = self.dir_handles.get(fh)
        if dh is None:
            raise BadHandle(f"no directory handle {fh}")
        if start_id == 0:
            dh.entries = self._dir_names(dh.ino)
        return self._dir_entries(dh.entries, start_id)

    def _dir_entries(self, entries: list[tuple[str, int]], start_id: int) -> Iterator[tuple[bytes, Attr, int]]:
        for i in range(start_id, len(entries)):
            name, ino = entries[i]
            attr = self._attr_now(ino)
            if attr is not None:  # a namespace removed since the listing
                yield name.encode(), attr, i + 1

    async def releasedir(self, fh: int) -> None:
        self.dir_handles.pop(fh, None)

    # namespaces ------------------------------------------------------------------------

    async def mkdir(self, parent: int, name: bytes) -> Attr:
        n = self._name(name, parent)
        if parent == KEYS_INO:
            raise NotPermitted(f"/.keys/{n}: cannot create in /.keys")
        ns = self._ns(parent)
        if not valid_file_name(n) or (ns.hash == crypto.ZERO_NAMESPACE and n == KEYS_NAME):
            raise Exists(f"{n}: reserved") if n == KEYS_NAME else InvalidName(f"{n}: not a valid name")
        if n in self.subdirs[ns.hash]:
            raise Exists(f"{self._child(parent, n)}: namespace exists")
        if self.read_only:
            raise ReadOnly("read-only mount")
        self._write_namespaces_file(self._namespace_paths() + [[*ns.path, n]])
        new = self._add_namespace((*ns.path, n))
        log.info("created namespace /%s", "/".join(new.path))
        return self.dir_attr(new.ino)

    async def rmdir(self, parent: int, name: bytes) -> None:
        n = self._name(name, parent)
        if parent == ROOT_INO and n == KEYS_NAME:
            raise NotPermitted("/.keys cannot be removed")
        if parent == KEYS_INO:
            raise NotADirectory(f"/.keys/{n} is not a directory")
        ns = self._ns(parent)
        h = self.subdirs[ns.hash].get(n)
        if h is None:
            if (ns.hash, n) in self.by_name:
                raise NotADirectory(f"{n} is a core")
            raise NotFound(self._child(parent, n))
        if self.subdirs[h] or any(k[0] == h for k in self.by_name):
            raise NotEmpty(f"/{'/'.join(self.namespaces[h].path)} is not empty")
        if self.read_only:
            raise ReadOnly("read-only mount")
        gone = [*ns.path, n]
        self._write_namespaces_file([p for p in self._namespace_paths() if p != gone])
        del self.subdirs[ns.hash][n]
        sub = self.namespaces.pop(h)
        self.ns_by_ino.pop(sub.ino, None)
        del self.subdirs[h]
        self._tree_gen += 1
        view = self._views.pop(h, None)
        if view is not None:
            await view.close()
        log.info("removed namespace /%s", "/".join(sub.path))

    # files -------------------------------------------------------------------------------

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _entry(self, ino: int) -> CoreEntry:
        e = self.by_ino.get(ino)
        if e is None:
            if ino in self.ns_by_ino or ino == KEYS_INO:
                raise IsADirectory(self._display(ino))
            raise NotFound(f"no inode {ino}")
        return e

    async def _open_session(self, e: CoreEntry, writable: bool) -> Handle:
        s = self.store.get(e.key, writable=writable)
        try:
            await s.ready()
        except BaseException:
            await s.close()
            raise
        e.handles += 1
        fh = self._new_fh()
        h = Handle(e, s, writable)
        self.handles[fh] = h
        h.fh = fh
        self._watch(h)
        return h

    def _watch(self, h: Handle) -> None:
        e = h.entry
        if self._defer_flush:
            h.session.core.defer_flush = True
        h.session.on("append", lambda: self._grown(e))
        h.session.on("truncate", lambda length, fork: self._grown(e, truncated=True))

    def _grown(self, e: CoreEntry, truncated: bool = False) -> None:
        """A core changed: unless our own FUSE write did it (the kernel saw that one), tell the
        invalidator, after the new length is published (it is: events follow the state change)."""
        if self._own_write is e and not truncated:
            return
        self._live(e)
        if self.on_growth is not None:
            self.on_growth(e.ino, not truncated)

    async def open(self, ino: int, flags: int) -> int:
        e = self._entry(ino)
        acc = flags & os.O_ACCMODE
        want_write = acc in (os.O_WRONLY, os.O_RDWR)
        if want_write:
            if self.read_only:
                raise ReadOnly(f"{self._display(ino)}: read-only mount")
            if not self.is_writable(e):
                raise ReadOnly(f"{self._display(ino)}: this store cannot write this core")
        if flags & os.O_TRUNC:
            self._live(e)
            if e.byte_length > 0:
                raise NotPermitted(f"{self._display(ino)}: O_TRUNC of a non-empty core")
        h = await self._open_session(e, want_write)
        return h.fh

    async def create(self, parent: int, name: bytes, flags: int) -> tuple[int, Attr]:
        n = self._name(name, parent)
        if parent == KEYS_INO:
            raise NotPermitted(f"/.keys/{n}: cannot create in /.keys")
        ns = self._ns(parent)
        if not valid_file_name(n) or (ns.hash == crypto.ZERO_NAMESPACE and n == KEYS_NAME):
            raise InvalidName(f"{n}: not a valid core name")
        if n in self.subdirs[ns.hash]:
            raise IsADirectory(f"{n} is a namespace")
        existing = self.by_name.get((ns.hash, n))
        if existing is not None and self.path_of(existing) is not None:
            if flags & os.O_EXCL:
                raise Exists(f"{self._child(parent, n)}: exists (O_EXCL)")
            fh = await self.open(existing.ino, flags)
            return fh, self.core_attr(existing)
        if self.read_only:
            raise ReadOnly("read-only mount")
        view = self._views.get(ns.hash)
        if view is None:
            view = self._views[ns.hash] = self.store.session(namespace=ns.hash)
        s = view.get(name=n)
        try:
            await s.ready()
        except BaseException:
            await s.close()
            raise
        rec = CoreRecord(s.key, s.discovery_key, n, ns.hash, s.length, s.core.tree.byte_length)
        e = self._add_core(rec)
        e.handles += 1
        fh = self._new_fh()
        h = Handle(e, s, True)
        h.fh = fh
        self.handles[fh] = h
        self._watch(h)
        log.info("created core %s", self._display(e.ino))
        return fh, self.core_attr(e)

    def handle_writable(self, fh: int) -> bool:
        h = self.handles.get(fh)
        return h is not None and h.writable

    def _handle(self, fh: int) -> Handle:
        h = self.handles.get(fh)
        if h is None:
            raise BadHandle(f"no file handle {fh}")
        return h

    async def read(self, fh: int, off: int, size: int) -> bytes:
        """Bytes [off, off+size) of the core, all of them except at the end (never short in the middle)."""
        h = self._handle(fh)
        core = h.session.core
        tree = core.tree
        end = min(off + size, tree.byte_length)
        if off >= end:
            return b""
        found = core.seek(off)
        if found is None:
            return b""
        idx, rel = found
        parts = []
        pos = off
        try:
            while pos < end:
                block = core.read_block(idx)
                if block is None:
                    with trio.fail_after(self.read_timeout):
                        block = await h.session.get(idx)
                take = block[rel : rel + (end - pos)]
                parts.append(take)
                pos += len(take)
                idx += 1
                rel = 0
        except trio.TooSlowError:
            raise RequestTimeoutError(f"{self._display(h.entry.ino)}: block {idx} not available "
                                      f"within {self.read_timeout} s") from None
        except StorageDamageError as err:  # same type, naming the core (path and key) and the block
            raise type(err)(f"{self._display(h.entry.ino)} (core {h.entry.key.hex()}), block {idx}: "
                            f"{err.message}") from err
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def write(self, fh: int, off: int, data: bytes) -> int:
        h = self._handle(fh)
        e = h.entry
        if self.read_only or not h.writable:
            raise ReadOnly(f"{self._display(e.ino)}: not writable")
        core = h.session.core
        if off != core.tree.byte_length:
            raise NotPermitted(f"{self._display(e.ino)}: write at {off}, the end is {core.tree.byte_length}")
        if not data:
            return 0
        if len(data) <= MAX_BLOCK:
            blocks = [bytes(data)]  # no copy when pyfuse3 hands us bytes
        else:
            mv = memoryview(data)
            blocks = [bytes(mv[i : i + MAX_BLOCK]) for i in range(0, len(data), MAX_BLOCK)]
        self._own_write = e
        try:
            await h.session.append(blocks)
        except OSError as err:  # disk full or failing: nothing of this write was committed
            raise StoreIOError(f"{self._display(e.ino)}: cannot append {len(data)} bytes: {err.strerror or err}",
                               err.errno or errno.EIO) from None
        finally:
            self._own_write = None
        e.length, e.byte_length = core.tree.length, core.tree.byte_length
        e.mtime_stale = e.mtime_must_move = True
        if core.flush_due or core.writeback_due:
            self._settle[id(core)] = (e, core)
            self._settle_wake.set()
        return len(data)

    async def run_settler(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Let appends leave the engine's periodic flush (tree nodes, bitfield, oplog header) to
        this task, which runs it once the WRITE's reply is on its way: the kernel and the writer
        go on meanwhile.  The next change of that core, a sync or its close runs it first anyway."""
        self._defer_flush = True  # for the cores that handles open from now on (_watch)
        task_status.started()
        try:
            while True:
                await self._settle_wake.wait()
                self._settle_wake = trio.Event()
                pending, self._settle = self._settle, {}
                for e, core in pending.values():
                    if core.closed:
                        continue
                    try:
                        core.settle()
                        if core.writeback_due:
                            core.start_writeback()
                    except Exception as err:  # stays due: the next append or sync retries and reports it
                        log.warning("%s: flush failed: %s", self._display(e.ino), err)
                    e.mtime_stale = True
        finally:
            self._defer_flush = False

    async def fsync(self, fh: int) -> None:
        await self._sync(self._handle(fh))

    async def flush(self, fh: int) -> None:
        """close(2): what was written is on disk when it returns (04-corefs §3, durability)."""
        h = self._handle(fh)
        if h.writable and h.session.core is not None:
            await self._sync(h)

    async def _sync(self, h: Handle) -> None:
        try:
            await h.session.sync()
        except OSError as err:
            raise StoreIOError(f"{self._display(h.entry.ino)}: cannot sync: {err.strerror or err}",
                               err.errno or errno.EIO) from None
        finally:
            h.entry.mtime_stale = True

    async def release(self, fh: int) -> None:
        h = self.handles.pop(fh, None)
        if h is None:
            return
        h.entry.handles -= 1
        e = h.entry
        self._live(e)
        await h.session.close()
        e.attr = None  # it may have grown while open
        e.mtime_stale = True  # the last close may have flushed

    async def setattr(self, ino: int, *, size: int | None = None, mode=None, uid=None, gid=None,
                      times: bool = False) -> Attr:
        """chmod/chown: EPERM; truncate to the current size: a no-op, to another: EPERM (EROFS if
        the core cannot be written at all); utimens: succeeds and changes nothing."""
        changes_owner = mode is not None or uid is not None or gid is not None
        if ino in self.ns_by_ino or ino == KEYS_INO or ino in self.by_link:
            if size is not None or changes_owner:
                raise NotPermitted(f"{self._display(ino)}: cannot be changed")
            return await self.getattr(ino)
        e = self._entry(ino)
        if changes_owner:
            raise NotPermitted(f"{self._display(ino)}: chmod/chown is not supported")
        if size is not None:
            self._live(e)
            if size != e.byte_length:
                if not self.is_writable(e):
                    raise ReadOnly(f"{self._display(ino)}: truncate of a core this store cannot write"
                                   + (" (read-only mount)" if self.read_only else ""))
                raise NotPermitted(f"{self._display(ino)}: truncate to {size} (the core has {e.byte_length} bytes)")
        return self.core_attr(e)

    async def refuse(self, op: str, ino: int, name: bytes | None = None) -> None:
        """unlink, rename, link, symlink, mknod, setxattr, removexattr: a core never changes or goes."""
        where = self._child(ino, name.decode(errors="replace")) if name else self._display(ino)
        if self.read_only and op in ("unlink", "rename", "link", "symlink", "mknod"):
            raise ReadOnly(f"{op} {where}: read-only mount")
        raise NotPermitted(f"{op} {where}: cores are append-only")

    async def fallocate(self, fh: int) -> None:
        raise NotSupported("fallocate is not supported")

    # xattrs ---------------------------------------------------------------------------------

    CORE_XATTRS = ("user.spacecore.key", "user.spacecore.discovery_key", "user.spacecore.length",
                   "user.spacecore.byte_length", "user.spacecore.contiguous_length", "user.spacecore.fork",
                   "user.spacecore.writable", "user.spacecore.peers")
    NS_XATTR = "user.spacecore.namespace"

    def _xattr_names(self, ino: int) -> tuple[str, ...]:
        if ino in self.ns_by_ino:
            return (self.NS_XATTR,)
        if ino == KEYS_INO or ino in self.by_link:
            return ()  # /.keys and the symlinks in it have none
        if ino in self.by_ino:
            return self.CORE_XATTRS
        raise NotFound(f"no inode {ino}")

    async def _local_state(self, e: CoreEntry) -> tuple[int, int]:
        """(contiguous length, fork) of a core: from the open core, else by opening it briefly
        (these are not in the listing; nothing is written by opening)."""
        core = self.store._state.cores.get(e.discovery_key)
        if core is not None and not core.closed:
            return min(core.contiguous, core.tree.length), core.tree.fork
        s = self.store.get(e.key, writable=False)
        try:
            await s.ready()
            e.contiguous = min(s.core.contiguous, s.core.tree.length)
            return e.contiguous, s.core.tree.fork
        finally:
            await s.close()

    async def getxattr(self, ino: int, name: bytes) -> bytes:
        n = name.decode(errors="replace")
        if not n.startswith("user."):
            # security.*, system.posix_acl_*, trusted.*: this filesystem has none at all.  EOPNOTSUPP
            # (not ENODATA) makes ls -l, cp -a, rsync -X remember that per device instead of asking
            # again for every file: two GETXATTR round trips per entry of ls -l otherwise
            raise NotSupported("only user.* attributes")
        if n not in self._xattr_names(ino):  # no value is computed for names we do not have
            raise NoData(f"{self._display(ino)}: no attribute {name!r}")
        if n == self.NS_XATTR:
            return self.ns_by_ino[ino].hash.hex().encode()
        e = self.by_ino[ino]
        self._live(e)
        field = n.removeprefix("user.spacecore.")
        if field in ("contiguous_length", "fork"):
            contiguous, fork = await self._local_state(e)
            v = contiguous if field == "contiguous_length" else fork
        else:
            v = {"key": e.key.hex(), "discovery_key": e.discovery_key.hex(), "length": e.length,
                 "byte_length": e.byte_length, "writable": int(self.is_writable(e)), "peers": 0}[field]
        return str(v).encode()

    async def listxattr(self, ino: int) -> list[bytes]:
        return [k.encode() for k in self._xattr_names(ino)]

    # status -----------------------------------------------------------------------------------

    def status(self) -> list[dict]:
        out = []
        for e in self.cores.values():
            self._live(e)
            out.append({
                "path": ("/" + self._rel_path(e)) if self.path_of(e) else None,
                "key": e.key.hex(),
                "length": e.length,
                "byte_length": e.byte_length,
                "contiguous_length": e.contiguous if e.contiguous is not None else e.length,
                "handles": e.handles,
                "replication_sessions": 0,
                "peers": 0,
            })
        out.sort(key=lambda c: (c["path"] is None, c["path"] or c["key"]))
        return out

    async def close(self) -> None:
        for fh in list(self.handles):
            await self.release(fh)
        for view in self._views.values():
            await view.close()
        self._views.clear()


_ = errno  # errno numbers live on the error classes
