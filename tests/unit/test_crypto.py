"""Crypto primitives, key derivation and block encryption (01-core §3, §6.2–6.3, §8.9).

Vectors: core-crypto.json, core-keys.json, core-encryption.json.

core-keys.json manifest modes (manifestV0/manifestV1): building the manifest
bytes from a public key needs the manifest encoder (§5.3), which does not
exist yet; here only the parts that follow from the *given* manifest bytes are
checked (key = BLAKE2b(MANIFEST || manifest), discovery key, id, storage dir).
"""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacecorestore import crypto
from spacecorestore import flat_tree as ft
from spacecorestore.encoding import z32_encode
from vectors_util import h, load_vector

C = load_vector("core-crypto")
K = load_vector("core-keys")
E = load_vector("core-encryption")


# -- namespaces --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hypercore", "corestore"])
def test_namespace_base(name):
    ns = C["namespaces"][name]
    assert ns["name"] == name
    assert crypto.hash32(name.encode()).hex() == ns["base"]


@pytest.mark.parametrize("name", ["hypercore", "corestore"])
def test_namespace_values(name):
    ns = C["namespaces"][name]
    values = crypto.namespace(name, len(ns["ids"]))
    assert [v.hex() for v in values] == [i["value"] for i in ns["ids"]]
    assert [i["id"] for i in ns["ids"]] == list(range(len(ns["ids"])))


@pytest.mark.parametrize("item", C["namespaces"]["hypercore"]["ids"], ids=lambda i: i["name"])
def test_hypercore_constants(item):
    assert getattr(crypto, item["name"]).hex() == item["value"]


def test_corestore_ns_constant():
    (item,) = C["namespaces"]["corestore"]["ids"]
    assert item["name"] == "NS"
    assert crypto.CORESTORE_NS.hex() == item["value"]
    assert crypto.CORESTORE_NS.hex() == K["corestoreNS"]


def test_hash32_is_blake2b_256():
    assert crypto.hash32(b"abc") == hashlib.blake2b(b"abc", digest_size=32).digest()
    assert crypto.hash32(b"abc", key=b"k" * 32) == hashlib.blake2b(b"abc", digest_size=32, key=b"k" * 32).digest()


# -- replication capability ----------------------------------------------------------


@pytest.mark.parametrize("case", C["replicationCapability"], ids=lambda c: f"initiator={c['isInitiator']}")
def test_replication_capability(case):
    cap = crypto.replication_capability(case["isInitiator"], h(case["key"]), h(case["handshakeHash"]))
    assert cap.hex() == case["capability"]


# -- Ed25519 ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", C["keyPairs"], ids=lambda c: c["seed"][:8])
def test_key_pair(case):
    kp = crypto.key_pair(h(case["seed"]))
    assert kp.public_key.hex() == case["publicKey"]
    assert kp.secret_key.hex() == case["secretKey"]
    assert kp.secret_key == h(case["seed"]) + kp.public_key


def test_key_pair_random():
    a, b = crypto.key_pair(), crypto.key_pair()
    assert len(a.public_key) == 32 and len(a.secret_key) == 64
    assert a.public_key != b.public_key
    assert crypto.key_pair(a.secret_key[:32]) == a


@pytest.mark.parametrize("case", C["signatures"], ids=lambda c: c["seed"][:8])
def test_signature(case):
    kp = crypto.key_pair(h(case["seed"]))
    assert kp.public_key.hex() == case["publicKey"]
    msg, sig, pk = h(case["message"]), h(case["signature"]), h(case["publicKey"])
    assert crypto.sign(msg, kp.secret_key).hex() == case["signature"]
    assert crypto.verify(msg, sig, pk) is True


def _verify_false_cases(case):
    msg, sig, pk = h(case["message"]), h(case["signature"]), h(case["publicKey"])
    flipped_sig = bytes([sig[0] ^ 1]) + sig[1:]
    other_pk = crypto.key_pair(bytes(32)).public_key
    yield "other-message", msg + b"x", sig, pk
    yield "flipped-signature", msg, flipped_sig, pk
    yield "other-key", msg, sig, other_pk
    yield "short-signature", msg, sig[:63], pk
    yield "long-signature", msg, sig + b"\x00", pk
    yield "empty-signature", msg, b"", pk
    yield "no-signature", msg, None, pk
    yield "short-key", msg, sig, pk[:31]
    yield "long-key", msg, sig, pk + b"\x00"
    yield "empty-key", msg, sig, b""


@pytest.mark.parametrize(
    "label,msg,sig,pk",
    [pytest.param(*args, id=f"{c['seed'][:8]}-{args[0]}") for c in C["signatures"] for args in _verify_false_cases(c)],
)
def test_verify_false(label, msg, sig, pk):
    assert crypto.verify(msg, sig, pk) is False


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200))
def test_sign_verify_round_trip(seed, msg):
    kp = crypto.key_pair(seed)
    sig = crypto.sign(msg, kp.secret_key)
    assert len(sig) == 64
    assert crypto.verify(msg, sig, kp.public_key)
    assert not crypto.verify(msg + b"\x00", sig, kp.public_key)


