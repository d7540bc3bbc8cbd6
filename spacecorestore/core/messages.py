"""Codecs of the on-disk messages of one core (01-core §5.3, §5.4, §7.4, §7.5): pure.

Manifests, the oplog header (versions 0 and 1; we write 1), oplog entries and
multisignatures.  ``encode_*`` return bytes; ``decode_*`` take bytes (or a
``Reader``) and raise ``DecodingError``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import crypto
from ..encoding import Reader, buffer, fixed, string, uint
from ..errors import DecodingError


# Manifests ----------------------------------------------------------------------

@dataclass
class Signer:
    public_key: bytes
    namespace: bytes = crypto.DEFAULT_NAMESPACE
    signature: int = 0  # 0 = ed25519


@dataclass
class Manifest:
    version: int = 1
    signers: list[Signer] = field(default_factory=list)
    quorum: int = 1
    allow_patch: bool = False
    hash: int = 0  # 0 = blake2b
    prologue: tuple[bytes, int] | None = None  # (hash, length)

    @classmethod
    def default(cls, public_key: bytes, version: int = 1) -> "Manifest":
        return cls(version=version, signers=[Signer(public_key)], quorum=1)


def _encode_signer(out: bytearray, s: Signer) -> None:
    uint(out, s.signature)
    fixed(out, s.namespace, 32)
    fixed(out, s.public_key, 32)


def _decode_signer(r: Reader) -> Signer:
    sig = r.uint()
    if sig != 0:
        raise DecodingError(f"unknown signature type {sig}")
    ns = r.fixed(32)
    return Signer(public_key=r.fixed(32), namespace=ns, signature=sig)


def encode_manifest_into(out: bytearray, m: Manifest) -> None:
    uint(out, m.version)
    if m.version == 0:
        uint(out, m.hash)
        if m.prologue is not None and not m.signers:
            uint(out, 0)
            fixed(out, m.prologue[0], 32)
        elif m.quorum == 1 and len(m.signers) == 1 and not m.allow_patch:
            uint(out, 1)
            _encode_signer(out, m.signers[0])
        else:
            uint(out, 2)
            uint(out, 1 if m.allow_patch else 0)
            uint(out, m.quorum)
            uint(out, len(m.signers))
            for s in m.signers:
                _encode_signer(out, s)
        return
    flags = (1 if m.allow_patch else 0) | (2 if m.prologue is not None else 0)
    uint(out, flags)
    uint(out, m.hash)
    uint(out, m.quorum)
    uint(out, len(m.signers))
    for s in m.signers:
        _encode_signer(out, s)
    if m.prologue is not None:
        fixed(out, m.prologue[0], 32)
        uint(out, m.prologue[1])


def encode_manifest(m: Manifest) -> bytes:
    out = bytearray()
    encode_manifest_into(out, m)
    return bytes(out)


def decode_manifest_from(r: Reader) -> Manifest:
    version = r.uint()
    if version > 1:
        raise DecodingError(f"unknown manifest version {version}")
    if version == 0:
        h = r.uint()
        if h != 0:
            raise DecodingError(f"unknown manifest hash {h}")
        t = r.uint()
        if t == 0:
            return Manifest(version=0, signers=[], quorum=0, prologue=(r.fixed(32), 0))
        if t == 1:
            return Manifest(version=0, signers=[_decode_signer(r)], quorum=1)
        if t == 2:
            flags = r.uint()
            quorum = r.uint()
            n = r.array_len()
            return Manifest(version=0, signers=[_decode_signer(r) for _ in range(n)], quorum=quorum,
                            allow_patch=bool(flags & 1))
        raise DecodingError(f"unknown manifest v0 type {t}")
    flags = r.uint()
    h = r.uint()
    if h != 0:
        raise DecodingError(f"unknown manifest hash {h}")
    quorum = r.uint()
    n = r.array_len()
    signers = [_decode_signer(r) for _ in range(n)]
    prologue = None
    if flags & 2:
        prologue = (r.fixed(32), r.uint())
    return Manifest(version=1, signers=signers, quorum=quorum, allow_patch=bool(flags & 1), prologue=prologue)


def decode_manifest(b: bytes) -> Manifest:
    return decode_manifest_from(Reader(b))


def manifest_hash(m: Manifest) -> bytes:
    return crypto.hash32(crypto.MANIFEST + encode_manifest(m))


def is_compat(key: bytes, m: Manifest | None) -> bool:
    return m is None or (len(m.signers) == 1 and m.signers[0].public_key == key)


def encode_multisig_v1(signatures: list[tuple[int, bytes]]) -> bytes:
    """One proof per (signer index, 64-byte signature), no patches."""
    out = bytearray()
    uint(out, len(signatures))
    for signer, sig in signatures:
        uint(out, signer)
        fixed(out, sig, 64)
        uint(out, 0)
    uint(out, 0)
    return bytes(out)


def decode_multisig_v1(b: bytes) -> list[tuple[int, bytes, int]]:
    r = Reader(b)
    n = r.array_len()
    proofs = [(r.uint(), r.fixed(64), r.uint()) for _ in range(n)]
    m = r.array_len()
    for _ in range(m):
        r.uint(), r.uint(), r.fixed(32)
    return proofs


# Header -------------------------------------------------------------------------

@dataclass
class TreeHeader:
    fork: int = 0
    length: int = 0
    root_hash: bytes | None = None
    signature: bytes | None = None


@dataclass
class Reorg:
    from_fork: int
    to_fork: int
    ancestors: int


@dataclass
class Header:
    key: bytes
    manifest: Manifest | None = None
    key_pair: crypto.KeyPair | None = None
    user_data: list[tuple[str, bytes | None]] = field(default_factory=list)
    tree: TreeHeader = field(default_factory=TreeHeader)
    reorgs: list[Reorg] = field(default_factory=list)
    contiguous_length: int = 0
    external: tuple[int, int] | None = None  # (start, length) in the `header` file

    def get_user_data(self, key: str) -> bytes | None:
        for k, v in self.user_data:
            if k == key:
                return v
        return None


def encode_header(h: Header) -> bytes:
    out = bytearray()
    uint(out, 1)
    flags = (2 if h.manifest is not None else 0) | (4 if h.key_pair is not None else 0)
    uint(out, flags)
    fixed(out, h.key, 32)
    if h.manifest is not None:
        encode_manifest_into(out, h.manifest)
    if h.key_pair is not None:
        buffer(out, h.key_pair.public_key)
        buffer(out, h.key_pair.secret_key)
    uint(out, len(h.user_data))
    for k, v in h.user_data:
        string(out, k)
        buffer(out, v)
    t = h.tree
    uint(out, t.fork)
    uint(out, t.length)
    buffer(out, t.root_hash)
    buffer(out, t.signature)
    uint(out, len(h.reorgs))
    for rg in h.reorgs:
        uint(out, rg.from_fork)
        uint(out, rg.to_fork)
        uint(out, rg.ancestors)
    uint(out, h.contiguous_length)
    return bytes(out)


def encode_external_pointer(start: int, length: int) -> bytes:
    out = bytearray()
    uint(out, 1)
    uint(out, 1)
    uint(out, start)
    uint(out, length)
    return bytes(out)


def _decode_tree(r: Reader) -> TreeHeader:
    return TreeHeader(fork=r.uint(), length=r.uint(), root_hash=r.buffer(), signature=r.buffer())


def _decode_user_data(r: Reader) -> list[tuple[str, bytes | None]]:
    n = r.array_len()
    return [(r.string(), r.buffer()) for _ in range(n)]


def _decode_hints(r: Reader, h: Header) -> None:
    n = r.array_len()
    h.reorgs = [Reorg(r.uint(), r.uint(), r.uint()) for _ in range(n)]
    h.contiguous_length = r.uint() if r.remaining() > 0 else 0


def decode_header(b: bytes) -> Header:
    """Decode a header payload.  An external pointer decodes to a Header with ``external`` set only."""
    r = Reader(b)
    version = r.uint()
    if version == 0:
        r.string(), r.string(), r.string()  # types
        user_data = _decode_user_data(r)
        tree = _decode_tree(r)
        pk, sk = r.buffer(), r.buffer()
        if pk is None or len(pk) != 32:
            raise DecodingError("v0 header without a public key")
        h = Header(key=pk, manifest=Manifest.default(pk, version=0), user_data=user_data, tree=tree,
                   key_pair=crypto.KeyPair(pk, sk) if sk else None)
        _decode_hints(r, h)
        return h
    if version != 1:
        raise DecodingError(f"unknown header version {version}")
    flags = r.uint()
    if flags & 1:
        start, length = r.uint(), r.uint()
        return Header(key=bytes(32), external=(start, length))
    key = r.fixed(32)
    manifest = decode_manifest_from(r) if flags & 2 else None
    key_pair = None
    if flags & 4:
        pk = r.buffer()
        sk = r.buffer()
        if pk is None:
            raise DecodingError("header key pair without a public key")
        key_pair = crypto.KeyPair(pk, sk)
    h = Header(key=key, manifest=manifest, key_pair=key_pair, user_data=_decode_user_data(r), tree=_decode_tree(r))
    _decode_hints(r, h)
    return h


# Entries ------------------------------------------------------------------------

@dataclass
class TreeUpgrade:
    fork: int
    ancestors: int
    length: int
    signature: bytes | None


@dataclass
class BitfieldUpdate:
    drop: bool
    start: int
    length: int


Node = tuple  # (index, size, hash)


@dataclass
class Entry:
    user_data: tuple[str, bytes | None] | None = None
    tree_nodes: list[Node] | None = None
    tree_upgrade: TreeUpgrade | None = None
    bitfield: BitfieldUpdate | None = None


def encode_entry(e: Entry) -> bytes:
    out = bytearray()
    flags = ((1 if e.user_data is not None else 0) | (2 if e.tree_nodes is not None else 0)
             | (4 if e.tree_upgrade is not None else 0) | (8 if e.bitfield is not None else 0))
    out.append(flags)
    if e.user_data is not None:
        string(out, e.user_data[0])
        buffer(out, e.user_data[1])
    if e.tree_nodes is not None:
        uint(out, len(e.tree_nodes))
        for index, size, hsh in e.tree_nodes:
            uint(out, index)
            uint(out, size)
            out += hsh
    if e.tree_upgrade is not None:
        u = e.tree_upgrade
        uint(out, u.fork)
        uint(out, u.ancestors)
        uint(out, u.length)
        buffer(out, u.signature)
    if e.bitfield is not None:
        b = e.bitfield
        uint(out, 1 if b.drop else 0)
        uint(out, b.start)
        uint(out, b.length)
    return bytes(out)


def decode_entry(b: bytes | memoryview) -> Entry:
    r = Reader(b)
    flags = r.uint()
    e = Entry()
    if flags & 1:
        e.user_data = (r.string(), r.buffer())
    if flags & 2:
        n = r.array_len()
        e.tree_nodes = [(r.uint(), r.uint(), r.fixed(32)) for _ in range(n)]
    if flags & 4:
        e.tree_upgrade = TreeUpgrade(fork=r.uint(), ancestors=r.uint(), length=r.uint(), signature=r.buffer())
    if flags & 8:
        e.bitfield = BitfieldUpdate(drop=bool(r.uint() & 1), start=r.uint(), length=r.uint())
    return e
