"""The secret stream over any trio byte stream (02-transport §4, §6): a thin driver.

This module owns the I/O around ``framing.SecretStreamState``: it runs the
handshake on a ``trio.abc.Stream``, moves bytes in and out, and enforces the
timeouts, keep-alive, buffering bounds and the close/abort rules.  All byte
work (frames, Noise, secretstream) is in the sans-IO modules.

    ss = await connect_secret_stream(tcp_stream, is_initiator=True, keep_alive=5.0)
    await ss.send(b"...")                # one message = one frame
    msg = await ss.receive()             # bytes, or None once the peer has ended
    await ss.aclose()                    # FIN after what was sent, then close

Contract:

* ``connect_secret_stream`` takes ownership of the stream.  It returns once
  the Noise handshake is done *and* the peer's stream header has been
  received and checked (so ``public_key``, ``remote_public_key`` and
  ``handshake_hash`` are set and a wrong header fails here).  Exception: a
  peer that ends the connection right after the handshake, before its header,
  gives a stream whose ``receive()`` returns ``None`` (as the reference).
  The whole of it is bounded by ``handshake_timeout`` (default 10 s →
  ``HandshakeTimeoutError``, a ``StreamTimeoutError`` and a
  ``HandshakeError``).  On any failure or cancellation the stream is closed.
* ``send(message)``: encrypts and writes one message (``b""`` allowed, it is
  a keep-alive to the peer); returns when the frame has been handed to the
  transport.  Concurrent senders are served in FIFO order under one lock, so
  frames never interleave; a sender waits while the transport does not
  accept bytes (backpressure) — the send queue is one frame.  On a trio
  ``SocketStream`` the frame is written synchronously with ``os.write`` when
  the kernel takes it all (no scheduler round trip; a yield every 16 such
  sends); the rest goes through trio.  ``send_many(messages)`` encrypts
  several messages back to back and writes them at once (one system call;
  for a writer draining a queue — much faster for small messages).  Messages
  over 16 777 198 bytes raise ``LocalProtocolError`` and destroy the
  connection, as the reference does.  If a send is cancelled mid-frame the
  connection is destroyed (a torn frame cannot be repaired); a send cancelled
  before it started writing changes nothing.
* ``receive()``: one task at a time.  Returns the next message, ``None`` at the
  peer's clean end (EOF; a partial frame pending then is dropped), and again
  ``None`` on later calls.  Reads only when no complete frame is buffered, so
  at most one frame (≤ 16 MiB) plus one read (``receive_size``) is held.
  Cancelling ``receive()`` loses nothing (unless it was writing a keep-alive,
  which is then a cancelled send, above).
* Failures (bad frame, MAC failure, bad header, timeout, transport error)
  destroy the connection — the transport is closed without sending anything,
  the reason is logged on ``spacecorestore.transport.secret_stream`` — and
  raise a ``TransportError`` subclass, the same one again from every later
  ``send``/``receive``.  Transport errors are ``TransportError`` ("connection
  lost: ..."), or ``HandshakeError`` during the handshake.
* ``send_eof()`` half-closes (FIN after every frame already sent); receiving
  continues.  ``aclose()`` does ``send_eof()`` when it can do so at once (no
  send in progress) and closes the transport; it is idempotent.  After it,
  ``send``/``receive`` raise ``LocalProtocolError``.  For a fully clean end
  (a FIN each way, §4.10): ``send_eof()``, read ``receive()`` until ``None``,
  then ``aclose()``.

Keep-alive (``keep_alive`` seconds, hypercore uses 5): when no encrypted
message has been written for that long, an empty message is written; every
message written restarts the timer (the handshake and header frames do not
count), and it repeats while the connection is idle, as the reference's
``setKeepAlive``.  Keep-alives are written by ``receive()`` while it waits for
data (there is no background task), so they flow while a task is reading —
protomux's reader always is.  As in the reference, turning keep-alive on also
drops received empty messages (override with ``drop_empty``); without it
empty messages are delivered as ``b""``.

Receive timeout (``receive_timeout``, default 20 s when keep-alive is on,
off otherwise; a Spacecore choice, §4.9): while ``receive()`` waits, if no
byte at all arrives for that long the connection is destroyed with
``StreamTimeoutError``.  Time when no task is reading does not count.

The transport's ``receive_some`` must be safe to cancel without losing data
(trio's ``SocketStream`` and memory streams are): waits are cut at
keep-alive and timeout deadlines.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable, Iterable

import trio

from ..crypto import KeyPair
from ..errors import (
    HandshakeError,
    HandshakeTimeoutError,
    LocalProtocolError,
    StreamTimeoutError,
    TransportError,
)
from .framing import (
    MAX_FRAME,
    NEED_DATA,
    EndOfStream,
    HandshakeComplete,
    HeaderReceived,
    Message,
    SecretStreamState,
)

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_RECEIVE_TIMEOUT = 20.0
HYPERCORE_KEEP_ALIVE = 5.0  # what hypercore's replication stream uses
DEFAULT_RECEIVE_SIZE = 256 * 1024
_MIN_WAIT = 0.001  # always try a read before acting on an expired deadline
_CLOSE_GRACE = 1.0  # bound on closing the transport
_YIELD_EVERY = 16  # fast-path sends between scheduler yields

_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


_DEFAULT: Any = _Default()


class SecretStream:
    """An open secret-stream connection; create it with ``connect_secret_stream`` (module docstring)."""

    is_initiator: bool
    public_key: bytes
    remote_public_key: bytes
    handshake_hash: bytes

    def __init__(
        self,
        transport: trio.abc.Stream,
        state: SecretStreamState,
        *,
        keep_alive: float | None = None,
        receive_timeout: float | None = None,
        receive_size: int = DEFAULT_RECEIVE_SIZE,
        name: str | None = None,
    ) -> None:
        if keep_alive is not None and not keep_alive > 0:
            raise LocalProtocolError("keep_alive must be a positive number of seconds or None")
        if receive_timeout is not None and not receive_timeout > 0:
            raise LocalProtocolError("receive_timeout must be a positive number of seconds or None")
        self.transport = transport
        self._state = state
        self.is_initiator = state.is_initiator
        self.public_key = state.public_key
        self.remote_public_key = b""
        self.handshake_hash = b""
        self.keep_alive = keep_alive
        self.receive_timeout = receive_timeout
        self._receive_size = receive_size
        self.name = name or ("initiator" if state.is_initiator else "responder")
        self._send_lock = trio.Lock()
        self._receiving = False
        self._failure: TransportError | None = None
        self._closed = False
        self._eof_sent = False
        self._remote_ended = False
        now = trio.current_time()
        self._last_tx = now  # last encrypted message written (keep-alive timer)
        self._last_rx = now  # last bytes read (receive timeout)
        self.keep_alives_sent = 0
        # raw fd of a trio SocketStream, for the synchronous write fast path (-1: none)
        self._fd = transport.socket.fileno() if isinstance(transport, trio.SocketStream) else -1
        self._unyielded = 0

    # -- public API ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failure(self) -> TransportError | None:
        return self._failure

    async def send(self, message: bytes | bytearray | memoryview) -> None:
        """Write one message (module docstring: ordering, backpressure, errors)."""
        await self._send_locked(self._state.send_buffer, message)

    async def send_many(self, messages: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write several messages with one write to the transport (same rules as ``send``).

        For a writer that has a queue of messages (protomux's outbox): the
        frames are encrypted back to back into one buffer (the caller bounds
        its size) and written at once — one system call instead of one per
        message, as the reference gets from its stream's writev batching.
        """
        await self._send_locked(self._state.send_many, messages)

    async def _send_locked(self, encrypt: Callable[[Any], Any], arg: Any) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_usable()
        if self._eof_sent:
            raise LocalProtocolError("send after send_eof()")
        lock = self._send_lock
        if lock.locked():
            await lock.acquire()  # FIFO behind the current writer
        else:
            lock.acquire_nowait()  # no scheduler round trip when nobody else is writing
        try:
            self._check_usable()
            if self._eof_sent:
                raise LocalProtocolError("send after send_eof()")
            try:
                frames = encrypt(arg)
            except TransportError as e:  # e.g. too large: the reference destroys its stream too
                await self._abort(e)
                raise
            await self._put(frames)
        finally:
            lock.release()

    async def _put(self, data: Any) -> None:
        """Write ``data`` under the send lock: synchronously when the socket takes it all."""
        if self._fd >= 0:
            # Fast path for sockets: only what the kernel does not take at once goes
            # through trio (which waits for writability).
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as e:
                err = TransportError(f"connection lost: {e!r}")
                await self._abort(err)
                raise err from e
            if sent == len(data):
                self._last_tx = trio.current_time()
                self._unyielded += 1
                if self._unyielded >= _YIELD_EVERY:
                    # let other tasks run now and then, as a write that blocks would
                    self._unyielded = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return
            data = memoryview(data)[sent:]
        await self._write(data)

    async def receive(self) -> bytes | None:
        """The next message; ``None`` once the peer has ended (module docstring)."""
        self._check_usable()
        if self._receiving:
            raise LocalProtocolError("another task is already receiving on this secret stream")
        self._receiving = True
        try:
            state = self._state
            while True:
                try:
                    ev = state.next_event()
                except TransportError as e:
                    await self._abort(e)
                    raise
                if type(ev) is Message:
                    return ev.data
                if ev is NEED_DATA:
                    await self._read()
                elif type(ev) is EndOfStream:
                    self._remote_ended = True
                    return None
                # HandshakeComplete / HeaderReceived: only before the factory returns
        finally:
            self._receiving = False

    async def send_eof(self) -> None:
        """Half-close: a FIN after every frame already sent; ``receive()`` goes on working."""
        self._check_usable()
        if self._eof_sent:
            return
        async with self._send_lock:
            self._check_usable()
            if self._eof_sent:
                return
            self._eof_sent = True
            send_eof = getattr(self.transport, "send_eof", None)
            if send_eof is None:
                return
            try:
                await send_eof()
            except _TRANSPORT_ERRORS as e:
                err = TransportError(f"connection lost: {e!r}")
                await self._abort(err)
                raise err from e

    async def aclose(self) -> None:
        """FIN (when no send is in progress) and close the transport; idempotent, bounded."""
        if self._closed:
            return
        self._closed = True
        if self._failure is None and not self._eof_sent:
            self._eof_sent = True
            send_eof = getattr(self.transport, "send_eof", None)
            if send_eof is not None:
                try:
                    self._send_lock.acquire_nowait()
                except trio.WouldBlock:
                    log.debug("%s: closing while a send is in progress: no FIN", self.name)
                else:
                    try:
                        with trio.CancelScope(shield=True) as cs:
                            cs.deadline = trio.current_time() + _CLOSE_GRACE
                            await send_eof()
                    except _TRANSPORT_ERRORS:
                        pass
                    finally:
                        self._send_lock.release()
        await self._close_transport()

    async def __aenter__(self) -> SecretStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        st = "failed" if self._failure else "closed" if self._closed else "open"
        return f"<SecretStream {self.name} {st} remote={self.remote_public_key.hex()[:16]}>"

    # -- internals ---------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise LocalProtocolError("secret stream is closed")

    async def _write(self, data: bytes) -> None:
        """Write bytes under the send lock; ``TransportError`` (and abort) if the transport fails."""
        try:
            await self.transport.send_all(data)
        except _TRANSPORT_ERRORS as e:
            if self._closed and self._failure is None:
                raise LocalProtocolError("secret stream closed during send") from e
            err = TransportError(f"connection lost: {e!r}")
            await self._abort(err)
            raise err from e
        except BaseException:
            # cancelled (or interrupted) mid-frame: the byte stream may hold a torn frame
            await self._abort(TransportError("send interrupted mid-frame"))
            raise
        self._last_tx = trio.current_time()

    async def _read(self) -> None:
        """Read once from the transport into the state, writing keep-alives while idle."""
        keep_alive, rx_timeout = self.keep_alive, self.receive_timeout
        wait_start = trio.current_time()
        while True:
            now = trio.current_time()
            deadline = math.inf
            if rx_timeout is not None:
                rx_deadline = max(self._last_rx, wait_start) + rx_timeout
                deadline = rx_deadline
            if keep_alive is not None:
                deadline = min(deadline, self._last_tx + keep_alive)
            try:
                if deadline == math.inf:
                    data = await self.transport.receive_some(self._receive_size)
                else:
                    with trio.move_on_at(max(deadline, now + _MIN_WAIT)):
                        data = await self.transport.receive_some(self._receive_size)
                        break
                    now = trio.current_time()
                    if rx_timeout is not None and now >= rx_deadline:
                        err = StreamTimeoutError(f"Stream timed out: no data for {rx_timeout:g} s")
                        await self._abort(err)
                        raise err
                    if keep_alive is not None and now >= self._last_tx + keep_alive:
                        await self._send_keep_alive()
                    continue
            except _TRANSPORT_ERRORS as e:
                if self._closed and self._failure is None:
                    raise LocalProtocolError("secret stream closed during receive") from e
                err = TransportError(f"connection lost: {e!r}")
                await self._abort(err)
                raise err from e
            break
        if data:
            self._last_rx = trio.current_time()
        self._state.receive_data(data)

    async def _send_keep_alive(self) -> None:
        if self._eof_sent or self._closed:
            self._last_tx = trio.current_time()
            return
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:  # a send is in progress: that is traffic enough
            self._last_tx = trio.current_time()
            return
        try:
            await self._put(self._state.send_buffer(b""))
            self.keep_alives_sent += 1
        finally:
            self._send_lock.release()

    async def _abort(self, err: TransportError) -> None:
        """Destroy the connection: remember ``err``, log it, close the transport at once."""
        if self._failure is None:
            self._failure = err
            self._state.fail(err)
            log.warning("secret stream %s: connection destroyed: %s", self.name, err)
        await self._close_transport()

    async def _close_transport(self) -> None:
        self._closed = True
        self._fd = -1  # the number may be reused once the socket is closed
        with trio.CancelScope(shield=True) as cs:
            cs.deadline = trio.current_time() + _CLOSE_GRACE
            try:
                await self.transport.aclose()
            except Exception as e:  # closing is best effort
                log.debug("%s: error while closing the transport: %r", self.name, e)

    async def _handshake(self, timeout: float | None) -> None:
        """Run the connection sequence up to the peer's header (§4.3); see the module docstring."""
        state = self._state
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout) as cs:
                out = state.start()
                if out:
                    await self._write_handshake(out)
                while True:
                    ev = state.next_event()
                    out = state.data_to_send()
                    if out:
                        await self._write_handshake(out)
                    if ev is NEED_DATA:
                        try:
                            data = await self.transport.receive_some(self._receive_size)
                        except _TRANSPORT_ERRORS as e:
                            raise HandshakeError(f"connection lost during the handshake: {e!r}") from e
                        state.receive_data(data)
                    elif type(ev) is HandshakeComplete:
                        res = ev.result
                        self.remote_public_key = res.remote_public_key
                        self.handshake_hash = res.handshake_hash
                        self._last_tx = trio.current_time()
                    elif type(ev) is HeaderReceived:
                        break
                    elif type(ev) is EndOfStream:  # ended after the handshake, before its header
                        break
            if cs.cancelled_caught:
                where = "stream header" if self.handshake_hash else "Noise handshake"
                raise HandshakeTimeoutError(f"handshake timed out after {timeout:g} s waiting for the {where}")
        except TransportError as e:
            await self._abort(e)
            raise
        except BaseException:
            await self._close_transport()
            raise
        self._last_rx = trio.current_time()

    async def _write_handshake(self, data: bytes) -> None:
        try:
            await self.transport.send_all(data)
        except _TRANSPORT_ERRORS as e:
            raise HandshakeError(f"connection lost during the handshake: {e!r}") from e


