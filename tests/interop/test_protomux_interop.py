"""protomux (``spacecorestore.transport.protomux_driver``) against the reference protomux 3.12.1
over @hyperswarm/secret-stream 6.9.2 on 127.0.0.1 TCP (02-transport §5, §7, §8.5).

The reference runs as tests/interop/transport_peer.js (shared with the secret-stream
interop tests).  Both roles:

* Python client → reference server: hundreds of echoes (empty, 1 byte, 64 KiB,
  UTF-8) sent plain and in corked batches; two channels interleaved; our
  close seen by the reference as a remote close and the number reused; an
  open the reference does not want is rejected and the connection goes on;
  the reference process dying closes every channel here.
* reference client → Python server: many echoes plain and batched; the
  reference's close reaches us as a remote close before its end; our server
  opening first (the reference's open pairs with our waiting channel); our
  reject and our close understood by the reference; keep-alives both ways
  across an idle period longer than our receive timeout.

Every test ends with the reference exiting with the expected status; Node
processes are stopped by PID.
"""
from __future__ import annotations

import signal
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from spacecorestore import crypto
from spacecorestore.errors import TransportError
from spacecorestore.transport.protomux_codec import RAW, STRING
from spacecorestore.transport.protomux_driver import Channel, MessageType, Protomux
from spacecorestore.transport.secret_stream import SecretStream, connect_secret_stream
from tests.interop.peerproc import PEER_JS, transport_peer as reference
from tests.interop.refnode import ensure_installed, node_available

pytestmark = pytest.mark.skipif(
    not node_available(), reason="Node.js (`node`, with npm or tests/interop/node_modules) is not available"
)

PY_KP = crypto.key_pair(bytes.fromhex("33" * 32))
REF_SEED = bytes.fromhex("44" * 32)
GEN_64K = bytes(i & 255 for i in range(65536))  # what the peer's --gen 65536 sends
ID = crypto.hash32(b"protomux interop channel id")


@pytest.fixture(scope="module", autouse=True)
def reference_installed():
    assert PEER_JS.exists(), "tests/interop/transport_peer.js is part of the project"
    ensure_installed()


