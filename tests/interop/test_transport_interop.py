"""Spacecore's secret stream and protomux against the reference
@hyperswarm/secret-stream 6.9.2 / protomux 3.12.1 over 127.0.0.1 TCP (02-transport §7, §8.5).

The reference runs as tests/interop/transport_peer.js (an adaptation of
shared/interop/transport-peer.js with a ``--raw`` mode: secret-stream
messages echoed without protomux).  Both roles: Python initiator ↔ reference
responder and reference initiator ↔ Python responder.  Checked: both sides
print/derive the same handshake hash, each side's remote public key is the
other's static key, messages of 0 B, 1 B, 64 KiB and 1 MiB echo back intact,
keep-alives keep an idle connection alive past the receive timeout, a FIN
each way ends it and the reference exits 0; a frame failing decryption makes
the reference destroy the connection.

protomux (``spacecorestore.transport.protomux_driver``; skipped if it cannot
be imported): an ``echo`` channel with the reference in both roles — empty,
1-byte, 64 KiB and UTF-8 messages, a corked batch, a 32-byte channel id, the
server opening first (answered from our pair handler), keep-alives across an
idle period, channel close and a clean end (the reference exits 0).

Node processes are stopped by PID (``Process.kill``) when a test ends.
"""
from __future__ import annotations

import os

import pytest
import trio

from spacecorestore import crypto
from spacecorestore.errors import HandshakeError, HandshakeTimeoutError, TransportError
from spacecorestore.transport import framing
from spacecorestore.transport.secret_stream import SecretStream, connect_secret_stream
from tests.interop.peerproc import transport_peer as node_peer
from tests.interop.refnode import ensure_installed, node_available

pytestmark = pytest.mark.skipif(
    not node_available(),
    reason="Node.js (`node`, with npm or tests/interop/node_modules) is not available: "
           "the reference secret-stream interop tests need it",
)

PY_SEED = bytes.fromhex("11" * 32)
REF_SEED = bytes.fromhex("22" * 32)
PY_KP = crypto.key_pair(PY_SEED)
REF_PK = crypto.key_pair(REF_SEED).public_key
GEN_64K = bytes(i & 255 for i in range(65536))
GEN_1M = bytes(i & 255 for i in range(1 << 20))


@pytest.fixture(scope="module", autouse=True)
def reference_installed():
    ensure_installed()


async def listen_once() -> tuple[trio.SocketListener, int]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    return listeners[0], listeners[0].socket.getsockname()[1]


async def py_client(port: int, **kw) -> SecretStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return await connect_secret_stream(stream, True, key_pair=PY_KP, **kw)


async def echo_round(ss: SecretStream, messages: list[bytes]) -> None:
    """Send all, then read the echoes in order (concurrently, so big ones cannot deadlock)."""

    async def sender():
        for m in messages:
            await ss.send(m)

    async with trio.open_nursery() as n:
        n.start_soon(sender)
        for m in messages:
            got = await ss.receive()
            assert got == m, (len(got or b""), len(m))


async def end_cleanly(ss: SecretStream) -> None:
    await ss.send_eof()
    with trio.fail_after(10):
        assert await ss.receive() is None
    await ss.aclose()


# -- Python initiator, reference responder ------------------------------------------------------


async def test_python_client_reference_server_raw():
    async with node_peer("server", 0, REF_SEED.hex(), "--once", "--raw") as peer:
        listening = await peer.event("listening")
        assert listening["publicKey"] == REF_PK.hex()
        ss = await py_client(listening["port"])
        hs = await peer.event("handshake")
        assert hs["isInitiator"] is False
        assert hs["handshakeHash"] == ss.handshake_hash.hex()
        assert hs["remotePublicKey"] == PY_KP.public_key.hex() == ss.public_key.hex()
        assert hs["publicKey"] == ss.remote_public_key.hex() == REF_PK.hex()
        await echo_round(ss, [b"hi", b"", b"x", GEN_64K, b"", GEN_1M, "café ☕".encode()])
        await end_cleanly(ss)
        assert await peer.wait() == 0
        assert peer.all("end") and peer.all("closed")
        assert not peer.all("error"), peer.all("error")
        assert [e["length"] for e in peer.all("message")] == [2, 0, 1, 65536, 0, 1 << 20, len("café ☕".encode())]


async def test_python_client_reference_server_max_message():
    async with node_peer("server", 0, REF_SEED.hex(), "--once", "--raw") as peer:
        ss = await py_client((await peer.event("listening"))["port"])
        big = os.urandom(framing.MAX_MESSAGE)
        await echo_round(ss, [big, b"after"])
        await end_cleanly(ss)
        assert await peer.wait(30) == 0


