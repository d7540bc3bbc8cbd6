"""protomux frames and channel state machine (02-transport §1, §5) against transport-protomux.json.

* every recorded frame decodes to its recorded fields and re-encodes to the same bytes;
* the 13 recorded steps replayed between two ``MuxConnection``s (handlers as in
  the step descriptions, frames delivered in the recorded order) give the
  recorded frames byte for byte — except the batch boundaries of
  ``corked-open`` (§5.10), compared item by item — and the recorded events;
* the compact-encoding 3.x primitives protomux relies on (transport-encoding.json);
* sans-IO edge cases of §5.8 / §5.9 and a fuzz of the decoders.
"""
from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacecorestore.errors import (
    BadArgumentError,
    DecodingError,
    LocalProtocolError,
    RemoteProtocolError,
    SpacecoreError,
)
from spacecorestore.transport.protomux import (
    ChannelClosed,
    ChannelOpened,
    ChannelState,
    MessageReceived,
    MuxConnection,
    PairRequest,
)
from spacecorestore.transport.protomux_codec import (
    BUFFER,
    OPTIONAL_BUFFER,
    RAW,
    STRING,
    UINT,
    Batch,
    Close,
    Message,
    MuxReader,
    Open,
    Reject,
    UnknownControl,
    decode_frame,
    batch_body,
    encode_batch,
    encode_close,
    encode_frame,
    encode_message,
    encode_open,
    encode_reject,
    iter_batch_items,
    put_uint,
)
from vectors_util import h, load_vector

V = load_vector("transport-protomux")
E = load_vector("transport-encoding")


# -- compact-encoding 3.x primitives (transport-encoding.json) ---------------------------------


@pytest.mark.parametrize("case", E["uint"], ids=lambda c: str(c["value"]))
def test_uint(case):
    assert UINT.encode(case["value"]) == h(case["hex"])
    r = MuxReader(h(case["hex"]))
    assert r.uint() == case["value"] and r.remaining() == 0


@pytest.mark.parametrize("case", E["uintDecodeOnly"], ids=lambda c: c["hex"])
def test_uint_non_minimal_forms_decode(case):
    assert UINT.decode(h(case["hex"])) == case["value"]


@pytest.mark.parametrize("case", E["uintErrors"], ids=lambda c: c["what"])
def test_uint_errors(case):
    with pytest.raises(DecodingError) as info:
        UINT.decode(h(case["hex"]))
    assert case["protomuxError"] in str(info.value)


def test_uint_encoder_refuses_unsafe_values():
    with pytest.raises(BadArgumentError):
        UINT.encode(2**53)
    with pytest.raises(BadArgumentError):
        UINT.encode(-1)


@pytest.mark.parametrize("case", E["string"], ids=lambda c: c["hex"])
def test_string(case):
    assert STRING.encode(case["value"]) == h(case["hex"])
    assert STRING.decode(h(case["hex"])) == case["value"]


@pytest.mark.parametrize("case", E["stringDecodeInvalidUtf8"], ids=lambda c: c["hex"])
def test_string_invalid_utf8_is_replaced(case):
    assert STRING.decode(h(case["hex"])) == case["value"]


@pytest.mark.parametrize("case", E["optionalBuffer"], ids=lambda c: c["hex"])
def test_optional_buffer(case):
    value = None if case["value"] is None else h(case["value"])
    assert OPTIONAL_BUFFER.encode(value) == h(case["hex"])
    decoded = OPTIONAL_BUFFER.decode(h(case["hex"]))
    assert decoded == (value or None)


def test_buffer_3x():
    b = E["bufferProtomux"]
    for case in b["encode"]:
        assert BUFFER.encode(h(case["value"])) == h(case["hex"])
        assert BUFFER.decode(h(case["hex"])) == h(case["value"])
    assert BUFFER.decode(b"\x00") == h(b["decode00"]) == b""  # empty stays empty (not None)
    with pytest.raises(BadArgumentError):
        BUFFER.encode(None)  # type: ignore[arg-type]