async def connect_secret_stream(
    stream: trio.abc.Stream,
    is_initiator: bool,
    *,
    key_pair: KeyPair | tuple[bytes, bytes] | None = None,
    keep_alive: float | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    receive_timeout: float | None = _DEFAULT,
    drop_empty: bool | None = None,
    max_frame: int = MAX_FRAME,
    receive_size: int = DEFAULT_RECEIVE_SIZE,
    name: str | None = None,
    _ephemeral: KeyPair | tuple[bytes, bytes] | None = None,
    _header: bytes | None = None,
) -> SecretStream:
    """Handshake over ``stream`` (taking ownership of it) and return the open ``SecretStream``.

    ``key_pair``: our static Ed25519 key pair (random when None).
    ``keep_alive``: seconds of write silence before an empty message (None = off).
    ``handshake_timeout``: seconds for the Noise handshake and the peer's header.
    ``receive_timeout``: seconds without any received byte while reading; the
    default is 20 s with keep-alive and off without.  ``drop_empty``: drop
    received empty messages (default: when keep-alive is on).  ``max_frame``:
    largest frame body accepted (default and maximum 16 777 215).
    ``_ephemeral`` / ``_header``: test-only injection (vectors).
    Raises ``HandshakeError`` (incl. ``HandshakeTimeoutError``) or ``BadHeaderError``.
    """
    if receive_timeout is _DEFAULT:
        receive_timeout = DEFAULT_RECEIVE_TIMEOUT if keep_alive is not None else None
    if drop_empty is None:
        drop_empty = keep_alive is not None
    try:
        state = SecretStreamState(
            is_initiator, key_pair, drop_empty=drop_empty, max_frame=max_frame, ephemeral=_ephemeral, header=_header
        )
        ss = SecretStream(
            stream, state, keep_alive=keep_alive, receive_timeout=receive_timeout, receive_size=receive_size, name=name
        )
    except BaseException:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        raise
    await ss._handshake(handshake_timeout)
    return ss


