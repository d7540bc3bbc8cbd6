"""protomux frame grammar and the compact-encoding 3.x primitives it uses (02-transport §1, §5.1). Pure.

This module owns the bytes of one protomux frame (one secret-stream message)
and nothing else: no channel state.  ``decode_frame`` turns a frame into one
of the frame classes below, ``encode_*`` build frames; ``iter_batch_items``
decodes a batch lazily, item by item, so that a state machine processes the
items before a bad one exactly as the reference does.

Grammar (§5.1)::

    frame   = uint channel || uint type || payload          payload: rest of the frame
    channel 0 = control:  0 batch   00 00 || uint firstChannel || item*
                          1 open    00 01 || uint ch || string protocol || optionalBuffer id || handshake
                          2 reject  00 02 || uint ch
                          3 close   00 03 || uint ch
                          4..       ignored (nothing is read)
    item    = uint len || body      len >= 1, body = uint type || payload (a control frame without
            | 00 || uint channel    its leading 00 when the current channel is 0); len 0 switches channel

Invariants and decoding rules, as the reference (protomux 3.12.1 with
compact-encoding 3.5.2) applies them:

* ``uint`` decoders accept non-minimal forms and refuse values above
  2^53-1; encoders write the shortest form.
* ``string`` decodes invalid UTF-8 with U+FFFD replacements (never fails on
  content); ``optionalBuffer`` maps ``00`` to ``None``; the 3.x ``buffer``
  maps ``00`` to ``b""`` (unlike hypercore's 2.x ``encoding.buffer``).
* A batch item whose length runs past the end of the frame is truncated to
  the frame end and processed; a control item of type 0 inside a batch is a
  nested batch, processed in place (iteratively: no recursion limit).
* An empty frame decodes to ``None`` (ignored by protomux).
* Every failure (a field running past its end, a uint above 2^53-1) raises
  ``DecodingError``; nothing else escapes the decoders.

The ``Encoding`` protocol (``encode(value) -> bytes``, ``decode(bytes) -> value``,
trailing bytes ignored) is how channels describe their handshake and message
types; ``RAW``, ``STRING``, ``UINT``, ``BUFFER``, ``OPTIONAL_BUFFER`` and ``BOOL``
are the compact-encoding ones the transport needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, TypeVar, Union

from ..encoding import Reader, uint as _put_uint
from ..errors import BadArgumentError, DecodingError

MAX_SAFE_INTEGER = 2**53 - 1

CONTROL_BATCH = 0
CONTROL_OPEN = 1
CONTROL_REJECT = 2
CONTROL_CLOSE = 3


# -- primitives (§1, compact-encoding 3.x) ---------------------------------------------------


class MuxReader(Reader):
    """``encoding.Reader`` with compact-encoding 3.x rules: uint <= 2^53-1, lenient UTF-8, 3.x buffers."""

    __slots__ = ()

    def uint(self) -> int:
        n = super().uint()
        if n > MAX_SAFE_INTEGER:
            raise DecodingError(f"uint must be between 0 and {MAX_SAFE_INTEGER}, use biguint")
        return n

    def string(self) -> str:
        n = self.uint()
        return self._take(n).decode("utf-8", "replace")

    def buffer(self) -> bytes:  # type: ignore[override]  # 3.x: 00 is an empty buffer, never None
        return self._take(self.uint())

    def optional_buffer(self) -> bytes | None:
        n = self.uint()
        return None if n == 0 else self._take(n)


def put_uint(out: bytearray, n: int) -> None:
    """Append compact ``uint(n)``; refuses negative values and values above 2^53-1."""
    if not isinstance(n, int) or n < 0 or n > MAX_SAFE_INTEGER:
        raise BadArgumentError(f"uint must be between 0 and {MAX_SAFE_INTEGER}, got {n!r}")
    _put_uint(out, n)


def put_string(out: bytearray, s: str) -> None:
    b = s.encode("utf-8")
    put_uint(out, len(b))
    out += b


def put_buffer(out: bytearray, b: bytes) -> None:
    """compact-encoding 3.x ``buffer``: ``uint(len) || bytes``; ``None`` cannot be encoded."""
    if b is None:
        raise BadArgumentError("a 3.x buffer cannot encode None (use optional_buffer)")
    put_uint(out, len(b))
    out += b


def put_optional_buffer(out: bytearray, b: bytes | None) -> None:
    """compact-encoding 3.x ``optionalBuffer``: None and empty both ``00``."""
    if not b:
        out.append(0)
        return
    put_uint(out, len(b))
    out += b


# -- value encodings for handshakes and message types ----------------------------------------

T = TypeVar("T")


class Encoding(Protocol[T]):
    """How a channel handshake or message type turns values into payload bytes and back.

    ``decode`` reads its fields from the start of ``data`` and ignores whatever
    follows; it raises ``DecodingError`` when ``data`` is too short or invalid.
    """

    def encode(self, value: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...


class _Raw:
    """``c.raw``: the bytes as they are."""

    def encode(self, value: bytes) -> bytes:
        return bytes(value)

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


class _String:
    """``c.string``: ``uint(byteLength) || UTF-8``."""

    def encode(self, value: str) -> bytes:
        out = bytearray()
        put_string(out, value)
        return bytes(out)

    def decode(self, data: bytes) -> str:
        return MuxReader(data).string()


class _Uint:
    """``c.uint``."""

    def encode(self, value: int) -> bytes:
        out = bytearray()
        put_uint(out, value)
        return bytes(out)

    def decode(self, data: bytes) -> int:
        return MuxReader(data).uint()


class _Buffer:
    """``c.buffer`` (3.x): ``00`` decodes to ``b""``."""

    def encode(self, value: bytes) -> bytes:
        out = bytearray()
        put_buffer(out, value)
        return bytes(out)

    def decode(self, data: bytes) -> bytes:
        return MuxReader(data).buffer()


class _OptionalBuffer:
    """``c.optionalBuffer``: ``00`` decodes to ``None``."""

    def encode(self, value: bytes | None) -> bytes:
        out = bytearray()
        put_optional_buffer(out, value)
        return bytes(out)

    def decode(self, data: bytes) -> bytes | None:
        return MuxReader(data).optional_buffer()


class _Bool:
    """``c.bool``: true iff the byte is exactly ``01``."""

    def encode(self, value: bool) -> bytes:
        return b"\x01" if value else b"\x00"

    def decode(self, data: bytes) -> bool:
        return MuxReader(data).bool()


RAW: Encoding[bytes] = _Raw()
STRING: Encoding[str] = _String()
UINT: Encoding[int] = _Uint()
BUFFER: Encoding[bytes] = _Buffer()
OPTIONAL_BUFFER: Encoding[bytes | None] = _OptionalBuffer()
BOOL: Encoding[bool] = _Bool()


# -- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A message on the sender's channel number ``channel`` (never 0)."""

    channel: int
    type: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Open:
    """``00 01``: the opener's number, protocol name, optional id (``None`` = none) and raw handshake."""

    channel: int
    protocol: str
    id: bytes | None
    handshake: bytes = b""