def test_raw():
    assert RAW.encode(h(E["raw"]["value"])) == h(E["raw"]["hex"])
    assert RAW.decode(h(E["raw"]["hex"])) == h(E["raw"]["value"])


def test_decoders_ignore_trailing_bytes():
    assert STRING.decode(b"\x02hi trailing") == "hi"
    assert UINT.decode(b"\x05\xff") == 5


# -- frames ----------------------------------------------------------------------------------


def _frame_from_vector(f: dict) -> Any:
    """The frame object a vector entry describes (independently of decode_frame)."""

    def item(d: dict) -> Any:
        kind = d.get("frame", "message")
        if kind == "open":
            return Open(d["channel"], d["protocol"], h(d["id"]), h(d["handshake"]) or b"")
        if kind == "reject":
            return Reject(d.get("channel", d.get("id")))
        if kind == "close":
            return Close(d.get("channel", d.get("id")))
        return Message(d["channel"], d["type"], h(d["payload"]))

    if f["frame"] == "batch":
        return Batch(tuple(item(i) for i in f["items"]))
    return item(f)


@pytest.mark.parametrize("f", V["frames"], ids=lambda f: f"{f['step']}-{f['from']}-{f['frame']}")
def test_frame_decodes_and_reencodes(f):
    data = h(f["hex"])
    frame = decode_frame(data)
    assert frame == _frame_from_vector(f)
    assert encode_frame(frame) == data
    # the annotated fields are a split of the frame
    assert "".join(x for x, _ in f["fields"]) == f["hex"]


def test_frame_encoders_match_the_examples_of_the_spec():
    echo_id = h(V["ids"]["echo"]["hex"])
    assert encode_open(1, "echo", echo_id, STRING.encode("initiator says hi")) == h(V["frames"][1]["hex"])
    assert encode_message(1, 0, STRING.encode("hello")) == bytes.fromhex("01000568656c6c6f")
    assert encode_reject(4) == bytes.fromhex("000204")
    assert encode_close(1) == bytes.fromhex("000301")
    batch = [(1, b"\x00\x01a"), (1, b"\x00\x01b"), (1, b"\x01\x07"), (2, b"\x00" + STRING.encode("initiator note")),
             (1, b"\x00\x01c")]
    assert encode_batch(batch) == h(V["frames"][10]["hex"])


def test_decode_edge_cases():
    assert decode_frame(b"") is None  # empty frame: ignored
    with pytest.raises(DecodingError, match="Out of bounds"):
        decode_frame(b"\x01")  # channel number only
    assert decode_frame(bytes.fromhex("fd0100006869")) == Message(1, 0, b"hi")  # non-minimal uints accepted
    assert decode_frame(b"\x00\x07whatever") == UnknownControl(7)  # control type >= 4: nothing read
    with pytest.raises(DecodingError):
        decode_frame(bytes.fromhex("0001010a6563686f"))  # protocol string runs past the end
    with pytest.raises(DecodingError):
        decode_frame(b"\x00\x02")  # reject without a number
    with pytest.raises(DecodingError):
        decode_frame(bytes.fromhex("ff0000000000002000"))  # 2^53 channel number
    # an overlong batch item is truncated to the frame end, not refused
    assert decode_frame(bytes.fromhex("00000109006869")) == Batch((Message(1, 0, b"hi"),))
    # a nested batch (control item of type 0) is expanded in place
    inner = encode_batch([(1, b"\x00\x01x"), (2, b"\x00\x01y")])[1:]  # "00 ..." body without the leading channel 0
    outer = encode_batch([(0, inner), (3, b"\x00\x01z")])
    assert decode_frame(outer) == Batch((Message(1, 0, b"\x01x"), Message(2, 0, b"\x01y"), Message(3, 0, b"\x01z")))


def test_deeply_nested_batches_need_no_recursion():
    frame = encode_message(1, 0, b"deep")
    for _ in range(5000):
        frame = encode_batch([batch_body(frame)])  # a batch whose single item is the previous frame
    assert decode_frame(frame) == Batch((Message(1, 0, b"deep"),))


