"""Secret-stream framing and encryption, sans-IO (02-transport §4).

Vectors: transport-handshake.json (every chunk of ``wire`` in order, with the
injected ephemeral keys and secretstream headers; ``deliveredTo``; stream
ids; the replication capability), transport-crypto.json (namespaces) and
transport-encoding.json (``uint24``, the frame length prefix).  Plus hostile
input: bad headers, short / tampered / replayed frames, oversize lengths,
EOF at every point, and random bytes at every stage (only typed errors).
"""
from __future__ import annotations

import hashlib

import nacl.bindings as nb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacecorestore import crypto
from spacecorestore.errors import (
    BadHeaderError,
    BadMessageError,
    HandshakeError,
    LocalProtocolError,
    TransportError,
)
from spacecorestore.transport import framing
from spacecorestore.transport.framing import (
    NEED_DATA,
    EndOfStream,
    HandshakeComplete,
    HeaderReceived,
    Message,
    SecretStreamState,
)
from vectors_util import h, load_vector

H = load_vector("transport-handshake")
C = load_vector("transport-crypto")
E = load_vector("transport-encoding")


def _kp(seed_hex):
    return crypto.key_pair(h(seed_hex))


def vector_state(side: str, **kw) -> SecretStreamState:
    v = H[side]
    return SecretStreamState(
        side == "initiator",
        _kp(v["staticSeed"]),
        ephemeral=_kp(v["ephemeralSeed"]),
        header=h(v["secretstreamHeader"]),
        **kw,
    )


def split_frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 3], "little")
        out.append(data[pos : pos + 3 + n])
        pos += 3 + n
    assert pos == len(data)
    return out


def drain(state: SecretStreamState) -> list:
    events = []
    while True:
        ev = state.next_event()
        if ev is NEED_DATA:
            return events
        events.append(ev)
        if isinstance(ev, EndOfStream):
            return events


def random_pair(**kw):
    return SecretStreamState(True, **kw), SecretStreamState(False, **kw)


def connect(a: SecretStreamState, b: SecretStreamState) -> None:
    """Run the handshake and header exchange between two fresh states, in memory."""
    out_a = a.start()
    out_b = b.start()
    for _ in range(6):
        if out_a:
            b.receive_data(out_a)
        if out_b:
            a.receive_data(out_b)
        drain(a)
        drain(b)
        out_a, out_b = a.data_to_send(), b.data_to_send()
    assert a.state == b.state == framing.OPEN


# -- constants ---------------------------------------------------------------------------


def test_namespaces():
    ns = C["namespaces"]
    assert crypto.hash32(ns["name"].encode()).hex() == ns["base"]
    assert framing.NS_INITIATOR.hex() == ns["NS_INITIATOR"]
    assert framing.NS_RESPONDER.hex() == ns["NS_RESPONDER"]
    assert framing.NS_SEND.hex() == ns["NS_SEND"]


@pytest.mark.parametrize("v", E["uint24"], ids=lambda v: str(v["value"]))
def test_uint24_prefix(v):
    assert framing.u24(v["value"]).hex() == v["hex"]
    body = bytes(v["value"]) if v["value"] <= 70000 else None
    if body is not None:
        assert framing.frame(body)[:3].hex() == v["hex"]


def test_limits():
    assert framing.MAX_FRAME == 16_777_215
    assert framing.MAX_MESSAGE == 16_777_198


def test_stream_ids_and_capability():
    hh = h(H["handshakeHash"])
    assert framing.stream_id(hh, True).hex() == H["initiator"]["streamId"]
    assert framing.stream_id(hh, False).hex() == H["responder"]["streamId"]
    cap = H["replicationCapability"]
    assert crypto.replication_capability(True, h(cap["coreKey"]), hh).hex() == cap["initiator"]
    assert crypto.replication_capability(False, h(cap["coreKey"]), hh).hex() == cap["responder"]


def test_secretstream_headers_from_labels():
    for side in ("initiator", "responder"):
        v = H[side]
        assert hashlib.blake2b(v["secretstreamHeaderLabel"].encode(), digest_size=24).hexdigest() == v["secretstreamHeader"]


# -- the recorded connection ------------------------------------------------------------------


