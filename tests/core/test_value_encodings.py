"""Value encodings, the forms ``append`` accepts, and the user data API.

Vectors: core-encoding.json ``valueEncodings`` (01-core §8.8), core-recovery.json
``appendForms`` (§8.2: a list is a batch, anything else one block; ``append([])``
writes nothing) and ``userData`` (§8.12, with the rules for Spacecore: an empty
value deletes; a value that is not bytes/None raises ``BadArgumentError``
before anything is written).
"""
from __future__ import annotations

import pytest

from spacecorestore import Spacecore
from spacecorestore import crypto
from spacecorestore.core import oplog
from spacecorestore.core.value_encoding import get_encoding
from spacecorestore.errors import BadArgumentError, DecodingError
from spacecorestore.storage import MemoryStorage
from vectors_util import h, load_vector

ENC = load_vector("core-encoding")["valueEncodings"]
REC = load_vector("core-recovery")
APPEND_FORMS = REC["appendForms"]["cases"]
USER_DATA = REC["userData"]["cases"]


def files(tmp_path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file()}


# valueEncodings ----------------------------------------------------------------------------

@pytest.mark.parametrize("ex", ENC["examples"], ids=lambda ex: f"{ex['valueEncoding']}:{ex['value']!r}")
def test_encoding_examples_pure(ex):
    enc = get_encoding(ex["valueEncoding"])
    block = enc.encode(ex["value"])
    assert block.hex() == ex["blockHex"]
    assert enc.decode(block) == (ex["value"] if ex["valueEncoding"] != "binary" else ex["value"].encode())


@pytest.mark.parametrize("ex", ENC["examples"], ids=lambda ex: f"{ex['valueEncoding']}:{ex['value']!r}")
async def test_encoding_examples_through_a_core(ex):
    async with Spacecore(MemoryStorage(), value_encoding=ex["valueEncoding"]) as core:
        res = await core.append(ex["value"])
        block = h(ex["blockHex"])
        assert tuple(res) == (1, len(block))
        assert await core.get(0, raw=True) == block
        want = ex["value"].encode() if ex["valueEncoding"] == "binary" else ex["value"]
        assert await core.get(0) == want
        # a per-call encoding overrides the session's; a session without one reads bytes
        assert await core.get(0, value_encoding="binary") == block
        plain = core.session()
        assert await plain.get(0) == block
        await plain.close()


async def test_binary_decodes_empty_block_to_none():
    assert ENC["binaryDecodesEmptyBlockTo"] is None
    async with Spacecore(MemoryStorage(), value_encoding="binary") as core:
        await core.append(b"")
        assert await core.get(0) is None
        assert await core.get(0, raw=True) == b""
        # without an encoding an empty block is empty bytes (00-api §2.1)
        plain = core.session()
        assert await plain.get(0) == b""
        await plain.close()


@pytest.mark.parametrize("name", ["binary", "utf-8", "utf8", "ascii", "hex", "base64", "utf16le", "ucs2", "json",
                                  "ndjson", None])
async def test_bytes_are_stored_as_is_under_every_encoding(name):
    async with Spacecore(MemoryStorage(), value_encoding=name) as core:
        await core.append([b"\x00\xffraw", bytearray(b"ba"), memoryview(b"mv")])
        assert [await core.get(i, raw=True) for i in range(3)] == [b"\x00\xffraw", b"ba", b"mv"]


@pytest.mark.parametrize("name,value,block", [
    ("utf8", "h\u00e9", "68c3a9"),
    ("ascii", "abc", "616263"),
    ("hex", "00ff10", "00ff10"),
    ("base64", "AP8Q", "00ff10"),
    ("utf16le", "h\u00e9", "6800e900"),
    ("ucs2", "ab", "61006200"),
    ("ndjson", [1, "x"], "5b312c2278225d0a"),
])
async def test_named_string_encodings(name, value, block):
    async with Spacecore(MemoryStorage(), value_encoding=name) as core:
        # a list would be a batch: wrap a list-valued block
        await core.append([value] if isinstance(value, list) else value)
        assert (await core.get(0, raw=True)).hex() == block
        assert await core.get(0) == value