async def test_python_client_keep_alive_across_idle_period():
    """Both sides send keep-alives every 100 ms; our receive timeout (400 ms) is never hit."""
    async with node_peer("server", 0, REF_SEED.hex(), "--once", "--raw", "--keep-alive", 100) as peer:
        ss = await py_client((await peer.event("listening"))["port"], keep_alive=0.1, receive_timeout=0.4)
        with trio.move_on_after(1.5) as cs:
            await ss.receive()  # idle: keep-alives only, dropped
        assert cs.cancelled_caught and ss.failure is None
        assert ss.keep_alives_sent >= 8
        await echo_round(ss, [b"still here"])
        await end_cleanly(ss)
        assert await peer.wait() == 0
        assert not peer.all("error")
        # the reference dropped our keep-alives: only the real message reached it
        assert [e["length"] for e in peer.all("message")] == [10]


async def test_reference_keep_alive_delivered_as_empty_messages_without_ours():
    """Without keep-alive on our side, the reference's keep-alives arrive as empty messages."""
    async with node_peer("server", 0, REF_SEED.hex(), "--once", "--raw", "--keep-alive", 50) as peer:
        ss = await py_client((await peer.event("listening"))["port"])
        with trio.fail_after(5):
            assert await ss.receive() == b""
            assert await ss.receive() == b""
        await end_cleanly(ss)
        assert await peer.wait() == 0


async def test_reference_destroys_on_bad_frame():
    async with node_peer("server", 0, REF_SEED.hex(), "--once", "--raw") as peer:
        ss = await py_client((await peer.event("listening"))["port"])
        await echo_round(ss, [b"ok"])
        # a frame that fails decryption on the reference: flip a MAC bit on the wire
        frame = bytearray(ss._state.send(b"tampered"))
        frame[-1] ^= 1
        await ss.transport.send_all(bytes(frame))
        with trio.fail_after(10):
            try:
                assert await ss.receive() is None
            except TransportError:
                pass  # reset
        err = await peer.event("error")
        assert err["message"]  # libsodium's decryption error
        await ss.aclose()
        assert await peer.wait() == 0  # --once: exits after the connection closed


# -- reference initiator, Python responder ------------------------------------------------------


async def serve_echo(listener: trio.SocketListener, results: dict, **kw) -> None:
    """Accept one connection, echo every message until the peer ends, end too."""
    stream = await listener.accept()
    await listener.aclose()
    ss = await connect_secret_stream(stream, False, key_pair=PY_KP, **kw)
    results["ss"] = ss
    got = results.setdefault("got", [])
    while (m := await ss.receive()) is not None:
        got.append(m)
        await ss.send(m)
    await ss.send_eof()
    await ss.aclose()


@pytest.mark.parametrize("keep_alive", [False, True])
async def test_reference_client_python_server_raw(keep_alive):
    listener, port = await listen_once()
    results: dict = {}
    extra = ["--keep-alive", 100, "--idle", 1000] if keep_alive else []
    kw = dict(keep_alive=0.1, receive_timeout=0.5) if keep_alive else {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_echo(listener, results, **kw))
        async with node_peer(
            "client", port, REF_SEED.hex(), "--raw", "--expect-remote", PY_KP.public_key.hex(),
            "hello", "--empty", "--gen", 65536, "--gen", 1 << 20, "--timeout", 20000, *extra,
        ) as peer:
            assert await peer.wait(30) == 0, peer.events
            hs = await peer.event("handshake")
            done = await peer.event("done")
            assert done["ok"], done
    ss = results["ss"]
    assert hs["isInitiator"] is True
    assert hs["handshakeHash"] == ss.handshake_hash.hex()
    assert hs["remotePublicKey"] == PY_KP.public_key.hex()
    assert ss.remote_public_key.hex() == hs["publicKey"] == REF_PK.hex()
    expected = [b"hello", GEN_64K, GEN_1M] if keep_alive else [b"hello", b"", GEN_64K, GEN_1M]
    assert results["got"] == expected
    if keep_alive:
        assert ss.failure is None and ss.keep_alives_sent >= 5


async def test_two_initiators_fail_on_both_sides():
    """Our side accepts but also acts as initiator: both handshakes fail (§4.1)."""
    listener, port = await listen_once()
    failures = []

    async def python_initiator():
        stream = await listener.accept()
        await listener.aclose()
        try:
            await connect_secret_stream(stream, True, handshake_timeout=10)
        except HandshakeError as e:
            failures.append(e)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(python_initiator)
        async with node_peer("client", port, REF_SEED.hex(), "--raw", "x", "--timeout", 5000) as peer:
            assert await peer.wait(20) == 1
            assert (await peer.event("error"))["message"] == "Noise handshake failed"
    assert len(failures) == 1 and not isinstance(failures[0], HandshakeTimeoutError)


async def test_reference_client_against_garbage_server():
    """Our side sends garbage instead of message 2: the reference fails the handshake, exit 1."""
    listener, port = await listen_once()

    async def garbage():
        stream = await listener.accept()
        await listener.aclose()
        await stream.receive_some(1024)
        await stream.send_all(framing.frame(os.urandom(96)))
        with trio.move_on_after(10):
            while await stream.receive_some(1024):
                pass
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(garbage)
        async with node_peer("client", port, REF_SEED.hex(), "--raw", "x", "--timeout", 5000) as peer:
            assert await peer.wait(20) == 1
            assert (await peer.event("done"))["ok"] is False