class Recorder:
    """Callback log: ("open", hs) / ("msg", bytes) / ("close", is_remote) per channel name."""

    def __init__(self) -> None:
        self.items: list[tuple] = []
        self._changed = trio.Event()

    def add(self, *item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = trio.Event()

    def of(self, name: str, kind: str) -> list:
        return [x[2] for x in self.items if x[0] == name and x[1] == kind]

    async def until(self, pred, timeout: float = 20) -> None:
        with trio.fail_after(timeout):
            while not pred():
                await self._changed.wait()

    def channel(self, mux: Protomux, name: str, id: bytes | None = None, *, echo: bool = False,
                protocol: str = "echo", hs_out: str = "py") -> Channel:
        def on_message(m: bytes, ch: Channel) -> None:
            self.add(name, "msg", m)
            if echo:
                ch.send(0, m)

        ch = mux.create_channel(
            protocol, id, handshake=STRING, messages=[MessageType(RAW, on_message)],
            on_open=lambda hs, ch: self.add(name, "open", hs),
            on_close=lambda rem, ch: self.add(name, "close", rem),
        )
        ch.open(hs_out)
        return ch


def mixed_messages(n: int) -> list[bytes]:
    """Empty, 1-byte, 64 KiB, UTF-8 and numbered messages, in a fixed order."""
    special = [b"", b"\x00", GEN_64K, "ünïcode ☕".encode()]
    return [special[i % 8] if i % 8 < 4 else f"message {i}".encode() for i in range(n)]


async def python_client(port: int, **kw: Any) -> SecretStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return await connect_secret_stream(stream, True, key_pair=PY_KP, **kw)


# -- Python client, reference server ----------------------------------------------------------------


async def test_many_echoes_plain_and_batched_then_close_and_reuse():
    rec = Recorder()
    plain, batched = mixed_messages(200), mixed_messages(64)
    async with reference("server", 0, REF_SEED.hex(), "--once") as peer:
        ss = await python_client((await peer.event("listening"))["port"])
        async with Protomux(ss) as mux:
            ch = rec.channel(mux, "a", ID)
            for m in plain:  # sent before the server's open has arrived: it buffers them
                ch.send(0, m)
            assert await ch.wait_opened() and ch.remote_handshake == "echo-server"
            for i in range(0, len(batched), 16):
                with mux.corked():
                    for m in batched[i : i + 16]:
                        ch.send(0, m)
                await mux.drain()
            await rec.until(lambda: len(rec.of("a", "msg")) == len(plain) + len(batched))
            assert rec.of("a", "msg") == plain + batched  # in order, intact
            first_number = ch.local_id
            ch.close()
            assert rec.of("a", "close") == [False]
            closed = await peer.event("channel-closed")
            assert closed["isRemote"] is True
            # the number was freed on both sides: the next channel reuses it
            again = rec.channel(mux, "again", ID)
            assert again.local_id == first_number
            again.send(0, b"once more")
            await rec.until(lambda: rec.of("again", "msg") == [b"once more"])
        assert await peer.exit_status() == 0
    assert [e["hex"] for e in peer.all("message")] == [m.hex() for m in plain + batched + [b"once more"]]
    assert not peer.all("error"), peer.all("error")
    assert rec.of("again", "close") == [True]  # the stream's end closed it (as the reference does)


async def test_two_channels_interleaved_and_a_rejected_open():
    rec = Recorder()
    async with reference("server", 0, REF_SEED.hex(), "--once") as peer:
        ss = await python_client((await peer.event("listening"))["port"])
        async with Protomux(ss) as mux:
            with mux.corked():  # opens and messages of three channels in one batch frame
                a = rec.channel(mux, "a", b"A" * 32)
                nobody = rec.channel(mux, "nobody", protocol="not-echo")
                b = rec.channel(mux, "b", None)
                for i in range(50):
                    a.send(0, b"a%d" % i)
                    b.send(0, b"b%d" % i)
            assert not await nobody.wait_opened()  # the reference rejects what it does not serve
            assert rec.of("nobody", "close") == [True] and nobody.closed
            await rec.until(lambda: len(rec.of("a", "msg")) == 50 and len(rec.of("b", "msg")) == 50)
            assert rec.of("a", "msg") == [b"a%d" % i for i in range(50)]
            assert rec.of("b", "msg") == [b"b%d" % i for i in range(50)]
            assert {e["id"] for e in peer.all("open")} == {(b"A" * 32).hex(), None}
        assert await peer.exit_status() == 0
    assert not peer.all("error"), peer.all("error")


async def test_reference_process_dying_closes_every_channel():
    rec = Recorder()
    async with reference("server", 0, REF_SEED.hex()) as peer:
        ss = await python_client((await peer.event("listening"))["port"])
        mux = Protomux(ss)
        async with trio.open_nursery() as nursery:
            result: dict = {}

            async def run() -> None:
                try:
                    await mux.run()
                    result["ok"] = True
                except TransportError as e:
                    result["error"] = e

            nursery.start_soon(run)
            chans = [rec.channel(mux, f"c{i}", bytes([i]) * 32) for i in range(3)]
            for ch in chans:
                ch.send(0, b"ping")
            await rec.until(lambda: all(rec.of(f"c{i}", "msg") == [b"ping"] for i in range(3)))
            peer.proc.send_signal(signal.SIGTERM)  # exits at once: the socket closes under us
            with trio.fail_after(10):
                await mux.wait_closed()
    assert all(rec.of(f"c{i}", "close") == [True] for i in range(3))
    assert ss.closed and mux.closed
    assert "ok" in result or isinstance(result.get("error"), TransportError)


# -- reference client, Python server ----------------------------------------------------------------


@asynccontextmanager
async def python_server(setup, **kw: Any):
    """Serve one connection with a Protomux configured by ``setup(mux)``; yields (port, state)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    state: dict = {}

    async def serve() -> None:
        stream = await listener.accept()
        await listener.aclose()
        ss = await connect_secret_stream(stream, False, key_pair=PY_KP, **kw)
        state["ss"] = ss
        mux = Protomux(ss)
        state["mux"] = mux
        setup(mux)
        try:
            await mux.run()
        except TransportError as e:
            state["error"] = e

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        yield listener.socket.getsockname()[1], state


def echo_server(rec: Recorder, *, close_after: int | None = None):
    def setup(mux: Protomux) -> None:
        def on_pair(id):
            count = [0]

            def on_message(m: bytes, ch: Channel) -> None:
                rec.add("srv", "msg", m)
                count[0] += 1
                if close_after is not None and count[0] >= close_after:
                    ch.close()  # instead of echoing
                else:
                    ch.send(0, m)

            ch = mux.create_channel(
                "echo", id, handshake=STRING, messages=[MessageType(RAW, on_message)],
                on_open=lambda hs, ch: rec.add("srv", "open", hs),
                on_close=lambda rem, ch: rec.add("srv", "close", rem),
            )
            ch.open("py-server")

        mux.pair("echo", on_pair)

    return setup


@pytest.mark.parametrize("batch", [False, True], ids=["plain", "batch"])
async def test_reference_client_many_echoes_and_its_close(batch):
    rec = Recorder()
    words = [f"w{i}" for i in range(150)]
    extra = ["--batch"] if batch else []
    async with python_server(echo_server(rec)) as (port, state):
        async with reference("client", port, REF_SEED.hex(), "--id", ID.hex(), "--handshake", "ref-client",
                             "--expect-remote", PY_KP.public_key.hex(), "--timeout", 20000, *extra,
                             *words, "--empty", "--gen", 1, "--gen", 65536) as peer:
            assert await peer.exit_status(30) == 0, peer.events
        with trio.fail_after(10):
            await state["mux"].wait_closed()
    assert (await peer.event("done"))["ok"]
    expected = [w.encode() for w in words] + [b"", b"\x00", GEN_64K]
    assert rec.of("srv", "msg") == expected
    assert [bytes.fromhex(e["hex"]) for e in peer.all("echo")] == expected
    assert rec.of("srv", "open") == ["ref-client"]
    # the reference closed the channel (a remote close for us), then ended the stream
    assert rec.of("srv", "close") == [True]
    assert state["mux"].error is None and "error" not in state
    hs = await peer.event("handshake")
    assert hs["handshakeHash"] == state["ss"].handshake_hash.hex()


async def test_our_server_opens_first_and_pairs_with_the_reference_open():
    rec = Recorder()

    def setup(mux: Protomux) -> None:
        rec.channel(mux, "srv", ID, echo=True, hs_out="py-first")  # no pair handler: our open waits

    async with python_server(setup) as (port, state):
        async with reference("client", port, REF_SEED.hex(), "--id", ID.hex(), "--timeout", 15000,
                             "one", "two", "--gen", 65536) as peer:
            assert await peer.exit_status(30) == 0, peer.events
    assert (await peer.event("open"))["handshake"] == "py-first"
    assert rec.of("srv", "msg") == [b"one", b"two", GEN_64K]
    assert rec.of("srv", "close") == [True] and "error" not in state


async def test_reference_understands_our_reject():
    async with python_server(lambda mux: None) as (port, state):  # nobody serves "echo"
        async with reference("client", port, REF_SEED.hex(), "--timeout", 15000, "hello") as peer:
            assert await peer.exit_status(30) == 1
    done = await peer.event("done")
    assert done["reason"] == "channel closed by remote" and done["missing"] == [b"hello".hex()]
    assert (await peer.event("channel-closed"))["isRemote"] is True
    assert not peer.all("error"), peer.all("error")  # a reject, not a protocol error


async def test_reference_understands_our_close():
    rec = Recorder()
    async with python_server(echo_server(rec, close_after=2)) as (port, state):
        async with reference("client", port, REF_SEED.hex(), "--timeout", 15000, "a", "b", "c") as peer:
            assert await peer.exit_status(30) == 1
    done = await peer.event("done")
    assert done["reason"] == "channel closed by remote"
    assert [bytes.fromhex(e["hex"]) for e in peer.all("echo")] == [b"a"]
    assert (await peer.event("channel-closed"))["isRemote"] is True
    assert rec.of("srv", "close") == [False]
    assert not peer.all("error"), peer.all("error")


async def test_keep_alive_both_ways_across_idle_period():
    rec = Recorder()
    kw = dict(keep_alive=0.1, receive_timeout=0.4)
    async with python_server(echo_server(rec), **kw) as (port, state):
        async with reference("client", port, REF_SEED.hex(), "--keep-alive", 100, "--idle", 1500,
                             "--timeout", 15000, "after", "the", "pause") as peer:
            assert await peer.exit_status(30) == 0, peer.events
    assert rec.of("srv", "msg") == [b"after", b"the", b"pause"]
    ss = state["ss"]
    assert ss.keep_alives_sent >= 8 and "error" not in state and state["mux"].error is None