def replay_wire(feed_split=None):
    """Replays ``wire`` in order; returns (states, delivered, events)."""
    states = {"initiator": vector_state("initiator"), "responder": vector_state("responder")}
    other = {"initiator": "responder", "responder": "initiator"}
    pending = {s: split_frames(states[s].start()) for s in states}
    delivered = {"initiator": [], "responder": []}
    events = {"initiator": [], "responder": []}

    def deliver(to: str, data: bytes) -> None:
        st_ = states[to]
        chunks = feed_split(data) if feed_split else [data]
        for c in chunks:
            st_.receive_data(c)
            for ev in drain(st_):
                events[to].append(ev)
                if isinstance(ev, Message):
                    delivered[to].append(ev.data.hex())
            pending[to] += split_frames(st_.data_to_send())

    for w in H["wire"]:
        src, dst = w["from"], other[w["from"]]
        if w["kind"] == "end-of-stream":
            states[dst].receive_data(b"")
            evs = drain(states[dst])
            assert evs == [EndOfStream()]
            events[dst] += evs
            continue
        if w["kind"] == "data":
            assert not pending[src]
            chunk = states[src].send(h(w["plaintext"]))
            assert w["tag"] == 0
        else:
            assert pending[src], f"{src} has nothing to write for {w['kind']}"
            chunk = pending[src].pop(0)
        assert chunk.hex() == w["hex"], w["kind"]
        assert chunk[:3].hex() == w["lengthPrefix"] and len(chunk) == 3 + w["length"]
        deliver(dst, chunk)
    assert not pending["initiator"] and not pending["responder"]
    return states, delivered, events


def test_wire_reproduced_byte_for_byte():
    states, delivered, events = replay_wire()
    assert delivered == H["deliveredTo"]
    for side in ("initiator", "responder"):
        s = states[side]
        assert s.handshake_hash.hex() == H["handshakeHash"]
        assert s.public_key.hex() == H[side]["staticPublicKey"]
        assert s.result.tx.hex() == H[side]["tx"] and s.result.rx.hex() == H[side]["rx"]
        kinds = [type(e) for e in events[side]]
        assert kinds[0] is HandshakeComplete and kinds[1] is HeaderReceived and kinds[-1] is EndOfStream
    assert states["initiator"].remote_public_key.hex() == H["remotePublicKeySeenByInitiator"]
    assert states["responder"].remote_public_key.hex() == H["remotePublicKeySeenByResponder"]


def test_wire_fields():
    for w in H["wire"]:
        if w["kind"] == "stream-header":
            assert w["hex"][6:] == w["fields"]["streamId"] + w["fields"]["secretstreamHeader"]
        if w["kind"] == "data":
            f = w["fields"]
            assert w["hex"][6:] == f["encryptedTag"] + f["ciphertext"] + f["mac"]


def test_wire_one_byte_at_a_time():
    _, delivered, _ = replay_wire(lambda d: [d[i : i + 1] for i in range(len(d))])
    assert delivered == H["deliveredTo"]


def test_wire_coalesced_into_one_chunk():
    """Everything each side wrote, in one receive_data call."""
    for side, other in (("initiator", "responder"), ("responder", "initiator")):
        everything = b"".join(h(w["hex"]) for w in H["wire"] if w["from"] == other and "hex" in w)
        st_ = vector_state(side)
        st_.start()
        st_.receive_data(everything)
        st_.receive_data(b"")
        evs = drain(st_)
        assert [e.data.hex() for e in evs if isinstance(e, Message)] == H["deliveredTo"][side]
        assert isinstance(evs[-1], EndOfStream)


def test_decrypt_recorded_frames_with_vector_keys():
    """Direct check of the data frames: pull with rx and the peer's header."""
    for src in ("initiator", "responder"):
        state = nb.crypto_secretstream_xchacha20poly1305_state()
        nb.crypto_secretstream_xchacha20poly1305_init_pull(state, h(H[src]["secretstreamHeader"]), h(H[src]["tx"]))
        for w in (w for w in H["wire"] if w["kind"] == "data" and w["from"] == src):
            m, tag = nb.crypto_secretstream_xchacha20poly1305_pull(state, h(w["hex"])[3:], None)
            assert m.hex() == w["plaintext"] and tag == 0


# -- behaviour ------------------------------------------------------------------------------------


def test_send_before_handshake_and_start_twice():
    a = SecretStreamState(True)
    with pytest.raises(LocalProtocolError):
        a.send(b"x")
    a.start()
    with pytest.raises(LocalProtocolError):
        a.start()
    b = SecretStreamState(False)
    with pytest.raises(LocalProtocolError):
        b.next_event()


def test_responder_start_is_empty_and_needs_data():
    b = SecretStreamState(False)
    assert b.start() == b""
    assert b.next_event() is NEED_DATA


def test_message_round_trip_and_empty_messages():
    a, b = random_pair()
    connect(a, b)
    for m in (b"", b"x", bytes(range(256)) * 300, b""):
        b.receive_data(a.send(m))
        assert drain(b) == [Message(m, 0)]
    a2, b2 = SecretStreamState(True), SecretStreamState(False, drop_empty=True)
    connect(a2, b2)
    b2.receive_data(a2.send(b"") + a2.send(b"") + a2.send(b"k") + a2.send(b""))
    assert drain(b2) == [Message(b"k", 0)]


