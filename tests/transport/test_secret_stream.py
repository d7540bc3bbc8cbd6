"""The trio secret stream (02-transport §4, §6): pairs over memory streams, a
socketpair and real 127.0.0.1 TCP; keep-alive, timeouts, clean end; hostile
peers (garbage, truncated or stalled handshakes, bad headers, frames failing
decryption, replays, a declared frame whose body never comes), each giving
its typed error, closing the connection and leaking no socket or task.
"""
from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacecorestore import crypto
from spacecorestore.errors import (
    BadHeaderError,
    BadMessageError,
    HandshakeError,
    HandshakeTimeoutError,
    LocalProtocolError,
    StreamTimeoutError,
    TransportError,
)
from spacecorestore.transport import framing
from spacecorestore.transport.framing import NEED_DATA, SecretStreamState
from spacecorestore.transport.secret_stream import SecretStream, connect_secret_stream, secret_stream_pair
from vectors_util import h, load_vector

H = load_vector("transport-handshake")


# -- helpers ------------------------------------------------------------------------------


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_fd_leak():
    before = fd_count()
    yield
    assert fd_count() == before


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """(client, server) connected over 127.0.0.1; the listener is closed again."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        port = listeners[0].socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listeners[0].accept()
    finally:
        for lst in listeners:
            await lst.aclose()
    return client, server


async def both_fail(a, b, exc_type) -> None:
    """Both run concurrently; at least one fails, and every failure is an ``exc_type``."""
    with pytest.raises(ExceptionGroup) as ei:
        await both(a, b)
    assert ei.value.exceptions and all(isinstance(e, exc_type) for e in ei.value.exceptions), ei.value.exceptions


async def both(a, b):
    """Run two coroutine functions concurrently; return their results."""
    out = [None, None]

    async def run(i, f):
        out[i] = await f()

    async with trio.open_nursery() as n:
        n.start_soon(run, 0, a)
        n.start_soon(run, 1, b)
    return out


async def tcp_secret_pair(**kw) -> tuple[SecretStream, SecretStream]:
    c, s = await tcp_pair()
    return await both(
        lambda: connect_secret_stream(c, True, **kw),
        lambda: connect_secret_stream(s, False, **kw),
    )


async def raw_peer_handshake(raw: trio.abc.Stream, is_initiator: bool) -> SecretStreamState:
    """Do the handshake by hand (sans-IO) on a raw stream; returns the open state."""
    st_ = SecretStreamState(is_initiator)
    out = st_.start()
    if out:
        await raw.send_all(out)
    while st_.state != framing.OPEN:
        ev = st_.next_event()
        out = st_.data_to_send()
        if out:
            await raw.send_all(out)
        if ev is NEED_DATA:
            st_.receive_data(await raw.receive_some(65536))
    return st_


async def assert_peer_closed(raw: trio.abc.Stream) -> None:
    """The other end closed: EOF (possibly after data it had already sent) or a reset."""
    with trio.fail_after(5):
        try:
            while await raw.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass


def is_closed(ss: SecretStream) -> bool:
    sock = getattr(ss.transport, "socket", None)
    return ss.closed and (sock is None or sock.fileno() == -1)


# -- working connections -------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["memory", "socket"])
async def test_pair_round_trip(transport):
    kpa, kpb = crypto.key_pair(b"a" * 32), crypto.key_pair(b"b" * 32)
    a, b = await secret_stream_pair(transport=transport, key_pairs=(kpa, kpb))
    assert a.is_initiator and not b.is_initiator
    assert a.handshake_hash == b.handshake_hash and len(a.handshake_hash) == 64
    assert a.public_key == kpa.public_key == b.remote_public_key
    assert b.public_key == kpb.public_key == a.remote_public_key
    for m in (b"hello", b"", b"x" * 100_000, b"last"):
        await a.send(m)
        assert await b.receive() == m
        await b.send(m[::-1])
        assert await a.receive() == m[::-1]
    await a.aclose()
    assert await b.receive() is None
    assert await b.receive() is None
    await b.aclose()


async def test_tcp_round_trip_and_clean_end(no_fd_leak):
    a, b = await tcp_secret_pair()
    assert a.handshake_hash == b.handshake_hash
    big = os.urandom(3 * 1024 * 1024)

    async def sender():
        for i in range(50):
            await a.send(i.to_bytes(4, "little") * 256)
        await a.send(big)
        await a.send_eof()
        # half-closed: we can still receive
        assert await a.receive() == b"bye"
        assert await a.receive() is None
        await a.aclose()

    async def receiver():
        for i in range(50):
            assert await b.receive() == i.to_bytes(4, "little") * 256
        assert await b.receive() == big
        assert await b.receive() is None
        await b.send(b"bye")
        await b.aclose()

    await both(sender, receiver)
    assert is_closed(a) and is_closed(b)


async def test_vector_connection_through_the_driver():
    """With the vector's ephemeral keys and headers, the bytes written are the recorded chunks."""
    ca, cb = trio.testing.memory_stream_pair()
    written = {True: bytearray(), False: bytearray()}

    def record(stream, is_initiator):
        orig = stream.send_stream.send_all

        async def send_all(data):
            written[is_initiator].extend(data)
            await orig(data)

        stream.send_stream.send_all = send_all

    record(ca, True)
    record(cb, False)

    def kw(side):
        v = H[side]
        return dict(
            key_pair=crypto.key_pair(h(v["staticSeed"])),
            _ephemeral=crypto.key_pair(h(v["ephemeralSeed"])),
            _header=h(v["secretstreamHeader"]),
        )

    a, b = await both(
        lambda: connect_secret_stream(ca, True, **kw("initiator")),
        lambda: connect_secret_stream(cb, False, **kw("responder")),
    )
    assert a.handshake_hash.hex() == H["handshakeHash"]
    data = {"initiator": [], "responder": []}
    for w in H["wire"]:
        if w["kind"] == "data":
            data[w["from"]].append(h(w["plaintext"]))
    for m in data["initiator"]:
        await a.send(m)
    for m in data["responder"]:
        await b.send(m)
    await a.send_eof()
    await b.send_eof()
    for side, ss in (("initiator", a), ("responder", b)):
        got = []
        while (m := await ss.receive()) is not None:
            got.append(m.hex())
        assert got == H["deliveredTo"][side]
    for side, is_i in (("initiator", True), ("responder", False)):
        expected = b"".join(h(w["hex"]) for w in H["wire"] if w["from"] == side and "hex" in w)
        assert bytes(written[is_i]) == expected
    await a.aclose()
    await b.aclose()


