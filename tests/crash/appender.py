"""Child process of the kill -9 test: appends forever, reporting each append.

Usage: python appender.py DIR SEED_HEX RNG_SEED.  Prints ``I start end`` before an
append (intent) and ``A start end`` after it returned, flushed line by line, so
the parent knows what was acknowledged when it kills us.
"""
from __future__ import annotations

import random
import sys

import trio

from spacecorestore import Spacecore
from spacecorestore.crypto import key_pair


def block(i: int) -> bytes:
    """Deterministic content of block i: the parent recomputes it."""
    r = random.Random(i)
    size = r.choice((0, 1, 7, 100, 1000, 4096, 5000, 20000))
    return f"b{i}:".encode() + r.randbytes(size)


async def main(directory: str, seed: bytes, rng_seed: int) -> None:
    rng = random.Random(rng_seed)
    out = sys.stdout
    async with Spacecore(directory, key_pair=key_pair(seed)) as core:
        out.write(f"R {core.length}\n")
        out.flush()
        while True:
            start = core.length
            n = 1 if rng.random() < 0.5 else rng.randint(2, 40)
            blocks = [block(i) for i in range(start, start + n)]
            out.write(f"I {start} {start + n}\n")
            out.flush()
            res = await core.append(blocks[0] if n == 1 else blocks)
            out.write(f"A {start} {res.length}\n")
            out.flush()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]))