@dataclass(frozen=True, slots=True)
class Reject:
    """``00 02``: the number the *opener* used in the rejected open."""

    channel: int


@dataclass(frozen=True, slots=True)
class Close:
    """``00 03``: the *closer's* own channel number."""

    channel: int


@dataclass(frozen=True, slots=True)
class UnknownControl:
    """A control frame of type >= 4 (ignored by protomux; nothing after the type is read)."""

    type: int


Item = Union[Message, Open, Reject, Close, UnknownControl]


@dataclass(frozen=True, slots=True)
class Batch:
    """``00 00``: items processed in order as if they were separate frames (nested batches flattened)."""

    items: tuple[Item, ...]


Frame = Union[Message, Open, Reject, Close, UnknownControl, Batch]


def _control(ctype: int, r: MuxReader) -> Item:
    """Decode the control frame body after its type (the batch type is handled by the callers)."""
    if ctype == CONTROL_OPEN:
        ch = r.uint()
        protocol = r.string()
        cid = r.optional_buffer()
        return Open(ch, protocol, cid, r.raw())
    if ctype == CONTROL_REJECT:
        return Reject(r.uint())
    if ctype == CONTROL_CLOSE:
        return Close(r.uint())
    return UnknownControl(ctype)


def iter_batch_items(data: bytes | memoryview, start: int, end: int | None = None) -> Iterator[Item]:
    """Items of a batch body ``data[start:end]`` (after ``00 00``), decoded one at a time.

    A ``DecodingError`` is raised when the bad item is reached, after the
    good ones before it have been yielded.  Nested batches are expanded in place.
    """
    # A stack of (reader, current channel) so nested batches need no recursion.
    r = MuxReader(data, start, end)
    stack: list[tuple[MuxReader, int]] = [(r, r.uint())]
    while stack:
        r, channel = stack[-1]
        if r.pos >= r.end:
            stack.pop()
            continue
        n = r.uint()
        if n == 0:
            stack[-1] = (r, r.uint())
            continue
        item_end = min(r.pos + n, r.end)  # the reference truncates an overlong item
        sub = MuxReader(data, r.pos, item_end)
        r.pos = item_end
        if channel != 0:
            yield Message(channel, sub.uint(), sub.raw())
            continue
        ctype = sub.uint()
        if ctype == CONTROL_BATCH:
            stack.append((sub, sub.uint()))
            continue
        yield _control(ctype, sub)