# -- protomux echo channel (spacecorestore.transport.protomux_driver) --------------------------------


def _protomux():
    from spacecorestore.transport import protomux_codec, protomux_driver

    return protomux_driver, protomux_codec


class EchoLog:
    """Received echoes, awaitable until a count is reached."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._changed = trio.Event()

    def add(self, m: bytes, _channel=None) -> None:
        self.items.append(bytes(m))
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, n: int, timeout: float = 15) -> list[bytes]:
        with trio.fail_after(timeout):
            while len(self.items) < n:
                await self._changed.wait()
        return self.items


MUX_MESSAGES = [b"", b"x", GEN_64K, "ünïcode".encode()]


@pytest.mark.parametrize("variant", ["plain", "id", "batch", "open-first", "keep-alive"])
async def test_protomux_echo_python_client(variant):
    pm, codec = _protomux()
    chan_id = crypto.hash32(b"echo channel id") if variant in ("id", "open-first") else None
    args = ["server", 0, REF_SEED.hex(), "--once"]
    if variant == "open-first":
        args += ["--open-first", "--id", chan_id.hex()]
    if variant == "keep-alive":
        args += ["--keep-alive", 100]
    kw = dict(keep_alive=0.1, receive_timeout=0.4) if variant == "keep-alive" else {}
    echoes = EchoLog()
    opened_with = []
    async with node_peer(*args) as peer:
        ss = await py_client((await peer.event("listening"))["port"], **kw)
        assert (await peer.event("handshake"))["handshakeHash"] == ss.handshake_hash.hex()
        mux = pm.Protomux(ss)
        chans = []

        def make_channel(id_=chan_id):
            ch = mux.create_channel(
                "echo", id=id_, handshake=codec.STRING,
                messages=[pm.MessageType(codec.RAW, echoes.add)],
                on_open=lambda hs, _ch: opened_with.append(hs),
            )
            ch.open("py-client")
            chans.append(ch)
            return ch

        if variant == "open-first":
            # the server opens on connect; we answer its open from a pair handler (§5.3)
            mux.pair("echo", make_channel)
        async with mux:
            if variant == "open-first":
                with trio.fail_after(10):
                    while not chans:
                        await trio.sleep(0.01)
                ch = chans[0]
            else:
                ch = make_channel()
            if variant == "keep-alive":
                assert await ch.wait_opened()
                await trio.sleep(1.2)  # idle, keep-alives both ways, our receive timeout is 0.4 s
                assert ss.failure is None and ss.keep_alives_sent >= 5
            if variant == "batch":
                with mux.corked():
                    for m in MUX_MESSAGES:
                        ch.send(0, m)
            else:
                for m in MUX_MESSAGES:
                    ch.send(0, m)
            assert await ch.wait_opened()
            got = await echoes.until(len(MUX_MESSAGES))
            assert got == MUX_MESSAGES  # in order
            ch.close()
        assert await peer.wait() == 0
    assert opened_with == ["echo-server"]
    assert [e["hex"] for e in peer.all("message")] == [m.hex() for m in MUX_MESSAGES]
    opens = peer.all("open")
    assert len(opens) == 1 and opens[0]["handshake"] == "py-client"
    assert opens[0]["id"] == (chan_id.hex() if chan_id else None)
    assert not peer.all("error"), peer.all("error")
    assert peer.all("closed")


@pytest.mark.parametrize("variant", ["plain", "batch", "id"])
async def test_protomux_echo_reference_client(variant):
    pm, codec = _protomux()
    listener, port = await listen_once()
    chan_id = crypto.hash32(b"echo channel id") if variant == "id" else None
    seen_ids = []

    async def serve():
        stream = await listener.accept()
        await listener.aclose()
        ss = await connect_secret_stream(stream, False, key_pair=PY_KP)
        mux = pm.Protomux(ss)

        def echo(m, ch):
            ch.send(0, m)

        def on_pair(id_):
            seen_ids.append(id_)
            ch = mux.create_channel("echo", id=id_, handshake=codec.STRING, messages=[pm.MessageType(codec.RAW, echo)])
            ch.open("py-server")

        mux.pair("echo", on_pair)  # before the reader starts: the peer's open may be in the first read
        async with mux:
            await mux.wait_closed()

    extra = ["--batch"] if variant == "batch" else []
    if chan_id:
        extra += ["--id", chan_id.hex()]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        async with node_peer("client", port, REF_SEED.hex(), "--expect-remote", PY_KP.public_key.hex(),
                             "a", "bb", "ccc", "--gen", 65536, "--timeout", 15000, *extra) as peer:
            assert await peer.wait(30) == 0, peer.events
            assert (await peer.event("done"))["ok"]
            assert (await peer.event("open"))["handshake"] == "py-server"
    assert seen_ids == [chan_id]
