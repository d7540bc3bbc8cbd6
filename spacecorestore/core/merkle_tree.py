"""The Merkle tree of one core (01-core §4, §7.10): nodes, roots, byte offsets, seek.

Node lookups go: existence at the current length -> unflushed overlay ->
(ignored if a pending truncation made it stale) -> cache -> ``tree`` file.
New nodes live in the overlay until ``flush_to`` writes them (after the
pending truncation's cut and blank records), exactly as the reference does.
Appending is split in two: ``build_append`` (pure, returns the new nodes and
roots) and ``commit_append`` (after the oplog entry is durable).
"""
from __future__ import annotations

import struct

from .. import crypto
from ..errors import StorageCorruptError
from ..flat_tree import count_leaves, full_roots, left_child, left_span, offset, parent, right_child, right_span

Node = tuple  # (index, size, hash)
ZERO_HASH = bytes(32)
_NODE = struct.Struct("<Q32s")
_CACHE_MAX = 1 << 16


class MerkleTree:
    def __init__(self, tree_file, *, path: str = "tree") -> None:
        self.file = tree_file
        self.path = path
        self.length = 0
        self.fork = 0
        self.signature: bytes | None = None
        self.byte_length = 0
        self.roots: list[Node] = []
        self.overlay: dict[int, Node | None] = {}
        self.truncated_to: int | None = None
        self._cache: dict[int, Node] = {}

    # lookups ----------------------------------------------------------------

    def get_node(self, i: int) -> Node | None:
        """Node ``i`` if it exists at the current length and is stored, else None."""
        if right_span(i) >= 2 * self.length:
            return None
        return self._lookup(i)

    def _lookup(self, i: int) -> Node | None:
        if i in self.overlay:
            return self.overlay[i]
        if self.truncated_to is not None and right_span(i) >= 2 * self.truncated_to:
            return None
        n = self._cache.get(i)
        if n is not None:
            return n
        raw = self.file.read(40 * i, 40)
        if len(raw) < 40:
            return None
        size, h = _NODE.unpack(raw)
        if size == 0 and h == ZERO_HASH:
            return None
        n = (i, size, h)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[i] = n
        return n

    def require_node(self, i: int) -> Node:
        n = self.get_node(i)
        if n is None:
            raise StorageCorruptError(f"tree node {i} is missing", path=self.path, offset=40 * i)
        return n

    def tree_hash(self) -> bytes:
        return crypto.tree_hash(self.roots)

    # state changes -------------------------------------------------------------

    def add_nodes(self, nodes) -> None:
        """Record (replayed or received) nodes as unflushed; a blank means absent."""
        for n in nodes:
            i, size, h = n
            self.overlay[i] = None if (size == 0 and h == ZERO_HASH) else (i, size, h)

    def set_length(self, length: int, fork: int, signature: bytes | None, *, load_roots: bool = True) -> None:
        """Move to ``length`` (after a replayed upgrade); roots are looked up."""
        self.length = length
        self.fork = fork
        self.signature = signature
        if load_roots:
            self.load_roots()

    def load_roots(self) -> None:
        roots = []
        for r in full_roots(2 * self.length):
            n = self._lookup(r)
            if n is None:
                raise StorageCorruptError(
                    f"root node {r} of length {self.length} is missing", path=self.path, offset=40 * r)
            roots.append(n)
        self.roots = roots
        self.byte_length = sum(n[1] for n in roots)

    def build_append(self, leaves: list[tuple[int, bytes]]) -> tuple[list[Node], list[Node], int, int]:
        """Pure: new nodes, new roots, new length and byte length for leaves (size, hash)."""
        roots = list(self.roots)
        nodes: list[Node] = []
        length = self.length
        byte_length = self.byte_length
        ph = crypto.parent_hash
        for size, h in leaves:
            node = (2 * length, size, h)
            roots.append(node)
            nodes.append(node)
            # Leaf ``length`` completes one parent per trailing 1-bit of ``length``; siblings
            # a (right) and b (left) have their parent half-way between them.
            for _ in range((length ^ (length + 1)).bit_length() - 1):
                a = roots.pop()
                b = roots[-1]
                p = ((a[0] + b[0]) >> 1, a[1] + b[1], ph(b[1], b[2], a[1], a[2]))
                nodes.append(p)
                roots[-1] = p
            length += 1
            byte_length += size
        return nodes, roots, length, byte_length

    def commit_append(self, nodes: list[Node], roots: list[Node], length: int, byte_length: int,
                      fork: int, signature: bytes | None) -> None:
        ov = self.overlay
        for n in nodes:
            ov[n[0]] = n
        self.roots = roots
        self.length = length
        self.byte_length = byte_length
        self.fork = fork
        self.signature = signature

    def truncation_roots(self, new_length: int) -> list[Node]:
        """Roots of the tree cut to ``new_length`` (from existing nodes)."""
        out = []
        for r in full_roots(2 * new_length):
            n = self._lookup(r) if right_span(r) < 2 * self.length else None
            if n is None:
                raise StorageCorruptError(f"node {r} needed to truncate is missing", path=self.path, offset=40 * r)
            out.append(n)
        return out

    def truncate(self, new_length: int) -> None:
        """Make every node at or past block ``new_length`` absent (live or on replay)."""
        cut = 2 * new_length
        for i in [i for i in self.overlay if i >= cut]:
            del self.overlay[i]
        if new_length > 0:
            # Blanks for the parents crossing the new end go into the unflushed set, replacing
            # any pending node there, as the reference's _commitUpgrade does (01-core §7.10).
            i = cut - 2
            while True:
                if left_span(i) <= cut <= right_span(i) and i < cut:
                    self.overlay[i] = None
                if offset(i) == 0:
                    break
                i = parent(i)
        if self.truncated_to is None or new_length < self.truncated_to:
            self.truncated_to = new_length
        self._cache.clear()

    # byte offsets and seek -------------------------------------------------------

    def byte_offset(self, index: int) -> int:
        """Byte offset of tree index ``index`` (block i: 2i), from the roots down."""
        if index == 2 * self.length:
            return self.byte_length
        if index & 1:
            index = left_span(index)
        head = 0
        off = 0
        for root in self.roots:
            ri = root[0]
            head += 2 * ((ri - head) + 1)
            if index >= head:
                off += root[1]
                continue
            node = ri
            while node != index:
                if index < node:
                    node = left_child(node)
                else:
                    off += self.require_node(left_child(node))[1]
                    node = right_child(node)
            return off
        raise StorageCorruptError(f"index {index} is outside the tree", path=self.path)

    def seek(self, b: int, padding: int = 0) -> tuple[int, int] | None:
        if b == 0:
            return (0, 0)
        for root in self.roots:
            ri = root[0]
            s = root[1] - padding * count_leaves(ri)
            if b == s:
                return (right_span(ri) // 2 + 1, 0)
            if b > s:
                b -= s
                continue
            node = ri
            while node & 1:
                lc = left_child(node)
                ln = self.require_node(lc)
                ls = ln[1] - padding * count_leaves(lc)
                if ls == b:
                    return (right_span(lc) // 2 + 1, 0)
                if ls > b:
                    node = lc
                    continue
                b -= ls
                node = right_child(node)
            return (node // 2, b)
        return None

    # flush ---------------------------------------------------------------------

    def flush_to(self) -> None:
        f = self.file
        if self.truncated_to is not None:
            n = self.truncated_to
            f.truncate(0 if n == 0 else 40 * (2 * n - 1))
            self.truncated_to = None  # the blank records are in the overlay (see truncate)
        if self.overlay:
            items = sorted(self.overlay.items())
            run_start = -1
            run = bytearray()
            prev = -2
            for i, n in items:
                rec = _NODE.pack(n[1], n[2]) if n is not None else bytes(40)
                if i != prev + 1 and run:
                    f.write(40 * run_start, bytes(run))
                    run = bytearray()
                if not run:
                    run_start = i
                run += rec
                prev = i
            if run:
                f.write(40 * run_start, bytes(run))
            cache = self._cache
            if len(cache) + len(items) > _CACHE_MAX:
                cache.clear()
            for i, n in items:
                if n is not None:
                    cache[i] = n
            self.overlay.clear()
