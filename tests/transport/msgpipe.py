"""An in-memory message pipe with the SecretStream interface, for protomux tests.

``message_pipe()`` returns two connected ends.  Each end has ``send(bytes)``
(one message), ``receive() -> bytes | None`` (``None`` once the peer has
ended or closed, and on every later call), ``send_eof()``, ``aclose()``, and
the identity attributes of a secret stream.  ``abort()`` makes the peer's
``receive`` raise ``TransportError`` (a reset).  Every message sent is
recorded in ``sent`` so tests can look at the frames on the "wire".
The buffer holds ``capacity`` messages; ``send`` waits while it is full.
"""
from __future__ import annotations

import trio

from spacecorestore.errors import LocalProtocolError, TransportError


class PipeEnd:
    def __init__(self, name: str, is_initiator: bool, capacity: int) -> None:
        self.name = name
        self.is_initiator = is_initiator
        self.public_key = bytes([1 if is_initiator else 2]) * 32
        self.remote_public_key = bytes([2 if is_initiator else 1]) * 32
        self.handshake_hash = b"\x33" * 64
        self._tx, self._peer_rx = trio.open_memory_channel[object](capacity)
        self.peer: PipeEnd
        self.sent: list[bytes] = []
        self.eof_sent = False
        self.closed = False
        self._ended = False

    async def send(self, message: bytes) -> None:
        if self.closed or self.eof_sent:
            raise LocalProtocolError(f"{self.name}: send after close/eof")
        m = bytes(message)
        try:
            await self._tx.send(m)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise TransportError(f"{self.name}: connection lost") from e
        self.sent.append(m)

    async def receive(self) -> bytes | None:
        if self.closed:
            raise LocalProtocolError(f"{self.name}: receive after close")
        if self._ended:
            return None
        try:
            m = await self.peer._peer_rx.receive()
        except (trio.EndOfChannel, trio.BrokenResourceError):
            self._ended = True
            return None
        if isinstance(m, BaseException):
            raise m
        return m  # type: ignore[return-value]

    async def send_eof(self) -> None:
        if not self.eof_sent and not self.closed:
            self.eof_sent = True
            await self._tx.aclose()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.eof_sent = True
        await self._tx.aclose()
        await self.peer._peer_rx.aclose()  # stop receiving: the peer's sends now fail

    def abort(self) -> None:
        """Reset: the peer's next receive raises TransportError."""
        try:
            self._tx.send_nowait(TransportError(f"{self.name}: connection reset by peer"))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        self._tx.close()
        self.closed = True


def message_pipe(capacity: int = 64) -> tuple[PipeEnd, PipeEnd]:
    """(initiator end, responder end), connected."""
    a, b = PipeEnd("initiator", True, capacity), PipeEnd("responder", False, capacity)
    a.peer, b.peer = b, a
    return a, b
