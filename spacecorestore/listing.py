"""Listing a store's cores by scanning storage (01-core §6.8), without opening them in full.

For each ``cores/<aa>/<bb>/<dk>/`` directory: parse the oplog (active header
and its entries), replay only user data and tree upgrades, and read the root
nodes' sizes (from the replayed entries, else the ``tree`` file) for the byte
length.  No bitfield, no data, no lock, nothing written.
"""
from __future__ import annotations

import logging
import struct
from typing import Iterator, NamedTuple

from . import crypto
from .core import oplog as oplog_mod
from .core.messages import decode_header
from .errors import SpacecoreError
from .flat_tree import full_roots

log = logging.getLogger(__name__)
_NODE = struct.Struct("<Q32s")


class CoreRecord(NamedTuple):
    key: bytes
    discovery_key: bytes
    name: str | None
    namespace: bytes | None
    length: int
    byte_length: int
    has_secret_key: bool = False  # the stored header holds a key pair with its secret key


def core_dir(discovery_key: bytes) -> str:
    h = discovery_key.hex()
    return f"cores/{h[0:2]}/{h[2:4]}/{h}"


def read_record(storage, directory: str) -> CoreRecord | None:
    """The record of the core in ``directory`` (a path inside ``storage``), or None if there is none."""
    oplog_file = storage.open(f"{directory}/oplog")
    try:
        buf = oplog_file.read_all()
    finally:
        oplog_file.close()
    state = oplog_mod.parse(buf, f"{directory}/oplog")
    if state is None:
        return None
    header = state.header
    if header.external is not None:
        hf = storage.open(f"{directory}/header")
        try:
            header = decode_header(hf.read(*header.external))
        finally:
            hf.close()
    user = {k: v for k, v in header.user_data}
    length = header.tree.length
    overlay: dict[int, int | None] = {}
    cut: int | None = None
    for e in state.entries:
        if e.user_data is not None:
            k, v = e.user_data
            if v is None:
                user.pop(k, None)
            else:
                user[k] = v
        if e.tree_nodes:
            for i, size, h in e.tree_nodes:
                overlay[i] = None if (size == 0 and h == bytes(32)) else size
        if e.tree_upgrade is not None:
            u = e.tree_upgrade
            if u.ancestors < length:
                cut = u.ancestors if cut is None else min(cut, u.ancestors)
                for i in [i for i in overlay if i >= 2 * u.ancestors]:
                    del overlay[i]
            length = u.length
    byte_length = 0
    stored = []  # roots not in the replayed entries: read from the tree file (opened only if needed)
    for r in full_roots(2 * length):
        size = overlay.get(r)
        if size is not None:
            byte_length += size
        else:
            stored.append(r)
    if stored:
        tree = storage.open(f"{directory}/tree")
        try:
            for r in stored:
                raw = tree.read(40 * r, 40)
                if len(raw) < 40:
                    raise SpacecoreError(f"{directory}: root node {r} is missing")
                byte_length += _NODE.unpack(raw)[0]
        finally:
            tree.close()
    name = user.get("corestore/name")
    ns = user.get("corestore/namespace")
    dk = crypto.discovery_key(header.key)
    kp = header.key_pair
    return CoreRecord(header.key, dk, name.decode("utf-8", "replace") if name is not None else None,
                      ns if ns is not None and len(ns) == 32 else None, length, byte_length,
                      kp is not None and bool(kp.secret_key))


def scan(storage) -> Iterator[CoreRecord]:
    """Every core of a store; a damaged one is logged and skipped."""
    for a in storage.list_dir("cores"):
        for b in storage.list_dir(f"cores/{a}"):
            for dk in storage.list_dir(f"cores/{a}/{b}"):
                directory = f"cores/{a}/{b}/{dk}"
                try:
                    rec = read_record(storage, directory)
                except SpacecoreError as e:
                    log.warning("skipping damaged core %s: %s", directory, e)
                    continue
                if rec is None:
                    continue
                if rec.discovery_key.hex() != dk:
                    log.warning("skipping %s: it holds the core %s", directory, rec.key.hex())
                    continue
                yield rec
