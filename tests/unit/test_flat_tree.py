"""flat-tree index math (01-core §2) against core-flat-tree.json."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spacecorestore import flat_tree as ft
from vectors_util import load_vector

V = load_vector("core-flat-tree")
NODES = V["nodes"]


def test_vectors_cover_indexes_0_to_70():
    assert [n["index"] for n in NODES] == list(range(71))
    assert [c["blocks"] for c in V["fullRoots"]] == list(range(41))


@pytest.mark.parametrize("node", NODES, ids=[str(n["index"]) for n in NODES])
def test_node(node):
    i = node["index"]
    assert ft.depth(i) == node["depth"]
    assert ft.offset(i) == node["offset"]
    assert ft.parent(i) == node["parent"]
    assert ft.sibling(i) == node["sibling"]
    children = ft.children(i)
    if node["children"] is None:
        assert children is None
    else:
        assert list(children) == node["children"]
        assert ft.left_child(i) == node["children"][0]
        assert ft.right_child(i) == node["children"][1]
    assert ft.left_span(i) == node["leftSpan"]
    assert ft.right_span(i) == node["rightSpan"]
    assert list(ft.spans(i)) == node["spans"]
    assert ft.count(i) == node["count"]
    assert ft.count_leaves(i) == node["countLeaves"]
    assert ft.index(node["depth"], node["offset"]) == i


@pytest.mark.parametrize("case", V["fullRoots"], ids=[str(c["blocks"]) for c in V["fullRoots"]])
def test_full_roots(case):
    assert ft.full_roots(2 * case["blocks"]) == case["roots"]


@pytest.mark.parametrize("case", V["index"], ids=[f"d{c['depth']}o{c['offset']}" for c in V["index"]])
def test_index(case):
    assert ft.index(case["depth"], case["offset"]) == case["index"]


def test_full_roots_spec_examples():
    assert ft.full_roots(0) == []
    assert ft.full_roots(6) == [1, 4]
    assert ft.full_roots(10) == [3, 8]
    assert ft.full_roots(12) == [3, 9]


def test_full_roots_rejects_odd_index():
    with pytest.raises(ValueError):
        ft.full_roots(3)


@given(st.integers(min_value=0, max_value=2**40))
def test_full_roots_partition_the_leaves(n):
    roots = ft.full_roots(2 * n)
    covered = 0
    for r in roots:
        lo, hi = ft.spans(r)
        assert lo == 2 * covered
        covered += ft.count_leaves(r)
        assert hi == 2 * covered - 2
    assert covered == n
    depths = [ft.depth(r) for r in roots]
    assert depths == sorted(depths, reverse=True) and len(set(depths)) == len(depths)


@given(st.integers(min_value=0, max_value=2**50))
def test_structural_identities(i):
    d, o = ft.depth(i), ft.offset(i)
    assert ft.index(d, o) == i
    p = ft.parent(i)
    assert ft.depth(p) == d + 1
    assert i in ft.children(p)
    assert ft.sibling(ft.sibling(i)) == i
    assert ft.parent(ft.sibling(i)) == p
    lo, hi = ft.spans(i)
    assert (hi - lo) // 2 + 1 == ft.count_leaves(i)
    assert ft.count(i) == 2 * ft.count_leaves(i) - 1
