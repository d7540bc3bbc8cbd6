"""Loading the JSON test vectors in tests/vectors/ (read-only, cached)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"


@functools.cache
def load_vector(name: str) -> dict:
    """``load_vector("core-encoding")`` -> the parsed tests/vectors/core-encoding.json.

    The result is shared between callers: treat it as read-only.
    """
    if name.endswith(".json"):
        name = name[:-5]
    with open(VECTORS_DIR / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)


def h(s: str | None) -> bytes | None:
    """Hex string from a vector file to bytes (``None`` stays ``None``)."""
    return None if s is None else bytes.fromhex(s)
