"""The local bitfield: which blocks this core holds (01-core §7.11).

One bit per block, least significant bit first, in 4096-byte pages.  Pages
"exist" as the reference's do (every page of a loaded 1/4/16/64-page
segment, and any page in which a bit was set), and only existing pages
become dirty; ``flush`` writes dirty pages whole, so the file matches the
reference's byte for byte.  Pure apart from ``flush_to``.
"""
from __future__ import annotations

PAGE_BYTES = 4096
PAGE_BITS = PAGE_BYTES * 8
SEGMENT_PAGES = 64


class Bitfield:
    __slots__ = ("buf", "pages", "dirty")

    def __init__(self, data: bytes = b"") -> None:
        n = len(data) & ~3
        self.buf = bytearray(data[:n])
        self.pages: set[int] = set()
        self.dirty: set[int] = set()
        if n:
            total_pages = -(-n // PAGE_BYTES)
            first = SEGMENT_PAGES
            for size in (1, 4, 16, 64):
                if min(total_pages, SEGMENT_PAGES) <= size:
                    first = size
                    break
            count = first
            while count < total_pages:
                count += SEGMENT_PAGES
            self.pages = set(range(count))

    def get(self, i: int) -> bool:
        b = i >> 3
        return b < len(self.buf) and bool(self.buf[b] >> (i & 7) & 1)

    def _ensure(self, nbytes: int) -> None:
        if nbytes > len(self.buf):
            self.buf.extend(bytes(nbytes - len(self.buf)))

    def set_range(self, start: int, end: int, value: bool) -> None:
        """Set bits [start, end) to ``value``, marking existing pages dirty."""
        if end <= start:
            return
        first_page, last_page = start // PAGE_BITS, (end - 1) // PAGE_BITS
        if value:
            for p in range(first_page, last_page + 1):
                self.pages.add(p)
                self.dirty.add(p)
            self._ensure((end + 7) >> 3)
        else:
            touched = [p for p in range(first_page, last_page + 1) if p in self.pages]
            if not touched:
                return
            self.dirty.update(touched)
            self._ensure(min((end + 7) >> 3, (last_page + 1) * PAGE_BYTES))
        buf = self.buf
        i = start
        # leading partial byte
        while i < end and i & 7:
            self._bit(i, value)
            i += 1
        full_end = end & ~7
        if i < full_end:
            a, b = i >> 3, full_end >> 3
            b = min(b, len(buf))
            if a < b:
                buf[a:b] = (b"\xff" if value else b"\x00") * (b - a)
            i = full_end
        while i < end:
            self._bit(i, value)
            i += 1

    def _bit(self, i: int, value: bool) -> None:
        b = i >> 3
        if b >= len(self.buf):
            if not value:
                return
            self._ensure(b + 1)
        if value:
            self.buf[b] |= 1 << (i & 7)
        else:
            self.buf[b] &= ~(1 << (i & 7)) & 0xFF

    def leading_ones(self) -> int:
        """Number of leading set bits (the contiguous length)."""
        buf = self.buf
        n = len(buf) - len(bytes(buf).lstrip(b"\xff")) if buf else 0
        i = n * 8
        while self.get(i):
            i += 1
        return i

    def first_set(self, start: int) -> int:
        """Index of the first set bit >= start, or -1."""
        i = start
        n = len(self.buf) * 8
        while i < n and i & 7:
            if self.get(i):
                return i
            i += 1
        b = i >> 3
        rest = bytes(self.buf[b:])
        stripped = rest.lstrip(b"\x00")
        if not stripped:
            return -1
        i = (b + len(rest) - len(stripped)) * 8
        while not self.get(i):
            i += 1
        return i

    def last_set(self, start: int) -> int:
        """Index of the last set bit <= start, or -1."""
        i = min(start, len(self.buf) * 8 - 1)
        while i >= 0:
            if self.get(i):
                return i
            i -= 1
        return -1

    def flush_to(self, f) -> None:
        for p in sorted(self.dirty):
            page = bytes(self.buf[p * PAGE_BYTES : (p + 1) * PAGE_BYTES])
            if len(page) < PAGE_BYTES:
                page += bytes(PAGE_BYTES - len(page))
            f.write(p * PAGE_BYTES, page)
        self.dirty.clear()