async def test_concurrent_senders_keep_frames_whole():
    a, b = await secret_stream_pair(transport="socket")
    n_tasks, per = 8, 40

    async def sender(k):
        for i in range(per):
            await a.send(bytes([k]) * (1000 + 3000 * (i % 5)) + i.to_bytes(2, "little"))

    async def receive_all():
        seen = {k: [] for k in range(n_tasks)}
        for _ in range(n_tasks * per):
            m = await b.receive()
            seen[m[0]].append(int.from_bytes(m[-2:], "little"))
            assert set(m[:-2]) == {m[0]}
        return seen

    async with trio.open_nursery() as n:
        for k in range(n_tasks):
            n.start_soon(sender, k)
        seen = await receive_all()
    assert all(seen[k] == list(range(per)) for k in range(n_tasks))
    await a.aclose()
    await b.aclose()


@pytest.mark.parametrize("transport", ["memory", "socket"])
async def test_send_many(transport):
    a, b = await secret_stream_pair(transport=transport)
    msgs = [bytes([i]) * (i * 997) for i in range(200)]

    async def send():
        await a.send_many(msgs[:100])
        await a.send_many([])
        await a.send(b"between")
        await a.send_many(iter(msgs[100:]))

    async def recv():
        got = [await b.receive() for _ in range(201)]
        assert got == msgs[:100] + [b"between"] + msgs[100:]

    await both(send, recv)
    with pytest.raises(LocalProtocolError):
        await a.send_many([b"x", bytes(framing.MAX_MESSAGE + 1)])
    assert a.closed and a.failure is not None
    await b.aclose()


