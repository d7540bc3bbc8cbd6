"""The oplog file (01-core §7.2–7.7, §7.14, §7.16): two header slots, then CRC frames.

``parse`` is pure: it takes the file's bytes and returns the active header, the
entries that extend it and how far they reach, or raises ``OplogCorruptError``
for anything but a torn tail.  ``OplogWriter`` appends entry frames and writes
headers into the inactive slot, leaving the rest of the slot untouched.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import DecodingError, OplogCorruptError
from .messages import Entry, Header, decode_entry, decode_header, encode_entry, encode_external_pointer, encode_header

SLOT_SIZE = 4096
ENTRIES_START = 8192
MAX_HEADER_FRAME = SLOT_SIZE
_U32 = struct.Struct("<I")
_HDR = struct.Struct("<II")


def frame(payload: bytes, header_bit: int, partial: bool = False) -> bytes:
    word = _U32.pack((len(payload) << 2) | (2 if partial else 0) | (header_bit & 1))
    return _U32.pack(zlib.crc32(word + payload)) + word + payload


@dataclass
class Frame:
    payload: bytes
    header_bit: int
    partial: bool
    end: int


def read_frame(buf: bytes, pos: int, end: int) -> Frame | None:
    """The CRC-valid frame at ``pos`` (bounded by ``end``), or None."""
    if pos + 8 > end:
        return None
    crc, word = _HDR.unpack_from(buf, pos)
    n = word >> 2
    stop = pos + 8 + n
    if stop > end:
        return None
    if zlib.crc32(memoryview(buf)[pos + 4 : stop]) != crc:
        return None
    return Frame(bytes(buf[pos + 8 : stop]), word & 1, bool(word & 2), stop)


@dataclass
class OplogState:
    header: Header            # may be an external pointer (header.external set)
    bits: list[int]           # header bits of slot 0 and 1 as the writer tracks them
    entries: list[Entry]
    entries_end: int          # 8192 + size of the kept entries
    file_size: int
    torn_tail: bool           # bytes after entries_end to drop (torn append or stale entries)
    slot_valid: tuple[bool, bool]


def _slot(buf: bytes, i: int) -> tuple[Header, int] | None:
    f = read_frame(buf, i * SLOT_SIZE, len(buf))
    if f is None:
        return None
    try:
        return decode_header(f.payload), f.header_bit
    except DecodingError:
        return None


def parse(buf: bytes, path: str = "oplog") -> OplogState | None:
    """Parse a whole oplog.  None means "no core here" (no valid slot, file < 8192 bytes)."""
    size = len(buf)
    h0 = _slot(buf, 0)
    h1 = _slot(buf, 1)
    if h0 is None and h1 is None:
        if size >= ENTRIES_START:
            raise OplogCorruptError("Oplog file appears corrupt or out of date: no valid header slot",
                                    path=path, offset=0)
        return None
    if h0 and h1:
        bits = [h0[1], h1[1]]
    elif h0:
        bits = [h0[1], h0[1]]
    else:
        bits = [(h1[1] + 1) & 1, h1[1]]
    active = (bits[0] + bits[1]) & 1
    header = (h0 if active == 0 else h1)[0]
    entries: list[Entry] = []
    pending: list[Entry] = []
    pos = ENTRIES_START
    kept_end = pos
    torn = False
    while pos < size:
        f = read_frame(buf, pos, size)
        entry = None
        if f is not None:
            try:
                entry = decode_entry(f.payload)
            except DecodingError:
                entry = None
        if entry is None:
            # An invalid frame: a torn tail, or damage in the middle of the log.
            declared = _HDR.unpack_from(buf, pos)[1] >> 2 if pos + 8 <= size else 0
            if pos + 8 > size or pos + 8 + declared >= size or not any(memoryview(buf)[pos:]):
                torn = True
                break
            raise OplogCorruptError("entry fails its checksum in the middle of the oplog", path=path, offset=pos)
        if f.header_bit != active:
            if h0 and h1:
                torn = True  # stale entries of a flush interrupted before its truncation (§7.14)
                break
            raise OplogCorruptError("active header slot damaged: entries belong to a lost header",
                                    path=path, offset=pos)
        pending.append(entry)
        pos = f.end
        if not f.partial:
            entries.extend(pending)
            pending.clear()
            kept_end = pos
    if pending:
        torn = True
    return OplogState(header=header, bits=bits, entries=entries, entries_end=kept_end, file_size=size,
                      torn_tail=torn or kept_end != size, slot_valid=(h0 is not None, h1 is not None))


class OplogWriter:
    """Appends entries and flushes headers (§7.7).  ``header_file`` is for external headers."""

    def __init__(self, f, bits: list[int] | None = None, entries_end: int = ENTRIES_START,
                 external: tuple[int, int] | None = None) -> None:
        self.file = f
        self.bits = list(bits) if bits is not None else [1, 0]
        self.entries_end = entries_end
        self.external = external  # location of the current external header copy, once used

    @property
    def active_bit(self) -> int:
        return (self.bits[0] + self.bits[1]) & 1

    @property
    def entries_size(self) -> int:
        return self.entries_end - ENTRIES_START

    def append(self, entry: Entry) -> None:
        self.append_payload(encode_entry(entry))

    def append_payload(self, payload: bytes) -> None:
        fr = frame(payload, self.active_bit)
        self.file.write(self.entries_end, fr)
        self.entries_end += len(fr)

    def write_header(self, header: Header, header_file=None) -> None:
        payload = encode_header(header)
        if self.external is not None or 8 + len(payload) > MAX_HEADER_FRAME:
            if callable(header_file):  # opened only when an external header is needed
                header_file = header_file()
            if header_file is None:
                raise OplogCorruptError("header too large and no header file")
            prev_start, prev_len = self.external or (0, 0)
            if len(payload) <= prev_start:
                start = 0
            else:
                start = -(-(prev_start + prev_len) // SLOT_SIZE) * SLOT_SIZE
            header_file.write(start, payload)
            self.external = (start, len(payload))
            payload = encode_external_pointer(start, len(payload))
        i = 1 if self.bits[0] == self.bits[1] else 0
        bit = (self.bits[i] + 1) & 1
        self.file.write(i * SLOT_SIZE, frame(payload, bit))
        self.file.truncate(ENTRIES_START)
        self.bits[i] = bit
        self.entries_end = ENTRIES_START