def decode_frame(data: bytes | memoryview) -> Frame | None:
    """Decode one whole frame; ``None`` for an empty frame.  Raises ``DecodingError``."""
    if len(data) == 0:
        return None
    r = MuxReader(data)
    channel = r.uint()
    mtype = r.uint()
    if channel != 0:
        return Message(channel, mtype, r.raw())
    if mtype == CONTROL_BATCH:
        return Batch(tuple(iter_batch_items(data, r.pos)))
    return _control(mtype, r)


# -- encoders ----------------------------------------------------------------------------------


def encode_message(channel: int, mtype: int, payload: bytes) -> bytes:
    if channel == 0:
        raise BadArgumentError("a message cannot use channel 0 (the control channel)")
    out = bytearray()
    put_uint(out, channel)
    put_uint(out, mtype)
    out += payload
    return bytes(out)


def encode_open(channel: int, protocol: str, id: bytes | None, handshake: bytes = b"") -> bytes:
    out = bytearray(b"\x00\x01")
    put_uint(out, channel)
    put_string(out, protocol)
    put_optional_buffer(out, id)
    out += handshake
    return bytes(out)


def encode_reject(channel: int) -> bytes:
    out = bytearray(b"\x00\x02")
    put_uint(out, channel)
    return bytes(out)


def encode_close(channel: int) -> bytes:
    out = bytearray(b"\x00\x03")
    put_uint(out, channel)
    return bytes(out)


def batch_body(frame: bytes) -> tuple[int, bytes]:
    """Split an encoded non-batch frame into (channel, item body) for a batch.

    A message ``uint ch || uint type || payload`` gives ``(ch, uint type || payload)``;
    a control frame ``00 || type || ...`` gives ``(0, type || ...)``.
    """
    r = MuxReader(frame)
    ch = r.uint()
    return ch, bytes(frame[r.pos :])


def encode_batch(items: list[tuple[int, bytes]]) -> bytes:
    """A batch frame of ``(channel, body)`` items, consecutive items on one channel sharing its header."""
    if not items:
        raise BadArgumentError("a batch needs at least one item")
    out = bytearray(b"\x00\x00")
    prev = items[0][0]
    put_uint(out, prev)
    for ch, body in items:
        if not body:
            raise BadArgumentError("a batch item cannot be empty")
        if ch != prev:
            out.append(0)
            put_uint(out, ch)
            prev = ch
        put_buffer(out, body)
    return bytes(out)


def encode_frame(frame: Frame) -> bytes:
    """Encode any frame object (the inverse of ``decode_frame`` for well-formed frames)."""
    if isinstance(frame, Message):
        return encode_message(frame.channel, frame.type, frame.payload)
    if isinstance(frame, Open):
        return encode_open(frame.channel, frame.protocol, frame.id, frame.handshake)
    if isinstance(frame, Reject):
        return encode_reject(frame.channel)
    if isinstance(frame, Close):
        return encode_close(frame.channel)
    if isinstance(frame, UnknownControl):
        out = bytearray(b"\x00")
        put_uint(out, frame.type)
        return bytes(out)
    if isinstance(frame, Batch):
        return encode_batch([batch_body(encode_frame(item)) for item in frame.items])
    raise BadArgumentError(f"not a protomux frame: {frame!r}")


__all__ = [
    "MAX_SAFE_INTEGER", "MuxReader", "Encoding", "RAW", "STRING", "UINT", "BUFFER", "OPTIONAL_BUFFER", "BOOL",
    "Message", "Open", "Reject", "Close", "UnknownControl", "Batch", "Item", "Frame",
    "decode_frame", "iter_batch_items", "encode_message", "encode_open", "encode_reject", "encode_close",
    "encode_batch", "encode_frame", "batch_body", "put_uint", "put_string", "put_buffer", "put_optional_buffer",
]