async def test_send_before_peer_header_and_early_data():
    """The initiator may send right after the handshake; the data follows its header."""
    ca, cb = trio.testing.memory_stream_pair()
    a, b = await both(lambda: connect_secret_stream(ca, True), lambda: connect_secret_stream(cb, False))
    await a.send(b"1")
    await a.send(b"2")
    assert [await b.receive(), await b.receive()] == [b"1", b"2"]


async def test_receive_is_single_task_and_closed_errors():
    a, b = await secret_stream_pair()

    async def second_reader():
        with pytest.raises(LocalProtocolError):
            await b.receive()

    async with trio.open_nursery() as n:
        n.start_soon(b.receive)
        await trio.testing.wait_all_tasks_blocked()
        await second_reader()
        await a.send(b"go")
    await b.send_eof()
    await b.send_eof()  # idempotent
    with pytest.raises(LocalProtocolError):
        await b.send(b"after eof")
    await a.aclose()
    await a.aclose()  # idempotent
    with pytest.raises(LocalProtocolError):
        await a.send(b"x")
    with pytest.raises(LocalProtocolError):
        await a.receive()
    await b.aclose()


async def test_aclose_while_receiving_raises_local_error():
    a, b = await secret_stream_pair(transport="socket")

    async def reader():
        with pytest.raises(LocalProtocolError):
            await b.receive()

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await b.aclose()
    await a.aclose()


async def test_too_large_message_destroys_the_connection():
    a, b = await secret_stream_pair(transport="socket")
    with pytest.raises(LocalProtocolError):
        await a.send(bytes(framing.MAX_MESSAGE + 1))
    assert is_closed(a)
    with pytest.raises(LocalProtocolError):
        await a.send(b"x")
    # the peer just sees the connection end
    with pytest.raises(TransportError):
        while await b.receive() is not None:
            pass
        raise TransportError("ended")
    await b.aclose()


async def test_max_message_over_tcp():
    a, b = await tcp_secret_pair()
    big = os.urandom(framing.MAX_MESSAGE)

    async def send():
        await a.send(big)
        await a.send(b"after")

    async def recv():
        assert await b.receive() == big
        assert await b.receive() == b"after"

    await both(send, recv)
    await a.aclose()
    await b.aclose()


# -- keep-alive and timeouts ------------------------------------------------------------------------


async def test_keep_alive_flows_while_reading_and_is_dropped():
    a, b = await secret_stream_pair(transport="socket", keep_alive=0.05)
    assert a.receive_timeout == 20.0  # default with keep-alive

    async def idle_reader(ss):
        with trio.move_on_after(0.5):
            m = await ss.receive()
            pytest.fail(f"keep-alives must not be delivered, got {m!r}")

    async with trio.open_nursery() as n:
        n.start_soon(idle_reader, a)
        n.start_soon(idle_reader, b)
    assert 4 <= a.keep_alives_sent <= 12 and 4 <= b.keep_alives_sent <= 12
    # a real message still arrives, and an empty one sent explicitly is dropped too
    await a.send(b"")
    await a.send(b"real")
    assert await b.receive() == b"real"
    await a.aclose()
    await b.aclose()


async def test_keep_alives_delivered_as_empty_messages_without_keep_alive_on_receiver():
    ca, cb = trio.testing.memory_stream_pair()
    a, b = await both(
        lambda: connect_secret_stream(ca, True, keep_alive=0.05, receive_timeout=None),
        lambda: connect_secret_stream(cb, False),
    )
    assert b.receive_timeout is None

    async def a_reads():
        with trio.move_on_after(0.3):
            await a.receive()

    async with trio.open_nursery() as n:
        n.start_soon(a_reads)
        assert await b.receive() == b""  # a keep-alive, delivered
        assert await b.receive() == b""


async def test_keep_alive_restarted_by_writes():
    a, b = await secret_stream_pair(transport="socket", keep_alive=0.2)

    async def a_reads():
        with trio.move_on_after(0.6):
            await a.receive()

    async def a_writes():
        for _ in range(12):
            await a.send(b"m")
            await trio.sleep(0.05)

    async with trio.open_nursery() as n:
        n.start_soon(a_reads)
        n.start_soon(a_writes)
    assert a.keep_alives_sent == 0
    await a.aclose()
    await b.aclose()


