"""Secret-stream framing and encryption (02-transport §4), sans-IO.

This module owns everything that happens to bytes on a secret-stream
connection, with no I/O: the ``u24le(len) || body`` frames (§4.2), the Noise
handshake frames (via ``noise.py``), the stream header ``streamId || header``
(§4.4) and the per-message ``crypto_secretstream_xchacha20poly1305`` push /
pull (§4.5), following the receiver state machine of §4.6:

    HANDSHAKE --(Noise complete: our header queued)--> HEADER
    HEADER    --(peer header checked)----------------> OPEN
    any       --(a typed error)----------------------> FAILED (sticky)

Use (h11 style)::

    st = SecretStreamState(is_initiator, key_pair)
    out = st.start()                 # initiator: frame of Noise message 1
    st.receive_data(chunk)           # b"" = the peer's EOF
    ev = st.next_event()             # NEED_DATA | HandshakeComplete | HeaderReceived
                                     # | Message | EndOfStream; raises TransportError
    out = st.data_to_send()          # handshake replies and our stream header
    frame = st.send(plaintext)       # one encrypted frame (after HandshakeComplete)

Bounded buffering: the state holds at most the bytes it was given and not yet
turned into events; a driver that calls ``receive_data`` only after
``next_event()`` returned ``NEED_DATA`` holds at most one frame (≤ 16 MiB)
plus one read.  A declared frame length above ``max_frame`` (default the u24
maximum 16 777 215) is ``BadMessageError`` at once, before its body arrives;
so is a handshake frame declared longer than ``MAX_HANDSHAKE_FRAME`` (64 KiB +
128; ``HandshakeError``) or a header frame declared other than 56 bytes
(``BadHeaderError``) — the reference would first wait for such a body.

Errors (all ``TransportError``): a bad Noise message / EOF mid-handshake →
``HandshakeError``; a header frame that is not 56 bytes or carries the wrong
stream id → ``BadHeaderError``; a data frame shorter than 17 bytes or failing
decryption → ``BadMessageError``; misuse (send before the handshake, a too
large message) → ``LocalProtocolError``.  A partial frame pending at EOF after
the handshake is discarded silently (§4.10).  Received tags are ignored: only
TAG_MESSAGE is sent, and TAG_FINAL does not end the stream (§4.5).

Empty messages: ``drop_empty=True`` (what the reference does when keep-alive
is on) skips them; otherwise they are delivered as ``Message(b"")``.

Test-only injection: ``ephemeral`` (Noise ephemeral key pair) and ``header``
(our 24-byte secretstream header, via the init_pull trick of §2.5).
"""
from __future__ import annotations

from typing import Final, NamedTuple, Union

import nacl.bindings as _nb
from nacl._sodium import ffi as _ffi, lib as _lib

from ..crypto import KeyPair, hash32, namespace
from ..errors import BadHeaderError, BadMessageError, HandshakeError, LocalProtocolError, TransportError
from .noise import HandshakeResult, NoiseHandshake

MAX_FRAME: Final = 0xFFFFFF  # u24 maximum body length
ABYTES: Final = 17  # secretstream: 1 encrypted tag byte + 16-byte MAC
HEADERBYTES: Final = 24
STREAM_ID_BYTES: Final = 32
HEADER_FRAME_BODY: Final = STREAM_ID_BYTES + HEADERBYTES  # 56
MAX_MESSAGE: Final = MAX_FRAME - ABYTES  # 16 777 198
# Noise messages are 32 / 96 / 64 bytes (+ payloads, never sent; encrypted fields are
# limited to 65535 bytes by the reference): a longer declared handshake frame fails at once.
MAX_HANDSHAKE_FRAME: Final = 65535 + 128
TAG_MESSAGE: Final = 0

NS_INITIATOR, NS_RESPONDER, NS_SEND = namespace("hyperswarm/secret-stream", 3)

