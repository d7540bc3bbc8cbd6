"""Hashes, signatures, key derivation and block encryption (01-core §3, §6.3, §8.9).

BLAKE2b through hashlib, Ed25519 through PyNaCl's bindings, XSalsa20 through
the libsodium shared object PyNaCl ships (PyNaCl does not wrap
``crypto_stream``).  Everything here is pure.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import struct
from typing import NamedTuple

import nacl.bindings as _nb
import nacl._sodium as _sodium

_blake2b = hashlib.blake2b
_U64 = struct.Struct("<Q")
_LEAF_TYPE = b"\x00"
_PARENT_TYPE = b"\x01"
_ROOT_TYPE = b"\x02"


class KeyPair(NamedTuple):
    public_key: bytes
    secret_key: bytes | None


def hash32(data: bytes, key: bytes | None = None) -> bytes:
    if key:
        return _blake2b(data, digest_size=32, key=key).digest()
    return _blake2b(data, digest_size=32).digest()


def namespace(name: str, n: int) -> list[bytes]:
    base = hash32(name.encode())
    return [hash32(base + bytes([k])) for k in range(n)]


TREE, REPLICATE_INITIATOR, REPLICATE_RESPONDER, MANIFEST, DEFAULT_NAMESPACE, BLOCK_ENCRYPTION = namespace(
    "hypercore", 6
)
CORESTORE_NS = namespace("corestore", 1)[0]
EMPTY_TREE_HASH = hash32(_ROOT_TYPE)


def discovery_key(key: bytes) -> bytes:
    return _blake2b(b"hypercore", digest_size=32, key=key).digest()


def key_pair(seed: bytes | None = None) -> KeyPair:
    if seed is None:
        seed = os.urandom(32)
    pk, sk = _nb.crypto_sign_seed_keypair(seed)
    return KeyPair(pk, sk)


def sign(message: bytes, secret_key: bytes) -> bytes:
    """Ed25519 detached signature (libsodium's own, called without PyNaCl's combined-message copy)."""
    if len(secret_key) != 64:
        raise ValueError("secret key must be 64 bytes")
    sig = ctypes.create_string_buffer(64)
    _sign_detached(sig, None, message, len(message), secret_key)
    return sig.raw


def verify(message: bytes, signature: bytes | None, public_key: bytes) -> bool:
    if not signature or len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        _nb.crypto_sign_open(signature + message, public_key)
        return True
    except Exception:
        return False


def replication_capability(is_initiator: bool, key: bytes, handshake_hash: bytes) -> bytes:
    ns = REPLICATE_INITIATOR if is_initiator else REPLICATE_RESPONDER
    return hash32(ns + key, key=handshake_hash)


# Merkle hashes ----------------------------------------------------------------

def leaf_hash(data: bytes) -> bytes:
    h = _blake2b(digest_size=32)
    h.update(_LEAF_TYPE + _U64.pack(len(data)))
    h.update(data)
    return h.digest()


def parent_hash(left_size: int, left_hash: bytes, right_size: int, right_hash: bytes) -> bytes:
    return _blake2b(_PARENT_TYPE + _U64.pack(left_size + right_size) + left_hash + right_hash, digest_size=32).digest()


def tree_hash(roots) -> bytes:
    """``roots``: iterable of (index, size, hash), left to right."""
    h = _blake2b(digest_size=32)
    h.update(_ROOT_TYPE)
    for index, size, hsh in roots:
        h.update(hsh + _U64.pack(index) + _U64.pack(size))
    return h.digest()


def compat_signable(tree_hash_: bytes, length: int, fork: int) -> bytes:
    return TREE + tree_hash_ + _U64.pack(length) + _U64.pack(fork)


def manifest_signable(ctx: bytes, tree_hash_: bytes, length: int, fork: int) -> bytes:
    return TREE + ctx + tree_hash_ + _U64.pack(length) + _U64.pack(fork)


# Corestore key derivation -------------------------------------------------------

ZERO_NAMESPACE = bytes(32)


def child_namespace(parent: bytes, name: str | bytes) -> bytes:
    return hash32(parent + (name.encode() if isinstance(name, str) else bytes(name)))


def derive_seed(primary_key: bytes, ns: bytes, name: str) -> bytes:
    return hash32(CORESTORE_NS + ns + name.encode(), key=primary_key)


def derive_key_pair(primary_key: bytes, ns: bytes, name: str) -> KeyPair:
    return key_pair(derive_seed(primary_key, ns, name))


# XSalsa20 and block encryption -----------------------------------------------

_lib = ctypes.CDLL(_sodium.__file__)
_sign_detached = _lib.crypto_sign_detached
_sign_detached.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
_lib.crypto_stream_xsalsa20_xor.argtypes = [
    ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_char_p,
]
_lib.crypto_stream_xsalsa20.argtypes = [ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_char_p]


def xsalsa20(key: bytes, nonce: bytes, n: int) -> bytes:
    out = ctypes.create_string_buffer(n)
    _lib.crypto_stream_xsalsa20(out, n, nonce, key)
    return out.raw


def xsalsa20_xor(key: bytes, nonce: bytes, data: bytes) -> bytes:
    out = ctypes.create_string_buffer(len(data))
    _lib.crypto_stream_xsalsa20_xor(out, data, len(data), nonce, key)
    return out.raw


PADDING = 8
_ZERO8 = bytes(8)
_ZERO16 = bytes(16)


class BlockEncryption:
    """Block encryption of 01-core §8.9 (padding 8)."""

    padding = PADDING

    def __init__(self, encryption_key: bytes, core_key: bytes, *, compat: bool = True, is_block_key: bool = False):
        if is_block_key:
            self.block_key = encryption_key
        elif compat:
            self.block_key = hash32(encryption_key, key=core_key)
        else:
            self.block_key = hash32(BLOCK_ENCRYPTION + core_key + encryption_key)
        self.blinding_key = hash32(self.block_key)

    def encrypt(self, index: int, plaintext: bytes, fork: int) -> bytes:
        i8 = _U64.pack(index)
        ks = xsalsa20(self.blinding_key, i8 + _ZERO16, 8)
        pad = (int.from_bytes(ks, "little") ^ fork).to_bytes(8, "little")
        return pad + xsalsa20_xor(self.block_key, i8 + pad + _ZERO8, plaintext)

    def decrypt(self, index: int, stored: bytes) -> bytes:
        nonce = _U64.pack(index) + stored[:8] + _ZERO8
        return xsalsa20_xor(self.block_key, nonce, stored[8:])