async def test_receive_timeout(no_fd_leak, caplog):
    a, b = await tcp_secret_pair(receive_timeout=0.2)
    t0 = trio.current_time()
    with pytest.raises(StreamTimeoutError):
        await b.receive()
    assert 0.19 <= trio.current_time() - t0 < 2
    assert is_closed(b)
    assert "timed out" in caplog.text
    with pytest.raises(StreamTimeoutError):  # sticky
        await b.receive()
    await assert_peer_closed(a.transport)
    await a.aclose()


async def test_receive_timeout_not_hit_with_peer_keep_alive():
    ca, cb = trio.testing.memory_stream_pair()
    a, b = await both(
        lambda: connect_secret_stream(ca, True, keep_alive=0.05),
        lambda: connect_secret_stream(cb, False, receive_timeout=0.25, drop_empty=True),
    )

    async def a_reads():
        with trio.move_on_after(0.8):
            await a.receive()

    async with trio.open_nursery() as n:
        n.start_soon(a_reads)
        with trio.move_on_after(0.8) as cs:
            await b.receive()
    assert cs.cancelled_caught and b.failure is None


async def test_time_without_a_reader_does_not_count():
    a, b = await secret_stream_pair(transport="socket", receive_timeout=0.2)
    await trio.sleep(0.3)  # nobody reading
    await a.send(b"late")
    assert await b.receive() == b"late"
    await a.aclose()
    await b.aclose()


# -- hostile peers -------------------------------------------------------------------------------


async def test_garbage_instead_of_handshake(no_fd_leak, caplog):
    c, s = await tcp_pair()
    await c.send_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    with pytest.raises(HandshakeError) as ei:
        await connect_secret_stream(s, False)
    assert not isinstance(ei.value, HandshakeTimeoutError)
    assert s.socket.fileno() == -1
    assert "connection destroyed" in caplog.text
    await assert_peer_closed(c)
    await c.aclose()


async def test_garbage_in_frames_instead_of_handshake(no_fd_leak):
    c, s = await tcp_pair()
    await c.send_all(framing.frame(os.urandom(32)) + framing.frame(bytes(5)))
    # a random 32-byte message 1 is usually a valid point... or refused at DH; either way
    # the next frame (5 bytes where message 3 is expected, after our message 2) fails
    with pytest.raises(HandshakeError):
        await connect_secret_stream(s, False, handshake_timeout=2)
    assert s.socket.fileno() == -1
    await assert_peer_closed(c)
    await c.aclose()


@pytest.mark.parametrize("as_initiator", [True, False])
async def test_truncated_handshake(no_fd_leak, as_initiator):
    c, s = await tcp_pair()

    async def hostile():
        # follow the protocol up to a truncated message, then FIN
        peer = SecretStreamState(not as_initiator)
        out = peer.start()
        if out:
            await c.send_all(out[:20])
        else:
            data = await c.receive_some(65536)
            peer.receive_data(data)
            assert peer.next_event() is NEED_DATA
            await c.send_all(peer.data_to_send()[:50])
        await c.send_eof()

    async with trio.open_nursery() as n:
        n.start_soon(hostile)
        with pytest.raises(HandshakeError):
            await connect_secret_stream(s, as_initiator, handshake_timeout=5)
    assert s.socket.fileno() == -1
    await c.aclose()


async def test_peer_stalls_mid_handshake(no_fd_leak, caplog):
    c, s = await tcp_pair()
    peer = SecretStreamState(True)
    await c.send_all(peer.start())  # message 1, then silence
    t0 = trio.current_time()
    with pytest.raises(HandshakeTimeoutError) as ei:
        await connect_secret_stream(s, False, handshake_timeout=0.3)
    assert isinstance(ei.value, StreamTimeoutError) and isinstance(ei.value, HandshakeError)
    assert 0.29 <= trio.current_time() - t0 < 3
    assert s.socket.fileno() == -1
    assert "timed out" in caplog.text
    await assert_peer_closed(c)
    await c.aclose()


