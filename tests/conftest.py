"""Shared test setup: makes tests/ importable (for ``vectors_util``) and offers a ``vectors`` fixture."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from vectors_util import load_vector  # noqa: E402

FIXTURE_STORE = Path(__file__).resolve().parent / "fixtures" / "js-corestore6-store"


@pytest.fixture
def vectors():
    """A function ``load(name) -> dict`` reading tests/vectors/<name>.json."""
    return load_vector


@pytest.fixture
def fixture_store(tmp_path) -> Path:
    """A writable copy of the reference's fixture store (the original is never opened)."""
    dst = tmp_path / "js-store"
    shutil.copytree(FIXTURE_STORE, dst)
    for p in dst.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return dst