def test_send_accepts_bytes_like():
    a, b = random_pair()
    connect(a, b)
    b.receive_data(a.send(bytearray(b"ab")) + a.send(memoryview(b"cd")))
    assert [e.data for e in drain(b)] == [b"ab", b"cd"]


def test_send_right_after_handshake_goes_after_the_header():
    """Messages sent before data_to_send() is flushed still follow the header (§4.3)."""
    a, b = random_pair()
    b.start()
    b.receive_data(a.start())
    drain(b)
    a.receive_data(b.data_to_send())
    assert isinstance(a.next_event(), HandshakeComplete)
    out = a.send(b"early")  # message 3 and the header are still pending in data_to_send()
    assert a.data_to_send() == b""
    frames = split_frames(out)
    assert [len(f) - 3 for f in frames] == [64, 56, 5 + 17]
    b.receive_data(out)
    evs = drain(b)
    assert [type(e) for e in evs] == [HandshakeComplete, HeaderReceived, Message]
    assert evs[2].data == b"early"


def test_max_message_size():
    a, b = random_pair()
    connect(a, b)
    with pytest.raises(LocalProtocolError):
        a.send(bytes(framing.MAX_MESSAGE + 1))
    big = bytes(framing.MAX_MESSAGE)
    f = a.send(big)
    assert f[:3] == b"\xff\xff\xff"
    b.receive_data(f)
    assert drain(b) == [Message(big, 0)]


def test_large_message_arriving_in_pieces():
    a, b = random_pair()
    connect(a, b)
    big = bytes(range(256)) * 4096  # 1 MiB
    f = a.send(big)
    for i in range(0, len(f), 65536):
        b.receive_data(f[i : i + 65536])
        evs = drain(b)
        assert b.buffered <= len(f)
    assert evs == [Message(big, 0)]
    assert b.buffered == 0


def test_tags_are_ignored():
    """TAG_PUSH / REKEY / FINAL frames are delivered and the stream stays open (§4.5)."""
    a, b = random_pair()
    connect(a, b)
    push = a._push_state
    frames = b""
    for tag, m in ((1, b"push"), (2, b"rekey"), (3, b"final"), (0, b"after")):
        c = nb.crypto_secretstream_xchacha20poly1305_push(push, m, None, tag)
        frames += framing.frame(c)
    b.receive_data(frames)
    assert drain(b) == [Message(b"push", 1), Message(b"rekey", 2), Message(b"final", 3), Message(b"after", 0)]
    b.receive_data(a.send(b"more"))
    assert drain(b) == [Message(b"more", 0)]


def test_eof_with_partial_frame_after_handshake_is_clean():
    a, b = random_pair()
    connect(a, b)
    f = a.send(b"hello")
    b.receive_data(f[:-1])
    assert b.next_event() is NEED_DATA
    b.receive_data(b"")
    assert b.next_event() == EndOfStream()
    assert b.next_event() == EndOfStream()
    with pytest.raises(LocalProtocolError):
        b.receive_data(b"x")


def test_eof_before_peer_header_is_clean():
    """The reference ends such a stream quietly; so do we."""
    a, b = random_pair()
    b.start()
    b.receive_data(a.start())
    drain(b)
    a.receive_data(b.data_to_send())
    drain(a)
    a.receive_data(b"")
    assert a.next_event() == EndOfStream()


@pytest.mark.parametrize("cut", [0, 1, 3, 20, 35])
def test_eof_mid_handshake(cut):
    a, b = random_pair()
    b.start()
    m1 = a.start()
    if cut:
        b.receive_data(m1[:cut])
    b.receive_data(b"")
    with pytest.raises(HandshakeError):
        b.next_event()
    # sticky
    with pytest.raises(HandshakeError):
        b.next_event()
    with pytest.raises(HandshakeError):
        b.send(b"x")


def test_bad_header_length():
    for n in (0, 55, 57):
        a, b = random_pair()
        b.start()
        b.receive_data(a.start())
        drain(b)
        a.receive_data(b.data_to_send())
        drain(a)
        b.receive_data(a.data_to_send()[:67])  # message 3 only
        drain(b)
        b.receive_data(framing.frame(bytes(n)))
        with pytest.raises(BadHeaderError):
            drain(b)


def test_bad_stream_id():
    """A header carrying our own role's stream id (a reflected header) is refused."""
    a, b = random_pair()
    b.start()
    b.receive_data(a.start())
    drain(b)
    a.receive_data(b.data_to_send())
    drain(a)
    out = a.data_to_send()
    m3, hdr = split_frames(out)
    b.receive_data(m3)
    drain(b)
    own = b.data_to_send()  # b's header: b's stream id
    b.receive_data(own)
    with pytest.raises(BadHeaderError):
        drain(b)


def test_short_data_frame():
    a, b = random_pair()
    connect(a, b)
    b.receive_data(framing.frame(bytes(16)))
    with pytest.raises(BadMessageError):
        drain(b)


