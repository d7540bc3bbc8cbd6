"""protomux channel state machine (02-transport §5), sans-IO.

This module owns the channel state of one protomux connection: channel
numbers, pairing of opens, buffering for pending opens, cork/uncork batching,
close and stream end, and the fatal/ignored classification of bad input.  It
does no I/O: messages (each one secret-stream message = one protomux frame)
go in through ``receive_message``, events come out as return values, and the
frames to write are collected in an outbox drained by ``data_to_send()`` (the
hyper-h2 pattern).  The trio driver is ``protomux_driver.Protomux``; the frame
bytes are ``protomux_codec``.

Usage::

    mux = MuxConnection()
    mux.register_pair("echo")                       # we answer peer opens of "echo" (any id)
    ch = ChannelState("echo", id=b"...", handshake_encoding=STRING, message_encodings=[STRING, UINT])
    events = mux.open(ch, "hello")                  # queues the open frame
    mux.send(ch, 0, "hi")                           # may be sent before the peer's open arrives
    for frame in mux.data_to_send(): await stream.send(frame)
    events = mux.receive_message(await stream.receive())
    # -> ChannelOpened / MessageReceived / ChannelClosed / PairRequest
    # A PairRequest(protocol, id) is answered by opening a channel for that key
    # (it pairs with the pending peer open) and then, in any case, by calling
    # mux.pair_request_done(request): still unpaired opens of that key are rejected.

Events: ``ChannelOpened(channel, handshake)`` (the peer's decoded handshake),
``MessageReceived(channel, type, message)`` (decoded with the type's
encoding), ``ChannelClosed(channel, is_remote, rejected)``, ``PairRequest``.
Events are returned by ``receive_message``, ``open`` (when it pairs with a
pending peer open: the open plus the messages buffered for it), ``close``
(the local close), and ``close_all`` (stream end: every channel, is_remote=True).

Invariants (§5.2, §5.3, §5.9):

* Own numbers start at 1; a freed number is reused last-freed-first (LIFO),
  as the reference does (vector step ``reopen-reuses-id``).  A number is
  freed when a paired channel closes (either side), or when the peer rejects
  our open.  A channel closed while its open is unanswered keeps its number
  and its FIFO place in the waiting list of its key until the peer's open or
  reject for it arrives; if the peer's open arrives we send ``close`` again
  and free the number (R1).
* A peer open must use exactly the next number above the peer's highest or a
  number whose slot is free again; anything else, and number 0, is fatal.
* A peer open pairs with the first waiting local channel of its key
  (protocol, id; no id and empty id are one key; aliases of a waiting channel
  count).  Otherwise it is pending: messages for it are buffered (counted as
  512 + payload bytes, ``buffered_bytes``), and it is offered through a
  ``PairRequest`` when a handler is registered for (protocol, id) or for
  (protocol, any id); without a handler it is rejected at once.  When the
  pending opens of a key have no outstanding ``PairRequest`` left, they are
  rejected.  A peer ``close`` of a pending open drops it and answers
  ``reject`` (R2).
* Frames leave in the order they were produced.  While corked (``cork()``
  count > 0) every frame, control frames included, joins one batch that
  ``uncork()`` writes (flushed early at 8 MiB).  A received batch of several
  items corks the machine until the next ``data_to_send()``, so replies made
  while handling its events leave as one batch.
* Fatal input (§5.8) raises ``RemoteProtocolError`` (with the reason) and
  leaves the machine failed: the caller must destroy the connection and may
  call ``close_all()`` for the close events.  Events of the frame that
  failed are discarded.  Ignored input: empty frames, messages for unknown or
  closed channel numbers, message types the channel does not define, closes
  for unknown numbers, control types >= 4.
* Local misuse (sending before ``open``, a second open of a unique key,
  opening after the stream ended, an undefined message type) raises
  ``LocalProtocolError`` and changes nothing.
"""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence, Union

from ..errors import DecodingError, LocalProtocolError, RemoteProtocolError
from .protomux_codec import (
    CONTROL_BATCH,
    CONTROL_CLOSE,
    CONTROL_OPEN,
    CONTROL_REJECT,
    Close,
    Encoding,
    Item,
    Message,
    MuxReader,
    Open,
    Reject,
    UnknownControl,
    encode_batch,
    encode_close,
    encode_open,
    encode_reject,
    iter_batch_items,
    put_uint,
)

