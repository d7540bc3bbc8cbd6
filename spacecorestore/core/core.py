"""One open core: the state all its sessions share, and every write to its files.

``Core.open`` replays the oplog over the header (01-core §7.6) and refuses
damaged storage with a typed error, touching nothing (§7.16); the only thing
it ever repairs is a torn tail, and only when writable.  Mutations follow the
reference's write order (data -> oplog entry -> in-memory state -> maybe a
flush: bitfield -> tree -> header), so a crash at any point is recoverable
and every acknowledged mutation survives.  All file I/O is inline.

Sessions (``session.Spacecore``) hold a ``Core``; they encode values,
encrypt, wait and emit events.  Nothing here awaits except ``wait_change``.
"""
from __future__ import annotations

import bisect
import logging
from typing import Callable

import trio

from .. import crypto
from ..errors import (
    BadArgumentError,
    OplogCorruptError,
    SessionNotWritableError,
    StorageConflictError,
    StorageCorruptError,
    StorageEmptyError,
)
from . import oplog as oplog_mod
from .bitfield import Bitfield
from .merkle_tree import MerkleTree
from .messages import (
    BitfieldUpdate,
    Entry,
    Header,
    Manifest,
    Reorg,
    TreeHeader,
    TreeUpgrade,
    decode_header,
    decode_multisig_v1,
    encode_multisig_v1,
    is_compat,
    manifest_hash,
)

log = logging.getLogger(__name__)

MAX_BLOCK = 15 * 1024 * 1024
FLUSH_ENTRIES_BYTES = 65536
PARALLEL_WRITE_MIN = 1 << 20
READAHEAD_MIN_BLOCK = 16384
READAHEAD_BYTES = 1 << 20
WRITEBACK_CHUNK = 8 << 20  # start_writeback() hands the disk appended data in pieces this big
_pool = None


def _io_pool():
    global _pool
    if _pool is None:
        import concurrent.futures

        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacecore-io")
    return _pool


