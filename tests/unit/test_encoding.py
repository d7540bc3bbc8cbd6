"""compact-encoding primitives, z-base-32 and key parsing (01-core §1) against core-encoding.json.

The ``valueEncodings`` part of core-encoding.json belongs to the value-encoding
module (01-core §8.8) and is not tested here.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacecorestore import encoding as enc
from spacecorestore.encoding import Reader
from spacecorestore.errors import BadArgumentError, DecodingError
from vectors_util import h, load_vector

V = load_vector("core-encoding")

FIXED_WIDTH = {"uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8}


def _ids(cases, key="hex"):
    return [str(c[key])[:40] if c[key] is not None else "null" for c in cases]


def _encode(fn, *args) -> bytes:
    out = bytearray()
    fn(out, *args)
    return bytes(out)


def _decode_all(hexstr: str, method: str, *args):
    """Decode with Reader.<method> and check the whole input was consumed."""
    r = Reader(bytes.fromhex(hexstr))
    value = getattr(r, method)(*args)
    assert r.remaining() == 0
    assert r.pos == len(hexstr) // 2
    return value


# -- uint ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", V["uint"], ids=_ids(V["uint"], "value"))
def test_uint_encode(case):
    assert _encode(enc.uint, case["value"]).hex() == case["hex"]
    assert enc.uint_bytes(case["value"]).hex() == case["hex"]


@pytest.mark.parametrize("case", V["uint"], ids=_ids(V["uint"], "value"))
def test_uint_decode(case):
    assert _decode_all(case["hex"], "uint") == case["value"]


def test_uint_vectors_cover_every_width():
    prefixes = {bytes.fromhex(c["hex"])[0] for c in V["uint"] if len(c["hex"]) > 2}
    assert prefixes == {0xFD, 0xFE, 0xFF}


def test_uint_decoder_accepts_non_shortest_forms():
    # §1: encoders must use the shortest form; the reference decoder accepts longer ones.
    assert Reader(bytes.fromhex("fd0100")).uint() == 1
    assert Reader(bytes.fromhex("fe01000000")).uint() == 1
    assert Reader(bytes.fromhex("ff0100000000000000")).uint() == 1


def test_uint_max_u64_encodes_but_does_not_decode():
    n = 2**64 - 1
    b = enc.uint_bytes(n)
    assert b == b"\xff" + b"\xff" * 8
    with pytest.raises(DecodingError):  # numbers above 2^53-1 do not exist for the reference
        Reader(b).uint()


# -- fixed-width uints and bool ---------------------------------------------------------
# encoding.py has no fixed-width/bool encoders (fields are packed with struct by
# their users), so the encode direction checks the vector against the
# little-endian definition and the decode direction exercises Reader.


@pytest.mark.parametrize(
    "kind,case",
    [(k, c) for k in FIXED_WIDTH for c in V[k]],
    ids=[f"{k}-{c['value']}" for k in FIXED_WIDTH for c in V[k]],
)
def test_fixed_width_uint(kind, case):
    width = FIXED_WIDTH[kind]
    assert case["value"].to_bytes(width, "little").hex() == case["hex"]
    assert _decode_all(case["hex"], kind) == case["value"]


@pytest.mark.parametrize("case", V["bool"], ids=_ids(V["bool"], "value"))
def test_bool(case):
    assert bytes([1 if case["value"] else 0]).hex() == case["hex"]
    assert _decode_all(case["hex"], "bool") is case["value"]


@pytest.mark.parametrize("byte", [0x02, 0x80, 0xFF])
def test_bool_decodes_only_01_as_true(byte):
    assert Reader(bytes([byte])).bool() is False


# -- buffer ----------------------------------------------------------------------


@pytest.mark.parametrize("case", V["buffer"], ids=_ids(V["buffer"], "valueHex"))
def test_buffer_encode(case):
    assert _encode(enc.buffer, h(case["valueHex"])).hex() == case["hex"]


@pytest.mark.parametrize("case", V["buffer"], ids=_ids(V["buffer"], "valueHex"))
def test_buffer_decode(case):
    assert _decode_all(case["hex"], "buffer") == h(case["decodesTo"])


def test_buffer_vectors_include_null_and_empty():
    values = [c["valueHex"] for c in V["buffer"]]
    assert None in values and "" in values


# -- string ---------------------------------------------------------------------


@pytest.mark.parametrize("case", V["string"], ids=_ids(V["string"], "value"))
def test_string_encode(case):
    assert _encode(enc.string, case["value"]).hex() == case["hex"]


@pytest.mark.parametrize("case", V["string"], ids=_ids(V["string"], "value"))
def test_string_decode(case):
    assert _decode_all(case["hex"], "string") == case["value"]


def test_string_invalid_utf8_is_decoding_error():
    with pytest.raises(DecodingError):
        Reader(bytes.fromhex("02c328")).string()


# -- fixed32 --------------------------------------------------------------------


@pytest.mark.parametrize("case", V["fixed32"], ids=_ids(V["fixed32"], "valueHex"))
def test_fixed32(case):
    assert _encode(enc.fixed, h(case["valueHex"]), 32).hex() == case["hex"]
    assert _decode_all(case["hex"], "fixed", 32) == h(case["valueHex"])


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_fixed_wrong_size_is_bad_argument(size):
    with pytest.raises(BadArgumentError):
        enc.fixed(bytearray(), bytes(size), 32)


# -- arrays -----------------------------------------------------------------------


@pytest.mark.parametrize("case", V["arrayOfUint"], ids=_ids(V["arrayOfUint"]))
def test_array_of_uint(case):
    out = bytearray()
    enc.uint(out, len(case["value"]))
    for n in case["value"]:
        enc.uint(out, n)
    assert out.hex() == case["hex"]

    r = Reader(bytes.fromhex(case["hex"]))
    assert [r.uint() for _ in range(r.array_len())] == case["value"]
    assert r.remaining() == 0


@pytest.mark.parametrize("case", V["arrayOfString"], ids=_ids(V["arrayOfString"]))
def test_array_of_string(case):
    out = bytearray()
    enc.uint(out, len(case["value"]))
    for s in case["value"]:
        enc.string(out, s)
    assert out.hex() == case["hex"]

    r = Reader(bytes.fromhex(case["hex"]))
    assert [r.string() for _ in range(r.array_len())] == case["value"]
    assert r.remaining() == 0


def test_array_len_limit():
    assert enc.MAX_ARRAY == 1_048_576
    assert Reader(enc.uint_bytes(enc.MAX_ARRAY)).array_len() == enc.MAX_ARRAY
    with pytest.raises(DecodingError, match="Array is too big"):
        Reader(enc.uint_bytes(enc.MAX_ARRAY + 1)).array_len()


# -- raw and reader windows ---------------------------------------------------------


def test_raw_returns_the_rest():
    r = Reader(b"\x01abc")
    assert r.uint() == 1
    assert r.raw() == b"abc"
    assert r.remaining() == 0
    assert r.raw() == b""


def test_reader_respects_start_and_end():
    buf = bytes.fromhex("ff0568656c6c6fee")
    r = Reader(buf, 1, 7)
    assert r.string() == "hello"
    assert r.remaining() == 0
    with pytest.raises(DecodingError, match="Out of bounds"):
        r.uint8()
    r = Reader(buf, 1, 5)
    with pytest.raises(DecodingError, match="Out of bounds"):
        r.string()


def test_reader_over_memoryview():
    r = Reader(memoryview(bytes.fromhex("0568656c6c6f")))
    assert r.string() == "hello"


# -- decoding errors: every truncation of every vector ------------------------------------


def _truncations():
    cases = []
    for c in V["uint"]:
        cases.append(("uint", (), c["hex"]))
    for k in FIXED_WIDTH:
        for c in V[k]:
            cases.append((k, (), c["hex"]))
    for c in V["bool"]:
        cases.append(("bool", (), c["hex"]))
    for c in V["buffer"]:
        cases.append(("buffer", (), c["hex"]))
    for c in V["string"]:
        cases.append(("string", (), c["hex"]))
    for c in V["fixed32"]:
        cases.append(("fixed", (32,), c["hex"]))
    out = []
    for method, args, hexstr in cases:
        b = bytes.fromhex(hexstr)
        for cut in range(len(b)):
            # cap the number of prefixes per vector; always include 0 and len-1
            if cut in (0, 1, len(b) - 1) or cut % 37 == 0:
                out.append(pytest.param(method, args, b[:cut], id=f"{method}-{hexstr[:16]}-{cut}"))
    return out


@pytest.mark.parametrize("method,args,data", _truncations())
def test_truncated_input_is_out_of_bounds(method, args, data):
    with pytest.raises(DecodingError, match="Out of bounds"):
        getattr(Reader(data), method)(*args)


@pytest.mark.parametrize("method", ["uint", "uint8", "uint16", "uint32", "uint64", "bool", "buffer", "string", "array_len"])
def test_empty_input_is_out_of_bounds(method):
    with pytest.raises(DecodingError, match="Out of bounds"):
        getattr(Reader(b""), method)()


def test_decoding_error_type():
    err = DecodingError("x")
    assert err.code == "DECODING_ERROR"
    assert isinstance(err, ValueError)


# -- z-base-32 -----------------------------------------------------------------------


def test_z32_alphabet():
    assert enc.Z32_ALPHABET == V["z32"]["alphabet"]


@pytest.mark.parametrize("case", V["z32"]["examples"], ids=_ids(V["z32"]["examples"], "z32"))
def test_z32_encode(case):
    assert enc.z32_encode(bytes.fromhex(case["bytes"])) == case["z32"]


@pytest.mark.parametrize("case", V["z32"]["examples"], ids=_ids(V["z32"]["examples"], "z32"))
def test_z32_decode(case):
    assert enc.z32_decode(case["z32"]) == bytes.fromhex(case["bytes"])


@pytest.mark.parametrize("bad", ["l", "yyyv", "0", "2yyy", "Y", "yy yy", "é"])
def test_z32_decode_bad_character(bad):
    with pytest.raises(BadArgumentError):
        enc.z32_decode(bad)


# -- parse_key ------------------------------------------------------------------------

KEY = bytes.fromhex("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
KEY_Z32 = "tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7qy"


@pytest.mark.parametrize(
    "given",
    [
        KEY,
        bytearray(KEY),
        memoryview(KEY),
        KEY.hex(),
        KEY.hex().upper(),
        KEY_Z32,
        "pear://" + KEY_Z32,
        "pear://" + KEY_Z32 + "/some/path",
        "pear://" + KEY.hex(),
        "pear://" + KEY.hex() + "/x",
    ],
    ids=["bytes", "bytearray", "memoryview", "hex", "HEX", "z32", "pear", "pear-path", "pear-hex", "pear-hex-path"],
)
def test_parse_key_accepts(given):
    k = enc.parse_key(given)
    assert type(k) is bytes
    assert k == KEY


@pytest.mark.parametrize("case", V["z32"]["examples"][:4], ids=_ids(V["z32"]["examples"][:4], "z32"))
def test_parse_key_z32_vectors(case):
    assert enc.parse_key(case["z32"]) == bytes.fromhex(case["bytes"])
    assert enc.parse_key(case["bytes"]) == bytes.fromhex(case["bytes"])


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        bytes(31),
        bytes(33),
        bytearray(64),
        "",
        "pear://",
        KEY.hex()[:-1],
        KEY.hex() + "0",
        "zz" * 32,
        "0x" + KEY.hex()[2:],
        KEY.hex()[:62] + "  ",
        " " + KEY.hex()[:63],
        KEY_Z32[:-1],
        KEY_Z32 + "y",
        "l" + KEY_Z32[1:],
        KEY_Z32[:-1] + "0",
        "pear://" + KEY_Z32[:-1],
        "hyper://" + KEY_Z32,
        None,
        123,
        ["a"],
        32,
    ],
    ids=[
        "bytes0", "bytes31", "bytes33", "bytearray64", "empty-str", "pear-empty", "hex63", "hex65",
        "bad-hex", "0x-hex", "hex-trailing-spaces", "hex-leading-space", "z32-51", "z32-53",
        "z32-bad-char-l", "z32-bad-char-0", "pear-z32-51", "other-scheme", "None", "int", "list", "int32",
    ],
)
def test_parse_key_rejects(bad):
    with pytest.raises(BadArgumentError):
        enc.parse_key(bad)


# -- property tests -------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**53 - 1))
def test_uint_round_trip(n):
    b = enc.uint_bytes(n)
    expected_len = 1 if n <= 0xFC else 3 if n <= 0xFFFF else 5 if n <= 0xFFFFFFFF else 9
    assert len(b) == expected_len
    r = Reader(b)
    assert r.uint() == n
    assert r.remaining() == 0


@given(st.one_of(st.none(), st.binary(max_size=600)))
def test_buffer_round_trip(b):
    r = Reader(_encode(enc.buffer, b))
    assert r.buffer() == (b or None)
    assert r.remaining() == 0


@given(st.text(max_size=300))
def test_string_round_trip(s):
    r = Reader(_encode(enc.string, s))
    assert r.string() == s
    assert r.remaining() == 0


@given(st.binary(max_size=80))
def test_z32_round_trip(b):
    s = enc.z32_encode(b)
    assert len(s) == (len(b) * 8 + 4) // 5
    assert set(s) <= set(enc.Z32_ALPHABET)
    assert enc.z32_decode(s) == b


@given(st.binary(min_size=32, max_size=32))
def test_parse_key_round_trip(key):
    assert enc.parse_key(key) == key
    assert enc.parse_key(key.hex()) == key
    assert enc.parse_key(enc.z32_encode(key)) == key
    assert enc.parse_key("pear://" + enc.z32_encode(key)) == key


@given(st.one_of(st.text(max_size=80), st.text(alphabet="0123456789abcdefABCDEF \t\n", min_size=60, max_size=68)))
def test_parse_key_any_string_is_32_bytes_or_bad_argument(s):
    try:
        k = enc.parse_key(s)
    except BadArgumentError:
        return
    assert type(k) is bytes and len(k) == 32


_OPS = st.sampled_from(
    ["uint", "uint8", "uint16", "uint32", "uint64", "bool", "buffer", "string", "array_len", "raw", "fixed"]
)


@settings(max_examples=300)
@given(
    data=st.binary(max_size=64),
    ops=st.lists(st.tuples(_OPS, st.integers(min_value=0, max_value=40)), min_size=1, max_size=12),
    view=st.booleans(),
)
def test_random_bytes_only_raise_decoding_error(data, ops, view):
    r = Reader(memoryview(data) if view else data)
    for op, n in ops:
        before = r.pos
        try:
            if op == "fixed":
                v = r.fixed(n)
                assert len(v) == n
            else:
                getattr(r, op)()
        except DecodingError:
            return
        assert before <= r.pos <= len(data)


def test_uint_above_2_53_is_a_decoding_error():
    from spacecorestore.encoding import Reader
    from spacecorestore.errors import DecodingError

    assert Reader(bytes.fromhex("ff" + "ffffffffffff1f00")).uint() == 2**53 - 1
    with pytest.raises(DecodingError):
        Reader(bytes.fromhex("ff" + "0000000000002000")).uint()
