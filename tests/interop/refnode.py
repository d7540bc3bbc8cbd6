"""Run the reference Hypercore (Node.js, tests/interop/refcore.js) from Python tests.

    from tests.interop.refnode import node_available, ensure_installed, run_refcore

    if not node_available(): pytest.skip("node not installed")
    out = run_refcore("read", core_dir, "--no-blocks")
    out = refcore_write(core_dir, seed=bytes(32), ops=[{"append": ["61"]}])

The Node packages (hypercore 10.38.2, corestore 6.18.4, pinned by
package-lock.json) are installed with ``npm ci`` into tests/interop/node_modules
on first use (git-ignored). See refcore.js for the commands and their JSON.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

INTEROP_DIR = Path(__file__).resolve().parent
NODE_MODULES = INTEROP_DIR / "node_modules"
REFCORE_JS = INTEROP_DIR / "refcore.js"

# a package whose presence means `npm ci` has run
_MARKER = NODE_MODULES / "hypercore" / "package.json"


def node_available() -> bool:
    """True if `node` is on PATH and the reference packages are installed or installable (npm present)."""
    if shutil.which("node") is None:
        return False
    return _MARKER.exists() or shutil.which("npm") is not None


def ensure_installed() -> Path:
    """Install the pinned reference packages if needed; return the tests/interop directory.

    Runs `npm ci` in tests/interop when node_modules is missing (under a file
    lock, so parallel test workers install once). Raises RuntimeError with the
    reason if node/npm are missing or the install fails.
    """
    if _MARKER.exists():
        return INTEROP_DIR
    if shutil.which("node") is None:
        raise RuntimeError("Node.js (`node`) is not on PATH: needed for the reference Hypercore interop tests")
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"{NODE_MODULES} is missing and `npm` is not on PATH: run `npm ci` in {INTEROP_DIR}"
        )
    # lock outside the tree (no stray files in the repository)
    lock_path = Path(tempfile.gettempdir()) / f"refnode-npm-{hashlib.sha256(str(INTEROP_DIR).encode()).hexdigest()[:16]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _MARKER.exists():
                return INTEROP_DIR
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=INTEROP_DIR,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0 or not _MARKER.exists():
                raise RuntimeError(
                    f"`npm ci` in {INTEROP_DIR} failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return INTEROP_DIR


def _parse_json_line(stdout: str) -> Any:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line:
            return json.loads(line)
    raise ValueError("no output")


def run_refcore(*args: Any, timeout: float = 120) -> dict:
    """Run `node refcore.js ARGS...` and return its JSON object.

    Arguments are converted with str() (Paths are fine). Raises AssertionError
    (with the command, the JSON/stdout and stderr) when the script exits
    non-zero; the error JSON is {"error": message, "code": code}. Use
    run_refcore_raw() to inspect a failure instead.
    """
    code, out, proc = _run(args, timeout)
    if code != 0:
        raise AssertionError(
            f"refcore.js {' '.join(map(str, args))} exited {code}\n"
            f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}"
        )
    if not isinstance(out, dict):
        raise AssertionError(f"refcore.js printed no JSON object\nstdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}")
    return out


def run_refcore_raw(*args: Any, timeout: float = 120) -> tuple[int, dict | None]:
    """Like run_refcore but returns (exit status, parsed JSON or None) without raising on failure."""
    code, out, _ = _run(args, timeout)
    return code, out if isinstance(out, dict) else None


def _run(args: Iterable[Any], timeout: float):
    ensure_installed()
    cmd = ["node", str(REFCORE_JS), *map(str, args)]
    proc = subprocess.run(cmd, cwd=INTEROP_DIR, capture_output=True, text=True, timeout=timeout)
    try:
        out = _parse_json_line(proc.stdout)
    except ValueError:
        out = None
    return proc.returncode, out, proc


def refcore_write(
    directory: os.PathLike | str,
    seed: bytes | str,
    ops: list[dict],
    encryption_key: bytes | str | None = None,
    timeout: float = 120,
) -> dict:
    """Write/continue a reference core at `directory` by applying `ops` (see refcore.js).

    seed / encryption_key: 32 bytes or 64 hex chars. Ops use hex strings for
    bytes, e.g. {"append": ["61", "6262"]}, {"append1": "63"}, {"truncate": 1},
    {"setUserData": {"key": "k", "value": "76"}}, {"clear": [0, 1]},
    {"closeAndReopen": True}.
    """
    hexify = lambda v: v.hex() if isinstance(v, (bytes, bytearray, memoryview)) else v  # noqa: E731
    spec = {"seed": hexify(seed), "encryptionKey": hexify(encryption_key), "ops": ops}
    fd, name = tempfile.mkstemp(prefix="refcore-ops-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        return run_refcore("write", directory, name, timeout=timeout)
    finally:
        os.unlink(name)