async def secret_stream_pair(
    *,
    transport: str = "memory",
    key_pairs: tuple[Any, Any] = (None, None),
    **kwargs: Any,
) -> tuple[SecretStream, SecretStream]:
    """Two connected secret streams (initiator, responder), handshake done — for tests.

    ``transport``: ``"memory"`` (``trio.testing.memory_stream_pair``, unbounded
    buffers) or ``"socket"`` (a connected ``socket.socketpair``).  Other keyword
    arguments go to both ``connect_secret_stream`` calls.
    """
    if transport == "memory":
        from trio.testing import memory_stream_pair

        a, b = memory_stream_pair()
    elif transport == "socket":
        sa, sb = trio.socket.socketpair()
        a, b = trio.SocketStream(sa), trio.SocketStream(sb)
    else:
        raise LocalProtocolError(f"unknown transport {transport!r}")
    results: dict[bool, SecretStream] = {}

    async def one(stream: trio.abc.Stream, is_initiator: bool, kp: Any) -> None:
        results[is_initiator] = await connect_secret_stream(stream, is_initiator, key_pair=kp, **kwargs)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, a, True, key_pairs[0])
            nursery.start_soon(one, b, False, key_pairs[1])
    except BaseException:
        for s in results.values():
            await s.aclose()
        with trio.CancelScope(shield=True):
            await a.aclose()
            await b.aclose()
        raise
    return results[True], results[False]
