"""Noise XX handshake of the secret stream (02-transport §2, §3), sans-IO.

This module owns the Noise protocol ``Noise_XX_Ed25519_ChaChaPoly_BLAKE2b`` as
the reference (noise-handshake 4.2.0 + noise-curve-ed 2.1.0) runs it:

* "Ed25519" DH: ``crypto_scalarmult_ed25519_noclamp(clamp(SHA-512(seed)[:32]), remote_pk)``;
  static and ephemeral keys are ordinary Ed25519 signing key pairs.
* HASH = BLAKE2b-512, HMAC-BLAKE2b (``hmac`` module), Noise HKDF with 64-byte outputs.
* IETF ChaCha20-Poly1305 with nonce ``00000000 || u64le(n)``.
* Empty prologue, empty payloads sent; received payloads are hashed and ignored.

``NoiseHandshake`` is a pure state machine over Noise *message bodies* (no
framing, see ``framing.py``): the initiator calls ``send()`` (message 1),
``receive(msg2)``, ``send()`` (message 3); the responder ``receive(msg1)``,
``send()``, ``receive(msg3)``.  After the last step ``complete`` is true and
``result`` holds tx/rx, the handshake hash and the remote static key.  Any bad
input (short message, AEAD failure, a DH refusal of a bad point, a message out
of turn) raises ``HandshakeError`` and leaves the object failed; calling
``send()`` when it is not our turn is ``LocalProtocolError``.

Invariants: the only randomness is the ephemeral key pair (injectable for
tests); the symmetric state can be traced operation by operation (``trace``)
in the format of ``transport-handshake.json`` → ``noiseTrace``.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any, NamedTuple

import nacl.bindings as _nb
import nacl.exceptions as _nacl_exc
from nacl._sodium import ffi as _ffi, lib as _lib

from ..crypto import KeyPair, key_pair as _key_pair
from ..errors import HandshakeError, LocalProtocolError

PROTOCOL_NAME = b"Noise_XX_Ed25519_ChaChaPoly_BLAKE2b"
HASHLEN = 64
DHLEN = PKLEN = 32
MACLEN = 16
MAX_NOISE_FIELD = 65535  # noise-handshake refuses longer encrypted fields

if not _nb.has_crypto_scalarmult_ed25519:  # pragma: no cover - the PyPI wheel has it
    raise ImportError("PyNaCl without crypto_scalarmult_ed25519: the Noise handshake needs a full libsodium")

_aead_encrypt = _nb.crypto_aead_chacha20poly1305_ietf_encrypt
_aead_decrypt = _nb.crypto_aead_chacha20poly1305_ietf_decrypt
_U64 = struct.Struct("<Q")


# -- primitives (§2) ---------------------------------------------------------------


def blake2b512(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=64).digest()


def hmac_blake2b(key: bytes, data: bytes) -> bytes:
    """RFC 2104 HMAC over BLAKE2b-512 (block 128 bytes, output 64)."""
    return hmac.new(key, data, hashlib.blake2b).digest()


def hkdf(chaining_key: bytes, ikm: bytes, n: int = 2) -> list[bytes]:
    """Noise HKDF: ``n`` (2 or 3) outputs of 64 bytes."""
    if n not in (2, 3):
        raise ValueError("hkdf: n must be 2 or 3")
    prk = hmac_blake2b(chaining_key, ikm)
    out1 = hmac_blake2b(prk, b"\x01")
    out2 = hmac_blake2b(prk, out1 + b"\x02")
    if n == 2:
        return [out1, out2]
    return [out1, out2, hmac_blake2b(prk, out2 + b"\x03")]


def scalar(secret_key: bytes) -> bytes:
    """Clamped scalar of an Ed25519 secret key (only its 32-byte seed is used)."""
    a = bytearray(hashlib.sha512(bytes(secret_key[:32])).digest()[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return bytes(a)


def dh(local_secret_key: bytes, remote_public_key: bytes) -> bytes:
    """The Noise DH of curve "Ed25519"; ``HandshakeError`` for a point libsodium refuses."""
    if len(remote_public_key) != PKLEN:
        raise HandshakeError("Noise handshake failed: bad public key length")
    # libsodium directly (what nacl.bindings.crypto_scalarmult_ed25519_noclamp wraps, minus
    # its argument checks): -1 for a non-canonical, small-order or off-curve point
    out = _ffi.new("unsigned char[]", DHLEN)
    if _lib.crypto_scalarmult_ed25519_noclamp(out, scalar(local_secret_key), bytes(remote_public_key)) != 0:
        raise HandshakeError("Noise handshake failed: DH refused the remote public key")
    return _ffi.buffer(out, DHLEN)[:]


def generate_key_pair(seed: bytes | None = None) -> KeyPair:
    """An Ed25519 key pair (``crypto_sign_seed_keypair``), random without a seed."""
    return _key_pair(seed)


def _nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + _U64.pack(n)


def _hex(b: bytes | None) -> str | None:
    return None if b is None else bytes(b).hex()


# -- symmetric state (§3.2) ----------------------------------------------------------


class SymmetricState:
    """h, ck, k, n of the Noise symmetric state; every operation can be traced."""

    __slots__ = ("h", "ck", "k", "n", "trace")

    def __init__(self, protocol_name: bytes = PROTOCOL_NAME, trace: list[dict[str, Any]] | None = None) -> None:
        self.trace = trace
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name + bytes(HASHLEN - len(protocol_name))
        else:  # pragma: no cover - not our protocol name
            self.h = blake2b512(protocol_name)
        self.ck = self.h
        self.k: bytes | None = None
        self.n = 0
        if self.trace is not None:
            self._log(op="initialise", protocolName=protocol_name.decode(), h=self.h.hex(), ck=self.ck.hex())

    def _log(self, **entry: Any) -> None:  # callers check ``trace`` first: no hex work otherwise
        assert self.trace is not None
        self.trace.append(entry)

    def _mix_hash(self, data: bytes) -> None:
        self.h = blake2b512(self.h + data)

    def mix_hash(self, data: bytes) -> None:
        self._mix_hash(data)
        if self.trace is not None:
            self._log(op="mixHash", data=data.hex(), h=self.h.hex())

    def mix_key(self, ikm: bytes) -> None:
        self.ck, t = hkdf(self.ck, ikm, 2)
        self.k = t[:32]
        self.n = 0
        if self.trace is not None:
            self._log(op="mixKey", ck=self.ck.hex(), k=self.k.hex())

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ad, key, n = self.h, self.k, self.n
        if key is None:
            c = plaintext
        else:
            c = _aead_encrypt(plaintext, ad, _nonce(n), key)
            if len(c) > MAX_NOISE_FIELD:
                raise LocalProtocolError("Noise field longer than 65535 bytes")
            self.n = n + 1
        self._mix_hash(c)
        if self.trace is not None:
            self._log(op="encryptAndHash", key=_hex(key), nonce=n, ad=ad.hex(), plaintext=plaintext.hex(),
                      ciphertext=c.hex(), h=self.h.hex())
        return c

    def decrypt_and_hash(self, c: bytes) -> bytes:
        ad, key, n = self.h, self.k, self.n
        if key is None:
            p = c
        else:
            if len(c) < MACLEN:
                raise HandshakeError("Noise handshake failed: Insufficient bytes")
            if len(c) > MAX_NOISE_FIELD:
                raise HandshakeError("Noise handshake failed: field longer than 65535 bytes")
            try:
                p = _aead_decrypt(c, ad, _nonce(n), key)
            except _nacl_exc.CryptoError:
                raise HandshakeError("Noise handshake failed: decryption failed") from None
            self.n = n + 1
        self._mix_hash(c)
        if self.trace is not None:
            self._log(op="decryptAndHash", key=_hex(key), nonce=n, ad=ad.hex(), ciphertext=c.hex(),
                      plaintext=p.hex(), h=self.h.hex())
        return p

    def split(self) -> tuple[bytes, bytes]:
        t1, t2 = hkdf(self.ck, b"", 2)
        return t1[:32], t2[:32]


# -- the XX handshake (§3.3, §3.4) ------------------------------------------------------


class HandshakeResult(NamedTuple):
    tx: bytes
    rx: bytes
    handshake_hash: bytes
    public_key: bytes
    remote_public_key: bytes


_XX = (("e",), ("e", "ee", "s", "es"), ("s", "se"))


class NoiseHandshake:
    """Noise XX between an initiator and a responder; see the module docstring.

    ``static_key_pair``: a ``KeyPair`` (or ``(public_key, secret_key)``); random
    when None.  ``ephemeral``: test-only injection of the ephemeral key pair.
    ``trace``: a list that receives every symmetric-state operation.
    """

    def __init__(
        self,
        is_initiator: bool,
        static_key_pair: KeyPair | tuple[bytes, bytes] | None = None,
        ephemeral: KeyPair | tuple[bytes, bytes] | None = None,
        *,
        trace: list[dict[str, Any]] | None = None,
    ) -> None:
        if static_key_pair is None:
            static_key_pair = generate_key_pair()
        pk, sk = static_key_pair
        if len(pk) != PKLEN or sk is None or len(sk) < 32:
            raise LocalProtocolError("static key pair must be a 32-byte public key and a 64-byte secret key")
        self.is_initiator = bool(is_initiator)
        self.s = KeyPair(bytes(pk), bytes(sk))
        self._ephemeral = None if ephemeral is None else KeyPair(bytes(ephemeral[0]), bytes(ephemeral[1]))
        self.e: KeyPair | None = None
        self.re: bytes | None = None
        self.rs: bytes | None = None
        self.trace = trace
        self.sym = SymmetricState(trace=trace)
        self.sym.mix_hash(b"")  # prologue
        self._step = 0  # index of the next message (0..2); 3 = complete
        self.failed = False
        self.result: HandshakeResult | None = None

    # -- state ------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.result is not None

    @property
    def our_turn(self) -> bool:
        """True when the next message is ours to send."""
        return not self.failed and self._step < 3 and (self._step % 2 == 0) == self.is_initiator

    @property
    def public_key(self) -> bytes:
        return self.s.public_key

    # -- operations ---------------------------------------------------------------

    def send(self, payload: bytes = b"") -> bytes:
        """The next handshake message (body only, no frame header)."""
        if not self.our_turn:
            raise LocalProtocolError("Noise handshake: not our turn to send" if not self.failed
                                     else "Noise handshake already failed")
        try:
            index = self._step
            tokens = _XX[index]
            if self.sym.trace is not None:
                self.sym._log(op="writeMessage", index=index + 1, tokens=list(tokens))
            out = bytearray()
            for tok in tokens:
                if tok == "e":
                    if self.e is None:
                        self.e = self._ephemeral or generate_key_pair()
                        self._ephemeral = None
                        if self.sym.trace is not None:
                            self.sym._log(op="generateEphemeral", seed=self.e.secret_key[:32].hex(),
                                          publicKey=self.e.public_key.hex(), secretKey=self.e.secret_key.hex())
                    self.sym.mix_hash(self.e.public_key)
                    out += self.e.public_key
                elif tok == "s":
                    out += self.sym.encrypt_and_hash(self.s.public_key)
                else:
                    self._mix_dh(tok)
            out += self.sym.encrypt_and_hash(bytes(payload))
            self._advance()
            return bytes(out)
        except BaseException:
            self.failed = True
            raise

    def receive(self, message: bytes) -> bytes:
        """Process the peer's next handshake message; returns its (ignored) payload."""
        if self.failed:
            raise HandshakeError("Noise handshake already failed")
        if self._step >= 3 or self.our_turn:
            self.failed = True
            raise HandshakeError("Noise handshake failed: message out of turn")
        msg = bytes(message)
        try:
            index = self._step
            tokens = _XX[index]
            if self.sym.trace is not None:
                self.sym._log(op="readMessage", index=index + 1, tokens=list(tokens))
            pos = 0
            for tok in tokens:
                if tok == "e":
                    if len(msg) - pos < PKLEN:
                        raise HandshakeError("Noise handshake failed: Insufficient bytes")
                    self.re = msg[pos : pos + PKLEN]
                    pos += PKLEN
                    self.sym.mix_hash(self.re)
                elif tok == "s":
                    n = PKLEN + (MACLEN if self.sym.k is not None else 0)
                    if len(msg) - pos < n:
                        raise HandshakeError("Noise handshake failed: Insufficient bytes")
                    self.rs = self.sym.decrypt_and_hash(msg[pos : pos + n])
                    pos += n
                else:
                    self._mix_dh(tok)
            payload = self.sym.decrypt_and_hash(msg[pos:])
            self._advance()
            return payload
        except BaseException:
            self.failed = True
            raise

    # -- internals -------------------------------------------------------------------

    def _mix_dh(self, tok: str) -> None:
        # ee = DH(e, re); es: I DH(e, rs), R DH(s, re); se: I DH(s, re), R DH(e, rs)
        if tok == "ee":
            local, remote = self.e, self.re
        elif tok == "es":
            local, remote = (self.e, self.rs) if self.is_initiator else (self.s, self.re)
        else:  # "se"
            local, remote = (self.s, self.re) if self.is_initiator else (self.e, self.rs)
        assert local is not None and remote is not None
        out = dh(local.secret_key, remote)
        if self.sym.trace is not None:
            self.sym._log(op="dh", localPublicKey=local.public_key.hex(), remotePublicKey=remote.hex(),
                          output=out.hex())
        self.sym.mix_key(out)

    def _advance(self) -> None:
        self._step += 1
        if self._step < 3:
            return
        k1, k2 = self.sym.split()
        tx, rx = (k1, k2) if self.is_initiator else (k2, k1)
        assert self.rs is not None
        self.result = HandshakeResult(tx, rx, self.sym.h, self.s.public_key, self.rs)
        if self.sym.trace is not None:
            self.sym._log(op="split", tx=tx.hex(), rx=rx.hex(), handshakeHash=self.sym.h.hex())
        # wipe what is no longer needed (Python cannot zero immutable bytes; drop the references)
        self.e = None
        self.sym.k = None
        self.sym.ck = b""
