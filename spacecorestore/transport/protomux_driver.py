"""protomux over a message stream, on trio: the thin driver around ``protomux.MuxConnection``.

This module owns the I/O and the task structure of one protomux connection;
all protocol decisions are in the sans-IO ``protomux`` module.  It works over
any *message stream*: an object with ``async send(bytes)`` (one message),
``async receive() -> bytes | None`` (``None`` at the peer's clean end; errors
are ``TransportError``s), ``async aclose()`` and optionally ``async send_eof()``
(half-close) — ``SecretStream`` is one.

API (modelled on the reference's ``Protomux`` / ``Channel``)::

    async with Protomux(stream) as mux:                      # or: nursery.start_soon(mux.run)
        mux.pair("echo", on_echo_open)                       # peer opens of "echo", any id
        ch = mux.create_channel(
            "echo", id=b"...", handshake=STRING,
            messages=[MessageType(STRING, on_message), MessageType(UINT)],
            on_open=lambda handshake, ch: ..., on_close=lambda is_remote, ch: ...)
        ch.open("my handshake")
        ch.send(0, "hello")                                  # sync; False if the channel is closed
        await ch.wait_opened()                               # True once paired, False if closed first
        with mux.corked(): ch.send(0, "a"); ch.send(0, "b")  # one batch frame
        ch.close()
        await mux.drain()                                    # backpressure: queue below the bound

* ``create_channel(protocol, id=None, *, aliases, handshake, messages,
  on_open, on_close, unique=True, user_data)`` builds a ``Channel``;
  ``Channel.open(handshake_value)`` sends the open (and pairs at once with a
  pending peer open of the key).  ``messages[t]`` is a ``MessageType(encoding,
  on_message)`` (or ``None`` for an unused type) for message type ``t``.
* ``pair(protocol, handler, id=None)`` / ``unpair(protocol, id=None)``: when
  the peer opens (protocol, id) and no local channel waits for it, the
  handler is called with the id (``None`` for none; a handler registered
  without an id gets every id).  It answers by creating *and opening* a
  channel for that key (it pairs with the peer's open).  When it returns
  without doing so the peer's open is rejected.  The handler may be a
  coroutine function; it then runs as a task of the mux and the peer's open
  waits (its messages buffered) until it returns.
* Callbacks ``on_open(handshake, channel)``, ``on_message(message, channel)``,
  ``on_close(is_remote, channel)`` are called synchronously, in frame order,
  from the reader task (or from the call that caused them: ``open``,
  ``close``).  A callback returning an awaitable has it run as a background
  task of the mux.  A callback exception destroys the connection.
  Sends from callbacks handling a multi-item batch leave as one batch.
* Ending: the peer's end (``receive()`` -> ``None``) ends ours; ``aclose()``
  (and leaving ``async with`` normally) ends ours.  Either way queued frames
  are written first, every channel then closes locally (``on_close`` with
  is_remote=True, as the reference), our side is half-closed when the stream
  can (``send_eof``), the peer's end is awaited (at most ``close_timeout``)
  and the stream is closed.  No frame is sent for the stream end.
* Failure: fatal input (``RemoteProtocolError``, §5.8), a stream error
  (``TransportError``) or a callback exception destroys the connection: the
  reason is logged on this module's logger, channels close (is_remote=True),
  the stream is closed without flushing, and the error is kept in
  ``mux.error``, raised by ``run()`` and by leaving ``async with`` normally.
* Structure: every task (reader, writer, callback tasks) lives in the
  nursery of ``run()``; nothing outlives it.  ``run()`` returns once the
  stream is closed.  A single writer task writes the outbox in order, so
  frames never interleave.  ``send`` never blocks; it returns ``False`` when
  the channel is closed, and the queue is bounded by callers awaiting
  ``drain()`` (``mux.drained`` tells whether it is below ``max_queued``).
  Reading pauses while more than 32 KiB is buffered for pending peer opens.

Local misuse (sending before ``open()``, a second open of a ``unique`` key,
opening after the end, an undefined message type) raises
``LocalProtocolError`` and does not affect the connection.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Protocol, Sequence

import trio

from ..errors import LocalProtocolError, RemoteProtocolError, TransportError
from .protomux import (
    ChannelClosed,
    ChannelOpened,
    ChannelState,
    Event,
    MessageReceived,
    MuxConnection,
    PairRequest,
)
from .protomux_codec import RAW, Encoding

log = logging.getLogger(__name__)

MAX_BUFFERED = 32 * 1024  # pause reading above this much buffered for pending opens (as the reference)
DEFAULT_MAX_QUEUED = 4 * 1024 * 1024
DEFAULT_CLOSE_TIMEOUT = 5.0
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class MessageStream(Protocol):
    """What protomux needs from the stream below it (``SecretStream`` fits)."""

    async def send(self, message: bytes) -> None: ...

    async def receive(self) -> bytes | None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class MessageType:
    """One message type of a channel: its encoding and the callback for received messages."""

    encoding: Encoding[Any] = RAW
    on_message: Callable[[Any, "Channel"], Any] | None = None


class Channel:
    """One channel of a ``Protomux``; create with ``Protomux.create_channel`` (module docstring)."""

    def __init__(
        self,
        mux: Protomux,
        state: ChannelState,
        messages: Sequence[MessageType | None],
        on_open: Callable[[Any, Channel], Any] | None,
        on_close: Callable[[bool, Channel], Any] | None,
    ) -> None:
        self.mux = mux
        self._state = state
        state.user_data = self
        self._messages = list(messages)
        self.on_open = on_open
        self.on_close = on_close
        self._opened_event = trio.Event()
        self._closed_event = trio.Event()
        self.user_data: Any = None

    # state, from the sans-IO channel
    protocol = property(lambda self: self._state.protocol)
    id = property(lambda self: self._state.id)
    aliases = property(lambda self: self._state.aliases)
    local_id = property(lambda self: self._state.local_id, doc="our channel number (0 before open)")
    remote_id = property(lambda self: self._state.remote_id, doc="the peer's number (0 until paired)")
    opened = property(lambda self: self._state.opened, doc="paired with the peer's open")
    closed = property(lambda self: self._state.closed)
    remote_handshake = property(lambda self: self._state.remote_handshake, doc="the peer's decoded handshake")

    def open(self, handshake: Any = None) -> None:
        """Send the open with ``handshake`` (encoded by the channel's handshake encoding).

        Raises ``LocalProtocolError`` if opened before, if ``unique`` and the
        key is already open, or after the connection ended.
        """
        self.mux._local_op(lambda: self.mux._sm.open(self._state, handshake))

    def send(self, type: int, message: Any) -> bool:
        """Queue a message of ``type``; False (not sent) when the channel is closed.  Never blocks."""
        sent = self.mux._sm.send(self._state, type, message)
        if sent:
            self.mux._kick()
        return sent

    def close(self) -> None:
        """Send ``close`` and close locally (``on_close(False)``); idempotent."""
        self.mux._local_op(lambda: self.mux._sm.close(self._state))

    def cork(self) -> None:
        self.mux.cork()

    def uncork(self) -> None:
        self.mux.uncork()

    async def wait_opened(self) -> bool:
        """Wait until the channel is paired (True) or closed first (False)."""
        await self._opened_event.wait()
        return self.opened

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    def __repr__(self) -> str:
        return f"<Channel {self._state!r}>"


class Protomux:
    """protomux over one message stream (module docstring)."""

    def __init__(
        self,
        stream: MessageStream,
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        name: str | None = None,
    ) -> None:
        self.stream = stream
        self.max_queued = max_queued
        self.close_timeout = close_timeout
        self.name = name or f"protomux@{id(self):x}"
        self._sm = MuxConnection()
        self._handlers: dict[tuple[str, bytes | None], Callable[[bytes | None], Any]] = {}
        self._nursery: trio.Nursery | None = None
        self._early_tasks: list[Awaitable[Any]] = []
        self._wakeup = trio.Event()  # the writer has frames to look at
        # With ``async with``, reading starts only once __aenter__ has returned, so pair()
        # handlers registered right after it (no checkpoint between) see the first frames.
        self._hold_reader = False
        self._go = trio.Event()
        self._progress = trio.lowlevel.ParkingLot()  # frames written / pending opens resolved
        self._inflight = 0  # bytes taken from the outbox, not yet written
        self._running = False
        self._ending = False
        self._writer_stop = False
        self._stream_closed = False
        self._done = trio.Event()
        self._reader_scope: trio.CancelScope | None = None
        self._writer_scope: trio.CancelScope | None = None
        self.error: BaseException | None = None
        self._cm: Any = None

    # -- public API ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection ended or failed (no channel can be opened any more)."""
        return self._sm.ended or self._done.is_set()

    @property
    def queued(self) -> int:
        """Bytes queued to be written."""
        return self._sm.outbox_bytes + self._inflight

    @property
    def drained(self) -> bool:
        return self.queued <= self.max_queued

    def create_channel(
        self,
        protocol: str,
        id: bytes | None = None,
        *,
        aliases: Sequence[str] = (),
        handshake: Encoding[Any] | None = None,
        messages: Sequence[MessageType | None] = (),
        on_open: Callable[[Any, Channel], Any] | None = None,
        on_close: Callable[[bool, Channel], Any] | None = None,
        unique: bool = True,
        user_data: Any = None,
    ) -> Channel:
        """A new channel for (protocol, id); nothing is sent before ``Channel.open()``.

        Raises ``LocalProtocolError`` when the connection has ended, or when
        ``unique`` and a channel of this key is open (``is_open``).
        """
        if self.closed:
            raise LocalProtocolError("the protomux connection has ended")
        if unique and self._sm.is_open(protocol, id):
            raise LocalProtocolError(f"a channel {protocol!r} with this id is already open")
        messages = list(messages)
        state = ChannelState(
            protocol, id, aliases=aliases, handshake_encoding=handshake, unique=unique,
            message_encodings=[m.encoding if m is not None else None for m in messages],
        )
        ch = Channel(self, state, messages, on_open, on_close)
        ch.user_data = user_data
        return ch

    def is_open(self, protocol: str, id: bytes | None = None) -> bool:
        """True while a local channel of (protocol, id) is open or waiting for the peer."""
        return self._sm.is_open(protocol, id)

    def channels(self) -> Iterator[Channel]:
        """Local channels that are open or waiting, by number."""
        return (c.user_data for c in self._sm.channels())

    def pair(self, protocol: str, handler: Callable[[bytes | None], Any], id: bytes | None = None) -> None:
        """Call ``handler(id)`` for peer opens of (protocol, id) nobody waits for (``id`` None: any id)."""
        key = (protocol, bytes(id) if id else None)
        self._handlers[key] = handler
        self._sm.register_pair(protocol, id)

    def unpair(self, protocol: str, id: bytes | None = None) -> None:
        self._handlers.pop((protocol, bytes(id) if id else None), None)
        self._sm.unregister_pair(protocol, id)

    def cork(self) -> None:
        """Hold every frame until the matching ``uncork()``, then send them as one batch."""
        self._sm.cork()

    def uncork(self) -> None:
        self._sm.uncork()
        self._kick()

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        self.cork()
        try:
            yield
        finally:
            self.uncork()

    async def drain(self) -> None:
        """Wait until the queued bytes are at most ``max_queued`` (or the connection is over)."""
        while not self.drained and not self._done.is_set() and self.error is None:
            await self._progress.park()

    async def flush(self) -> None:
        """Wait until every frame queued so far has been handed to the stream (or the connection is over)."""
        self._kick()
        while self.queued and not self._done.is_set() and self.error is None:
            await self._progress.park()

    async def wait_closed(self) -> None:
        """Wait until the connection is over (ended or failed) and the stream closed.  Never raises."""
        await self._done.wait()

    async def aclose(self) -> None:
        """End the connection cleanly (module docstring) and wait until it is over.  Idempotent.

        If ``run()`` was never started, nothing queued is written: the channels
        close and the stream is closed here.
        """
        if self._done.is_set():
            return
        self._ending = True
        if not self._running:
            self._finish_channels()
            await self._close_stream(graceful=True)
            self._done.set()
            return
        if self._reader_scope is not None and not self._sm.ended:
            self._reader_scope.cancel()
        self._kick()
        await self._done.wait()

    def destroy(self, error: BaseException | None = None) -> None:
        """Abort the connection at once (nothing more is written); ``error`` becomes ``mux.error``."""
        self._fail(error or TransportError("protomux destroyed"), log_it=error is not None)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Read, dispatch and write until the connection is over; then close the stream.

        ``await nursery.start(mux.run)`` returns once it is running.
        Returns after a clean end (ours or the peer's).  Raises the error that
        destroyed the connection (``RemoteProtocolError``, a ``TransportError``
        of the stream, or a callback's exception).  Cancelling ``run()``
        aborts the connection.
        """
        if self._running or self._done.is_set():
            raise LocalProtocolError("Protomux.run() was already started")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for aw in self._early_tasks:
                    nursery.start_soon(self._track, aw)
                self._early_tasks.clear()
                writer_done = trio.Event()
                nursery.start_soon(self._writer, writer_done)
                task_status.started()
                with trio.CancelScope() as self._reader_scope:
                    if self._hold_reader:
                        await self._go.wait()
                    if not self._ending and self.error is None:
                        try:
                            await self._reader()
                        except BaseException as e:  # noqa: BLE001 - every failure destroys the connection
                            if isinstance(e, trio.Cancelled):
                                raise
                            self._fail(e)
                if self.error is None:
                    # clean end (the peer's or ours): write what is queued, close channels, end our side
                    self._ending = True
                    self._sm.flush()
                    self._writer_stop = True  # after the flush: the writer returns once the outbox is empty
                    self._kick()
                    with trio.move_on_after(self.close_timeout):
                        await writer_done.wait()
                    if not writer_done.is_set():
                        self._fail(TransportError(f"queued frames not written within {self.close_timeout} s of the end"))
                self._finish_channels()
                await self._close_stream(graceful=self.error is None)
                nursery.cancel_scope.cancel()  # callback tasks still running
        finally:
            self._nursery = None
            self._running = False
            if not self._stream_closed:
                # cancelled (from outside, or by an abort while ending): destroy
                self._fail(TransportError("protomux run() cancelled"), log_it=False)
                self._finish_channels()
                await self._close_stream(graceful=False)
            self._done.set()
            self._progress.unpark_all()
        if self.error is not None:
            raise self.error

    async def __aenter__(self) -> Protomux:
        """Start ``run()`` in a nursery of our own; leaving the block ends the connection."""
        cm = trio.open_nursery()
        nursery = await cm.__aenter__()
        self._cm = (cm, nursery)
        self._hold_reader = True
        await nursery.start(self._run_quietly)
        self._go.set()
        return self

    async def __aexit__(self, etype: Any, exc: Any, tb: Any) -> bool:
        """Normal exit: ``aclose()``, then raise ``mux.error`` if the connection failed.

        Exit by an exception: abort the connection and let the exception through.
        """
        cm, nursery = self._cm
        try:
            if etype is None:
                await self.aclose()
            else:
                self._fail(TransportError(f"aborted by {etype.__name__}"), log_it=False)
        finally:
            nursery.cancel_scope.cancel()  # run() has finished or closes the stream shielded
            await cm.__aexit__(None, None, None)
        if etype is None and self.error is not None:
            raise self.error
        return False

    def __repr__(self) -> str:
        st = "failed" if self.error else "closed" if self.closed else "open"
        return f"<Protomux {self.name} {st}>"

    # -- tasks ------------------------------------------------------------------------------

    async def _run_quietly(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with contextlib.suppress(Exception):
            await self.run(task_status=task_status)  # the error stays in self.error; __aexit__ raises it

    async def _reader(self) -> None:
        sm = self._sm
        while True:
            message = await self.stream.receive()
            if message is None:
                log.debug("%s: the peer ended the stream", self.name)
                return
            events = sm.receive_message(message)  # RemoteProtocolError: fatal, handled by run()
            self._dispatch(events)
            self._kick()
            while sm.buffered_bytes > MAX_BUFFERED and not sm.ended:
                await self._progress.park()  # a pair handler still runs: wait for it

    async def _writer(self, done: trio.Event) -> None:
        sm = self._sm
        try:
            with trio.CancelScope() as self._writer_scope:
                while True:
                    frames = sm.data_to_send()
                    if not frames:
                        if self._writer_stop:
                            return
                        await self._wakeup.wait()
                        self._wakeup = trio.Event()
                        continue
                    self._inflight += sum(len(f) for f in frames)
                    send_many = getattr(self.stream, "send_many", None)
                    if send_many is not None and len(frames) > 1:
                        frames = _group(frames)  # one write per group (SecretStream: one system call)
                    for f in frames:
                        try:
                            if isinstance(f, list):
                                await send_many(f)
                            else:
                                await self.stream.send(f)
                        except TransportError as e:
                            self._fail(e, log_it=False)  # the stream logged it
                            return
                        except _STREAM_ERRORS as e:
                            err = TransportError(f"connection lost: {e!r}")
                            err.__cause__ = e
                            self._fail(err)
                            return
                        finally:
                            self._inflight -= sum(map(len, f)) if isinstance(f, list) else len(f)
                        self._progress.unpark_all()
        finally:
            self._inflight = 0
            done.set()
            self._progress.unpark_all()

    async def _track(self, aw: Awaitable[Any]) -> None:
        try:
            await aw
        except Exception as e:  # noqa: BLE001 - a failing callback destroys the connection (as the reference)
            self._fail(e)

    async def _pair_task(self, handler_result: Awaitable[Any], request: PairRequest) -> None:
        try:
            await handler_result
        except Exception as e:  # noqa: BLE001
            self._fail(e)
            return
        self._sm.pair_request_done(request)
        self._kick()

    # -- internals --------------------------------------------------------------------------

    def _kick(self) -> None:
        self._wakeup.set()
        self._progress.unpark_all()

    def _spawn(self, aw: Awaitable[Any]) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._track, aw)
        else:
            self._early_tasks.append(aw)

    def _call(self, fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is None:
            return
        result = fn(*args)
        if inspect.isawaitable(result):
            self._spawn(result)

    def _local_op(self, op: Callable[[], list[Event]]) -> None:
        """Run a local state-machine operation and dispatch its events; a remote error found there is fatal."""
        try:
            events = op()
        except RemoteProtocolError as e:
            self._fail(e)
            return
        self._kick()
        self._dispatch(events)

    def _dispatch(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, MessageReceived):
                ch: Channel = ev.channel.user_data
                mt = ch._messages[ev.type]
                if mt is not None:
                    self._call(mt.on_message, ev.message, ch)
            elif isinstance(ev, ChannelOpened):
                ch = ev.channel.user_data
                ch._opened_event.set()
                self._call(ch.on_open, ev.handshake, ch)
            elif isinstance(ev, ChannelClosed):
                ch = ev.channel.user_data
                ch._opened_event.set()
                ch._closed_event.set()
                self._call(ch.on_close, ev.is_remote, ch)
            elif isinstance(ev, PairRequest):
                self._on_pair_request(ev)

    def _on_pair_request(self, request: PairRequest) -> None:
        handler = self._handlers.get((request.protocol, request.id)) if request.id else None
        if handler is None:
            handler = self._handlers.get((request.protocol, None))
        result = handler(request.id) if handler is not None else None
        if inspect.isawaitable(result):
            if self._nursery is not None:
                self._nursery.start_soon(self._pair_task, result, request)
            else:  # requests come from the reader, so run() is running; keep it safe anyway
                self._early_tasks.append(self._pair_task(result, request))
            return
        self._sm.pair_request_done(request)
        self._kick()

    def _finish_channels(self) -> None:
        """Close every channel locally (is_remote=True) and end the state machine."""
        events = self._sm.close_all()  # idempotent: later calls return no events
        for ev in events:
            try:
                self._dispatch([ev])
            except Exception:  # noqa: BLE001 - the connection is going away; keep closing the others
                log.exception("%s: on_close callback failed", self.name)

    def _fail(self, error: BaseException, *, log_it: bool = True) -> None:
        """Destroy the connection: keep the first error, close channels, stop reading and writing."""
        if self.error is not None or self._done.is_set():
            return
        self.error = error
        if log_it:
            log.warning("%s: connection destroyed: %s", self.name, error)
        self._finish_channels()
        if self._reader_scope is not None:
            self._reader_scope.cancel()
        if self._writer_scope is not None:
            self._writer_scope.cancel()
        self._kick()

    async def _close_stream(self, *, graceful: bool) -> None:
        """Close the stream; when graceful, half-close first and wait for the peer's end (bounded)."""
        stream = self.stream
        with trio.CancelScope(shield=not graceful) as cs:
            cs.deadline = trio.current_time() + self.close_timeout
            if graceful:
                send_eof = getattr(stream, "send_eof", None)
                try:
                    if send_eof is not None:
                        await send_eof()
                        while await stream.receive() is not None:
                            pass  # the peer may still send; the channels are closed, so it is dropped
                except (TransportError, *_STREAM_ERRORS, LocalProtocolError):
                    pass
        with trio.CancelScope(shield=True) as cs:
            cs.deadline = trio.current_time() + self.close_timeout
            try:
                await stream.aclose()
            except (TransportError, *_STREAM_ERRORS):
                pass
        self._stream_closed = True


__all__ = ["Protomux", "Channel", "MessageType", "MessageStream", "MAX_BUFFERED"]


_GROUP_BYTES = 1 << 20


def _group(frames: list[bytes]) -> list[Any]:
    """Small frames in lists of at most ~1 MiB (written with send_many); a big frame alone."""
    out: list[Any] = []
    run: list[bytes] = []
    size = 0
    for f in frames:
        if len(f) >= _GROUP_BYTES:
            if run:
                out.append(run)
                run, size = [], 0
            out.append(f)
            continue
        if size + len(f) > _GROUP_BYTES and run:
            out.append(run)
            run, size = [], 0
        run.append(f)
        size += len(f)
    if run:
        out.append(run if len(run) > 1 else run[0])
    return out