async def test_decoding_failures_raise_decoding_error():
    async with Spacecore(MemoryStorage()) as core:
        await core.append([b"\xff\xfe", b"{nope"])
        with pytest.raises(DecodingError):
            await core.get(0, value_encoding="utf-8")
        with pytest.raises(DecodingError):
            await core.get(1, value_encoding="json")
        with pytest.raises(DecodingError):
            await core.get(1, value_encoding="ndjson")


def test_unknown_encoding_name():
    with pytest.raises(BadArgumentError):
        Spacecore(MemoryStorage(), value_encoding="no-such-encoding")


async def test_custom_codec_object():
    class Upper:
        def encode(self, v):
            return v.upper().encode()

        def decode(self, b):
            return b.decode().lower()

    async with Spacecore(MemoryStorage(), value_encoding=Upper()) as core:
        await core.append("abc")
        assert await core.get(0, raw=True) == b"ABC"
        assert await core.get(0) == "abc"


# appendForms -------------------------------------------------------------------------------

APPEND_KP = crypto.key_pair(bytes(range(0xA0, 0xC0)))

# the reference's call -> the Python value with the same meaning (§8.2: list = batch)
APPEND_CALLS = {
    "single Buffer": b"abc",
    "array of 2 Buffers": [b"a", b"bc"],
    "empty array": [],
    "single string, no encoding": "h\u00e9llo",
    "Uint8Array (not a Buffer), no encoding": bytearray(b"\x01\x02\x03"),
    "json: object": {"a": 1},
    "json: array [1,2,3]": [1, 2, 3],
    "json: [[1,2,3]]": [[1, 2, 3]],
    "json: Buffer": b"raw",
    "json: string \"x\"": "x",
    "utf-8: [\"a\",\"b\"]": ["a", "b"],
    "binary: empty Buffer": b"",
}


def test_append_forms_all_covered():
    assert [c["call"] for c in APPEND_FORMS] == list(APPEND_CALLS)


@pytest.mark.parametrize("case", APPEND_FORMS, ids=lambda c: c["call"])
async def test_append_forms(case, tmp_path):
    assert case["error"] is None
    async with Spacecore(tmp_path, key_pair=APPEND_KP, value_encoding=case["valueEncoding"]) as core:
        before = files(tmp_path)
        res = await core.append(APPEND_CALLS[case["call"]])
        assert (res.length, res.byte_length) == (case["result"]["length"], case["result"]["byteLength"])
        assert core.length == len(case["storedBlocks"])
        if not case["storedBlocks"]:
            # append([]) writes nothing at all
            assert files(tmp_path) == before
            assert core.core.tree.signature is None
        for i, stored in enumerate(case["storedBlocks"]):
            assert (await core.get(i, raw=True)).hex() == stored
        for i, want in enumerate(case["getReturns"]):
            if isinstance(want, dict) and "error" in want:
                assert want["error"]["code"] == "DECODING_ERROR"
                with pytest.raises(DecodingError) as ei:
                    await core.get(i)
                assert ei.value.code == "DECODING_ERROR"
            elif isinstance(want, dict) and set(want) == {"hex"}:
                got = await core.get(i)
                assert isinstance(got, bytes) and got.hex() == want["hex"]
            else:
                assert await core.get(i) == want
        # a batch is one entry with one signature (for the final length)
        if len(case["storedBlocks"]) > 1:
            st = oplog.parse((tmp_path / "oplog").read_bytes())
            appends = [e for e in st.entries if e.tree_upgrade is not None]
            if appends:  # not yet flushed: exactly one entry for the whole batch
                assert len(appends) == 1
                assert appends[0].tree_upgrade.ancestors == 0
                assert appends[0].tree_upgrade.length == len(case["storedBlocks"])
            else:
                assert st.header.tree.length == len(case["storedBlocks"])


async def test_append_empty_list_writes_nothing_on_a_non_empty_core(tmp_path):
    async with Spacecore(tmp_path, key_pair=APPEND_KP) as core:
        await core.append([b"x", b"yz"])
        before = files(tmp_path)
        sig = core.core.tree.signature
        assert tuple(await core.append([])) == (2, 3)
        assert tuple(await core.append(())) == (2, 3)
        assert files(tmp_path) == before
        assert core.core.tree.signature == sig