MAX_BATCH = 8 * 1024 * 1024  # a batch is flushed early once it holds this many bytes
BUFFER_OVERHEAD = 512  # per buffered message, as the reference counts it

ChannelKey = tuple[str, bytes]  # (protocol, id); no id is b""


def channel_key(protocol: str, id: bytes | None) -> ChannelKey:
    return (protocol, bytes(id) if id else b"")


_DECODE_ERRORS = (ValueError, IndexError, struct.error)  # DecodingError is a ValueError


class ChannelState:
    """One local channel: its key, encodings and numbers.  Built by the caller, opened with ``MuxConnection.open``.

    ``local_id`` is our number (0 until opened), ``remote_id`` the peer's (0
    until paired).  ``opened`` becomes true when paired, ``closed`` when
    closed by either side or by the stream ending.  ``message_encodings[t]``
    is the encoding of message type ``t`` (``None``: a reserved type whose
    messages are ignored).  ``user_data`` is free for the driver.
    """

    __slots__ = (
        "protocol", "id", "aliases", "handshake_encoding", "message_encodings", "unique",
        "local_id", "remote_id", "opened", "closed", "remote_handshake", "user_data",
    )

    def __init__(
        self,
        protocol: str,
        id: bytes | None = None,
        *,
        aliases: Sequence[str] = (),
        handshake_encoding: Encoding[Any] | None = None,
        message_encodings: Sequence[Encoding[Any] | None] = (),
        unique: bool = True,
        user_data: Any = None,
    ) -> None:
        if not isinstance(protocol, str):
            raise LocalProtocolError(f"protocol must be a str, not {type(protocol).__name__}")
        if id is not None and not isinstance(id, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"channel id must be bytes or None, not {type(id).__name__}")
        self.protocol = protocol
        self.id: bytes | None = bytes(id) if id else None
        self.aliases = tuple(aliases)
        self.handshake_encoding = handshake_encoding
        self.message_encodings = list(message_encodings)
        self.unique = unique
        self.local_id = 0
        self.remote_id = 0
        self.opened = False
        self.closed = False
        self.remote_handshake: Any = None
        self.user_data = user_data

    @property
    def key(self) -> ChannelKey:
        return channel_key(self.protocol, self.id)

    def keys(self) -> list[ChannelKey]:
        """The primary key first, then one per alias."""
        return [self.key] + [channel_key(a, self.id) for a in self.aliases]

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self.opened else "waiting" if self.local_id else "new"
        ident = self.id.hex()[:16] if self.id else "-"
        return f"<ChannelState {self.protocol!r} id={ident} local={self.local_id} remote={self.remote_id} {state}>"


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    """The peer's open paired with ``channel``; ``handshake`` is its handshake, decoded (None without encoding)."""

    channel: ChannelState
    handshake: Any


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message of a type the channel defines, decoded with that type's encoding."""

    channel: ChannelState
    type: int
    message: Any


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """``channel`` closed: by us (``is_remote`` false), the peer, its reject (``rejected``), or the stream's end."""

    channel: ChannelState
    is_remote: bool
    rejected: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class PairRequest:
    """The peer opened (protocol, id) and a handler is registered for it; answer with ``pair_request_done``."""

    protocol: str
    id: bytes | None
    key: ChannelKey = field(repr=False)


Event = Union[ChannelOpened, MessageReceived, ChannelClosed, PairRequest]


class _Remote:
    """A peer number in use: a pending open (``channel`` None, messages buffered) or a paired channel."""

    __slots__ = ("key", "handshake", "pending", "channel")

    def __init__(self, key: ChannelKey, handshake: bytes) -> None:
        self.key = key
        self.handshake = handshake
        self.pending: list[tuple[int, bytes]] = []
        self.channel: ChannelState | None = None


