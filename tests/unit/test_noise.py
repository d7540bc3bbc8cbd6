"""Noise XX handshake and its primitives (02-transport §2, §3).

Vectors: transport-crypto.json (key pairs, scalars, DH and refused points,
HMAC-BLAKE2b, HKDF, namespaces) and transport-handshake.json (the three
messages, every ``noiseTrace`` entry with the injected ephemeral keys,
tx/rx, handshake hash, remote keys).
"""
from __future__ import annotations

import nacl.bindings as nb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacecorestore import crypto
from spacecorestore.errors import HandshakeError, LocalProtocolError, TransportError
from spacecorestore.transport import noise
from vectors_util import h, load_vector

C = load_vector("transport-crypto")
H = load_vector("transport-handshake")


def _kp(seed_hex: str) -> crypto.KeyPair:
    return crypto.key_pair(h(seed_hex))


# -- primitives ------------------------------------------------------------------------


@pytest.mark.parametrize("v", C["keyPairs"], ids=lambda v: v["seedLabel"])
def test_key_pair_and_scalar(v):
    pk, sk = noise.generate_key_pair(h(v["seed"]))
    assert pk.hex() == v["publicKey"]
    assert sk.hex() == v["secretKey"]
    assert crypto.hash32(v["seedLabel"].encode()).hex() == v["seed"]
    a = noise.scalar(sk)
    assert a.hex() == v["scalar"]
    assert nb.crypto_sign_ed25519_sk_to_curve25519(sk) == a
    assert nb.crypto_scalarmult_ed25519_base_noclamp(a) == pk


@pytest.mark.parametrize("v", C["dh"], ids=lambda v: f"{v['local']}->{v['remote']}")
def test_dh(v):
    assert noise.dh(h(v["localSecretKey"]), h(v["remotePublicKey"])).hex() == v["output"]


def test_dh_is_symmetric():
    kps = {k["seedLabel"]: k for k in C["keyPairs"]}
    for v in C["dh"]:
        back = noise.dh(h(kps[v["remote"]]["secretKey"]), h(kps[v["local"]]["publicKey"]))
        assert back.hex() == v["output"]


@pytest.mark.parametrize("v", C["dhRejected"], ids=lambda v: v["what"])
def test_dh_rejected(v):
    sk = h(C["keyPairs"][0]["secretKey"])
    with pytest.raises(HandshakeError):
        noise.dh(sk, h(v["remotePublicKey"]))


def test_dh_wrong_length():
    with pytest.raises(HandshakeError):
        noise.dh(h(C["keyPairs"][0]["secretKey"]), b"\x01" * 31)


@pytest.mark.parametrize("v", C["hmac"], ids=lambda v: v["what"])
def test_hmac(v):
    assert noise.hmac_blake2b(h(v["key"]), h(v["message"])).hex() == v["output"]


@pytest.mark.parametrize("v", C["hkdf"], ids=lambda v: v["what"])
def test_hkdf(v):
    out = noise.hkdf(h(v["chainingKey"]), h(v["inputKeyMaterial"]), len(v["outputs"]))
    assert [o.hex() for o in out] == v["outputs"]


def test_hkdf_bad_count():
    with pytest.raises(ValueError):
        noise.hkdf(bytes(64), b"", 4)


# -- the vector handshake -----------------------------------------------------------------


def _vector_pair(trace_i=None, trace_r=None):
    i = H["initiator"]
    r = H["responder"]
    ini = noise.NoiseHandshake(True, _kp(i["staticSeed"]), _kp(i["ephemeralSeed"]), trace=trace_i)
    res = noise.NoiseHandshake(False, _kp(r["staticSeed"]), _kp(r["ephemeralSeed"]), trace=trace_r)
    return ini, res


def _wire_messages():
    return [w for w in H["wire"] if w["kind"].startswith("noise-message")]