async def test_append_rejects_other_types_before_writing(tmp_path):
    async with Spacecore(tmp_path, key_pair=APPEND_KP) as core:
        await core.append(b"a")
        before = files(tmp_path)
        for bad in (1, None, {"a": 1}, [b"ok", 2]):
            with pytest.raises(BadArgumentError):
                await core.append(bad)
        assert files(tmp_path) == before
        assert core.length == 1


async def test_append_block_size_limit(tmp_path):
    async with Spacecore(tmp_path, key_pair=APPEND_KP) as core:
        before = files(tmp_path)
        with pytest.raises(BadArgumentError):
            await core.append([b"ok", bytes(15 * 1024 * 1024 + 1)])
        assert files(tmp_path) == before
        assert core.length == 0


# userData ----------------------------------------------------------------------------------

UD_KP = crypto.key_pair(bytes(range(0x80, 0xA0)))
MISSING = object()

# the reference's value -> Python (undefined has no Python equivalent)
UD_VALUES = {
    "empty Uint8Array/Buffer": b"",
    "empty string": "",
    "null": None,
    "undefined": MISSING,
    "non-empty string \"abc\"": "abc",
}


def entry_payloads(oplog_bytes: bytes) -> list[bytes]:
    out, pos = [], oplog.ENTRIES_START
    while pos < len(oplog_bytes):
        f = oplog.read_frame(oplog_bytes, pos, len(oplog_bytes))
        assert f is not None
        out.append(f.payload)
        pos = f.end
    return out


async def make_base(tmp_path) -> Spacecore:
    """A core whose flushed header holds k = "old" (no pending entries)."""
    core = Spacecore(tmp_path, key_pair=UD_KP)
    await core.set_user_data("k", b"old", flush=True)
    assert (tmp_path / "oplog").stat().st_size == oplog.ENTRIES_START
    return core


def test_user_data_cases_all_covered():
    assert {c["value"] for c in USER_DATA} == set(UD_VALUES)


@pytest.mark.parametrize("case", [c for c in USER_DATA if UD_VALUES[c["value"]] is not MISSING],
                         ids=lambda c: f"{c['key']}={c['value']}{' flush' if c['flush'] else ''}")
async def test_user_data_table(case, tmp_path):
    key = case["key"]
    value = UD_VALUES[case["value"]]
    core = await make_base(tmp_path)
    try:
        old = await core.get_user_data(key)
        assert old == (b"old" if key == "k" else None)
        header_before = (tmp_path / "oplog").read_bytes()[: oplog.ENTRIES_START]

        if value is not None and not isinstance(value, bytes):
            # §8.12 for Spacecore: BAD_ARGUMENT, raised before anything is written
            with pytest.raises(BadArgumentError):
                await core.set_user_data(key, value, flush=case["flush"])
            assert (tmp_path / "oplog").read_bytes()[: oplog.ENTRIES_START] == header_before
            assert entry_payloads((tmp_path / "oplog").read_bytes()) == []
            assert await core.get_user_data(key) == old
            want_after = old
        else:
            await core.set_user_data(key, value, flush=case["flush"])
            ob = (tmp_path / "oplog").read_bytes()
            entries = entry_payloads(ob)
            w = case["oplogWrite"]
            if w == "none":
                assert entries == []
                assert ob[: oplog.ENTRIES_START] == header_before
            elif w == "header flushed":
                assert entries == []
                assert ob[: oplog.ENTRIES_START] != header_before
            else:
                assert w.startswith("entry ")
                assert [e.hex() for e in entries] == [w[len("entry "):]]
            # an empty value deletes, live as after reopen (Spacecore rule, not the reference's transient b"")
            assert await core.get_user_data(key) is None
            want_after = None
    finally:
        await core.close()

    async with Spacecore(tmp_path, key_pair=UD_KP) as core:
        assert await core.get_user_data(key) == want_after
        if isinstance(value, bytes) or value is None:
            # where the Spacecore rules and the reference agree, the vector is the reference
            assert case["getUserDataAfterReopen"] == (None if want_after is None else {"hex": want_after.hex()})
        keys = [k for k, _ in core.core.header.user_data]
        if case["oplogWrite"] == "header flushed" and value == b"":
            # the reference keeps `k 00` in a flushed header; dropping it is also acceptable (§8.12)
            assert keys in (case["keysAfterReopen"], [])
        elif isinstance(value, bytes) or value is None:
            assert keys == case["keysAfterReopen"]
        else:
            assert keys == ["k"]