_push = _lib.crypto_secretstream_xchacha20poly1305_push
_pull = _lib.crypto_secretstream_xchacha20poly1305_pull
_NULL = _ffi.NULL
_KEEP_OUT = 1 << 18  # keep a reusable decryption buffer up to 256 KiB
_alloc = _ffi.new_allocator(should_clear_after_alloc=False)  # every byte is written before use


def stream_id(handshake_hash: bytes, is_initiator: bool) -> bytes:
    """``BLAKE2b-256(NS_role, key=handshakeHash)`` (§4.4)."""
    return hash32(NS_INITIATOR if is_initiator else NS_RESPONDER, key=handshake_hash)


def u24(n: int) -> bytes:
    return bytes((n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF))


def frame(body: bytes) -> bytes:
    """``u24le(len(body)) || body``."""
    if len(body) > MAX_FRAME:
        raise LocalProtocolError(f"frame body of {len(body)} bytes exceeds {MAX_FRAME}")
    return u24(len(body)) + body


# -- events -------------------------------------------------------------------------


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


class HandshakeComplete(NamedTuple):
    """Noise finished; our stream header is in ``data_to_send()``; ``send()`` works from now on."""

    result: HandshakeResult


class HeaderReceived(NamedTuple):
    """The peer's stream header arrived and matched; its messages follow."""


class Message(NamedTuple):
    """One decrypted message (``tag`` as received; the stream ignores it)."""

    data: bytes
    tag: int = 0


class EndOfStream(NamedTuple):
    """The peer ended its side (EOF after the handshake); returned again on every later call."""


Event = Union[_NeedData, HandshakeComplete, HeaderReceived, Message, EndOfStream]

# states
HANDSHAKE: Final = "HANDSHAKE"
HEADER: Final = "HEADER"
OPEN: Final = "OPEN"
FAILED: Final = "FAILED"


