"""Spacecorestore: one primary key, many named cores, namespaces, one core per key (01-core §6).

The store owns the table of open cores (one ``Core`` per discovery key,
shared by every session and namespace view, released when its last session
closes) and the ``primary-key`` file with its OFD lock.  Views
(``namespace()``, ``session()``) share that state and differ only in their
namespace and in the sessions they handed out: closing a view closes those.

Deviation from the reference, on purpose: a non-empty directory without a
``primary-key`` is refused with ``NotAStoreError`` instead of becoming a store.
"""
from __future__ import annotations

import logging
import os
import resource
import weakref
from typing import Any, AsyncIterator

import trio

from . import crypto
from .core.core import Core
from .core.messages import Manifest, Signer, manifest_hash
from .core.session import Spacecore, _as_key_pair
from .encoding import parse_key
from .errors import (
    BadArgumentError,
    InvalidOperationError,
    NotAStoreError,
    SessionClosedError,
    StorageEmptyError,
)
from .listing import CoreRecord, core_dir, scan
from .storage import FileStorage, SubStorage, as_storage

log = logging.getLogger(__name__)

PRIMARY_KEY = "primary-key"
_CORE_OPTS = {"key_pair", "public_key", "manifest", "create_if_missing", "writable", "exclusive",
              "value_encoding", "encryption_key", "sparse", "wait", "timeout", "compat", "cache", "overwrite"}