async def test_silent_peer_and_two_responders_time_out(no_fd_leak):
    c, s = await tcp_pair()
    await both_fail(
        lambda: connect_secret_stream(c, False, handshake_timeout=0.2),
        lambda: connect_secret_stream(s, False, handshake_timeout=0.2),
        HandshakeTimeoutError,
    )
    assert c.socket.fileno() == -1 and s.socket.fileno() == -1


async def test_peer_stalls_before_its_header(no_fd_leak):
    """Noise done but the header never comes: still the handshake timeout."""
    c, s = await tcp_pair()

    async def hostile():
        peer = SecretStreamState(False)
        peer.start()
        while True:
            data = await c.receive_some(65536)
            if not data:
                return
            peer.receive_data(data)
            while peer.next_event() is not NEED_DATA:
                pass
            out = peer.data_to_send()
            if peer.result is not None:
                continue  # Noise complete: hold back our header
            await c.send_all(out)

    async with trio.open_nursery() as n:
        n.start_soon(hostile)
        with pytest.raises(HandshakeTimeoutError, match="stream header"):
            await connect_secret_stream(s, True, handshake_timeout=0.3)
    await c.aclose()


async def test_two_initiators(no_fd_leak):
    c, s = await tcp_pair()
    await both_fail(
        lambda: connect_secret_stream(c, True, handshake_timeout=5),
        lambda: connect_secret_stream(s, True, handshake_timeout=5),
        HandshakeError,
    )
    assert c.socket.fileno() == -1 and s.socket.fileno() == -1


@pytest.mark.parametrize("kind", ["length", "stream-id"])
async def test_bad_header(no_fd_leak, kind):
    c, s = await tcp_pair()

    async def hostile():
        peer = SecretStreamState(False)
        peer.start()
        while peer.state == framing.HANDSHAKE:
            peer.receive_data(await c.receive_some(65536))
            while peer.next_event() is not NEED_DATA:
                if peer.state != framing.HANDSHAKE:
                    break
            out = peer.data_to_send()
            if peer.state == framing.HANDSHAKE:
                await c.send_all(out)
        if kind == "length":
            await c.send_all(framing.frame(bytes(57)))
        else:
            # our own role's stream id instead of the responder's
            wrong = framing.stream_id(peer.handshake_hash, True) + bytes(24)
            await c.send_all(framing.frame(wrong))

    async with trio.open_nursery() as n:
        n.start_soon(hostile)
        with pytest.raises(BadHeaderError):
            await connect_secret_stream(s, True, handshake_timeout=5)
    assert s.socket.fileno() == -1
    await assert_peer_closed(c)
    await c.aclose()


async def _open_with_raw_peer(**kw):
    """(our SecretStream as responder, the raw client stream, the raw peer's open state)."""
    c, s = await tcp_pair()
    ss, peer = await both(
        lambda: connect_secret_stream(s, False, **kw),
        lambda: raw_peer_handshake(c, True),
    )
    return ss, c, peer


async def test_frame_failing_decryption(no_fd_leak, caplog):
    ss, c, peer = await _open_with_raw_peer()
    good = peer.send(b"good")
    bad = bytearray(peer.send(b"tampered"))
    bad[-1] ^= 0x55
    await c.send_all(good + bytes(bad))
    assert await ss.receive() == b"good"
    with pytest.raises(BadMessageError):
        await ss.receive()
    assert is_closed(ss)
    assert "connection destroyed" in caplog.text
    with pytest.raises(BadMessageError):
        await ss.send(b"x")
    await assert_peer_closed(c)
    await c.aclose()


async def test_replayed_frame(no_fd_leak):
    ss, c, peer = await _open_with_raw_peer()
    f = peer.send(b"once")
    await c.send_all(f + f)
    assert await ss.receive() == b"once"
    with pytest.raises(BadMessageError):
        await ss.receive()
    assert is_closed(ss)
    await assert_peer_closed(c)
    await c.aclose()


async def test_short_frame(no_fd_leak):
    ss, c, peer = await _open_with_raw_peer()
    await c.send_all(framing.frame(bytes(10)))
    with pytest.raises(BadMessageError):
        await ss.receive()
    assert is_closed(ss)
    await c.aclose()