async def test_user_data_set_replace_delete_order(tmp_path):
    async with Spacecore(tmp_path, key_pair=UD_KP) as core:
        await core.set_user_data("a", b"1")
        await core.set_user_data("b", b"2")
        await core.set_user_data("c", b"3")
        await core.set_user_data("a", b"10")      # replaced in place
        await core.set_user_data("b", None)       # removed, later pairs move up
        await core.set_user_data("d", bytearray(b"4"))
        assert core.core.header.user_data == [("a", b"10"), ("c", b"3"), ("d", b"4")]
        size = (tmp_path / "oplog").stat().st_size
        await core.set_user_data("a", b"10")      # same value: no entry
        await core.set_user_data("zz", None)      # delete of a missing key: no entry
        assert (tmp_path / "oplog").stat().st_size == size
    async with Spacecore(tmp_path, key_pair=UD_KP) as core:
        assert core.core.header.user_data == [("a", b"10"), ("c", b"3"), ("d", b"4")]
        assert await core.get_user_data("b") is None


async def test_user_data_entry_bytes(tmp_path):
    """A set writes `01 <k> <len> <v>`, a delete `01 <k> 00` (01-core §7.5)."""
    async with Spacecore(tmp_path, key_pair=UD_KP) as core:
        await core.set_user_data("first", b"1")   # first mutation after open: flushes (§7.8)
        assert entry_payloads((tmp_path / "oplog").read_bytes()) == []
        await core.set_user_data("k", b"new")
        await core.set_user_data("k", None)
        payloads = entry_payloads((tmp_path / "oplog").read_bytes())
        assert [p.hex() for p in payloads] == ["01016b036e6577", "01016b00"]


async def test_user_data_key_must_be_str(tmp_path):
    async with Spacecore(tmp_path, key_pair=UD_KP) as core:
        with pytest.raises(BadArgumentError):
            await core.set_user_data(b"k", b"v")
        assert entry_payloads((tmp_path / "oplog").read_bytes()) == []


async def test_forced_flush_consumes_the_auto_flush_counter(tmp_path):
    """The reference flushes user data with `if (this._shouldFlush() || flush)`: the counter
    (1 after open) is consumed by a forced flush too and reset to 4, so the next three
    mutations stay oplog entries and the fourth flushes (01-core §7.8; this is how the
    userData vector's `entry 01016b00` came about)."""
    core = await make_base(tmp_path)
    async with core:
        for n in range(1, 4):
            await core.set_user_data(f"x{n}", b"v")
            assert len(entry_payloads((tmp_path / "oplog").read_bytes())) == n
        await core.set_user_data("x4", b"v")
        assert entry_payloads((tmp_path / "oplog").read_bytes()) == []


async def test_explicit_flush_restarts_the_auto_flush_counter(tmp_path):
    """The reference's Core.flush() sets `_autoFlush = 4` (checked against hypercore 10.38.2:
    append, append, flush(), then three appends stay entries and the fourth flushes)."""
    async with Spacecore(tmp_path, key_pair=UD_KP) as core:
        await core.append(b"a")          # counter 1 -> 0: flush, 4
        await core.append(b"b")          # 3
        await core.flush()               # header written, counter back to 4
        assert entry_payloads((tmp_path / "oplog").read_bytes()) == []
        for n in range(1, 4):
            await core.append(b"c")
            assert len(entry_payloads((tmp_path / "oplog").read_bytes())) == n
        await core.append(b"d")
        assert entry_payloads((tmp_path / "oplog").read_bytes()) == []