# -- discovery keys -----------------------------------------------------------------------


@pytest.mark.parametrize("case", C["discoveryKeys"], ids=lambda c: c["key"][:8])
def test_discovery_key(case):
    assert crypto.discovery_key(h(case["key"])).hex() == case["discoveryKey"]


# -- Merkle hashes -------------------------------------------------------------------------


@pytest.mark.parametrize("case", C["leafHashes"], ids=lambda c: str(c["size"]))
def test_leaf_hash(case):
    data = h(case["data"])
    assert len(data) == case["size"]
    assert crypto.leaf_hash(data).hex() == case["hash"]


@pytest.mark.parametrize("case", C["parentHashes"], ids=lambda c: c["hash"][:8])
def test_parent_hash(case):
    left, right = case["left"], case["right"]
    assert left["index"] < right["index"]
    assert ft.parent(left["index"]) == ft.parent(right["index"])
    got = crypto.parent_hash(left["size"], h(left["hash"]), right["size"], h(right["hash"]))
    assert got.hex() == case["hash"]


@pytest.mark.parametrize("case", C["treeHashes"], ids=lambda c: f"{len(c['roots'])}-roots")
def test_tree_hash(case):
    roots = [(r["index"], r["size"], h(r["hash"])) for r in case["roots"]]
    assert crypto.tree_hash(roots).hex() == case["hash"]
    assert crypto.tree_hash(iter(roots)).hex() == case["hash"]


def test_empty_tree_hash():
    (empty,) = [c for c in C["treeHashes"] if not c["roots"]]
    assert crypto.EMPTY_TREE_HASH.hex() == empty["hash"]
    assert crypto.hash32(b"\x02").hex() == empty["hash"]


def test_signables_layout():
    th = bytes(range(32))
    s = crypto.compat_signable(th, 3, 1)
    assert len(s) == 80
    assert s == crypto.TREE + th + (3).to_bytes(8, "little") + (1).to_bytes(8, "little")
    ctx = b"\x07" * 32
    m = crypto.manifest_signable(ctx, th, 3, 1)
    assert len(m) == 112
    assert m == crypto.TREE + ctx + th + (3).to_bytes(8, "little") + (1).to_bytes(8, "little")


# -- XSalsa20 ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", C["xsalsa20"], ids=lambda c: c["nonce"][:8])
def test_xsalsa20_keystream(case):
    key, nonce, ks = h(case["key"]), h(case["nonce"]), h(case["keystream96"])
    assert len(ks) == 96
    assert crypto.xsalsa20(key, nonce, 96) == ks
    assert crypto.xsalsa20(key, nonce, 10) == ks[:10]
    assert crypto.xsalsa20_xor(key, nonce, bytes(96)) == ks
    data = bytes(range(96))
    ct = crypto.xsalsa20_xor(key, nonce, data)
    assert ct == bytes(a ^ b for a, b in zip(data, ks))
    assert crypto.xsalsa20_xor(key, nonce, ct) == data


# -- Spacecorestore key derivation (core-keys.json) ----------------------------------------


def _namespace_of(path) -> bytes:
    ns = crypto.ZERO_NAMESPACE
    for part in path:
        ns = crypto.child_namespace(ns, part)
    return ns


def test_default_namespace_is_zero():
    assert K["defaultNamespace"] == bytes(32).hex()
    assert crypto.ZERO_NAMESPACE == bytes(32)


@pytest.mark.parametrize("item", K["namespaces"], ids=lambda n: "/".join(n["path"]) or "root")
def test_namespace_path(item):
    assert _namespace_of(item["path"]).hex() == item["namespace"]
    # bytes names are used as is
    assert _namespace_of([p.encode() for p in item["path"]]).hex() == item["namespace"]


def _case_id(c):
    return f"{c['primaryKey'][:4]}-{'/'.join(c['namespacePath']) or 'root'}-{c['name']}"


@pytest.mark.parametrize("case", K["cases"], ids=_case_id)
def test_key_derivation(case):
    primary = h(case["primaryKey"])
    ns = _namespace_of(case["namespacePath"])
    assert ns.hex() == case["namespace"]

    seed = crypto.derive_seed(primary, ns, case["name"])
    assert seed.hex() == case["seed"]

    kp = crypto.derive_key_pair(primary, ns, case["name"])
    assert kp.public_key.hex() == case["publicKey"]
    assert kp.secret_key.hex() == case["secretKey"]
    assert crypto.key_pair(seed) == kp


def _storage_dir(dk: bytes) -> str:
    x = dk.hex()
    return f"cores/{x[0:2]}/{x[2:4]}/{x}"


def _check_key_ids(mode: dict) -> None:
    key = h(mode["key"])
    dk = crypto.discovery_key(key)
    assert dk.hex() == mode["discoveryKey"]
    assert z32_encode(key) == mode["id"]
    assert _storage_dir(dk) == mode["storageDir"]


@pytest.mark.parametrize("case", K["cases"], ids=_case_id)
def test_compat_mode(case):
    mode = case["modes"]["compat"]
    assert mode["manifest"] is None
    assert mode["key"] == case["publicKey"]
    _check_key_ids(mode)


