"""Spacecore <-> reference Hypercore 10.38.2 on disk (01-core §7, 00-api §2).

The reference is driven through tests/interop/refcore.js (see refnode.py):

1. Python writes a large core (3000 blocks of 0 B .. 70 000 B, single appends
   and batches, user data, close/reopen, truncate + re-append); the reference
   reads it: key, length, fork, byteLength, tree hash, signature (valid),
   user data, every block, and it changes no file.
2. The same with block encryption: the reference decrypts with the key and
   its raw (stored) bytes equal ours.
3. The reference writes such a core (plain and encrypted); Python opens it
   writable (same key pair), reads everything, checks the signature, appends,
   and the reference reads the continued core.
4. The same deterministic op script run by Python and by the reference gives
   byte-identical oplog, tree, bitfield, data (and header) files (01-core §7.8),
   compared at every close (the script is run one open at a time).

The scripts stay clear of the three cases where identical bytes are not
expected or not possible: a pending clear() below contiguousLength replayed at
reopen (the reference's hint is wrong there, §7.9), setUserData with an empty
value (the reference keeps `key 00` in memory, §8.12), and clear() of a range
whose blocks are all empty (the reference's hole punch of 0 bytes fails with
EINVAL).

Ops are refcore.js's JSON ops; ``py_write`` mirrors refcore.js ``write``
(open with the seed's key pair, apply, close -- which never flushes).
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from spacecorestore import Spacecore
from spacecorestore.crypto import key_pair
from tests.interop.refnode import ensure_installed, node_available, refcore_write, run_refcore

pytestmark = pytest.mark.skipif(
    not node_available(),
    reason="Node.js (`node`, with npm or tests/interop/node_modules) is not available: "
           "the reference Hypercore interop tests need it",
)

SEED = bytes(range(32))
SEED_2 = hashlib.sha256(b"spacecore interop seed 2").digest()
ENC_KEY = hashlib.sha256(b"spacecore interop encryption key").digest()
FILES = ("oplog", "tree", "bitfield", "data", "header")


@pytest.fixture(scope="module", autouse=True)
def reference_installed():
    ensure_installed()


# ----------------------------------------------------------------- op scripts


def _h(b: bytes) -> str:
    return b.hex()


def _block(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _mixed_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.2:
        return 0
    if r < 0.4:
        return 1
    if r < 0.91:
        return rng.randint(60, 140)
    if r < 0.997:
        return 4096
    return 65536


def big_script(rng: random.Random, target: int = 3000) -> list[dict]:
    """~`target` blocks of mixed sizes: singles, batches, user data, close/reopen, truncate, re-append."""
    ops: list[dict] = []
    n = 0

    def single(size=None):
        nonlocal n
        ops.append({"append1": _h(_block(rng, _mixed_size(rng) if size is None else size))})
        n += 1

    def batch(count):
        nonlocal n
        ops.append({"append": [_h(_block(rng, _mixed_size(rng))) for _ in range(count)]})
        n += count

    # the fixed-size specials first, so every run has them
    for size in (0, 1, 100, 4096, 65536, 70000, 0, 1):
        single(size)
    ops.append({"setUserData": {"key": "app/name", "value": _h(b"interop")}})
    ops.append({"setUserData": {"key": "app/blob", "value": _h(bytes(range(256)) * 3)}})
    while n < 400:
        single()
    while n < 1200:
        batch(min(rng.randint(1, 120), 1200 - n))
    ops.append({"closeAndReopen": True})
    ops.append({"setUserData": {"key": "app/name", "value": _h(b"interop, reopened")}})
    while n < 1500:
        single()
    while n < target - 200:
        batch(min(rng.randint(1, 300), target - 200 - n))
    ops.append({"truncate": n - 137})
    n -= 137
    ops.append({"append": [_h(_block(rng, 70000))] + [_h(_block(rng, _mixed_size(rng))) for _ in range(199)]})
    n += 200
    ops.append({"setUserData": {"key": "app/blob", "value": None}})
    ops.append({"setUserData": {"key": "app/third", "value": _h(b"\x00\x01\x02")}})
    while n < target:
        single()
    return ops


class Model:
    """What a script should produce: blocks (None = cleared), sizes, fork, user data."""

    def __init__(self, ops: list[dict]) -> None:
        self.blocks: list[bytes | None] = []
        self.sizes: list[int] = []
        self.fork = 0
        self.user_data: dict[str, bytes] = {}
        for op in ops:
            self.apply(op)

    def apply(self, op: dict) -> None:
        if "append" in op:
            for x in op["append"]:
                b = bytes.fromhex(x)
                self.blocks.append(b)
                self.sizes.append(len(b))
        elif "append1" in op:
            b = bytes.fromhex(op["append1"])
            self.blocks.append(b)
            self.sizes.append(len(b))
        elif "truncate" in op:
            n = op["truncate"]
            del self.blocks[n:]
            del self.sizes[n:]
            self.fork = op["fork"] if op.get("fork") is not None else self.fork + 1
        elif "setUserData" in op:
            u = op["setUserData"]
            if u.get("value"):
                self.user_data[u["key"]] = bytes.fromhex(u["value"])
            else:
                self.user_data.pop(u["key"], None)
        elif "clear" in op:
            s, e = op["clear"]
            for i in range(s, min(e, len(self.blocks))):
                self.blocks[i] = None

    @property
    def length(self) -> int:
        return len(self.blocks)

    @property
    def byte_length(self) -> int:
        return sum(self.sizes)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for b in self.blocks:
            if b is not None:
                h.update(b)
        return h.hexdigest()

    def user_data_hex(self) -> dict[str, str]:
        return {k: v.hex() for k, v in self.user_data.items()}


# ------------------------------------------------------------ Python driver


def _info(core: Spacecore) -> dict:
    tree = core.core.tree
    return {
        "key": core.key.hex(),
        "length": core.length,
        "byteLength": core.byte_length,
        "fork": core.fork,
        "contiguousLength": core.contiguous_length,
        "treeHash": tree.tree_hash().hex(),
        "signature": tree.signature.hex() if tree.signature else None,
    }


def _open(directory, seed: bytes, encryption_key: bytes | None) -> Spacecore:
    opts = {"key_pair": key_pair(seed)}
    if encryption_key is not None:
        opts["encryption_key"] = encryption_key
    return Spacecore(str(directory), **opts)


async def py_write(directory, seed: bytes, ops: list[dict], encryption_key: bytes | None = None) -> dict:
    """Python mirror of `refcore.js write`: open, apply ops in order, close (no flush); return the info."""
    core = _open(directory, seed, encryption_key)
    await core.ready()
    try:
        for n, op in enumerate(ops):
            if "append" in op:
                await core.append([bytes.fromhex(x) for x in op["append"]])
            elif "append1" in op:
                await core.append(bytes.fromhex(op["append1"]))
            elif "truncate" in op:
                await core.truncate(op["truncate"], op.get("fork"))
            elif "setUserData" in op:
                u = op["setUserData"]
                v = None if u.get("value") is None else bytes.fromhex(u["value"])
                await core.set_user_data(u["key"], v, flush=bool(u.get("flush")))
            elif "clear" in op:
                s, e = op["clear"]
                await core.clear(s, e)
            elif op.get("closeAndReopen"):
                await core.close()
                core = _open(directory, seed, encryption_key)
                await core.ready()
            else:
                raise AssertionError(f"op {n}: unknown op {op!r}")
        return _info(core)
    finally:
        await core.close()


def _first_block_mismatch(got: list, want: list) -> str | None:
    if len(got) != len(want):
        return f"{len(got)} blocks, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"block {i}: got {str(g)[:80]}... expected {str(w)[:80]}..."
    return None


def check_ref_read(ref: dict, model: Model, kp, *, info: dict | None = None) -> None:
    """The reference's `read` output matches the model (and our own info, when given)."""
    assert ref["key"] == kp.public_key.hex()
    assert ref["length"] == model.length
    assert ref["fork"] == model.fork
    assert ref["byteLength"] == model.byte_length
    assert ref["signatureMode"] == "compat"
    assert ref["signatureValid"] is True
    assert ref["verifierAccepts"] is True
    assert ref["userData"] == model.user_data_hex()
    assert ref["blocksSha256"] == model.sha256
    assert ref["missingBlocks"] == [i for i, b in enumerate(model.blocks) if b is None]
    assert ref["filesChanged"] == []
    if "blocks" in ref:
        want = [None if b is None else b.hex() for b in model.blocks]
        # a few by hex first (readable failures), then all of them
        for i in sorted({0, 1, 2, 4, 5, model.length // 2, model.length - 1}):
            if 0 <= i < model.length:
                assert ref["blocks"][i] == want[i], f"block {i}"
        assert _first_block_mismatch(ref["blocks"], want) is None, _first_block_mismatch(ref["blocks"], want)
    if info is not None:
        for k in ("length", "byteLength", "fork", "treeHash", "signature", "contiguousLength"):
            assert ref[k] == info[k], f"{k}: reference {ref[k]!r}, Python {info[k]!r}"


# -------------------------------------------------- 1, 2: Python -> reference


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_python_core_read_by_reference(tmp_path, encrypted):
    ek = ENC_KEY if encrypted else None
    ops = big_script(random.Random(1 if not encrypted else 2))
    model = Model(ops)
    assert model.length == 3000
    assert {0, 1, 4096, 65536, 70000} <= set(model.sizes)
    kp = key_pair(SEED)

    info = await py_write(tmp_path, SEED, ops, ek)
    assert info["length"] == model.length and info["byteLength"] == model.byte_length

    args = ["read", tmp_path] + (["--encryption-key", ek.hex()] if ek else [])
    ref = run_refcore(*args)
    check_ref_read(ref, model, kp, info=info)

    if encrypted:
        # the stored (encrypted) bytes as the reference sees them == ours
        raw = run_refcore("read", tmp_path, "--no-blocks", "--raw")
        h = hashlib.sha256()
        async with _open(tmp_path, SEED, ek) as core:
            for i in range(core.length):
                h.update(await core.get(i, raw=True))
        assert raw["blocksSha256"] == h.hexdigest()
        assert raw["filesChanged"] == []


# ------------------------------------------------------ 3: reference -> Python


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_reference_core_read_and_continued_by_python(tmp_path, encrypted):
    ek = ENC_KEY if encrypted else None
    rng = random.Random(3 if not encrypted else 4)
    ops = big_script(rng, target=2000)
    model = Model(ops)
    kp = key_pair(SEED_2)

    ref_info = refcore_write(tmp_path, SEED_2, ops, encryption_key=ek)
    assert ref_info["length"] == model.length

    async with _open(tmp_path, SEED_2, ek) as core:
        assert core.key == kp.public_key
        assert core.writable
        assert core.length == model.length
        assert core.fork == model.fork
        assert core.byte_length == model.byte_length
        assert core.contiguous_length == model.length
        for k in ("app/name", "app/blob", "app/third", "missing"):
            assert await core.get_user_data(k) == model.user_data.get(k), k
        got = [await core.get(i, wait=False) for i in range(core.length)]
        assert _first_block_mismatch(got, model.blocks) is None, _first_block_mismatch(got, model.blocks)
        tree = core.core.tree
        th = tree.tree_hash()
        assert th.hex() == ref_info["treeHash"]
        assert tree.signature.hex() == ref_info["signature"]
        assert core.core.verify_signature(th, core.length, core.fork, tree.signature)

        # continue the reference's core from Python
        more = [rng.randbytes(_mixed_size(rng)) for _ in range(300)]
        await core.append(more[0])
        await core.append(more[1:250])
        await core.set_user_data("app/name", b"continued by python")
        for b in more[250:]:
            await core.append(b)
        py_info = _info(core)

    model.apply({"append": [b.hex() for b in more]})
    model.apply({"setUserData": {"key": "app/name", "value": b"continued by python".hex()}})
    args = ["read", tmp_path] + (["--encryption-key", ek.hex()] if ek else [])
    ref = run_refcore(*args)
    check_ref_read(ref, model, kp, info=py_info)


# ------------------------------------------------------- 4: byte-identical


def _blocks(rng: random.Random, sizes) -> list[str]:
    return [rng.randbytes(s).hex() for s in sizes]


def script_basic() -> tuple[list[dict], bytes | None]:
    rng = random.Random(10)
    ops = [
        {"append1": _h(b"hello")},
        {"append": _blocks(rng, [3, 0, 100, 4096, 1])},
        {"setUserData": {"key": "a", "value": _h(b"first")}},
        {"append1": _h(rng.randbytes(65536))},
        {"setUserData": {"key": "b", "value": _h(b"second"), "flush": True}},
        {"append": _blocks(rng, [17] * 11)},
        {"append1": ""},
        {"truncate": 9},
        {"append": _blocks(rng, [70000, 5, 5])},
        {"closeAndReopen": True},
        {"append1": _h(b"after reopen")},
        {"setUserData": {"key": "a", "value": _h(b"first, changed")}},
        {"append": _blocks(rng, [1, 2, 3, 4, 5, 6, 7])},
        {"setUserData": {"key": "b", "value": None}},
        {"truncate": 20, "fork": 7},
        {"append": _blocks(rng, [40] * 3)},
        {"append1": _h(b"x")},
        {"setUserData": {"key": "c", "value": _h(b"third")}},
        {"closeAndReopen": True},
        {"append": _blocks(rng, [9, 99, 999])},
        {"append1": _h(b"pending 1")},
        {"append1": _h(b"pending 2")},
    ]
    return ops, None


def script_big_entries() -> tuple[list[dict], bytes | None]:
    """Entry area >= 65 536 bytes before the counter runs out: flushes by size (01-core §7.8)."""
    rng = random.Random(11)
    ops: list[dict] = [{"append1": _h(b"first")}]  # counter 1 -> 0: flush, counter 4
    # three batches of 400 tiny blocks (~29 KB entries): the third crosses 65 536 at counter 1
    for _ in range(3):
        ops.append({"append": _blocks(rng, [rng.randint(0, 8) for _ in range(400)])})
    ops.append({"setUserData": {"key": "k", "value": _h(b"v")}})
    # one entry far above the limit on its own
    ops.append({"append": _blocks(rng, [rng.randint(1, 4) for _ in range(2000)])})
    ops.append({"closeAndReopen": True})
    # many small single appends (counter flushes every 4th) then two batches left pending
    for i in range(150):
        ops.append({"append1": _h(rng.randbytes(i % 7))})
    ops.append({"append": _blocks(rng, [1] * 300)})
    ops.append({"append": _blocks(rng, [2] * 300)})
    ops.append({"closeAndReopen": True})
    # replayed entries (~45 KB) plus a new big batch: flush by size right away
    ops.append({"append": _blocks(rng, [3] * 500)})
    ops.append({"append": _blocks(rng, [3] * 10)})
    return ops, None


def script_clear() -> tuple[list[dict], bytes | None]:
    """clear() with hole punches; every pending clear at a reopen has start >= contiguousLength
    (so the reference's replay rule, 01-core §7.9, gives the same hint)."""
    rng = random.Random(12)
    sizes = [rng.choice([1, 100, 300, 4096, 5000, 9000]) for _ in range(40)]
    ops = [
        {"append": _blocks(rng, sizes)},             # counter 1 -> 0: flush, 4
        {"setUserData": {"key": "u", "value": _h(b"1")}},  # 3
        {"clear": [5, 9]},                           # 2
        {"clear": [0, 1]},                           # 1; contiguousLength 0 from here on
        {"append1": _h(rng.randbytes(4000))},        # 0: flush, 4
        {"clear": [9, 12]},                          # 3 (the punch merges with 5..9)
        {"clear": [20, 21]},                         # 2
        {"closeAndReopen": True},                    # 1
        {"clear": [20, 22]},                         # 0: flush (block 20 punched again)
        {"append": _blocks(rng, [700] * 6)},         # 3
        {"clear": [30, 35]},                         # 2
        {"truncate": 32},                            # flush; data beyond is garbage
        {"append": _blocks(rng, [123] * 5)},         # 1
        {"clear": [1, 3]},                           # 0: flush
        {"closeAndReopen": True},
        {"append1": _h(b"after")},                   # 0: flush
        {"clear": [34, 100]},                        # end beyond the length; 3
        {"setUserData": {"key": "u", "value": _h(b"2")}},  # 2
    ]
    return ops, None


def script_truncations_encrypted() -> tuple[list[dict], bytes | None]:
    """Encrypted blocks, truncation to a power of two with pending nodes (stale node 2N-1,
    01-core §7.10), same-length truncation, truncation to 0, explicit forks, and a
    user data value large enough for an external `header` file (§7.12)."""
    rng = random.Random(13)
    ops = [
        {"append": _blocks(rng, [10, 20, 30])},      # flush (counter 1 -> 0)
        {"append": _blocks(rng, [1, 2, 3, 4, 5])},   # pending: length 8
        {"truncate": 4},                             # 8 -> 4 with nodes 3, 5, 6, 7 pending
        {"truncate": 4},                             # fork only
        {"append": _blocks(rng, [50] * 9)},
        {"setUserData": {"key": "small", "value": _h(b"s")}},
        {"truncate": 6, "fork": 10},
        {"closeAndReopen": True},
        {"append": _blocks(rng, [64] * 3)},
        {"truncate": 0},
        {"append1": _h(b"from zero")},
        {"append": _blocks(rng, [4096, 0, 1])},
        {"setUserData": {"key": "big", "value": _h(rng.randbytes(5000))}},
        {"append1": _h(b"x")},
        {"append1": _h(b"y")},
        {"append1": _h(b"z")},
        {"closeAndReopen": True},
        {"append": _blocks(rng, [7] * 20)},
        {"setUserData": {"key": "big", "value": _h(rng.randbytes(6000))}},
        {"append1": _h(b"w")},
        {"truncate": 5},
        {"append1": _h(b"last")},
    ]
    return ops, ENC_KEY


SCRIPTS = {
    "basic": script_basic,
    "big-entries": script_big_entries,
    "clear": script_clear,
    "truncations-encrypted": script_truncations_encrypted,
}


def _diff_files(ours: Path, ref: Path) -> list[str]:
    problems = []
    for name in FILES:
        a, b = ours / name, ref / name
        if not a.exists() and not b.exists():
            continue
        if not a.exists() or not b.exists():
            problems.append(f"{name}: exists only in {'python' if a.exists() else 'reference'}")
            continue
        x, y = a.read_bytes(), b.read_bytes()
        if x == y:
            continue
        n = min(len(x), len(y))
        off = next((i for i in range(n) if x[i] != y[i]), n)
        lo = max(0, off - 16)
        problems.append(
            f"{name}: python {len(x)} bytes, reference {len(y)} bytes, first difference at offset {off}\n"
            f"    python    [{lo}:{off + 32}] {x[lo:off + 32].hex()}\n"
            f"    reference [{lo}:{off + 32}] {y[lo:off + 32].hex()}"
        )
    return problems


def _segments(ops: list[dict]) -> list[tuple[int, list[dict]]]:
    """Split a script at its closeAndReopen ops: (index of the first op, ops) per open of the core.

    Running the segments one `write` call each is the same as running the whole
    script (closeAndReopen = close + open, and `write` opens the existing core),
    and lets the files be compared at every close, not only at the end.
    """
    out, cur, first = [], [], 0
    for n, op in enumerate(ops):
        if op.get("closeAndReopen"):
            out.append((first, cur))
            cur, first = [], n + 1
        else:
            cur.append(op)
    out.append((first, cur))
    return out


@pytest.mark.parametrize("script", list(SCRIPTS))
async def test_byte_identical_files(tmp_path, script):
    ops, ek = SCRIPTS[script]()
    ours, ref = tmp_path / "python", tmp_path / "reference"
    ours.mkdir()
    ref.mkdir()
    for first, seg in _segments(ops):
        where = f"{script}, after ops {first}..{first + len(seg) - 1} (then close)"
        py_info = await py_write(ours, SEED, seg, ek)
        ref_info = refcore_write(ref, SEED, seg, encryption_key=ek)
        problems = _diff_files(ours, ref)
        state = {k: (py_info[k], ref_info[k]) for k in py_info if py_info[k] != ref_info[k]}
        assert not problems, (
            f"{where}: files differ from the reference's\n" + "\n".join(problems)
            + (f"\nstate differs (python, reference): {state}" if state else "")
        )
        assert not state, f"{where}: state differs (python, reference): {state}"

    model = Model(ops)
    assert ref_info["length"] == model.length and ref_info["fork"] == model.fork
    assert ref_info["byteLength"] == model.byte_length