def test_batch_items_before_a_bad_item_are_yielded():
    data = bytes.fromhex("000001" "03000161" "0000" "0301050a")  # item 2: an open whose protocol runs out
    it = iter_batch_items(data, 2)
    assert next(it) == Message(1, 0, b"\x01a")
    with pytest.raises(DecodingError):
        next(it)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_decoders_raise_only_typed_errors(data):
    try:
        frame = decode_frame(data)
    except DecodingError:
        return
    if frame is not None:
        encode_frame(frame)  # whatever decodes can be re-encoded


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.binary(max_size=24), max_size=6))
def test_fuzz_state_machine_raises_only_typed_errors(frames):
    mux = MuxConnection()
    mux.register_pair("echo")
    ch = ChannelState("echo", handshake_encoding=STRING, message_encodings=[STRING, UINT])
    mux.open(ch, "hi")
    for data in frames:
        try:
            for ev in mux.receive_message(data):
                if isinstance(ev, PairRequest):
                    mux.pair_request_done(ev)
        except RemoteProtocolError:
            mux.close_all()
            return
        mux.data_to_send()


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2**53 - 1), st.binary(max_size=8)), min_size=1, max_size=8))
def test_fuzz_batches_round_trip(items):
    body = []
    for ch, t, payload in items:
        b = bytearray()
        put_uint(b, t)
        body.append((ch, bytes(b) + payload))
    data = encode_batch(body)
    frame = decode_frame(data)
    assert isinstance(frame, Batch)
    assert encode_frame(frame) == data
    assert frame.items == tuple(Message(ch, t, p) for ch, t, p in items)


# -- replay of the recorded steps ---------------------------------------------------------------


class Side:
    """One MuxConnection with the step handlers of gen-transport-vectors.js, recording events as it."""

    def __init__(self, name: str, events: list) -> None:
        self.name = name
        self.mux = MuxConnection()
        self.out: deque[bytes] = deque()
        self.handlers: dict[str, Callable[[bytes | None], None]] = {}
        self.events = events
        self.step = ""

    def ev(self, text: str) -> None:
        self.events.append({"step": self.step, "side": self.name, "event": text})

    def channel(self, protocol, id=None, *, handshake=None, messages=(), on_open=None, on_close=None, aliases=()):
        ch = ChannelState(
            protocol, id, aliases=aliases, handshake_encoding=handshake,
            message_encodings=[enc for enc, _ in messages],
        )
        ch.user_data = {"open": on_open, "close": on_close, "messages": [fn for _, fn in messages]}
        return ch

    def open(self, ch, handshake=None):
        self.dispatch(self.mux.open(ch, handshake))

    def close(self, ch):
        self.dispatch(self.mux.close(ch))

    def send(self, ch, t, m):
        assert self.mux.send(ch, t, m)

    def pair(self, protocol, fn):
        self.handlers[protocol] = fn
        self.mux.register_pair(protocol)

    def dispatch(self, events) -> None:
        for e in events:
            if isinstance(e, PairRequest):
                self.handlers[e.protocol](e.id)
                self.mux.pair_request_done(e)
            elif isinstance(e, ChannelOpened):
                if e.channel.user_data["open"]:
                    e.channel.user_data["open"](e.handshake)
            elif isinstance(e, MessageReceived):
                fn = e.channel.user_data["messages"][e.type]
                if fn:
                    fn(e.message)
            elif isinstance(e, ChannelClosed):
                if e.channel.user_data["close"]:
                    e.channel.user_data["close"](e.is_remote)

    def receive(self, frame: bytes) -> None:
        self.dispatch(self.mux.receive_message(frame))
        self.flush()

    def flush(self) -> None:
        self.out.extend(self.mux.data_to_send())