def test_vector_static_and_ephemeral_keys():
    for side in ("initiator", "responder"):
        v = H[side]
        assert crypto.hash32(v["staticSeedLabel"].encode()).hex() == v["staticSeed"]
        assert crypto.hash32(v["ephemeralSeedLabel"].encode()).hex() == v["ephemeralSeed"]
        assert _kp(v["staticSeed"]).public_key.hex() == v["staticPublicKey"]
        assert _kp(v["staticSeed"]).secret_key.hex() == v["staticSecretKey"]
        assert _kp(v["ephemeralSeed"]).public_key.hex() == v["ephemeralPublicKey"]


def test_vector_handshake_messages_and_result():
    trace_i: list = []
    trace_r: list = []
    ini, res = _vector_pair(trace_i, trace_r)
    m1, m2, m3 = _wire_messages()
    assert H["protocolName"].encode() == noise.PROTOCOL_NAME
    assert H["prologue"] == ""

    assert ini.our_turn and not res.our_turn
    out1 = ini.send()
    assert out1.hex() == m1["noiseMessage"]
    assert res.receive(out1) == b""
    out2 = res.send()
    assert out2.hex() == m2["noiseMessage"]
    assert len(out2) == 96
    assert ini.receive(out2) == b""
    assert not ini.complete
    out3 = ini.send()
    assert out3.hex() == m3["noiseMessage"]
    assert ini.complete and not res.complete
    res.receive(out3)
    assert res.complete

    ri, rr = ini.result, res.result
    assert ri.tx.hex() == H["initiator"]["tx"] and ri.rx.hex() == H["initiator"]["rx"]
    assert rr.tx.hex() == H["responder"]["tx"] and rr.rx.hex() == H["responder"]["rx"]
    assert ri.tx == rr.rx and ri.rx == rr.tx
    assert ri.handshake_hash.hex() == rr.handshake_hash.hex() == H["handshakeHash"]
    assert ri.remote_public_key.hex() == H["remotePublicKeySeenByInitiator"]
    assert rr.remote_public_key.hex() == H["remotePublicKeySeenByResponder"]
    assert ri.public_key.hex() == H["initiator"]["staticPublicKey"]

    # every symmetric-state operation, in order, with h / ck / k / nonce
    assert trace_i == H["noiseTrace"]["initiator"]
    assert trace_r == H["noiseTrace"]["responder"]


def test_trace_entries_one_by_one():
    """Pinpoints the first differing entry (the full comparison above says only 'not equal')."""
    trace_i: list = []
    trace_r: list = []
    ini, res = _vector_pair(trace_i, trace_r)
    res.receive(ini.send())
    ini.receive(res.send())
    res.receive(ini.send())
    for side, got in (("initiator", trace_i), ("responder", trace_r)):
        want = H["noiseTrace"][side]
        assert len(got) == len(want) == 20
        for n, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{side} entry {n} ({w['op']})"


def test_random_keys_agree():
    ini = noise.NoiseHandshake(True)
    res = noise.NoiseHandshake(False)
    res.receive(ini.send())
    ini.receive(res.send())
    res.receive(ini.send())
    a, b = ini.result, res.result
    assert a.tx == b.rx and a.rx == b.tx and a.handshake_hash == b.handshake_hash
    assert a.remote_public_key == res.public_key and b.remote_public_key == ini.public_key


def test_extra_payload_in_message_1_is_hashed():
    """Bytes after ``e`` in message 1 are a cleartext payload, hashed by both sides (§3.3)."""
    ini = noise.NoiseHandshake(True)
    res = noise.NoiseHandshake(False)
    m1 = ini.send(b"12345678")
    assert len(m1) == 40
    assert res.receive(m1) == b"12345678"
    ini.receive(res.send())
    res.receive(ini.send())
    assert ini.result.handshake_hash == res.result.handshake_hash


def test_payloads_in_messages_2_and_3():
    ini = noise.NoiseHandshake(True)
    res = noise.NoiseHandshake(False)
    res.receive(ini.send())
    assert ini.receive(res.send(b"two")) == b"two"
    assert res.receive(ini.send(b"three")) == b"three"
    assert ini.result.handshake_hash == res.result.handshake_hash