@pytest.mark.parametrize(
    "case,mode_name",
    [(c, m) for c in K["cases"] for m in ("manifestV0", "manifestV1")],
    ids=[f"{_case_id(c)}-{m}" for c in K["cases"] for m in ("manifestV0", "manifestV1")],
)
def test_manifest_mode_key_from_given_manifest(case, mode_name):
    # Only what follows from the vector's manifest bytes; encoding the manifest is not covered.
    mode = case["modes"][mode_name]
    manifest = h(mode["manifest"])
    assert case["publicKey"] in mode["manifest"]
    assert crypto.hash32(crypto.MANIFEST + manifest).hex() == mode["key"]
    _check_key_ids(mode)


# -- block encryption (core-encryption.json) --------------------------------------------------


@pytest.mark.parametrize("case", E["cases"], ids=lambda c: c["mode"])
def test_block_encryption_keys(case):
    be = crypto.BlockEncryption(h(case["encryptionKey"]), h(case["key"]), compat=case["compat"])
    assert be.block_key.hex() == case["blockKey"]
    assert be.blinding_key.hex() == case["blindingKey"]
    assert be.padding == case["padding"] == crypto.PADDING
    if case["compat"]:
        expected = crypto.hash32(h(case["encryptionKey"]), key=h(case["key"]))
    else:
        expected = crypto.hash32(crypto.BLOCK_ENCRYPTION + h(case["key"]) + h(case["encryptionKey"]))
    assert be.block_key == expected
    assert crypto.hash32(be.block_key) == be.blinding_key

    direct = crypto.BlockEncryption(h(case["blockKey"]), h(case["key"]), is_block_key=True)
    assert direct.block_key == be.block_key
    assert direct.blinding_key == be.blinding_key


def _block_params():
    for c in E["cases"]:
        for j, b in enumerate(c["blocks"]):
            yield pytest.param(c, b, id=f"{c['mode']}-{j}-i{b['index']}-f{b['fork']}")


@pytest.mark.parametrize("case,block", list(_block_params()))
def test_block_encrypt_decrypt(case, block):
    be = crypto.BlockEncryption(h(case["encryptionKey"]), h(case["key"]), compat=case["compat"])
    plaintext, stored = h(block["plaintext"]), h(block["stored"])
    assert len(stored) == len(plaintext) + case["padding"]
    assert be.encrypt(block["index"], plaintext, block["fork"]).hex() == block["stored"]
    assert be.decrypt(block["index"], stored) == plaintext
    direct = crypto.BlockEncryption(h(case["blockKey"]), h(case["key"]), is_block_key=True)
    assert direct.decrypt(block["index"], stored) == plaintext


@pytest.mark.parametrize("case", E["cases"], ids=lambda c: c["mode"])
def test_block_padding_blinds_the_fork(case):
    be = crypto.BlockEncryption(h(case["encryptionKey"]), h(case["key"]), compat=case["compat"])
    for b in case["blocks"]:
        stored = h(b["stored"])
        i8 = b["index"].to_bytes(8, "little")
        ks = crypto.xsalsa20(be.blinding_key, i8 + bytes(16), 8)
        assert int.from_bytes(stored[:8], "little") ^ int.from_bytes(ks, "little") == b["fork"]


def _tree_of(stored_blocks: list[bytes]):
    """(roots, byte length) of a Merkle tree over the stored (encrypted) blocks."""
    def node(i):
        if not i & 1:
            data = stored_blocks[i // 2]
            return len(data), crypto.leaf_hash(data)
        left, right = ft.children(i)
        ls, lh = node(left)
        rs, rh = node(right)
        return ls + rs, crypto.parent_hash(ls, lh, rs, rh)

    roots = []
    for r in ft.full_roots(2 * len(stored_blocks)):
        size, hsh = node(r)
        roots.append((r, size, hsh))
    return roots


@pytest.mark.parametrize("case", E["cases"], ids=lambda c: c["mode"])
def test_encrypted_core_tree(case):
    # blocks are listed in write order; a later block with the same index
    # (written after a truncation, at a higher fork) replaces the earlier one.
    final: dict[int, bytes] = {}
    for b in case["blocks"]:
        final[b["index"]] = h(b["stored"])
    assert sorted(final) == list(range(case["length"]))
    stored = [final[i] for i in range(case["length"])]
    assert sum(len(s) for s in stored) == case["treeByteLength"]
    assert sum(len(s) - case["padding"] for s in stored) == case["byteLength"]
    roots = _tree_of(stored)
    assert sum(size for _, size, _ in roots) == case["treeByteLength"]
    assert crypto.tree_hash(roots).hex() == case["treeHash"]


@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.booleans(),
    st.integers(min_value=0, max_value=2**53),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=300),
)
def test_block_encryption_round_trip(enc_key, core_key, compat, index, fork, plaintext):
    be = crypto.BlockEncryption(enc_key, core_key, compat=compat)
    stored = be.encrypt(index, plaintext, fork)
    assert len(stored) == len(plaintext) + 8
    assert be.decrypt(index, stored) == plaintext
