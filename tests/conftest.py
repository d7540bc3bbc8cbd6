"""Shared test setup: makes tests/ importable (for ``vectors_util``) and offers a ``vectors`` fixture."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from vectors_util import load_vector  # noqa: E402


@pytest.fixture
def vectors():
    """A function ``load(name) -> dict`` reading tests/vectors/<name>.json."""
    return load_vector