class SecretStreamState:
    """One end of a secret-stream connection as a pure state machine (module docstring)."""

    def __init__(
        self,
        is_initiator: bool,
        key_pair: KeyPair | tuple[bytes, bytes] | None = None,
        *,
        drop_empty: bool = False,
        max_frame: int = MAX_FRAME,
        ephemeral: KeyPair | tuple[bytes, bytes] | None = None,
        header: bytes | None = None,
    ) -> None:
        if not 0 < max_frame <= MAX_FRAME:
            raise LocalProtocolError(f"max_frame must be in 1..{MAX_FRAME}")
        if header is not None and len(header) != HEADERBYTES:
            raise LocalProtocolError("header must be 24 bytes")
        self.is_initiator = bool(is_initiator)
        self.drop_empty = drop_empty
        self.max_frame = max_frame
        self._noise = NoiseHandshake(self.is_initiator, key_pair, ephemeral)
        self._inject_header = header
        self.state = HANDSHAKE
        self.result: HandshakeResult | None = None
        self._error: TransportError | None = None
        self._started = False
        self._eof = False
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._out = bytearray()
        self._push_state = None
        self._pull_state = None
        self._tagbuf = _ffi.new("unsigned char *")
        self._mbuf = _ffi.new("unsigned char[]", 4096)
        self._mbuf_len = 4096
        self.bytes_received = 0

    # -- read-only views -------------------------------------------------------------

    @property
    def public_key(self) -> bytes:
        return self._noise.public_key

    @property
    def remote_public_key(self) -> bytes | None:
        return None if self.result is None else self.result.remote_public_key

    @property
    def handshake_hash(self) -> bytes | None:
        return None if self.result is None else self.result.handshake_hash

    @property
    def can_send(self) -> bool:
        return self.state in (HEADER, OPEN) and self._push_state is not None

    @property
    def buffered(self) -> int:
        """Received bytes not yet turned into events."""
        return len(self._buf) - self._pos

    @property
    def error(self) -> TransportError | None:
        return self._error

    @property
    def eof(self) -> bool:
        return self._eof

    # -- input -------------------------------------------------------------------------

    def start(self) -> bytes:
        """Begin: the initiator's Noise message 1 (framed); ``b""`` for the responder."""
        if self._started:
            raise LocalProtocolError("start() called twice")
        self._started = True
        if self.is_initiator:
            self._out += frame(self._noise.send())
        return self.data_to_send()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the transport; ``b""`` means EOF."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("receive_data after EOF")
        self.bytes_received += len(data)
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        elif type(buf) is bytearray:
            if pos:
                del buf[:pos]
                self._pos = 0
            buf += data
        else:
            nb = bytearray(memoryview(buf)[pos:])
            nb += data
            self._buf = nb
            self._pos = 0

    def data_to_send(self) -> bytes:
        """Bytes produced while processing input (handshake messages, our header)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event:
        """The next event, ``NEED_DATA`` when more bytes are needed; raises the connection's error."""
        if self._error is not None:
            raise self._error
        if not self._started:
            raise LocalProtocolError("call start() first")
        try:
            while True:
                ev = self._next()
                if ev is not None:
                    return ev
        except TransportError as e:
            self._fail(e)
            raise

    def _next(self) -> Event | None:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 3:
            return self._at_end()
        n = buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16)
        if n > self.max_frame:
            raise BadMessageError(f"declared frame length {n} exceeds the limit of {self.max_frame}")
        if self.state != OPEN:
            # fail before waiting for a body that cannot be right (the reference waits for it)
            if self.state == HANDSHAKE and n > MAX_HANDSHAKE_FRAME:
                raise HandshakeError(f"Noise handshake failed: declared handshake frame of {n} bytes")
            if self.state == HEADER and n != HEADER_FRAME_BODY:
                raise BadHeaderError(f"Invalid header message received ({n} bytes, expected 56)")
        if avail < 3 + n:
            return self._at_end()
        start = pos + 3
        end = start + n
        self._pos = end
        if self.state == OPEN:
            if n < ABYTES:
                raise BadMessageError("Invalid message received (frame shorter than 17 bytes)")
            return self._decrypt(buf, start, n)
        body = bytes(buf[start:end])
        if self.state == HANDSHAKE:
            return self._on_handshake(body)
        return self._on_header(body)

    def _at_end(self) -> Event:
        if not self._eof:
            return NEED_DATA
        if self.state == HANDSHAKE:
            raise HandshakeError("Noise handshake failed: connection ended during the handshake")
        # HEADER / OPEN: a partial frame pending at EOF is discarded silently (§4.10)
        self._buf, self._pos = b"", 0
        return EndOfStream()

    def _on_handshake(self, body: bytes) -> Event | None:
        noise = self._noise
        noise.receive(body)
        if not noise.complete:
            self._out += frame(noise.send())
        if not noise.complete:
            return None
        self.result = res = noise.result
        assert res is not None
        self._setup_push(res)
        self.state = HEADER
        return HandshakeComplete(res)

    def _setup_push(self, res: HandshakeResult) -> None:
        st = _nb.crypto_secretstream_xchacha20poly1305_state()
        if self._inject_header is None:
            header = _nb.crypto_secretstream_xchacha20poly1305_init_push(st, res.tx)
        else:  # test only: init_pull(chosen header) == init_push with that random header (§2.5)
            header = self._inject_header
            _nb.crypto_secretstream_xchacha20poly1305_init_pull(st, header, res.tx)
        self._push_state = st
        self._out += frame(stream_id(res.handshake_hash, self.is_initiator) + header)

    def _on_header(self, body: bytes) -> Event:
        assert self.result is not None
        if len(body) != HEADER_FRAME_BODY:
            raise BadHeaderError(f"Invalid header message received ({len(body)} bytes, expected 56)")
        if body[:STREAM_ID_BYTES] != stream_id(self.result.handshake_hash, not self.is_initiator):
            raise BadHeaderError("Invalid header received (stream id does not match the handshake)")
        st = _nb.crypto_secretstream_xchacha20poly1305_state()
        _nb.crypto_secretstream_xchacha20poly1305_init_pull(st, body[STREAM_ID_BYTES:], self.result.rx)
        self._pull_state = st
        self.state = OPEN
        return HeaderReceived()

    def _decrypt(self, buf: bytes | bytearray, start: int, n: int) -> Event | None:
        mlen = n - ABYTES
        if mlen > self._mbuf_len:
            out = _alloc("unsigned char[]", mlen)
            if mlen <= _KEEP_OUT:
                self._mbuf, self._mbuf_len = out, mlen
        else:
            out = self._mbuf
        with _ffi.from_buffer(buf) as p:
            rc = _pull(self._pull_state.statebuf, out, _NULL, self._tagbuf, p + start, n, _NULL, 0)
        if rc != 0:
            raise BadMessageError("message failed decryption (bad MAC, replayed or reordered frame)")
        if mlen == 0:
            if self.drop_empty:
                return None
            return Message(b"", self._tagbuf[0])
        return Message(_ffi.buffer(out, mlen)[:], self._tagbuf[0])

    # -- output ------------------------------------------------------------------------

    def send(self, message: bytes | bytearray | memoryview) -> bytes:
        """One encrypted frame for ``message`` (preceded by any pending handshake output)."""
        return bytes(self.send_buffer(message))

    def send_buffer(self, message: bytes | bytearray | memoryview):
        """Like ``send`` but returns the frame as a fresh bytes-like buffer (no copy into ``bytes``)."""
        if self._error is not None:
            raise self._error
        if self._push_state is None:
            raise LocalProtocolError("cannot send before the handshake has completed")
        mlen = len(message)
        if mlen > MAX_MESSAGE:
            raise LocalProtocolError(
                f"Message is too large for an atomic write. Max size is {MAX_FRAME} bytes "
                f"({MAX_MESSAGE} bytes of plaintext)"
            )
        n = mlen + ABYTES
        out = _alloc("unsigned char[]", n + 3)
        out[0] = n & 0xFF
        out[1] = (n >> 8) & 0xFF
        out[2] = n >> 16
        with _ffi.from_buffer(message) as m:
            rc = _push(self._push_state.statebuf, out + 3, _NULL, m, mlen, _NULL, 0, TAG_MESSAGE)
        if rc != 0:  # pragma: no cover - libsodium cannot fail here
            raise LocalProtocolError("secretstream push failed")
        if self._out:
            return self.data_to_send() + _ffi.buffer(out)[:]
        return _ffi.buffer(out)

    def send_many(self, messages) -> bytearray:
        """The frames of several messages, back to back in one buffer (one write for many)."""
        if self._error is not None:
            raise self._error
        if self._push_state is None:
            raise LocalProtocolError("cannot send before the handshake has completed")
        msgs = list(messages)
        total = 0
        for m in msgs:
            if len(m) > MAX_MESSAGE:
                raise LocalProtocolError(
                    f"Message is too large for an atomic write. Max size is {MAX_FRAME} bytes "
                    f"({MAX_MESSAGE} bytes of plaintext)"
                )
            total += len(m) + ABYTES + 3
        pending = self.data_to_send()
        out = bytearray(len(pending) + total)
        out[: len(pending)] = pending
        pos = len(pending)
        st = self._push_state.statebuf
        with _ffi.from_buffer(out) as o:
            for m in msgs:
                mlen = len(m)
                n = mlen + ABYTES
                out[pos] = n & 0xFF
                out[pos + 1] = (n >> 8) & 0xFF
                out[pos + 2] = n >> 16
                with _ffi.from_buffer(m) as mp:
                    rc = _push(st, o + pos + 3, _NULL, mp, mlen, _NULL, 0, TAG_MESSAGE)
                if rc != 0:  # pragma: no cover
                    raise LocalProtocolError("secretstream push failed")
                pos += n + 3
        return out

    # -- failure -------------------------------------------------------------------------

    def _fail(self, err: TransportError) -> None:
        self._error = err
        self.state = FAILED
        self._buf, self._pos = b"", 0
        self._out.clear()
        self._push_state = self._pull_state = None

    def fail(self, err: TransportError) -> None:
        """Mark the connection failed (e.g. by the driver on a timeout); later calls raise ``err``."""
        if self._error is None:
            self._fail(err)