def test_tampered_frame():
    a, b = random_pair()
    connect(a, b)
    f = bytearray(a.send(b"payload"))
    f[5] ^= 1
    b.receive_data(bytes(f))
    with pytest.raises(BadMessageError):
        drain(b)
    with pytest.raises(BadMessageError):  # sticky
        b.send(b"x")


def test_replayed_frame():
    a, b = random_pair()
    connect(a, b)
    f = a.send(b"once")
    b.receive_data(f)
    assert drain(b) == [Message(b"once", 0)]
    b.receive_data(f)
    with pytest.raises(BadMessageError):
        drain(b)


def test_reordered_frames():
    a, b = random_pair()
    connect(a, b)
    f1, f2 = a.send(b"1"), a.send(b"2")
    b.receive_data(f2 + f1)
    with pytest.raises(BadMessageError):
        drain(b)


def test_declared_length_over_limit_fails_before_the_body():
    a, b = random_pair(max_frame=1 << 16)
    connect(a, b)
    b.receive_data(framing.u24((1 << 16) + 1))
    with pytest.raises(BadMessageError):
        b.next_event()
    with pytest.raises(LocalProtocolError):
        SecretStreamState(True, max_frame=framing.MAX_FRAME + 1)


def test_garbage_instead_of_handshake():
    b = SecretStreamState(False)
    b.start()
    b.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(HandshakeError):
        drain(b)


def test_two_initiators():
    a, b = SecretStreamState(True), SecretStreamState(True)
    a.start()
    mb = b.start()
    a.receive_data(mb)
    with pytest.raises(HandshakeError):
        drain(a)


def test_two_responders_wait_forever():
    a, b = SecretStreamState(False), SecretStreamState(False)
    assert a.start() == b.start() == b""
    assert a.next_event() is NEED_DATA and b.next_event() is NEED_DATA


def test_fail_from_driver():
    a = SecretStreamState(True)
    a.start()
    err = BadMessageError("x")
    a.fail(err)
    with pytest.raises(BadMessageError):
        a.next_event()


# -- random input at every stage: only typed errors --------------------------------------------------


def _stage_state(stage: int) -> SecretStreamState:
    """0: responder awaiting message 1; 1: initiator awaiting message 2;
    2: responder awaiting message 3; 3: awaiting the header; 4: open."""
    if stage == 0:
        s = SecretStreamState(False)
        s.start()
        return s
    if stage == 1:
        s = SecretStreamState(True)
        s.start()
        return s
    a, b = random_pair()
    b.start()
    b.receive_data(a.start())
    drain(b)
    if stage == 2:
        return b
    a.receive_data(b.data_to_send())
    drain(a)
    if stage == 3:
        return a
    connect_rest = b
    connect_rest.receive_data(a.data_to_send())
    drain(connect_rest)
    a.receive_data(connect_rest.data_to_send())
    drain(a)
    assert a.state == framing.OPEN
    return a


@settings(max_examples=300, deadline=None)
@given(
    stage=st.integers(0, 4),
    chunks=st.lists(st.binary(max_size=300), max_size=6),
    framed=st.booleans(),
    eof=st.booleans(),
)
def test_random_bytes_only_typed_errors(stage, chunks, framed, eof):
    s = _stage_state(stage)
    try:
        for c in chunks:
            if not c and not framed:
                continue  # b"" would be EOF
            s.receive_data(framing.frame(c) if framed else c)
            drain(s)
        if eof:
            s.receive_data(b"")
            drain(s)
    except TransportError as e:
        assert s.error is e  # the connection is failed for good


def test_send_many_is_the_concatenation_of_sends():
    """send_many of the initiator's recorded messages gives exactly its recorded data frames."""
    a = vector_state("initiator")
    b = vector_state("responder")
    b.start()
    b.receive_data(a.start())
    drain(b)
    a.receive_data(b.data_to_send())
    drain(a)
    msgs = [h(w["plaintext"]) for w in H["wire"] if w["kind"] == "data" and w["from"] == "initiator"]
    out = a.send_many(msgs)  # message 3 and the header are still pending: they lead
    frames = split_frames(bytes(out))
    recorded = [w["hex"] for w in H["wire"] if w["from"] == "initiator" and "hex" in w]
    assert [f.hex() for f in frames] == recorded[1:]  # message 1 came from start()
    assert a.send_many([]) == bytearray()
    with pytest.raises(LocalProtocolError):
        a.send_many([b"ok", bytes(framing.MAX_MESSAGE + 1)])
    # nothing was encrypted by the refused call: the next frame still decrypts in order
    b.receive_data(bytes(out))
    assert [e.data for e in drain(b) if isinstance(e, Message)] == msgs
    b.receive_data(a.send(b"next"))
    assert drain(b) == [Message(b"next", 0)]