class MuxConnection:
    """The protomux state machine of one connection (see the module docstring)."""

    def __init__(self) -> None:
        self._local: list[ChannelState | None] = []  # index = our number - 1
        self._free: list[int] = []  # freed indexes, LIFO
        self._remote: list[_Remote | None] = []  # index = peer number - 1
        self._waiting: dict[ChannelKey, deque[int]] = {}  # our numbers waiting for the peer's open
        self._waiting_keys: dict[int, list[ChannelKey]] = {}  # our waiting number -> its keys
        self._incoming: dict[ChannelKey, deque[int]] = {}  # pending peer numbers, FIFO
        self._pairing: dict[ChannelKey, int] = {}  # outstanding PairRequests per key
        self._handlers: set[tuple[str, bytes | None]] = set()  # (protocol, id or None = any id)
        self._open_count: dict[ChannelKey, int] = {}
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._corked = 0
        self._batch: list[tuple[int, bytes]] = []
        self._batch_size = 0
        self._auto_corked = False
        self._buffered = 0
        self._ended = False
        self.error: RemoteProtocolError | None = None

    # -- introspection ---------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for pending peer opens (512 per message + payload)."""
        return self._buffered

    @property
    def outbox_bytes(self) -> int:
        return self._outbox_bytes

    @property
    def corked(self) -> int:
        return self._corked

    @property
    def ended(self) -> bool:
        """True after ``close_all()`` or a fatal error: nothing can be opened or sent any more."""
        return self._ended or self.error is not None

    def channels(self) -> Iterator[ChannelState]:
        """Open and waiting local channels, by number."""
        return (c for c in self._local if c is not None)

    def is_open(self, protocol: str, id: bytes | None = None) -> bool:
        """True while a local channel of this key is open or waiting (the ``unique`` check)."""
        return self._open_count.get(channel_key(protocol, id), 0) > 0

    # -- pairing handlers ------------------------------------------------------------------

    def register_pair(self, protocol: str, id: bytes | None = None) -> None:
        """Offer peer opens of (protocol, id) as ``PairRequest``s; ``id`` None (or empty) matches any id and no id."""
        self._handlers.add((protocol, bytes(id) if id else None))

    def unregister_pair(self, protocol: str, id: bytes | None = None) -> None:
        self._handlers.discard((protocol, bytes(id) if id else None))

    def _has_handler(self, protocol: str, id: bytes | None) -> bool:
        return (id is not None and (protocol, id) in self._handlers) or (protocol, None) in self._handlers

    def pair_request_done(self, request: PairRequest) -> None:
        """The handler of ``request`` has finished; rejects the key's still unpaired opens if no other is running."""
        n = self._pairing.get(request.key, 0) - 1
        if n > 0:
            self._pairing[request.key] = n
            return
        self._pairing.pop(request.key, None)
        if self.ended:
            return
        for rid in self._incoming.pop(request.key, ()):
            self._reject_remote(rid)

    # -- local operations ------------------------------------------------------------------

    def open(self, channel: ChannelState, handshake: Any = None) -> list[Event]:
        """Send ``channel``'s open (with ``handshake`` encoded by its handshake encoding).

        Pairs at once with a pending peer open of its key (or an alias),
        returning ``ChannelOpened`` and the messages buffered for it; otherwise
        the channel waits for the peer's open.  Raises ``LocalProtocolError``
        when the channel was opened before, when ``unique`` and a channel of
        the key is open, or after the stream ended; ``RemoteProtocolError``
        (fatal) when the pending peer open's handshake cannot be decoded.
        """
        if self.ended:
            raise LocalProtocolError("the protomux connection has ended")
        if channel.local_id or channel.closed:
            raise LocalProtocolError(f"{channel!r} was opened before")
        key = channel.key
        if channel.unique and self._open_count.get(key, 0) > 0:
            raise LocalProtocolError(f"a channel {channel.protocol!r} with this id is already open")
        hs = b""
        if channel.handshake_encoding is not None:
            hs = channel.handshake_encoding.encode(handshake)
        if self._free:
            index = self._free.pop()
        else:
            index = len(self._local)
            self._local.append(None)
        self._local[index] = channel
        channel.local_id = index + 1
        self._open_count[key] = self._open_count.get(key, 0) + 1
        self._write(0, encode_open(channel.local_id, channel.protocol, channel.id, hs)[1:])

        for k in channel.keys():
            q = self._incoming.get(k)
            while q:
                rid = q.popleft()
                if not q:
                    del self._incoming[k]
                r = self._remote[rid - 1] if rid <= len(self._remote) else None
                if r is None or r.channel is not None:
                    continue
                try:
                    return self._pair(channel, rid, r)
                except RemoteProtocolError as e:
                    self.error = e
                    raise
        for k in channel.keys():
            self._waiting.setdefault(k, deque()).append(channel.local_id)
        self._waiting_keys[channel.local_id] = channel.keys()
        return []

    def send(self, channel: ChannelState, type: int, message: Any) -> bool:
        """Queue a message of ``type`` on ``channel``; False (nothing sent) when the channel is closed.

        Allowed as soon as the open was sent.  Raises ``LocalProtocolError`` for
        a channel never opened or a type it does not define.
        """
        if channel.closed or self.ended:
            return False
        if not channel.local_id:
            raise LocalProtocolError(f"send on {channel!r} before open()")
        if not 0 <= type < len(channel.message_encodings) or channel.message_encodings[type] is None:
            raise LocalProtocolError(f"message type {type} is not defined on channel {channel.protocol!r}")
        enc = channel.message_encodings[type]
        body = bytearray()
        put_uint(body, type)
        body += enc.encode(message)  # type: ignore[union-attr]
        self._write(channel.local_id, bytes(body))
        return True

    def close(self, channel: ChannelState) -> list[Event]:
        """Send ``close`` for ``channel`` and close it locally (``ChannelClosed``, is_remote false).  Idempotent."""
        if channel.closed:
            return []
        if not channel.local_id or self.ended:
            channel.closed = True
            return [ChannelClosed(channel, False)]
        local_id = channel.local_id
        ev = self._close_channel(channel, False)
        self._write(0, encode_close(local_id)[1:])
        return [ev]

    def cork(self) -> None:
        """Start (or nest) batching: frames are held until the matching ``uncork()``."""
        self._corked += 1

    def uncork(self) -> None:
        """End one ``cork()``; at zero the held frames become one batch frame in the outbox."""
        if self._corked == 0:
            raise LocalProtocolError("uncork() without cork()")
        self._corked -= 1
        if self._corked == 0:
            self._flush_batch()

    def flush(self) -> None:
        """Drop every cork (ours and the application's) and move the held batch to the outbox.  Used before ending."""
        self._auto_corked = False
        self._corked = 0
        self._flush_batch()

    def data_to_send(self) -> list[bytes]:
        """The frames to write, in order (each one secret-stream message); empties the outbox.

        Releases the cork taken for a received multi-item batch first, so its
        replies leave as one batch.
        """
        if self._auto_corked:
            self._auto_corked = False
            self.uncork()
        out = self._outbox
        self._outbox = []
        self._outbox_bytes = 0
        return out

    def close_all(self) -> list[Event]:
        """The stream ended or was destroyed: every channel closes locally (is_remote true), nothing is sent."""
        self._ended = True
        events: list[Event] = []
        for ch in self._local:
            if ch is not None and not ch.closed:
                events.append(self._close_channel(ch, True))
        self._local = []
        self._remote = []
        self._incoming.clear()
        self._waiting.clear()
        self._waiting_keys.clear()
        self._buffered = 0
        self._batch = []
        self._batch_size = 0
        self._corked = 0
        self._auto_corked = False
        return events

    # -- receiving -------------------------------------------------------------------------

    def receive_message(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Process one received frame; returns the events, raises ``RemoteProtocolError`` when fatal."""
        if self.error is not None:
            raise LocalProtocolError("the protomux connection failed") from self.error
        if self._ended or len(data) == 0:
            return []
        data = bytes(data)
        events: list[Event] = []
        try:
            r = MuxReader(data)
            channel = r.uint()
            mtype = r.uint()
            if channel != 0:
                self._on_message(channel, mtype, data[r.pos :], events)
            elif mtype == CONTROL_BATCH:
                self._on_batch(data, r.pos, events)
            else:
                ctl = self._decode_control(mtype, r)
                self._on_control(ctl, events)
        except RemoteProtocolError as e:
            self.error = e
            raise
        except DecodingError as e:
            self.error = RemoteProtocolError(f"malformed frame: {e.message or e}")
            raise self.error from e
        return events

    @staticmethod
    def _decode_control(mtype: int, r: MuxReader) -> Item:
        if mtype == CONTROL_OPEN:
            return Open(r.uint(), r.string(), r.optional_buffer(), r.raw())
        if mtype == CONTROL_REJECT:
            return Reject(r.uint())
        if mtype == CONTROL_CLOSE:
            return Close(r.uint())
        return UnknownControl(mtype)

    def _on_batch(self, data: bytes, pos: int, events: list[Event]) -> None:
        items: list[Item] = []
        error: DecodingError | None = None
        try:
            for item in iter_batch_items(data, pos):
                items.append(item)
        except DecodingError as e:
            error = e  # raised after the good items before it were processed, as the reference does
        if len(items) + (error is not None) > 1 and not self._auto_corked:
            self._auto_corked = True
            self.cork()
        for item in items:
            if isinstance(item, Message):
                self._on_message(item.channel, item.type, item.payload, events)
            else:
                self._on_control(item, events)
        if error is not None:
            raise error

    def _on_control(self, ctl: Item, events: list[Event]) -> None:
        if isinstance(ctl, Open):
            self._on_open(ctl, events)
        elif isinstance(ctl, Reject):
            self._on_reject(ctl.channel, events)
        elif isinstance(ctl, Close):
            self._on_close(ctl.channel, events)
        # UnknownControl: ignored (§5.8)

    def _on_message(self, rid: int, mtype: int, payload: bytes, events: list[Event]) -> None:
        r = self._remote[rid - 1] if 0 < rid <= len(self._remote) else None
        if r is None:
            return  # never opened or already closed: ignored
        if r.channel is None:
            r.pending.append((mtype, payload))
            self._buffered += BUFFER_OVERHEAD + len(payload)
            return
        self._deliver(r.channel, mtype, payload, events)

    def _deliver(self, channel: ChannelState, mtype: int, payload: bytes, events: list[Event]) -> None:
        encs = channel.message_encodings
        if mtype >= len(encs) or encs[mtype] is None:
            return  # a type the channel does not define: ignored
        try:
            value = encs[mtype].decode(payload)  # type: ignore[union-attr]
        except _DECODE_ERRORS as e:
            raise RemoteProtocolError(
                f"message type {mtype} on channel {channel.protocol!r} cannot be decoded: {e}"
            ) from e
        events.append(MessageReceived(channel, mtype, value))

    def _on_open(self, op: Open, events: list[Event]) -> None:
        rid = op.channel
        if rid == 0:
            raise RemoteProtocolError("Invalid open message: channel number 0")
        if rid == len(self._remote) + 1:
            self._remote.append(None)
        if rid > len(self._remote) or self._remote[rid - 1] is not None:
            raise RemoteProtocolError(
                f"Invalid open message: channel number {rid} is "
                + ("in use" if rid <= len(self._remote) else f"out of order (expected <= {len(self._remote) + 1})")
            )
        key = channel_key(op.protocol, op.id)
        waiting = self._waiting.get(key)
        if waiting:
            local_id = waiting[0]
            self._unwait(local_id)
            channel = self._local[local_id - 1]
            if channel is None:
                # R1: we closed this channel before the peer answered; it now holds a
                # channel paired with our stale open.  Close it again, then free the number.
                self._write(0, encode_close(local_id)[1:])
                self._free.append(local_id - 1)
                return
            r = _Remote(key, op.handshake)
            self._remote[rid - 1] = r
            events.extend(self._pair(channel, rid, r))
            return
        r = _Remote(key, op.handshake)
        self._remote[rid - 1] = r
        self._incoming.setdefault(key, deque()).append(rid)
        request = PairRequest(op.protocol, op.id, key)
        self._pairing[key] = self._pairing.get(key, 0) + 1
        if self._has_handler(op.protocol, op.id):
            events.append(request)
        else:
            self.pair_request_done(request)  # no handler: rejected now (unless a handler call is running)

    def _on_reject(self, local_id: int, events: list[Event]) -> None:
        if local_id not in self._waiting_keys:
            raise RemoteProtocolError(f"Invalid reject message: channel number {local_id} is not waiting for an answer")
        self._unwait(local_id)
        channel = self._local[local_id - 1]
        self._free.append(local_id - 1)
        if channel is not None:
            events.append(self._close_channel(channel, True, rejected=True))

    def _on_close(self, rid: int, events: list[Event]) -> None:
        r = self._remote[rid - 1] if 0 < rid <= len(self._remote) else None
        if r is None:
            return  # unknown or closed number: ignored
        if r.channel is not None:
            events.append(self._close_channel(r.channel, True))
            return
        # R2: the peer closed an open still pending here: drop it and reject it so it frees its number.
        q = self._incoming.get(r.key)
        if q is not None:
            try:
                q.remove(rid)
            except ValueError:
                pass
            if not q:
                del self._incoming[r.key]
        self._reject_remote(rid)

    # -- internals -------------------------------------------------------------------------

    def _pair(self, channel: ChannelState, rid: int, r: _Remote) -> list[Event]:
        """Pair ``channel`` with the peer's open ``rid``; decode its handshake and deliver what was buffered."""
        channel.remote_id = rid
        r.channel = channel
        hs_bytes, r.handshake = r.handshake, b""
        hs: Any = None
        if channel.handshake_encoding is not None:
            try:
                hs = channel.handshake_encoding.decode(hs_bytes)
            except _DECODE_ERRORS as e:
                raise RemoteProtocolError(f"open handshake of {channel.protocol!r} cannot be decoded: {e}") from e
        channel.remote_handshake = hs
        channel.opened = True
        events: list[Event] = [ChannelOpened(channel, hs)]
        pending, r.pending = r.pending, []
        for mtype, payload in pending:
            self._buffered -= BUFFER_OVERHEAD + len(payload)
            if not channel.closed:
                self._deliver(channel, mtype, payload, events)
        return events

    def _unwait(self, local_id: int) -> None:
        for k in self._waiting_keys.pop(local_id, ()):
            q = self._waiting.get(k)
            if q is None:
                continue
            try:
                q.remove(local_id)
            except ValueError:
                pass
            if not q:
                del self._waiting[k]

    def _close_channel(self, channel: ChannelState, is_remote: bool, rejected: bool = False) -> ChannelClosed:
        channel.closed = True
        key = channel.key
        n = self._open_count.get(key, 0) - 1
        if n > 0:
            self._open_count[key] = n
        else:
            self._open_count.pop(key, None)
        index = channel.local_id - 1
        if channel.remote_id and not self._ended:
            rindex = channel.remote_id - 1
            if rindex < len(self._remote) and self._remote[rindex] is not None:
                self._remote[rindex] = None
            self._free.append(index)
        # an unanswered channel keeps its number in the waiting lists (§5.9 R1)
        if 0 <= index < len(self._local):
            self._local[index] = None
        return ChannelClosed(channel, is_remote, rejected)

    def _reject_remote(self, rid: int) -> None:
        r = self._remote[rid - 1] if 0 < rid <= len(self._remote) else None
        if r is not None:
            if r.channel is not None:
                return  # paired meanwhile: nothing to reject
            for _, payload in r.pending:
                self._buffered -= BUFFER_OVERHEAD + len(payload)
            self._remote[rid - 1] = None
        self._write(0, encode_reject(rid)[1:])

    def _write(self, channel: int, body: bytes) -> None:
        """Queue ``uint(channel) || body`` (control frames: channel 0, body without the leading 00)."""
        if self._corked:
            if self._batch_size >= MAX_BATCH:
                self._flush_batch()
            if not self._batch or self._batch[-1][0] != channel:
                self._batch_size += 1 + _uint_len(channel)
            self._batch_size += _uint_len(len(body)) + len(body)
            self._batch.append((channel, body))
            return
        out = bytearray()
        put_uint(out, channel)
        out += body
        self._push(bytes(out))

    def _flush_batch(self) -> None:
        if self._batch:
            self._push(encode_batch(self._batch))
        self._batch = []
        self._batch_size = 0

    def _push(self, frame: bytes) -> None:
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)


def _uint_len(n: int) -> int:
    return 1 if n <= 0xFC else 3 if n <= 0xFFFF else 5 if n <= 0xFFFFFFFF else 9


__all__ = [
    "MuxConnection", "ChannelState", "ChannelKey", "channel_key",
    "ChannelOpened", "MessageReceived", "ChannelClosed", "PairRequest", "Event",
    "MAX_BATCH", "BUFFER_OVERHEAD",
]
