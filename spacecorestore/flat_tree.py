"""Flat-tree index math (01-core §2): pure integer functions.

Block ``i`` is leaf ``2i``; a node at depth ``d`` and offset ``o`` has index
``(2o + 1) * 2**d - 1``.
"""
from __future__ import annotations


def depth(i: int) -> int:
    # number of trailing 1-bits
    return ((i + 1) & -(i + 1)).bit_length() - 1


def offset(i: int) -> int:
    return i >> (depth(i) + 1)


def index(d: int, o: int) -> int:
    return ((o << 1) + 1 << d) - 1


def parent(i: int) -> int:
    d = depth(i)
    return index(d + 1, offset(i) >> 1)


def sibling(i: int) -> int:
    d = depth(i)
    return index(d, offset(i) ^ 1)


def children(i: int) -> tuple[int, int] | None:
    if not i & 1:
        return None
    d = depth(i)
    o = offset(i) * 2
    return index(d - 1, o), index(d - 1, o + 1)


def left_child(i: int) -> int:
    d = depth(i)
    return index(d - 1, offset(i) * 2)


def right_child(i: int) -> int:
    d = depth(i)
    return index(d - 1, offset(i) * 2 + 1)


def left_span(i: int) -> int:
    if not i & 1:
        return i
    d = depth(i)
    return offset(i) * (2 << d)


def right_span(i: int) -> int:
    if not i & 1:
        return i
    d = depth(i)
    return (offset(i) + 1) * (2 << d) - 2


def spans(i: int) -> tuple[int, int]:
    return left_span(i), right_span(i)


def count(i: int) -> int:
    return (2 << depth(i)) - 1


def count_leaves(i: int) -> int:
    return 1 << depth(i)


def full_roots(i: int) -> list[int]:
    """Roots of a tree whose leaves end before index ``i`` (``i = 2 * length``)."""
    if i & 1:
        raise ValueError("full_roots needs an even index")
    result = []
    n = i >> 1
    start = 0
    factor = 1
    while factor * 2 <= n:
        factor *= 2
    while n:
        while factor > n:
            factor >>= 1
        result.append(start + factor - 1)
        start += 2 * factor
        n -= factor
    return result