# -- failures ---------------------------------------------------------------------------


def test_short_message_1():
    res = noise.NoiseHandshake(False)
    with pytest.raises(HandshakeError):
        res.receive(bytes(10))
    assert res.failed
    with pytest.raises(HandshakeError):
        res.receive(bytes(32))


def test_all_zero_ephemeral_fails_at_message_2():
    """The bad ``e`` is only detected when the responder computes ``ee`` (§3.5)."""
    res = noise.NoiseHandshake(False)
    res.receive(bytes(32))
    with pytest.raises(HandshakeError):
        res.send()
    assert res.failed


@pytest.mark.parametrize("v", C["dhRejected"], ids=lambda v: v["what"])
def test_bad_responder_ephemeral(v):
    ini = noise.NoiseHandshake(True)
    ini.send()
    with pytest.raises(HandshakeError):
        ini.receive(h(v["remotePublicKey"]) + bytes(64))


def test_tampered_message_2_and_3():
    for pos in (40, 85):
        ini, res = _vector_pair()
        res.receive(ini.send())
        m2 = bytearray(res.send())
        m2[pos] ^= 1
        with pytest.raises(HandshakeError):
            ini.receive(bytes(m2))
    ini, res = _vector_pair()
    res.receive(ini.send())
    ini.receive(res.send())
    m3 = bytearray(ini.send())
    m3[63] ^= 0x80
    with pytest.raises(HandshakeError):
        res.receive(bytes(m3))
    assert not res.complete


def test_short_messages_2_and_3():
    ini, res = _vector_pair()
    res.receive(ini.send())
    m2 = res.send()
    for n in (0, 31, 32, 79, 95):
        i2, r2 = _vector_pair()
        r2.receive(i2.send())
        with pytest.raises(HandshakeError):
            i2.receive(m2[:n])
    ini.receive(m2)
    m3 = ini.send()
    for n in (0, 47, 63):
        i3, r3 = _vector_pair()
        r3.receive(i3.send())
        i3.receive(r3.send())
        i3.send()
        with pytest.raises(HandshakeError):
            r3.receive(m3[:n])


def test_two_initiators_fail():
    a = noise.NoiseHandshake(True)
    b = noise.NoiseHandshake(True)
    ma = a.send()
    b.send()
    with pytest.raises(HandshakeError):
        b.receive(ma)


def test_out_of_turn():
    ini = noise.NoiseHandshake(True)
    with pytest.raises(HandshakeError):
        ini.receive(bytes(96))  # the initiator speaks first
    res = noise.NoiseHandshake(False)
    with pytest.raises(LocalProtocolError):
        res.send()
    ini = noise.NoiseHandshake(True)
    ini.send()
    with pytest.raises(LocalProtocolError):
        ini.send()


def test_receive_after_complete():
    ini = noise.NoiseHandshake(True)
    res = noise.NoiseHandshake(False)
    res.receive(ini.send())
    ini.receive(res.send())
    m3 = ini.send()
    res.receive(m3)
    with pytest.raises(HandshakeError):
        res.receive(m3)
    with pytest.raises(HandshakeError):
        ini.receive(m3)


def test_bad_static_key_pair():
    with pytest.raises(LocalProtocolError):
        noise.NoiseHandshake(True, (b"x" * 31, b"y" * 64))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.booleans(), st.integers(0, 2))
def test_random_bytes_give_only_handshake_errors(data, as_initiator, stage):
    """Any bytes at any receiving step: either accepted or a HandshakeError, nothing else."""
    ini = noise.NoiseHandshake(True)
    res = noise.NoiseHandshake(False)
    try:
        if as_initiator:
            ini.send()
            ini.receive(data)
            ini.send()
        elif stage == 0:
            res.receive(data)
            res.send()
        else:
            res.receive(ini.send())
            ini.receive(res.send())
            ini.send()
            res.receive(data)
    except TransportError as e:
        assert isinstance(e, HandshakeError)
