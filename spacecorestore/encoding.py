"""Compact-encoding primitives (01-core §1) as pure functions over bytes.

Encoders append to a ``bytearray``; decoders are methods of ``Reader``, a cursor
over a ``bytes``-like object, and raise ``DecodingError`` when a field runs
past the end.  z-base-32 and key-string parsing live here too.
"""
from __future__ import annotations

import struct

from .errors import BadArgumentError, DecodingError

MAX_ARRAY = 0x100000
MAX_SAFE = (1 << 53) - 1
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def uint(out: bytearray, n: int) -> None:
    if n <= 0xFC:
        out.append(n)
    elif n <= 0xFFFF:
        out.append(0xFD)
        out += _U16.pack(n)
    elif n <= 0xFFFFFFFF:
        out.append(0xFE)
        out += _U32.pack(n)
    else:
        out.append(0xFF)
        out += _U64.pack(n)


def uint_bytes(n: int) -> bytes:
    out = bytearray()
    uint(out, n)
    return bytes(out)


def buffer(out: bytearray, b: bytes | None) -> None:
    """Hypercore's buffer: null and empty both encode as ``00``."""
    if not b:
        out.append(0)
        return
    uint(out, len(b))
    out += b


def string(out: bytearray, s: str) -> None:
    b = s.encode("utf-8")
    uint(out, len(b))
    out += b


def fixed(out: bytearray, b: bytes, size: int) -> None:
    if len(b) != size:
        raise BadArgumentError(f"expected {size} bytes, got {len(b)}")
    out += b


class Reader:
    """A cursor over bytes; every read checks bounds."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = start
        self.end = len(buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int) -> bytes:
        p = self.pos
        if p + n > self.end:
            raise DecodingError("Out of bounds")
        self.pos = p + n
        return bytes(self.buf[p : p + n])

    def uint(self) -> int:
        p = self.pos
        if p >= self.end:
            raise DecodingError("Out of bounds")
        a = self.buf[p]
        if a <= 0xFC:
            self.pos = p + 1
            return a
        self.pos = p + 1
        if a == 0xFD:
            return _U16.unpack(self._take(2))[0]
        if a == 0xFE:
            return _U32.unpack(self._take(4))[0]
        n = _U64.unpack(self._take(8))[0]
        if n > MAX_SAFE:  # the reference's numbers are JavaScript numbers (01-core conventions)
            raise DecodingError(f"uint must be between 0 and {MAX_SAFE}, use biguint (got {n})")
        return n

    def uint8(self) -> int:
        return self._take(1)[0]

    def uint16(self) -> int:
        return _U16.unpack(self._take(2))[0]

    def uint32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def uint64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def bool(self) -> bool:
        return self._take(1)[0] == 1

    def buffer(self) -> bytes | None:
        n = self.uint()
        if n == 0:
            return None
        return self._take(n)

    def string(self) -> str:
        n = self.uint()
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodingError(f"invalid utf-8: {e}") from None

    def fixed(self, n: int) -> bytes:
        return self._take(n)

    def array_len(self) -> int:
        n = self.uint()
        if n > MAX_ARRAY:
            raise DecodingError("Array is too big")
        return n

    def raw(self) -> bytes:
        return self._take(self.end - self.pos)


# z-base-32 ------------------------------------------------------------------

Z32_ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
_Z32_INDEX = {c: i for i, c in enumerate(Z32_ALPHABET)}


def z32_encode(b: bytes) -> str:
    n = int.from_bytes(b, "big")
    bits = len(b) * 8
    chars = (bits + 4) // 5
    n <<= chars * 5 - bits
    return "".join(Z32_ALPHABET[(n >> (5 * (chars - 1 - i))) & 31] for i in range(chars))


def z32_decode(s: str) -> bytes:
    n = 0
    for c in s:
        v = _Z32_INDEX.get(c)
        if v is None:
            raise BadArgumentError(f"invalid z-base-32 character {c!r}")
        n = (n << 5) | v
    nbytes = len(s) * 5 // 8
    n >>= len(s) * 5 - nbytes * 8
    return n.to_bytes(nbytes, "big")


def parse_key(key: bytes | bytearray | memoryview | str) -> bytes:
    """A 32-byte key from bytes, 64 hex chars or 52 z32 chars (``pear://`` stripped)."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        k = bytes(key)
        if len(k) != 32:
            raise BadArgumentError(f"key must be 32 bytes, got {len(k)}")
        return k
    if not isinstance(key, str):
        raise BadArgumentError(f"key must be bytes or str, not {type(key).__name__}")
    s = key
    if s.startswith("pear://"):
        s = s[7:].split("/", 1)[0]
    if len(s) == 64:
        try:
            k = bytes.fromhex(s)
        except ValueError:
            raise BadArgumentError(f"invalid hex key {key!r}") from None
        if len(k) == 32:  # fromhex skips whitespace: "00 01…" would be short
            return k
    if len(s) == 52:
        k = z32_decode(s)
        if len(k) == 32:
            return k
    raise BadArgumentError(f"invalid key {key!r}: expected 32 bytes, 64 hex or 52 z-base-32 characters")
