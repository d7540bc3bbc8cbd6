"""Crash safety: a child appending in a loop is killed with SIGKILL at random moments.

After every kill the core reopens, every block verifies against the signed
tree, every append that returned before the kill is there, and a batch is
either all there or absent (01-core §7.14).
"""
from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from spacecorestore import Spacecore, crypto
from spacecorestore.core.merkle_tree import MerkleTree
from spacecorestore.storage import MemoryFile

sys.path.insert(0, str(Path(__file__).parent))
from appender import block  # noqa: E402

SEED = bytes(range(32))
KILLS = 60


def run_child(directory: Path, rng_seed: int, kill_after: float) -> tuple[int, int, set[int]]:
    """Start the appender, kill it ``kill_after`` s after it is ready; returns (acked end, intended end, batch ends)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "appender.py"), str(directory), SEED.hex(), str(rng_seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acked = intended = -1
    ends: set[int] = set()
    buf = b""
    deadline = None
    start = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now - start > 30:
                raise AssertionError("appender did not start: " + proc.stderr.read1().decode(errors="replace"))
            timeout = 0.05 if deadline is None else max(0.0, min(0.05, deadline - now))
            r, _, _ = select.select([proc.stdout], [], [], timeout)
            if r:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError("appender exited: " + proc.stderr.read().decode(errors="replace"))
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    kind, *nums = line.split()
                    if kind == b"R":
                        acked = intended = int(nums[0])
                        ends.add(acked)
                        deadline = time.monotonic() + kill_after
                    elif kind == b"I":
                        intended = int(nums[1])
                    elif kind == b"A":
                        acked = int(nums[1])
                        ends.add(acked)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        rest = proc.stdout.read()
        proc.stdout.close()
        proc.stderr.close()
    # lines written before the kill are still in the pipe: they count as acknowledged
    buf += rest
    for line in buf.split(b"\n"):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"A":
            acked = int(parts[2])
            ends.add(acked)
        elif len(parts) == 3 and parts[0] == b"I":
            intended = max(intended, int(parts[2]))
    return acked, intended, ends


async def verify_core(directory: Path, acked: int, intended: int) -> int:
    async with Spacecore(directory, key_pair=crypto.key_pair(SEED)) as core:
        length = core.length
        assert length >= acked, f"acknowledged length {acked} lost: reopened with {length}"
        assert length in (acked, intended), f"length {length} is inside a batch ({acked}..{intended})"
        # recompute the whole tree from the blocks and check the signed tree hash
        tree = MerkleTree(MemoryFile())
        leaves = []
        for i in range(length):
            b = await core.get(i, wait=False)
            assert b == block(i), f"block {i} differs"
            leaves.append((len(b), crypto.leaf_hash(b)))
        _, roots, n, byte_length = tree.build_append(leaves)
        th = crypto.tree_hash(roots)
        assert n == length and byte_length == core.byte_length
        assert th == core.core.tree.tree_hash()
        assert core.core.verify_signature(th, length, core.fork, core.core.tree.signature)
        return length


async def test_sigkill_during_appends_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(1234)
    directory = tmp_path / "core"
    lengths = []
    for k in range(KILLS):
        kill_after = rng.choice((0.0, 0.001, 0.005, 0.02, 0.05, 0.1)) * rng.random() * 2
        acked, intended, _ = run_child(directory, rng.randrange(1 << 30), kill_after)
        lengths.append(await verify_core(directory, acked, intended))
    assert lengths[-1] > 0
    assert len(lengths) == KILLS
