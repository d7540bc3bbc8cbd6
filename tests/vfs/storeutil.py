"""Store set-up and surgery for tests (no mount): named cores, and a core this store cannot write."""
from __future__ import annotations

import shutil
from pathlib import Path

from spacecorestore import Corestore, crypto
from spacecorestore.core import oplog as oplog_mod
from spacecorestore.listing import core_dir
from spacecorestore.storage import MemoryFile


def strip_secret_key(store: Path, key: bytes) -> None:
    """Rewrite the core's oplog without its key pair: the state a core downloaded from a peer is
    in (its blocks and signed tree, but no secret key).  Entries are kept, re-framed."""
    p = Path(store) / core_dir(crypto.discovery_key(key)) / "oplog"
    state = oplog_mod.parse(p.read_bytes())
    header = state.header
    assert header.external is None
    header.key_pair = None
    out = MemoryFile()
    w = oplog_mod.OplogWriter(out)
    w.write_header(header)
    w.write_header(header)  # both slots: no copy of the secret key is left behind
    for e in state.entries:
        w.append(e)
    p.write_bytes(out.read_all())


def copy_core(src_store: Path, dst_store: Path, key: bytes, *, keep_secret_key: bool = False) -> None:
    """Copy a core's directory from one store to another (by default as a read-only, remote-like core)."""
    d = core_dir(crypto.discovery_key(key))
    shutil.copytree(Path(src_store) / d, Path(dst_store) / d)
    if not keep_secret_key:
        strip_secret_key(dst_store, key)


async def populate(root: Path, cores: dict[tuple[tuple[str, ...], str], list[bytes]]) -> dict:
    """Create named cores with spacecorestore (as a reference program would); returns
    {(namespace path, name): key}."""
    keys = {}
    async with Corestore(str(root)) as store:
        for (ns_path, name), blocks in cores.items():
            view = store
            for part in ns_path:
                view = view.namespace(part)
            s = view.get(name=name)
            await s.ready()
            if blocks:
                await s.append(blocks)
            keys[(ns_path, name)] = s.key
            await s.close()
    return keys
