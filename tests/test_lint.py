"""The code stays free of unused imports, unused variables and undefined names (pyflakes)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pyflakes_is_clean():
    p = subprocess.run([sys.executable, "-m", "pyflakes", "spacecorestore", "corefs", "scripts", "tests"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