class Core:
    def __init__(self, storage, label: str) -> None:
        self.storage = storage
        self.label = label  # directory shown in error messages
        files = []
        try:
            for n in ("oplog", "tree", "bitfield", "data"):
                files.append(storage.open(n))
        except BaseException:  # e.g. EMFILE on the third file: close the ones already open
            for f in files:
                f.close()
            raise
        self.oplog_file, self.tree_file, self.bitfield_file, self.data_file = files
        self._header_file = None
        self.tree = MerkleTree(self.tree_file, path=self._path("tree"))
        self.bitfield = Bitfield()
        self.header: Header
        self.writer: oplog_mod.OplogWriter
        self.key: bytes = b""
        self.discovery_key: bytes = b""
        self.key_pair: crypto.KeyPair | None = None
        self.contiguous = 0
        self.auto_flush = 1
        self.writable_storage = True
        self.closed = False
        self.sessions: set = set()
        self.on_close: list[Callable[["Core"], None]] = []
        self._verified = bytearray()
        self._seq = (-1, 0)  # (block index, byte offset) of the last block read: sequential reads skip the tree walk
        self._ra = None  # read-ahead: (first, end, byte offset, bytes, [(offset, size)])
        self._change: trio.Event | None = None  # made by the first waiter
        self._manifest_flushed = True
        # An owner that calls settle() soon after each mutation (corefs, once its reply is
        # sent) may let the reference's periodic flush wait until then: the files go through
        # the same states in the same order, the flush is just off the caller's path.
        self.defer_flush = False
        self._flush_due = False
        self._writeback_from = 0  # data before this offset has been handed to start_writeback
        self._sign_ctx: tuple | None = None  # (manifest, *_signing_prefixes(manifest))

    def _path(self, name: str) -> str:
        return f"{self.label}/{name}" if self.label else name

    @property
    def header_file(self):
        if self._header_file is None:
            self._header_file = self.storage.open("header")
        return self._header_file

    # opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, storage, *, label: str = "", key: bytes | None = None, key_pair: crypto.KeyPair | None = None,
             manifest: Manifest | None = None, create_if_missing: bool = True, overwrite: bool = False,
             writable: bool = True, compat: bool = True, lock: bool = False) -> "Core":
        core = cls(storage, label)
        try:
            if not create_if_missing and core.oplog_file.size() == 0:
                raise StorageEmptyError(f"no core stored in {label or 'storage'}")
            if lock:
                core.oplog_file.lock()
            core._open(key, key_pair, manifest, create_if_missing, overwrite, writable, compat)
            core._writeback_from = core.tree.byte_length
        except BaseException:
            core._close_files()
            raise
        return core

    def _open(self, key, key_pair, manifest, create_if_missing, overwrite, writable, compat) -> None:
        self.writable_storage = writable
        buf = self.oplog_file.read_all()
        state = None if overwrite else oplog_mod.parse(buf, self._path("oplog"))
        if state is None:
            if not overwrite and any(f.size() > 0 for f in (self.tree_file, self.bitfield_file, self.data_file)):
                raise OplogCorruptError("oplog has no valid header but the core has tree/bitfield/data files",
                                        path=self._path("oplog"), offset=0)
            if not create_if_missing:
                raise StorageEmptyError(f"no core stored in {self.label or 'storage'}")
            self._create(key, key_pair, manifest, compat, overwrite)
            return
        header = state.header
        if header.external is not None:
            start, length = header.external
            raw = self.header_file.read(start, length)
            try:
                header = decode_header(raw)
            except Exception:
                raise OplogCorruptError("external header cannot be decoded", path=self._path("header"),
                                        offset=start) from None
            external = (start, length)
        else:
            external = None
        if key is not None and key != header.key:
            raise StorageConflictError(f"another core is stored here: expected {key.hex()}, found {header.key.hex()}")
        if manifest is not None and header.manifest is not None and manifest_hash(manifest) != manifest_hash(header.manifest):
            raise StorageConflictError("manifest does not match the stored core")
        self.header = header
        self.key = header.key
        self.discovery_key = crypto.discovery_key(header.key)
        self._install_key_pair(header.key_pair)
        if key_pair is not None:
            self._install_key_pair(key_pair, check=True)

        bf_raw = self.bitfield_file.read_all()
        hint = header.contiguous_length
        if hint > 0 and len(bf_raw) < (hint + 7) // 8:
            raise StorageCorruptError(
                f"bitfield file is missing or short ({len(bf_raw)} bytes) but {hint} blocks were recorded as present",
                path=self._path("bitfield"), offset=len(bf_raw))
        self.bitfield = Bitfield(bf_raw)

        tree = self.tree
        t = header.tree
        tree.length, tree.fork, tree.signature = t.length, t.fork, t.signature
        upgraded = False
        for e in state.entries:
            self._replay(e)
            upgraded = upgraded or e.tree_upgrade is not None
        tree.load_roots()
        if upgraded:
            header.tree = TreeHeader(tree.fork, tree.length, tree.tree_hash(), tree.signature)
        if tree.length > 0 and not self.verify_signature(tree.tree_hash(), tree.length, tree.fork, tree.signature):
            raise StorageCorruptError(
                f"the roots of length {tree.length} do not match the signed tree hash", path=self._path("tree"))
        beyond = self.bitfield.first_set(tree.length)
        if beyond != -1:
            raise StorageCorruptError(
                f"bitfield marks block {beyond} present beyond the length {tree.length}: the oplog header was rolled back",
                path=self._path("bitfield"), offset=beyond >> 3)
        self.contiguous = min(self.bitfield.leading_ones(), tree.length)
        if state.torn_tail and writable:
            log.info("%s: dropping a torn oplog tail (%d bytes)", self._path("oplog"), state.file_size - state.entries_end)
            self.oplog_file.truncate(state.entries_end)
        self.writer = oplog_mod.OplogWriter(self.oplog_file, state.bits, state.entries_end, external)
        self.auto_flush = 1
        self._manifest_flushed = header.manifest is not None

    def _create(self, key, key_pair, manifest, compat, overwrite) -> None:
        if compat and key is not None and key_pair is not None and key != key_pair.public_key:
            raise BadArgumentError("key does not match the key pair")
        if key_pair is None and key is None and manifest is None:
            key_pair = crypto.key_pair()
        use_default = manifest is None and (compat or key is None or (key_pair is not None and key == key_pair.public_key))
        if use_default:
            pk = key if key is not None else key_pair.public_key
            manifest = Manifest.default(pk) if (key is None or key_pair is not None) else None
        if key is None:
            if manifest is None:
                raise BadArgumentError("cannot create a core without a key, key pair or manifest")
            key = manifest.signers[0].public_key if (compat and use_default) else manifest_hash(manifest)
        if overwrite:
            for f in (self.tree_file, self.bitfield_file, self.data_file):
                f.truncate(0)
            self.oplog_file.truncate(0)
        self.header = Header(key=key, manifest=manifest,
                             key_pair=crypto.KeyPair(key_pair.public_key, key_pair.secret_key) if key_pair else None)
        self.key = key
        self.discovery_key = crypto.discovery_key(key)
        self._install_key_pair(key_pair)
        self.writer = oplog_mod.OplogWriter(self.oplog_file)
        self.writer.write_header(self.header, None)
        self.auto_flush = 1
        self._manifest_flushed = manifest is not None

    def _install_key_pair(self, kp: crypto.KeyPair | None, check: bool = False) -> None:
        if kp is None:
            return
        if check and is_compat(self.key, self.header.manifest) and kp.public_key != self.key:
            raise BadArgumentError("key pair does not match the core's key")
        self.key_pair = kp

    def _replay(self, e: Entry) -> None:
        if e.user_data is not None:
            self._apply_user_data(*e.user_data)
        if e.tree_nodes:
            self.tree.add_nodes(e.tree_nodes)
        if e.bitfield is not None:
            b = e.bitfield
            self.bitfield.set_range(b.start, b.start + b.length, not b.drop)
        if e.tree_upgrade is not None:
            u = e.tree_upgrade
            tree = self.tree
            if tree.length > 0 and u.fork != tree.fork:
                self._add_reorg(tree.fork, u.fork, u.ancestors)
            if u.ancestors < tree.length:
                tree.truncate(u.ancestors)
            tree.set_length(u.length, u.fork, u.signature, load_roots=False)

    def _add_reorg(self, from_fork: int, to_fork: int, ancestors: int) -> None:
        reorgs = self.header.reorgs
        while len(reorgs) >= 4:
            reorgs.pop(0)
        while reorgs and reorgs[-1].ancestors > ancestors:
            reorgs.pop()
        reorgs.append(Reorg(from_fork, to_fork, ancestors))

    # properties -------------------------------------------------------------------

    @property
    def length(self) -> int:
        return self.tree.length

    @property
    def fork(self) -> int:
        return self.tree.fork

    @property
    def manifest(self) -> Manifest | None:
        return self.header.manifest

    @property
    def compat(self) -> bool:
        return is_compat(self.key, self.header.manifest)

    @property
    def can_write(self) -> bool:
        return self.writable_storage and self.key_pair is not None and bool(self.key_pair.secret_key)

    # signatures ---------------------------------------------------------------------

    def _manifest_for_signing(self) -> Manifest:
        m = self.header.manifest
        if m is None:
            m = Manifest.default(self.key_pair.public_key)
        return m

    def sign(self, tree_hash: bytes, length: int, fork: int) -> bytes:
        m = self.header.manifest
        ctx = self._sign_ctx
        if ctx is None or ctx[0] is not m:
            ctx = self._sign_ctx = (m, *self._signing_prefixes(m))
        signable = (crypto.compat_signable(tree_hash, length, fork) if ctx[1] is None
                    else crypto.manifest_signable(ctx[1], tree_hash, length, fork))
        sig = crypto.sign(signable, self.key_pair.secret_key)
        return sig if ctx[2] is None else ctx[2] + sig + b"\x00\x00"

    def _signing_prefixes(self, m: Manifest | None) -> tuple[bytes | None, bytes | None]:
        """The manifest context of the signed message (None: a compat core), and for a v1
        manifest what precedes the signature in its one-signer multisig (which ends with two
        zero uints)."""
        if self.compat:
            return None, None
        kp = self.key_pair
        idx = next((i for i, s in enumerate(m.signers) if s.public_key == kp.public_key), None)
        if idx is None:
            raise SessionNotWritableError("the key pair is not a signer of this core's manifest")
        if m.version == 0:
            return m.signers[idx].namespace, None
        return self.key, encode_multisig_v1([(idx, bytes(64))])[:-66]

    def verify_signature(self, tree_hash: bytes, length: int, fork: int, signature: bytes | None) -> bool:
        if not signature:
            return False
        m = self.header.manifest
        if is_compat(self.key, m):
            return crypto.verify(crypto.compat_signable(tree_hash, length, fork), signature, self.key)
        if m.prologue is not None and length <= m.prologue[1]:
            return length == m.prologue[1] and tree_hash == m.prologue[0]
        if m.version == 0:
            if len(m.signers) != 1:
                return False
            s = m.signers[0]
            return crypto.verify(crypto.manifest_signable(s.namespace, tree_hash, length, fork), signature, s.public_key)
        try:
            proofs = decode_multisig_v1(signature)
        except Exception:
            return False
        if len(proofs) < m.quorum:
            return False
        seen = set()
        msg = crypto.manifest_signable(self.key, tree_hash, length, fork)
        for signer, sig, patch in proofs[: m.quorum]:
            if signer >= len(m.signers) or signer in seen or patch:
                return False
            seen.add(signer)
            if not crypto.verify(msg, sig, m.signers[signer].public_key):
                return False
        return True

    # reads --------------------------------------------------------------------------

    def has(self, i: int) -> bool:
        return 0 <= i < self.tree.length and self.bitfield.get(i)

    def read_block(self, i: int) -> bytes | None:
        """The stored bytes of block ``i`` if held locally, checked against its leaf hash once."""
        ra = self._ra
        if ra is not None and ra[0] <= i < ra[1]:
            start, _, base, buf, spans = ra
            off, size = spans[i - start]
            self._seq = (i, off + size)
            return buf[off - base : off - base + size]
        if not (0 <= i < self.tree.length) or not self.bitfield.get(i):
            return None
        node = self.tree.get_node(2 * i)
        if node is None:
            raise StorageCorruptError(f"tree node {2 * i} (block {i}) is missing", path=self._path("tree"), offset=80 * i)
        size = node[1]
        last, end = self._seq
        sequential = last == i - 1
        off = end if sequential else self.tree.byte_offset(2 * i)
        if sequential and size >= READAHEAD_MIN_BLOCK:
            data = self._read_ahead(i, off, size, node[2])
            if data is not None:
                return data
        data = self.data_file.read(off, size)
        if len(data) != size:
            raise StorageCorruptError(f"block {i} is cut short: expected bytes [{off}, {off + size}), got {len(data)}",
                                      path=self._path("data"), offset=off)
        if not self._is_verified(i):
            if crypto.leaf_hash(data) != node[2]:
                raise StorageCorruptError(f"block {i} does not match its hash in the tree",
                                          path=self._path("data"), offset=off)
            self._mark_verified(i, i + 1)
        self._seq = (i, off + size)
        return data

    def seek(self, byte_offset: int) -> tuple[int, int] | None:
        """(block, offset within it) of a stored byte offset, like ``tree.seek`` without padding;
        a read that goes on where the last one stopped, or inside the read-ahead window, skips
        the walk down the tree."""
        ra = self._ra
        if ra is not None:
            spans = ra[4]
            if spans[0][0] <= byte_offset < spans[-1][0] + spans[-1][1]:
                k = bisect.bisect_right(spans, (byte_offset, MAX_BLOCK + 1)) - 1
                return ra[0] + k, byte_offset - spans[k][0]
        last, end = self._seq
        if byte_offset == end and last + 1 < self.tree.length:
            return last + 1, 0
        return self.tree.seek(byte_offset)

    def _is_verified(self, i: int) -> bool:
        v = self._verified
        b = i >> 3
        return b < len(v) and bool(v[b] >> (i & 7) & 1)

    def _read_ahead(self, i: int, off: int, size: int, first_hash: bytes) -> bytes | None:
        """Sequential reads of big blocks: one read of the next blocks, hashed on two cores.

        The blocks after ``i`` are kept for the next gets; one that fails its
        hash is simply not kept, so its own get reports the damage.
        """
        tree, bf = self.tree, self.bitfield
        spans = [(off, size)]
        hashes = [first_hash]
        total = size
        j = i + 1
        while j < tree.length and total < READAHEAD_BYTES and j - i < 64 and bf.get(j):
            n = tree.get_node(2 * j)
            if n is None:
                break
            spans.append((off + total, n[1]))
            hashes.append(n[2])
            total += n[1]
            j += 1
        if j == i + 1:
            return None
        buf = self.data_file.read(off, total)
        while spans and spans[-1][0] + spans[-1][1] - off > len(buf):
            spans.pop()
        if not spans or spans[0][1] != size:
            return None  # cut short: the plain path reports it
        todo = [k for k in range(len(spans)) if not self._is_verified(i + k)]
        ok = [True] * len(spans)

        mv = memoryview(buf)

        def check(ks):
            lh = crypto.leaf_hash
            for k in ks:
                o, sz = spans[k]
                ok[k] = lh(mv[o - off : o - off + sz]) == hashes[k]

        if len(todo) > 1:
            fut = _io_pool().submit(check, todo[1::2])
            try:
                check(todo[0::2])
            finally:
                fut.result()
        else:
            check(todo)
        if not ok[0]:
            raise StorageCorruptError(f"block {i} does not match its hash in the tree",
                                      path=self._path("data"), offset=off)
        good = 1
        while good < len(spans) and ok[good]:
            good += 1
        self._mark_verified(i, i + good)
        self._ra = (i, i + good, off, buf, spans[:good])
        self._seq = (i, off + size)
        return buf[:size]

    # writes -----------------------------------------------------------------------

    def _require_writable(self) -> None:
        if not self.can_write:
            raise SessionNotWritableError("core is not writable")

    def append(self, blocks: list[bytes]) -> tuple[int, int]:
        """Append stored (already encoded/encrypted) blocks; durable in the page cache on return."""
        self._require_writable()
        self.settle()
        tree = self.tree
        if not blocks:
            return tree.length, tree.byte_length
        for b in blocks:
            if len(b) > MAX_BLOCK:
                raise BadArgumentError(f"block of {len(b)} bytes is larger than 15 MiB")
        lh = crypto.leaf_hash
        old_length, old_bytes = tree.length, tree.byte_length
        data_written = False
        if len(blocks) > 1 and sum(len(b) for b in blocks) >= PARALLEL_WRITE_MIN and hasattr(self.data_file, "writev"):
            # Big batch: the data write (page-cache copies) runs in a worker thread while
            # this thread hashes; both release the GIL.  The entry is still written after.
            fut = _io_pool().submit(self.data_file.writev, old_bytes, blocks)
            try:
                leaves = [(len(b), lh(b)) for b in blocks]
            finally:
                fut.result()
            data_written = True
        else:
            leaves = [(len(b), lh(b)) for b in blocks]
        nodes, roots, length, byte_length = tree.build_append(leaves)
        th = crypto.tree_hash(roots)
        fork = tree.fork
        signature = self.sign(th, length, fork)
        manifest_set = False
        if self.header.manifest is None:
            self.header.manifest = self._manifest_for_signing()
            self._manifest_flushed = False
            manifest_set = True
        if not data_written:
            self.data_file.write(old_bytes, blocks[0] if len(blocks) == 1 else b"".join(blocks))
        self.writer.append(Entry(tree_nodes=nodes, tree_upgrade=TreeUpgrade(fork, old_length, length, signature),
                                 bitfield=BitfieldUpdate(False, old_length, length - old_length)))
        tree.commit_append(nodes, roots, length, byte_length, fork, signature)
        self.header.tree = TreeHeader(fork, length, th, signature)
        self.bitfield.set_range(old_length, length, True)
        self._contig_set(old_length, length)
        self._mark_verified(old_length, length)
        self._mutated(manifest_set)
        self._notify()
        return length, byte_length

    def _mark_verified(self, start: int, end: int) -> None:
        v = self._verified
        need = (end + 7) >> 3
        if need > len(v):
            v.extend(bytes(need - len(v) + 4096))
        for i in range(start, end):
            v[i >> 3] |= 1 << (i & 7)

    def _contig_set(self, start: int, end: int) -> None:
        c = self.contiguous
        if start <= c <= end:
            c = end
            while self.bitfield.get(c):
                c += 1
            self.contiguous = min(c, self.tree.length)

    def truncate(self, new_length: int, fork: int | None = None) -> None:
        tree = self.tree
        if fork is None:
            fork = tree.fork + 1
        if not (new_length == 0 and fork == tree.fork):
            self._require_writable()
        if new_length > tree.length or new_length < 0:
            raise BadArgumentError(f"cannot truncate to {new_length}: the core has {tree.length} blocks")
        self.settle()
        old_length = tree.length
        roots = tree.truncation_roots(new_length)
        th = crypto.tree_hash(roots)
        signature = self.sign(th, new_length, fork) if new_length > 0 else None
        if self.header.manifest is None and self.key_pair is not None:
            self.header.manifest = self._manifest_for_signing()
            self._manifest_flushed = False
        self.writer.append(Entry(tree_nodes=[], tree_upgrade=TreeUpgrade(fork, new_length, new_length, signature),
                                 bitfield=BitfieldUpdate(True, new_length, old_length - new_length)))
        if old_length > 0 and fork != tree.fork:
            self._add_reorg(tree.fork, fork, new_length)
        if new_length < old_length:
            tree.truncate(new_length)
        tree.roots = roots
        tree.length = new_length
        tree.byte_length = sum(r[1] for r in roots)
        self._writeback_from = min(self._writeback_from, tree.byte_length)
        tree.fork = fork
        tree.signature = signature
        self.header.tree = TreeHeader(fork, new_length, th, signature)
        self.bitfield.set_range(new_length, old_length, False)
        if new_length < self.contiguous:
            self.contiguous = new_length
        v = self._verified
        for i in range(new_length, min(old_length, len(v) * 8)):
            v[i >> 3] &= ~(1 << (i & 7)) & 0xFF
        self._seq = (-1, 0)
        self._ra = None
        self.flush()
        self._notify()

    def clear(self, start: int, end: int) -> None:
        tree = self.tree
        if start >= end or start >= tree.length:
            return
        self.settle()
        # the entry records the range as given, also past the length (the reference does not clamp)
        self.writer.append(Entry(bitfield=BitfieldUpdate(True, start, end - start)))
        self._ra = None
        bf = self.bitfield
        bf.set_range(start, end, False)
        if start < self.contiguous:
            self.contiguous = start
        s = bf.last_set(start - 1) + 1 if start > 0 else 0
        e = bf.first_set(end)
        if e == -1 or e > tree.length:
            e = tree.length
        s_off = tree.byte_offset(2 * s)
        e_off = tree.byte_offset(2 * e)
        v = self._verified
        for i in range(start, min(end, len(v) * 8)):
            v[i >> 3] &= ~(1 << (i & 7)) & 0xFF
        if e_off > s_off:
            self.data_file.punch(s_off, e_off - s_off)
            self._mutated()

    def _apply_user_data(self, key: str, value: bytes | None) -> None:
        ud = self.header.user_data
        for idx, (k, _) in enumerate(ud):
            if k == key:
                if value is None:
                    del ud[idx]
                else:
                    ud[idx] = (key, value)
                return
        if value is not None:
            ud.append((key, value))

    def get_user_data(self, key: str) -> bytes | None:
        return self.header.get_user_data(key)

    def set_user_data(self, key: str, value: bytes | None, *, flush: bool = False) -> None:
        if not isinstance(key, str):
            raise BadArgumentError("user data key must be a string")
        if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
            raise BadArgumentError(f"user data value must be bytes or None, not {type(value).__name__}")
        present = any(k == key for k, _ in self.header.user_data)
        if value is None:
            if not present:
                return
        else:
            value = bytes(value)
            if value and present and self.header.get_user_data(key) == value:
                return
        stored = value or None
        self.settle()
        self.writer.append(Entry(user_data=(key, stored)))
        self._apply_user_data(key, stored)
        self._mutated(force=flush)

    def _mutated(self, manifest_set: bool = False, force: bool = False) -> None:
        # the reference: `if (this._shouldFlush() || flush)`: a forced flush uses up the counter too
        self.auto_flush -= 1
        if self.auto_flush <= 0 or self.writer.entries_size >= FLUSH_ENTRIES_BYTES:
            self._flush_soon()
            self.auto_flush = 4
        elif not self._manifest_flushed and self.header.manifest is not None:
            # the reference's `_manifestFlushed`: consumed only when the counter did not flush
            self._manifest_flushed = True
            self._flush_soon()
        elif force:
            self.flush()

    def _flush_soon(self) -> None:
        if self.defer_flush:
            self._flush_due = True
        else:
            self.flush()

    @property
    def flush_due(self) -> bool:
        return self._flush_due

    @property
    def writeback_due(self) -> bool:
        return self.tree.byte_length - self._writeback_from >= WRITEBACK_CHUNK

    def start_writeback(self) -> None:
        """Let the disk start on appended data (no waiting), so the sync at a close is short."""
        end = self.tree.byte_length
        if end > self._writeback_from and hasattr(self.data_file, "start_writeback"):
            self.data_file.start_writeback(self._writeback_from, end - self._writeback_from)
        self._writeback_from = end

    def settle(self) -> None:
        """Run a flush that ``defer_flush`` held back (before anything else touches the files)."""
        if self._flush_due:
            self.flush()

    def flush(self) -> None:
        """Write dirty bitfield pages, pending tree nodes, then the header (§7.7)."""
        self.bitfield.flush_to(self.bitfield_file)
        self.tree.flush_to()
        self.header.contiguous_length = self.contiguous
        self.writer.write_header(self.header, lambda: self.header_file)
        self._flush_due = False  # a flush that failed stays due: the next change retries it

    def sync(self) -> None:
        """fdatasync every file: what returned before is on stable storage after this."""
        self.settle()
        for f in (self.data_file, self.tree_file, self.bitfield_file, self.oplog_file):
            f.sync()

    # waiting ------------------------------------------------------------------------

    def _notify(self) -> None:
        ev = self._change
        if ev is not None:
            self._change = None
            ev.set()

    async def wait_change(self) -> None:
        if self._change is None:
            self._change = trio.Event()
        await self._change.wait()

    # closing ------------------------------------------------------------------------

    def _close_files(self) -> None:
        for f in (self.oplog_file, self.tree_file, self.bitfield_file, self.data_file, self._header_file):
            if f is not None:
                f.close()

    def close(self) -> None:
        """Close the files (nothing is flushed, as the reference) and wake waiters."""
        if self.closed:
            return
        try:
            self.settle()
        except OSError as err:  # the oplog holds every entry: the next open replays what the flush would have written
            log.warning("%s: the flush at close failed (%s); the oplog keeps the changes", self.label or "core", err)
        finally:
            self.closed = True
            self._close_files()
        self._notify()
        for cb in self.on_close:
            try:
                cb(self)
            except Exception:
                log.exception("close callback failed")