def js(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


class HypercoreHandshake:
    """hypercore's wire handshake: uint flags (bit 0 seeks) || fixed32 capability."""

    def encode(self, v: dict) -> bytes:
        out = bytearray()
        put_uint(out, 1 if v["seeks"] else 0)
        assert len(v["capability"]) == 32
        return bytes(out) + v["capability"]

    def decode(self, data: bytes) -> dict:
        r = MuxReader(data)
        flags = r.uint()
        return {"seeks": bool(flags & 1), "capability": r.fixed(32)}


def _items(frames_hex: list[str]) -> list:
    out = []
    for x in frames_hex:
        f = decode_frame(bytes.fromhex(x))
        out.extend(f.items if isinstance(f, Batch) else [f])
    return out


def replay() -> tuple[dict[str, list[tuple[str, str]]], list[dict]]:
    events: list[dict] = []
    I, R = Side("initiator", events), Side("responder", events)
    other = {"initiator": R, "responder": I}
    ID, ID2 = h(V["ids"]["echo"]["hex"]), h(V["ids"]["echo2"]["hex"])
    hc = V["hypercoreOpen"]
    sent: dict[str, list[tuple[str, str]]] = {}
    recorded = {s["step"]: [f["from"] for f in V["frames"] if f["step"] == s["step"]] for s in V["steps"]}

    # responder: echo service for protocol "echo" (any id), types 0 (string) and 1 (uint)
    def echo_r(id):
        ch = None

        def m0(m):
            R.ev("echo message type 0: " + js(m))
            R.send(ch, 0, m.upper())

        def m1(m):
            R.ev(f"echo message type 1: {m}")
            R.send(ch, 1, m + 1)

        ch = R.channel("echo", id, handshake=STRING, messages=[(STRING, m0), (UINT, m1)],
                       on_open=lambda hs: R.ev(f"echo channel opened (id {id.hex()}), remote handshake {js(hs)}"),
                       on_close=lambda rem: R.ev(f"echo channel closed, isRemote={js(rem)}"))
        R.open(ch, "responder says hi")

    R.pair("echo", echo_r)

    chans: dict[str, ChannelState] = {}

    def announce_i(id):
        ch = I.channel("announce", messages=[(STRING, lambda m: I.ev("announce message: " + js(m)))],
                       on_open=lambda hs: I.ev("announce channel opened, handshake " + js(hs)),
                       on_close=lambda rem: I.ev(f"announce channel closed, isRemote={js(rem)}"))
        chans["announceI"] = ch
        I.open(ch)

    I.pair("announce", announce_i)

    def pump(step: str) -> None:
        log = sent.setdefault(step, [])
        order = recorded[step]
        I.flush()
        R.flush()
        while I.out or R.out:
            want = order[len(log)] if len(log) < len(order) else None
            side = {"initiator": I, "responder": R}.get(want) if want else None
            if side is None or not side.out:
                side = I if I.out else R
            frame = side.out.popleft()
            log.append((side.name, frame.hex()))
            other[side.name].receive(frame)

    def step_open():
        ch = R.channel("announce", messages=[(STRING, None)], on_open=lambda hs: R.ev("announce channel opened"),
                       on_close=lambda rem: R.ev(f"announce channel closed, isRemote={js(rem)}"))
        chans["announceR"] = ch
        R.open(ch)
        ch = I.channel("echo", ID, handshake=STRING,
                       messages=[(STRING, lambda m: I.ev("echo reply type 0: " + js(m))),
                                 (UINT, lambda m: I.ev(f"echo reply type 1: {m}")), (RAW, None)],
                       on_open=lambda hs: I.ev("echo channel opened, remote handshake " + js(hs)),
                       on_close=lambda rem: I.ev(f"echo channel closed, isRemote={js(rem)}"))
        chans["echoI"] = ch
        I.open(ch, "initiator says hi")

    def step_batch():
        I.mux.cork()
        for t, m in ((0, "a"), (0, "b"), (1, 7)):
            I.send(chans["echoI"], t, m)
        I.send(chans["announceI"], 0, "initiator note")
        I.send(chans["echoI"], 0, "c")
        I.mux.uncork()

    def step_corked_open():
        I.mux.cork()
        ch = I.channel("echo", ID2, handshake=STRING,
                       messages=[(STRING, lambda m: I.ev("echo2 reply type 0: " + js(m)))],
                       on_open=lambda hs: I.ev("echo2 channel opened, remote handshake " + js(hs)),
                       on_close=lambda rem: I.ev(f"echo2 channel closed, isRemote={js(rem)}"))
        I.open(ch, "second")
        I.send(ch, 0, "early message")
        I.mux.uncork()

    def step_reject():
        ch = I.channel("nobody-home", on_open=lambda hs: I.ev("nobody-home opened (unexpected)"),
                       on_close=lambda rem: I.ev(f"nobody-home channel closed, isRemote={js(rem)}"))
        I.open(ch)

    def step_reopen():
        ch = I.channel("echo", ID, handshake=STRING, messages=[(STRING, None)],
                       on_open=lambda hs: I.ev("echo (again) opened, remote handshake " + js(hs)))
        I.open(ch, "again")
        assert ch.local_id == 2  # LIFO reuse

    def hypercore(side: Side, is_initiator: bool) -> ChannelState:
        who = side.name
        ch = side.channel(
            "hypercore/alpha", h(hc["discoveryKey"]), aliases=["hypercore"], handshake=HypercoreHandshake(),
            on_open=lambda hs: side.ev(f"hypercore/alpha opened, remote handshake seeks={js(hs['seeks'])} "
                                       f"capability={hs['capability'].hex()}"),
            on_close=lambda rem: side.ev(f"hypercore/alpha closed, isRemote={js(rem)}"),
        )
        cap = h(hc["capabilityInitiator"] if is_initiator else hc["capabilityResponder"])
        side.open(ch, {"seeks": True, "capability": cap})
        assert who
        return ch

    hyper: dict[str, ChannelState] = {}

    phases: list[tuple[str, Callable[[], None]]] = [
        ("open", step_open),
        ("message", lambda: I.send(chans["echoI"], 0, "hello")),
        ("message-uint", lambda: I.send(chans["echoI"], 1, 1000)),
        ("unknown-type", lambda: I.send(chans["echoI"], 2, bytes.fromhex("0102"))),
        ("announce", lambda: R.send(chans["announceR"], 0, "ready")),
        ("batch", step_batch),
        ("corked-open", step_corked_open),
        ("reject", step_reject),
        ("close", lambda: I.close(chans["echoI"])),
        ("close-remote", lambda: R.close(chans["announceR"])),
        ("reopen-reuses-id", step_reopen),
        ("hypercore-open", lambda: hyper.update(i=hypercore(I, True), r=hypercore(R, False))),
        ("hypercore-open", lambda: I.close(hyper["i"])),
        ("end", lambda: (I.dispatch(I.mux.close_all()), R.dispatch(R.mux.close_all()))),
    ]
    for step, fn in phases:
        I.step = R.step = step
        fn()
        pump(step)
    return sent, events


SENT, EVENTS = replay()
STEPS = [s["step"] for s in V["steps"]]


def test_thirteen_steps():
    assert len(STEPS) == 13 and set(SENT) == set(STEPS)


@pytest.mark.parametrize("step", STEPS)
def test_replay_frames(step):
    recorded = [(f["from"], f["hex"]) for f in V["frames"] if f["step"] == step]
    ours = SENT[step]
    if step == "corked-open":
        # §5.10: synchronous pairing puts the reply into the responder's batch; compare items, not batches
        for who in ("initiator", "responder"):
            assert _items([x for s, x in ours if s == who]) == _items([x for s, x in recorded if s == who])
        assert ours[0] == recorded[0]
        assert len(ours) == 2 and decode_frame(bytes.fromhex(ours[1][1])) == Batch(tuple(_items([recorded[1][1], recorded[2][1]])))
    else:
        assert ours == recorded


@pytest.mark.parametrize("step", STEPS)
def test_replay_events(step):
    recorded = [e for e in V["events"] if e["step"] == step]
    ours = [e for e in EVENTS if e["step"] == step]
    for who in ("initiator", "responder"):
        r = [e["event"] for e in recorded if e["side"] == who]
        o = [e["event"] for e in ours if e["side"] == who]
        if step == "open":
            # the reference defers onopen of a channel paired at creation (§5.3); order differs, content not
            assert sorted(o) == sorted(r)
        else:
            assert o == r


def test_hypercore_open_capabilities():
    hc = V["hypercoreOpen"]
    opens = [decode_frame(h(f["hex"])) for f in V["frames"] if f["step"] == "hypercore-open" and f["frame"] == "open"]
    assert [o.handshake[1:] for o in opens] == [h(hc["capabilityInitiator"]), h(hc["capabilityResponder"])]
    assert all(o.id == h(hc["discoveryKey"]) for o in opens)


# -- state machine edge cases (§5.2, §5.8, §5.9) ------------------------------------------------


def _pair() -> tuple[MuxConnection, MuxConnection]:
    return MuxConnection(), MuxConnection()


def _deliver(src: MuxConnection, dst: MuxConnection) -> list:
    events = []
    for f in src.data_to_send():
        events += dst.receive_message(f)
    return events


def test_open_number_rules():
    m = MuxConnection()
    with pytest.raises(RemoteProtocolError, match="Invalid open message"):
        m.receive_message(encode_open(0, "x", None))
    m = MuxConnection()
    with pytest.raises(RemoteProtocolError, match="Invalid open message"):
        m.receive_message(encode_open(2, "x", None))  # skips 1
    m = MuxConnection()
    m.register_pair("x")
    (req,) = m.receive_message(encode_open(1, "x", None))
    with pytest.raises(RemoteProtocolError, match="in use"):
        m.receive_message(encode_open(1, "x", None))  # reuse of a number in use
    with pytest.raises(LocalProtocolError):
        m.receive_message(b"\x01\x00")  # the machine is failed now
    assert m.ended


def test_peer_may_reuse_a_freed_number():
    m = MuxConnection()
    m.receive_message(encode_open(1, "x", None))  # no handler: rejected, slot free again
    assert m.data_to_send() == [encode_reject(1)]
    m.receive_message(encode_open(1, "x", None))
    assert m.data_to_send() == [encode_reject(1)]


def test_ignored_input():
    m = MuxConnection()
    ch = ChannelState("echo", message_encodings=[STRING])
    m.open(ch)
    m.data_to_send()
    assert m.receive_message(b"") == []
    assert m.receive_message(encode_message(5, 0, b"\x01x")) == []  # unknown channel
    assert m.receive_message(encode_close(9)) == []  # close of an unknown number
    assert m.receive_message(encode_close(0)) == []
    assert m.receive_message(b"\x00\x09\xff\xff") == []  # control type >= 4
    m.receive_message(encode_open(1, "echo", None))
    m.data_to_send()
    assert ch.opened
    assert m.receive_message(encode_message(1, 7, b"zz")) == []  # undefined type
    assert m.receive_message(bytes.fromhex("fd0100fd0000016b")) == [MessageReceived(ch, 0, "k")]  # non-minimal


def test_undecodable_payload_and_handshake_are_fatal():
    m = MuxConnection()
    ch = ChannelState("echo", message_encodings=[STRING])
    m.open(ch)
    m.receive_message(encode_open(1, "echo", None))
    with pytest.raises(RemoteProtocolError):
        m.receive_message(encode_message(1, 0, b"\x05ab"))
    m = MuxConnection()
    ch = ChannelState("echo", handshake_encoding=STRING)
    m.open(ch, "x")
    with pytest.raises(RemoteProtocolError, match="handshake"):
        m.receive_message(encode_open(1, "echo", None, b"\x09abc"))


def test_invalid_reject_is_fatal():
    m = MuxConnection()
    with pytest.raises(RemoteProtocolError, match="Invalid reject message"):
        m.receive_message(encode_reject(1))
    m = MuxConnection()
    ch = ChannelState("echo")
    m.open(ch)
    m.receive_message(encode_open(1, "echo", None))  # paired
    with pytest.raises(RemoteProtocolError, match="Invalid reject message"):
        m.receive_message(encode_reject(1))


def test_reject_closes_and_frees():
    m = MuxConnection()
    ch = ChannelState("nobody")
    m.open(ch)
    assert m.receive_message(encode_reject(1)) == [ChannelClosed(ch, True, True)]
    ch2 = ChannelState("nobody")
    m.open(ch2)
    assert ch2.local_id == 1


def test_lifo_allocation():
    a, b = _pair()
    b.register_pair("p")
    chans = [ChannelState("p", bytes([i])) for i in range(4)]
    for c in chans:
        a.open(c)
    for ev in _deliver(a, b):
        b.open(ChannelState("p", ev.id))
        b.pair_request_done(ev)
    _deliver(b, a)
    assert [c.local_id for c in chans] == [1, 2, 3, 4] and all(c.opened for c in chans)
    for i in (3, 0, 1):  # free 4, 1, 2
        a.close(chans[i])
    c = ChannelState("p", b"new")
    a.open(c)
    assert c.local_id == 2
    c = ChannelState("p", b"new2")
    a.open(c)
    assert c.local_id == 1


def test_unique_and_local_misuse():
    m = MuxConnection()
    ch = ChannelState("p", b"k")
    with pytest.raises(LocalProtocolError):
        m.send(ch, 0, b"")  # before open
    m.open(ch)
    with pytest.raises(LocalProtocolError):
        m.open(ch)
    with pytest.raises(LocalProtocolError):
        m.open(ChannelState("p", b"k"))
    m.open(ChannelState("p", b"k", unique=False))
    with pytest.raises(LocalProtocolError):
        m.send(ch, 0, b"")  # undefined type
    assert m.is_open("p", b"k") and not m.is_open("p")
    m.close(ch)
    assert not m.send(ch, 0, b"")  # closed: not sent
    m.close_all()
    with pytest.raises(LocalProtocolError):
        m.open(ChannelState("q"))


def test_r1_peer_answers_an_open_we_closed():
    a, b = _pair()
    ch = ChannelState("p")
    a.open(ch)
    assert a.close(ch) == [ChannelClosed(ch, False)]
    assert a.data_to_send() == [encode_open(1, "p", None), encode_close(1)]
    # the reference peer ignores the close of a pending open and answers later with its open
    events = a.receive_message(encode_open(1, "p", None))
    assert events == []
    assert a.data_to_send() == [encode_close(1)]  # close again, then the number is free
    c = ChannelState("q")
    a.open(c)
    assert c.local_id == 1
    b.close_all()


def test_r1_closed_channel_keeps_its_waiting_place():
    a = MuxConnection()
    first, second = ChannelState("p", unique=False), ChannelState("p", unique=False)
    a.open(first)
    a.open(second)
    a.close(first)
    a.data_to_send()
    a.receive_message(encode_open(1, "p", None))  # pairs with (closed) first
    assert a.data_to_send() == [encode_close(1)] and not second.opened
    a.receive_message(encode_open(2, "p", None))
    assert second.opened and second.remote_id == 2


def test_r1_rejected_after_close():
    a = MuxConnection()
    ch = ChannelState("p")
    a.open(ch)
    a.close(ch)
    assert a.receive_message(encode_reject(1)) == []  # the close already reported; number freed now
    c = ChannelState("p")
    a.open(c)
    assert c.local_id == 1


def test_r2_peer_closes_a_pending_open():
    m = MuxConnection()
    m.register_pair("p")
    (req,) = m.receive_message(encode_open(1, "p", None))
    m.receive_message(encode_message(1, 0, b"x" * 100))
    assert m.buffered_bytes == 512 + 100
    assert m.receive_message(encode_close(1)) == []
    assert m.data_to_send() == [encode_reject(1)] and m.buffered_bytes == 0
    m.pair_request_done(req)
    assert m.data_to_send() == []  # nothing more to reject
    m.receive_message(encode_open(1, "p", None))  # the peer may reuse its number


def test_pending_open_without_handler_waits_for_running_handlers():
    m = MuxConnection()
    m.register_pair("p", b"one")
    (req,) = m.receive_message(encode_open(1, "p", b"one"))
    assert m.receive_message(encode_open(2, "p", None)) == []  # other key, no handler: rejected now
    assert m.data_to_send() == [encode_reject(2)]
    m.pair_request_done(req)
    assert m.data_to_send() == [encode_reject(1)]


def test_pair_handler_any_id_and_messages_buffered():
    m = MuxConnection()
    m.register_pair("p")
    (req,) = m.receive_message(encode_open(1, "p", b"\x07", STRING.encode("hs")))
    assert req.protocol == "p" and req.id == b"\x07"
    m.receive_message(encode_message(1, 0, STRING.encode("early")))
    ch = ChannelState("p", b"\x07", handshake_encoding=STRING, message_encodings=[STRING])
    events = m.open(ch, "mine")
    assert events == [ChannelOpened(ch, "hs"), MessageReceived(ch, 0, "early")]
    m.pair_request_done(req)
    assert m.data_to_send() == [encode_open(1, "p", b"\x07", STRING.encode("mine"))]


def test_aliases_pair_both_ways():
    m = MuxConnection()
    ch = ChannelState("hypercore/alpha", b"k", aliases=["hypercore"])
    m.open(ch)
    assert m.receive_message(encode_open(1, "hypercore", b"k")) == [ChannelOpened(ch, None)]
    m = MuxConnection()
    m.register_pair("hypercore")
    (req,) = m.receive_message(encode_open(1, "hypercore", b"k"))
    ch = ChannelState("hypercore/alpha", b"k", aliases=["hypercore"])
    assert m.open(ch) == [ChannelOpened(ch, None)]
    m.pair_request_done(req)
    assert m.data_to_send() == [encode_open(1, "hypercore/alpha", b"k")]  # our primary name


def test_received_multi_item_batch_corks_replies():
    m = MuxConnection()
    ch = ChannelState("p", message_encodings=[STRING])
    m.open(ch)
    m.receive_message(encode_open(1, "p", None))
    m.data_to_send()
    batch = encode_batch([(1, b"\x00" + STRING.encode("a")), (1, b"\x00" + STRING.encode("b"))])
    events = m.receive_message(batch)
    for e in events:
        m.send(ch, 0, e.message.upper())
    assert m.data_to_send() == [encode_batch([(1, b"\x00" + STRING.encode("A")), (1, b"\x00" + STRING.encode("B"))])]
    # a single message is answered with a plain frame
    (e,) = m.receive_message(encode_message(1, 0, STRING.encode("c")))
    m.send(ch, 0, "C")
    assert m.data_to_send() == [encode_message(1, 0, STRING.encode("C"))]


def test_cork_nesting_and_control_frames_in_batch():
    m = MuxConnection()
    a, b = ChannelState("a", message_encodings=[RAW]), ChannelState("b")
    m.cork()
    m.cork()
    m.open(a)
    m.send(a, 0, b"x")
    m.uncork()
    assert m.data_to_send() == []
    m.open(b)
    m.uncork()
    (frame,) = m.data_to_send()
    assert decode_frame(frame) == Batch((Open(1, "a", None), Message(1, 0, b"x"), Open(2, "b", None)))
    with pytest.raises(LocalProtocolError):
        m.uncork()


def test_close_all_closes_waiting_and_open_channels():
    m = MuxConnection()
    a, b = ChannelState("a"), ChannelState("b")
    m.open(a)
    m.open(b)
    m.receive_message(encode_open(1, "a", None))
    events = m.close_all()
    assert events == [ChannelClosed(a, True), ChannelClosed(b, True)]
    assert m.data_to_send() == [encode_open(1, "a", None), encode_open(2, "b", None)]  # nothing added
    assert not m.send(a, 0, b"")


def test_fatal_batch_processes_items_before_the_bad_one():
    m = MuxConnection()
    ch = ChannelState("p", message_encodings=[RAW])
    m.open(ch)
    m.receive_message(encode_open(1, "p", None))
    data = encode_batch([(0, b"\x03\x01")]) + b"\x05\x01"  # close(1), then an item that runs out of bytes
    with pytest.raises(RemoteProtocolError):
        m.receive_message(data)
    assert ch.closed  # the close before the bad item was processed


def test_errors_are_typed():
    assert issubclass(RemoteProtocolError, SpacecoreError) and issubclass(DecodingError, SpacecoreError)
