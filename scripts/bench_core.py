"""Spacecore vs the reference Hypercore, side by side in one run.

    .venv/bin/python scripts/bench_core.py [--runs N] [--quick] [--only append|get|open]
                                           [--sizes 64,1024,4096,65536] [--json FILE]

Python (``spacecorestore.Spacecore`` on disk, in this process, under trio) and the
reference (hypercore 10 on disk via ``node scripts/bench_core_ref.js``, one
subprocess per run; needs ``cd tests/interop && npm ci``) do the same work:

* append SIZE single|batch: N blocks, one ``append(buf)`` at a time or
  ``append([100 bufs])``; each run in a fresh temporary directory (removed);
  only the append loop after ``ready()`` is timed; buffers are built beforehand.
* get SIZE seq|rand: N blocks built with batch appends of 100 (untimed), then N
  awaited ``get(i)`` one at a time, in order or in the reference's fixed
  permutation (Fisher-Yates over a 32-bit LCG, seed 12345, ported exactly).
  Python closes and reopens the core after building it, so every get checks
  the block's leaf hash against the tree (blocks appended in the same open are
  already marked verified); the reference reads right after appending.
* open: a core of 1,000,000 blocks of 64 B (built once per invocation, in
  batches of 1000, untimed; Python's and the reference's ``make`` build in
  parallel); each run times ``Spacecore(dir)`` + ``ready()`` and the first
  ``get(0)`` (warm page cache; the reference: ``new Hypercore(dir)`` + ready +
  get(0) measured inside its process, node start-up excluded).

Block content matches the JS: a fixed pseudo-random buffer of SIZE bytes (LCG
seed 0xdecafbad, top byte of each step) whose first 4 bytes are the block index
(u32 LE). Python and reference runs are interleaved (alternating which goes
first) so machine noise hits both. Each row shows the median over the runs and
(min–max); ratio = Python median / reference median (blocks/s; for open,
reference ms / Python ms), so > 1 means Python is faster. Targets: single
appends and gets >= 2x the reference up to 4 KiB, 64 KiB appends 1.5x and gets
1.2x; batch100 appends >= 1x up to 4 KiB and 0.8x at 64 KiB; cold open < 50 ms.

``--quick`` divides every N by 10 (the open core too) and makes 1 run (unless
``--runs`` is given): a smoke test, not a measurement.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from spacecorestore import Spacecore  # noqa: E402
from spacecorestore.storage import FileStorage  # noqa: E402

REF_SCRIPT = ROOT / "scripts" / "bench_core_ref.js"
REF_HYPERCORE = ROOT / "tests" / "interop" / "node_modules" / "hypercore"

BATCH = 100
MAKE_BATCH = 1000
SIZES = (64, 1024, 4096, 65536)
OPEN_BLOCKS = 1_000_000
OPEN_SIZE = 64
OPEN_TARGET_MS = 50.0

# N per run, chosen so one reference run takes ~0.5-2 s (get: e.g. 20 000).
APPEND_N = {
    "single": {64: 5000, 1024: 5000, 4096: 5000, 65536: 2000},
    "batch": {64: 50_000, 1024: 50_000, 4096: 30_000, 65536: 3000},
}
GET_N = {64: 20_000, 1024: 20_000, 4096: 20_000, 65536: 3000}


def default_n(table: dict[int, int], size: int) -> int:
    if size in table:
        return table[size]
    # sizes outside the standard set: the nearest standard size's count, scaled by bytes above 4 KiB
    near = min(table, key=lambda s: abs(s - size))
    n = table[near]
    if size > near:
        n = max(100, n * near // size)
    return n


# --- block content and permutation, ported from bench_core_ref.js ---------------------

def lcg(seed: int):
    s = seed & 0xFFFFFFFF

    def rnd() -> int:
        nonlocal s
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        return s
    return rnd


_base_cache: dict[int, bytes] = {}


def base_buffer(size: int) -> bytes:
    b = _base_cache.get(size)
    if b is None:
        rnd = lcg(0xDECAFBAD)
        b = bytes(rnd() >> 24 for _ in range(size))
        _base_cache[size] = b
    return b


def block(i: int, size: int) -> bytes:
    base = base_buffer(size)
    if size >= 4:
        return struct.pack("<I", i & 0xFFFFFFFF) + base[4:]
    return base


def batches(n: int, size: int, batch: int) -> list[list[bytes]]:
    out = []
    for i in range(0, n, batch):
        out.append([block(i + j, size) for j in range(min(batch, n - i))])
    return out


def permutation(n: int) -> list[int]:
    rnd = lcg(12345)
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rnd() % (i + 1)
        p[i], p[j] = p[j], p[i]
    return p


# --- Python side ----------------------------------------------------------------------

def tmpdir() -> str:
    return tempfile.mkdtemp(prefix="bench-core-py-")


async def _py_append(d: str, size: int, mode: str, n: int) -> float:
    if mode == "single":
        bufs = [block(i, size) for i in range(n)]
    else:
        bufs = batches(n, size, BATCH)
    async with Spacecore(d) as core:
        await core.ready()
        gc.collect()
        t0 = time.perf_counter()
        for b in bufs:
            await core.append(b)
        t1 = time.perf_counter()
        if core.length != n:
            raise RuntimeError(f"expected length {n}, got {core.length}")
    return t1 - t0


def py_append(size: int, mode: str, n: int) -> dict:
    d = tmpdir()
    try:
        secs = trio.run(_py_append, d, size, mode, n)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"blocks": n, "seconds": secs}


async def _build(d: str, n: int, size: int, batch: int) -> None:
    async with Spacecore(d) as core:
        for i in range(0, n, batch):
            await core.append([block(i + j, size) for j in range(min(batch, n - i))])
        if core.length != n:
            raise RuntimeError(f"built length {core.length}, expected {n}")


async def _py_get(d: str, size: int, n: int, order: str) -> float:
    await _build(d, n, size, BATCH)
    idx = range(n) if order == "seq" else permutation(n)
    async with Spacecore(d) as core:  # reopened: every first read checks the leaf hash
        await core.ready()
        if core.length != n:
            raise RuntimeError(f"reopened length {core.length}, expected {n}")
        nbytes = 0
        gc.collect()
        t0 = time.perf_counter()
        for i in idx:
            nbytes += len(await core.get(i))
        t1 = time.perf_counter()
    if nbytes != n * size:
        raise RuntimeError(f"read {nbytes} bytes, expected {n * size}")
    return t1 - t0


def py_get(size: int, n: int, order: str) -> dict:
    d = tmpdir()
    try:
        secs = trio.run(_py_get, d, size, n, order)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"blocks": n, "seconds": secs}


async def _py_open(d: str) -> dict:
    gc.collect()
    t0 = time.perf_counter()
    core = Spacecore(d, create_if_missing=False)
    try:
        await core.ready()
        t1 = time.perf_counter()
        b = await core.get(0) if core.length > 0 else None
        t2 = time.perf_counter()
        del b
        length = core.length
    finally:
        await core.close()
    return {"ready_seconds": t1 - t0, "first_get_seconds": t2 - t1, "length": length}


def py_open(d: str) -> dict:
    return trio.run(_py_open, d)


class _CountingFile:
    """Delegates to a storage file, counting the bytes its reads return."""

    def __init__(self, inner, stats: dict) -> None:
        self._inner = inner
        self._stats = stats

    def read(self, offset: int, length: int) -> bytes:
        data = self._inner.read(offset, length)
        self._stats["reads"] += 1
        self._stats["bytes"] += len(data)
        return data

    def read_all(self) -> bytes:
        data = self._inner.read_all()
        self._stats["reads"] += 1
        self._stats["bytes"] += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _CountingStorage:
    def __init__(self, root: str) -> None:
        self.inner = FileStorage(root)
        self.root = root
        self.stats: dict[str, dict] = {}

    def open(self, path: str):
        st = self.stats.setdefault(path, {"reads": 0, "bytes": 0})
        return _CountingFile(self.inner.open(path), st)

    def list_dir(self, path: str) -> list[str]:
        return self.inner.list_dir(path)


async def _py_open_counted(d: str) -> dict:
    st = _CountingStorage(d)
    async with Spacecore(st, create_if_missing=False) as core:
        await core.ready()
        after_ready = {k: dict(v) for k, v in st.stats.items()}
        if core.length:
            await core.get(0)
    return {"after_ready": after_ready, "after_first_get": st.stats}


def py_open_reads(d: str) -> dict | None:
    """Bytes each storage file returned during an (untimed) open + get(0); None if not measurable."""
    try:
        return trio.run(_py_open_counted, d)
    except Exception as e:  # the storage interface may change under us; the figure is optional
        print(f"  (could not count storage reads: {e!r})", file=sys.stderr)
        return None


# --- reference side -------------------------------------------------------------------

def ref(node: str, *args) -> dict:
    p = subprocess.run([node, str(REF_SCRIPT), *map(str, args)], capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    try:
        out = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        out = {}
    if p.returncode != 0 or "error" in out or not out:
        raise RuntimeError(f"reference {' '.join(map(str, args))} failed (exit {p.returncode}): "
                           f"{out.get('error') or p.stdout.strip()}\n{p.stderr.strip()}")
    return out


# --- rows, targets, table -------------------------------------------------------------

def size_label(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def target_for(op: str, mode: str, size: int) -> float:
    small = size <= 4096
    if op == "append" and mode == "batch":
        return 1.0 if small else 0.8
    if op == "append":
        return 2.0 if small else 1.5
    return 2.0 if small else 1.2  # get


def med_range(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def fmt_num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_rate(xs: list[float]) -> str:
    m, lo, hi = med_range(xs)
    return f"{fmt_num(m)} ({fmt_num(lo)}–{fmt_num(hi)})"


class Table:
    COLS = ("row", "Python blocks/s (min–max)", "Py MB/s", "reference blocks/s (min–max)", "ref MB/s",
            "ratio", "target", "status")
    WIDTHS = (26, 29, 8, 29, 8, 6, 7, 6)

    def __init__(self) -> None:
        self.header_done = False

    def line(self, cells) -> None:
        out = []
        for i, (c, w) in enumerate(zip(cells, self.WIDTHS)):
            out.append(c.ljust(w) if i == 0 else c.rjust(w))
        print("  ".join(out).rstrip(), flush=True)

    def header(self) -> None:
        if not self.header_done:
            self.line(self.COLS)
            self.line(["-" * w for w in self.WIDTHS])
            self.header_done = True


def interleave(runs: int, py_fn, ref_fn, label: str) -> tuple[list[dict], list[dict]]:
    pys, refs = [], []
    for r in range(runs):
        order = (("py", py_fn), ("ref", ref_fn)) if r % 2 == 0 else (("ref", ref_fn), ("py", py_fn))
        for who, fn in order:
            print(f"  {label}: run {r + 1}/{runs} {who}", file=sys.stderr, flush=True)
            (pys if who == "py" else refs).append(fn())
    return pys, refs


def rate_row(table: Table, results: list, name: str, op: str, mode: str, size: int, n: int,
             pys: list[dict], refs: list[dict]) -> None:
    py_bps = [x["blocks"] / x["seconds"] for x in pys]
    ref_bps = [x["blocks"] / x["seconds"] for x in refs]
    py_mbs = [b * size / 1e6 for b in py_bps]
    ref_mbs = [b * size / 1e6 for b in ref_bps]
    ratio = statistics.median(py_bps) / statistics.median(ref_bps)
    target = target_for(op, mode, size)
    met = ratio >= target
    table.line([name, fmt_rate(py_bps), fmt_num(statistics.median(py_mbs)), fmt_rate(ref_bps),
                fmt_num(statistics.median(ref_mbs)), f"{ratio:.2f}", f">={target:g}x", "met" if met else "MISSED"])
    results.append({
        "row": name, "op": op, "mode": mode, "size": size, "blocks": n,
        "python": {"runs": pys, "blocks_per_s": py_bps, "mb_per_s": py_mbs,
                   "median_blocks_per_s": statistics.median(py_bps)},
        "reference": {"runs": refs, "blocks_per_s": ref_bps, "mb_per_s": ref_mbs,
                      "median_blocks_per_s": statistics.median(ref_bps)},
        "ratio": ratio, "target_ratio": target, "met": met,
    })


def bench_append(args, table: Table, results: list) -> None:
    for mode in ("single", "batch"):
        for size in args.sizes:
            n = max(1, default_n(APPEND_N[mode], size) // args.div)
            name = f"append {'single' if mode == 'single' else 'batch100'} {size_label(size)}"
            pys, refs = interleave(args.runs, lambda: py_append(size, mode, n),
                                   lambda: ref(args.node, "append", size, mode, n), name)
            rate_row(table, results, name, "append", mode, size, n, pys, refs)


def bench_get(args, table: Table, results: list) -> None:
    for order in ("seq", "rand"):
        for size in args.sizes:
            n = max(1, default_n(GET_N, size) // args.div)
            name = f"get {order} {size_label(size)}"
            pys, refs = interleave(args.runs, lambda: py_get(size, n, order),
                                   lambda: ref(args.node, "get", size, n, order), name)
            rate_row(table, results, name, "get", order, size, n, pys, refs)


def bench_open(args, table: Table, results: list, notes: list) -> None:
    n = max(1, OPEN_BLOCKS // args.div)
    work = tempfile.mkdtemp(prefix="bench-core-open-")
    py_dir, ref_dir = os.path.join(work, "py"), os.path.join(work, "ref")
    try:
        print(f"  open: building {n:,} x {OPEN_SIZE} B cores (Python and reference in parallel, untimed)",
              file=sys.stderr, flush=True)
        made: dict = {}

        def make_ref() -> None:
            try:
                made["out"] = ref(args.node, "make", ref_dir, n, OPEN_SIZE)
            except Exception as e:
                made["err"] = e
        th = threading.Thread(target=make_ref)
        th.start()
        t0 = time.perf_counter()
        trio.run(_build, py_dir, n, OPEN_SIZE, MAKE_BATCH)
        py_build = time.perf_counter() - t0
        th.join()
        if "err" in made:
            raise made["err"]
        ref_build = made["out"]["seconds"]
        print(f"  open: built (Python {py_build:.1f} s, reference {ref_build:.1f} s)", file=sys.stderr, flush=True)

        name = f"open {n:,} x {size_label(OPEN_SIZE)}"
        pys, refs = interleave(args.runs, lambda: py_open(py_dir), lambda: ref(args.node, "open", ref_dir), name)
        for x in pys + refs:
            if x["length"] != n:
                raise RuntimeError(f"opened length {x['length']}, expected {n}")
        py_ms = [1e3 * (x["ready_seconds"] + x["first_get_seconds"]) for x in pys]
        ref_ms = [1e3 * (x["ready_seconds"] + x["first_get_seconds"]) for x in refs]
        py_ready = [1e3 * x["ready_seconds"] for x in pys]
        ref_ready = [1e3 * x["ready_seconds"] for x in refs]
        ratio = statistics.median(ref_ms) / statistics.median(py_ms)
        met = statistics.median(py_ms) < OPEN_TARGET_MS
        table.line([name + " (ms)", fmt_rate(py_ms), "", fmt_rate(ref_ms), "", f"{ratio:.2f}",
                    f"<{OPEN_TARGET_MS:g}ms", "met" if met else "MISSED"])

        reads = py_open_reads(py_dir)
        files = {f: os.path.getsize(os.path.join(py_dir, f)) for f in sorted(os.listdir(py_dir))}
        notes.append(f"open: ready only: Python {fmt_rate(py_ready)} ms, reference {fmt_rate(ref_ready)} ms "
                     "(the row adds the first get(0))")
        notes.append("open: Python core files: " + ", ".join(f"{f} {sz:,} B" for f, sz in files.items()))
        if reads is not None:
            rd = reads["after_first_get"]
            tr = rd.get("tree", {"reads": 0, "bytes": 0})
            tr_ready = reads["after_ready"].get("tree", {"reads": 0, "bytes": 0})
            notes.append(f"open: Python read {tr_ready['bytes']:,} B of the {files.get('tree', 0):,} B tree file "
                         f"in {tr_ready['reads']} reads during ready(), {tr['bytes']:,} B in {tr['reads']} "
                         "reads by the end of get(0); all files: "
                         + ", ".join(f"{k} {v['bytes']:,} B/{v['reads']} reads" for k, v in sorted(rd.items())))
        results.append({
            "row": name, "op": "open", "blocks": n, "size": OPEN_SIZE,
            "build_seconds": {"python": py_build, "reference": ref_build},
            "python": {"runs": pys, "ms": py_ms, "median_ms": statistics.median(py_ms)},
            "reference": {"runs": refs, "ms": ref_ms, "median_ms": statistics.median(ref_ms)},
            "ratio": ratio, "target_ms": OPEN_TARGET_MS, "met": met,
            "python_files": files, "python_reads": reads,
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="runs per row (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="N / 10 and 1 run: a smoke test")
    ap.add_argument("--only", choices=("append", "get", "open"), action="append",
                    help="run only this group (repeatable)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="block sizes in bytes, comma-separated")
    ap.add_argument("--json", metavar="FILE", help="write all raw figures to FILE")
    ap.add_argument("--node", default=shutil.which("node") or "node", help="node executable")
    args = ap.parse_args()
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    args.div = 10 if args.quick else 1
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error("--sizes: comma-separated integers expected")
    if not args.sizes or any(s < 1 for s in args.sizes):
        ap.error("--sizes: positive sizes expected")
    groups = args.only or ["append", "get", "open"]
    if not REF_HYPERCORE.is_dir():
        print(f"reference hypercore missing at {REF_HYPERCORE}: run `cd tests/interop && npm ci`", file=sys.stderr)
        return 2

    node_version = subprocess.run([args.node, "--version"], capture_output=True, text=True).stdout.strip()
    started = datetime.datetime.now().astimezone()
    print(f"bench_core: Spacecore (Python {platform.python_version()}, trio {trio.__version__}) vs reference "
          f"hypercore (node {node_version}); {args.runs} run(s) per row{', QUICK (N/10)' if args.quick else ''}; "
          f"median (min–max); ratio = Python/reference, >1 = Python faster")

    # warm-up (untimed): imports, crypto setup, first-use paths
    py_append(1024, "single", 50)
    py_append(1024, "batch", 200)

    table, results, notes = Table(), [], []
    table.header()
    t0 = time.perf_counter()
    if "append" in groups:
        bench_append(args, table, results)
    if "get" in groups:
        bench_get(args, table, results)
    if "open" in groups:
        bench_open(args, table, results, notes)
    elapsed = time.perf_counter() - t0

    print()
    for note in notes:
        print(note)
    missed = [r["row"] for r in results if not r["met"]]
    print(f"targets met: {len(results) - len(missed)}/{len(results)}"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    print(f"total {elapsed:.0f} s")

    if args.json:
        doc = {
            "started": started.isoformat(timespec="seconds"), "elapsed_seconds": elapsed,
            "python": platform.python_version(), "trio": trio.__version__, "node": node_version,
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "runs": args.runs, "quick": args.quick, "sizes": args.sizes, "groups": groups,
            "rows": results, "notes": notes,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"raw figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
