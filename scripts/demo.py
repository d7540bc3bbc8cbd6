"""Demo: create a Spacecore on disk, append, read back, reopen and verify; say what was done."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

from spacecorestore import Spacecore
from spacecorestore.encoding import z32_encode


async def main(directory: Path) -> None:
    print(f"Creating a Spacecore in {directory}")
    async with Spacecore(directory, value_encoding="utf-8") as core:
        await core.append("hello")
        res = await core.append(["signed", "append-only", "log"])
        print(f"  appended 4 blocks: length {res.length}, {res.byte_length} bytes")
        print(f"  key {core.key.hex()}  (id {z32_encode(core.key)})")
        await core.set_user_data("demo/created-by", b"scripts/demo.py")
    async with Spacecore(directory, value_encoding="utf-8") as core:
        blocks = [await core.get(i) for i in range(core.length)]
        print(f"  reopened: length {core.length}, fork {core.fork}; every block checked against the signed Merkle tree:")
        for i, b in enumerate(blocks):
            print(f"    block {i}: {b!r}")
        ok = core.core.verify_signature(core.core.tree.tree_hash(), core.length, core.fork, core.core.tree.signature)
        print(f"  signature over the tree hash verifies: {ok}")
    files = sorted(p.name for p in directory.iterdir())
    print(f"Files on disk (the reference's format, readable by Node's hypercore 10): {', '.join(files)}")
    print("Try: ls -l", directory, "; or run the tests: bash scripts/test.sh")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="spacecore-demo-"))
    if target.exists() and any(target.iterdir()) and not (target / "oplog").exists():
        print(f"demo: {target} is not empty and holds no core; give an empty or new directory", file=sys.stderr)
        sys.exit(2)
    trio.run(main, target)