def _raise_nofile_limit() -> None:
    """Cores hold up to 5 files each: lift the soft fd limit to the hard one once."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        elif hard != resource.RLIM_INFINITY and hard < 4096:
            log.warning("open-file limit is %d: a store with many open cores may hit it (raise it with ulimit -n)",
                        hard)
    except (ValueError, OSError) as e:
        log.warning("cannot raise the open-file limit: %s", e)


class _State:
    """What the root store and all its views share."""

    def __init__(self, storage, primary_key: bytes | None, writable: bool, is_dir: bool, overwrite: bool) -> None:
        self.storage = storage
        self.given_primary_key = primary_key
        self.primary_key: bytes | None = None
        self.writable = writable
        self.is_dir = is_dir
        self.overwrite = overwrite
        self.cores: dict[bytes, Core] = {}
        self.exclusive: dict[bytes, trio.Event] = {}  # discovery key -> set when the exclusive holder closes
        self.lock_file = None
        self.ready = False
        self.closed = False
        self.closing = False


class Corestore:
    """A store of cores on a directory path, a storage object, or a factory ``path -> file``.

    ``async with Corestore(path) as store`` readies the store, gives it a nursery
    for background work, and closes it (every session, every core, the lock).
    """

    def __init__(self, storage=None, *, primary_key: bytes | None = None, namespace: bytes | None = None,
                 writable: bool = True, nursery: trio.Nursery | None = None, overwrite: bool = False,
                 _state: _State | None = None, _parent: "Corestore | None" = None) -> None:
        if namespace is not None and (not isinstance(namespace, (bytes, bytearray)) or len(namespace) != 32):
            raise BadArgumentError("namespace must be 32 bytes")
        self.namespace_key = bytes(namespace) if namespace is not None else crypto.ZERO_NAMESPACE
        self._sessions: set[Spacecore] = set()
        self._views: "weakref.WeakSet[Corestore]" = weakref.WeakSet()  # a view lives while used
        self._parent = _parent
        self.nursery = nursery if _parent is None else _parent.nursery
        self._nursery_cm = None
        self._closed = False
        if _state is not None:
            self._state = _state
            return
        if storage is None:
            raise BadArgumentError("Corestore needs a storage: a directory path, a storage object or a factory")
        if primary_key is not None and (not isinstance(primary_key, (bytes, bytearray)) or len(primary_key) != 32):
            raise BadArgumentError("primary_key must be 32 bytes")
        is_dir = isinstance(storage, (str, os.PathLike))
        self._state = _State(as_storage(storage), bytes(primary_key) if primary_key else None, writable, is_dir,
                             overwrite)

    # lifecycle --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed or self._state.closed

    @property
    def primary_key(self) -> bytes | None:
        return self._state.primary_key

    @property
    def storage(self):
        return self._state.storage

    async def ready(self) -> None:
        st = self._state
        if st.closed:
            raise SessionClosedError("The corestore is closed")
        if st.ready:
            return
        if st.is_dir and isinstance(st.storage, FileStorage):
            root = st.storage.root
            if root.exists():
                if not root.is_dir():
                    raise NotAStoreError(f"{root} is not a directory")
                entries = os.listdir(root)
                if entries and PRIMARY_KEY not in entries:
                    raise NotAStoreError(f"{root} is not empty and has no {PRIMARY_KEY} file: not a store")
        f = st.storage.open(PRIMARY_KEY)
        try:
            # checked before locking: the lock creates the file, and a refused open must leave nothing behind
            if not st.writable and (f.size() < 32 or st.overwrite):
                raise StorageEmptyError(f"no {PRIMARY_KEY} in a read-only store")
            f.lock()
            if f.size() < 32 or st.overwrite:
                if not st.writable:
                    raise StorageEmptyError(f"no {PRIMARY_KEY} in a read-only store")
                key = st.given_primary_key or os.urandom(32)
                f.write(0, key)
            else:
                key = st.given_primary_key or f.read(0, 32)
        except BaseException:
            f.close()
            raise
        st.lock_file = f
        st.primary_key = key
        st.ready = True
        _raise_nofile_limit()

    async def __aenter__(self) -> "Corestore":
        await self.ready()
        if self.nursery is None and self._parent is None:
            self._nursery_cm = trio.open_nursery()
            self.nursery = await self._nursery_cm.__aenter__()
        return self

    async def __aexit__(self, *exc) -> bool | None:
        try:
            await self.close()
        finally:
            if self._nursery_cm is not None:
                self.nursery.cancel_scope.cancel()
                cm, self._nursery_cm = self._nursery_cm, None
                return await cm.__aexit__(*exc)
        return None

    async def close(self) -> None:
        """Close this view's sessions; on the root, every session of every core and the lock."""
        if self._closed:
            return
        self._closed = True
        for view in list(self._views):
            await view.close()
        for s in list(self._sessions):
            await s.close()
        if self._parent is not None:
            self._parent._views.discard(self)
            return
        st = self._state
        st.closing = True
        for core in list(st.cores.values()):
            for s in list(core.sessions):
                await s.close()
            core.close()
        st.cores.clear()
        if st.lock_file is not None:
            st.lock_file.close()
            st.lock_file = None
        st.closed = True

    # views ------------------------------------------------------------------------------

    def namespace(self, name: str | bytes) -> "Corestore":
        """A view whose namespace is ``BLAKE2b-256(this namespace || name)``."""
        self._check_open()
        if isinstance(name, Spacecore):
            ns = name.core.get_user_data("corestore/namespace") if name.core else None
            if ns is None or len(ns) != 32:
                raise BadArgumentError("that core has no corestore/namespace")
            return self._view(ns)
        if not isinstance(name, (str, bytes, bytearray)):
            raise BadArgumentError(f"namespace name must be str or bytes, not {type(name).__name__}")
        return self._view(crypto.child_namespace(self.namespace_key, name))

    def session(self, *, namespace: bytes | None = None) -> "Corestore":
        """A view with this namespace (or a raw 32-byte one) whose close closes only its own sessions."""
        self._check_open()
        if namespace is not None and (not isinstance(namespace, (bytes, bytearray)) or len(namespace) != 32):
            raise BadArgumentError("namespace must be 32 bytes")
        return self._view(bytes(namespace) if namespace is not None else self.namespace_key)

    def _view(self, ns: bytes) -> "Corestore":
        v = Corestore(namespace=ns, _state=self._state, _parent=self)
        self._views.add(v)
        return v

    def _check_open(self) -> None:
        if self.closed or self._state.closing:
            raise SessionClosedError("The corestore is closed")

    # keys -------------------------------------------------------------------------------

    def create_key_pair(self, name: str) -> crypto.KeyPair:
        """The key pair named ``name`` in this view's namespace (the reference's ``createKeyPair``)."""
        if not isinstance(name, str):
            raise BadArgumentError("name must be a string")
        if self._state.primary_key is None:
            raise InvalidOperationError("store is not ready: await ready() first")
        return crypto.derive_key_pair(self._state.primary_key, self.namespace_key, name)

    # get --------------------------------------------------------------------------------

    def get(self, key=None, *, name: str | None = None, **opts: Any) -> Spacecore:
        """A session on the core named ``name`` (in this namespace) or with ``key``; opened by ``ready()``."""
        self._check_open()
        unknown = set(opts) - _CORE_OPTS
        if unknown:
            raise BadArgumentError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if isinstance(key, dict):
            opts = {**key, **opts}
            name = opts.pop("name", name)
            key = opts.pop("key", None)
        if name is not None and not isinstance(name, str):
            raise BadArgumentError(f"name must be a string, not {type(name).__name__}")
        if name == "":  # the reference takes an empty name for none: a core named "" could never be found by it
            raise BadArgumentError("name must be a non-empty string")
        k = parse_key(key) if key is not None else None
        kp = _as_key_pair(opts.get("key_pair"))
        public_key = opts.get("public_key")
        if public_key is not None:
            public_key = parse_key(public_key)
        manifest = opts.get("manifest")
        if manifest is not None and not isinstance(manifest, Manifest):
            raise BadArgumentError("manifest must be a Manifest")
        if name is not None and kp is not None and kp.secret_key:
            raise BadArgumentError("name and a secret key cannot be given together")
        if name is None and k is None and kp is None and public_key is None and manifest is None:
            raise BadArgumentError("Must provide either a name or a publicKey")
        if not self._state.writable:
            opts["writable"] = False
        ns = self.namespace_key
        session_opts = {o: opts[o] for o in ("value_encoding", "encryption_key", "writable", "wait", "timeout")
                        if o in opts}
        session: Spacecore | None = None

        async def opener() -> Core:
            await self.ready()
            self._check_open()
            return await self._open_core(session, name, ns, k, kp, public_key, manifest, opts)

        session = Spacecore(_opener=opener, **session_opts)
        self._sessions.add(session)
        session._close_hooks.append(self._forget)
        return session

    def _forget(self, session: Spacecore) -> None:
        self._sessions.discard(session)

    async def _open_core(self, session, name, ns, key, kp, public_key, manifest, opts) -> Core:
        st = self._state
        if name is not None:
            kp = crypto.derive_key_pair(st.primary_key, ns, name)
        compat = opts.get("compat", True)
        if manifest is not None:
            key_ = manifest_hash(manifest)
        elif key is not None:
            key_ = key
        else:
            pk = public_key if public_key is not None else kp.public_key
            if compat:
                key_ = pk
            else:
                manifest = Manifest(version=0, signers=[Signer(pk)], quorum=1)
                key_ = manifest_hash(manifest)
        dk = crypto.discovery_key(key_)
        if opts.get("exclusive") and opts.get("writable", True):
            while dk in st.exclusive:
                await st.exclusive[dk].wait()
            ev = st.exclusive[dk] = trio.Event()

            def release(_s, dk=dk, ev=ev):
                if st.exclusive.get(dk) is ev:
                    del st.exclusive[dk]
                ev.set()

            session._close_hooks.append(release)
        core = st.cores.get(dk)
        if core is not None and not core.closed:
            if key is not None and core.key != key_:
                raise BadArgumentError("key mismatch")
            return core
        directory = core_dir(dk)
        core = Core.open(SubStorage(st.storage, directory), label=directory, key=key_,
                         key_pair=kp if (kp is not None and kp.secret_key and compat and kp.public_key == key_) else None,
                         manifest=manifest, create_if_missing=opts.get("create_if_missing", True),
                         overwrite=opts.get("overwrite", False), writable=st.writable, compat=compat)
        try:
            if (kp is not None and kp.secret_key and core.key_pair is None
                    and any(s.public_key == kp.public_key for s in (core.manifest.signers if core.manifest else []))):
                core.key_pair = kp
            self._recover_key_pair(core)
            if name is not None and st.writable:
                core.set_user_data("corestore/name", name.encode())
                core.set_user_data("corestore/namespace", ns)
        except BaseException:  # e.g. too many open files while writing the name: nothing stays open
            core.close()
            raise
        st.cores[dk] = core
        core.on_close.append(lambda c, dk=dk: st.cores.pop(dk, None) if st.cores.get(dk) is c else None)
        return core

    def _recover_key_pair(self, core: Core) -> None:
        """The reference's pre-ready hook: re-derive a named core's key pair with our primary key."""
        name = core.get_user_data("corestore/name")
        if name is None:
            return
        ns = core.get_user_data("corestore/namespace") or crypto.ZERO_NAMESPACE
        try:
            kp = crypto.derive_key_pair(self._state.primary_key, ns, name.decode())
        except UnicodeDecodeError:
            return
        signers = [s.public_key for s in core.manifest.signers] if core.manifest else [core.key]
        if kp.public_key == core.key or kp.public_key in signers:
            core.key_pair = kp

    # listing ----------------------------------------------------------------------------

    async def list_cores(self) -> AsyncIterator[CoreRecord]:
        """Every core in storage: key, discovery key, name, namespace hash, length, tree byte length."""
        await self.ready()
        n = 0
        for rec in scan(self._state.storage):
            yield rec
            n += 1
            if n % 256 == 0:
                await trio.lowlevel.checkpoint()

    def replicate(self, *args, **kwargs):
        raise InvalidOperationError("replication is not implemented yet")

    def __repr__(self) -> str:
        return f"Corestore({self._state.storage!r}, namespace={self.namespace_key.hex()[:8]}…)"