async def test_declared_frame_never_arrives(no_fd_leak):
    ss, c, peer = await _open_with_raw_peer(receive_timeout=0.3)
    f = peer.send(b"x" * 1000)
    await c.send_all(f[:500])  # length says 1017, 497 bytes come, then nothing
    with pytest.raises(StreamTimeoutError):
        await ss.receive()
    assert is_closed(ss)
    await assert_peer_closed(c)
    await c.aclose()


async def test_declared_frame_over_limit(no_fd_leak):
    ss, c, peer = await _open_with_raw_peer(max_frame=4096)
    await c.send_all(framing.u24(4097))
    with pytest.raises(BadMessageError):
        await ss.receive()
    assert is_closed(ss)
    await c.aclose()


async def test_bounded_buffering(no_fd_leak):
    """We read only when no complete frame is buffered: at most one read (+ a partial frame) is held."""
    ss, c, peer = await _open_with_raw_peer(receive_size=65536)
    n = 4000
    frames = peer.send_many([i.to_bytes(4, "little") * 256 for i in range(n)])  # ~4 MiB

    async def flood():
        await c.send_all(bytes(frames))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        await trio.sleep(0.1)  # the kernel buffers fill; we hold nothing yet
        assert ss._state.buffered == 0
        for i in range(n):
            assert await ss.receive() == i.to_bytes(4, "little") * 256
            assert ss._state.buffered <= 65536
    await ss.aclose()
    await c.aclose()


async def test_partial_frame_then_eof_is_a_clean_end(no_fd_leak):
    ss, c, peer = await _open_with_raw_peer()
    await c.send_all(peer.send(b"whole") + peer.send(b"partial")[:7])
    await c.send_eof()
    assert await ss.receive() == b"whole"
    assert await ss.receive() is None
    await ss.aclose()
    await c.aclose()


async def test_peer_resets_connection(no_fd_leak):
    ss, c, peer = await _open_with_raw_peer()
    import socket as pysocket
    import struct

    c.socket.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_LINGER, struct.pack("ii", 1, 0))
    await c.aclose()  # RST
    with pytest.raises(TransportError):
        m = await ss.receive()
        assert m is None  # some kernels report the RST as EOF
        raise TransportError("eof")
    await ss.aclose()


async def test_cancelled_handshake_closes_the_stream(no_fd_leak):
    c, s = await tcp_pair()
    with trio.move_on_after(0.1):
        await connect_secret_stream(s, False, handshake_timeout=None)
    assert s.socket.fileno() == -1
    await c.aclose()


async def test_cancelled_send_mid_frame_destroys():
    """A send cancelled while the transport blocks (peer not reading) destroys the connection."""
    a, b = await tcp_secret_pair()
    with trio.move_on_after(0.3):
        while True:
            await a.send(b"z" * 1_000_000)
    assert a.failure is not None and is_closed(a)
    await b.aclose()


async def test_many_hostile_connections_leak_nothing(no_fd_leak):
    for i in range(20):
        c, s = await tcp_pair()
        await c.send_all(os.urandom(i * 7))
        if i % 2:
            await c.send_eof()
        with pytest.raises(HandshakeError):
            await connect_secret_stream(s, i % 3 == 0, handshake_timeout=0.2)
        await c.aclose()


# -- random bytes through the trio driver -------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.booleans(), st.booleans())
def test_random_bytes_to_the_driver(data, after_handshake, eof):
    async def main():
        if after_handshake:
            ss, c, peer = await _open_with_raw_peer(receive_timeout=0.05)
            del peer
        else:
            c, s = await tcp_pair()
        await c.send_all(data)
        if eof:
            await c.send_eof()
        try:
            if after_handshake:
                while await ss.receive() is not None:
                    pass
                await ss.aclose()
            else:
                ss = await connect_secret_stream(s, False, handshake_timeout=0.05)
                await ss.aclose()
        except TransportError:
            assert is_closed(ss) if after_handshake else s.socket.fileno() == -1
        await c.aclose()

    trio.run(main)
