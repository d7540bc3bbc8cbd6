"""Spacecorestore vs the reference Corestore, side by side in one run.

    .venv/bin/python scripts/bench_store.py [--runs N] [--quick] [--only open,list,fds]
                                            [--open-cores 1000] [--list-cores 10000] [--json FILE]

Python (``spacecorestore.Corestore`` on disk under trio) and the reference
(corestore 6.18.4 / hypercore 10.38.2 via ``node scripts/bench_store_ref.js``;
needs ``cd tests/interop && npm ci``) on the same kind of store. Every timed
run is a fresh process (``python scripts/bench_store.py --child ...`` or
``node``), timed inside that process (interpreter start-up and imports are
not counted, as in shared/perf/README.md §1); Python and reference runs are
interleaved, alternating which goes first.

(a) open: a store of N named cores ("core-<i>", one block each), built once
    per invocation by the REFERENCE (untimed: ``bench_store_ref.js make``).
    Each run times ``Corestore(dir)`` + ``ready()`` and then, for every core in
    turn, ``get(name=...)`` + ``ready()`` + ``get(0)`` (the block is checked;
    sessions are kept open). Target: Python >= 2x the reference (README §1:
    1.43 s for the reference on the baseline machine).
(b) list: a store of 10,000 named cores (one small block each), built once per
    invocation by PYTHON (untimed). Each run is a fresh Python process that
    only opens the store and collects ``list_cores()``: the time of the listing
    (target < 1 s) and the process's peak RSS, ru_maxrss (target < 150 MB).
    The reference has no listing: ``bench_store_ref.js list`` opens every core
    by its discovery key and reads name/length/byteLength; shown for scale, and
    its digest of (key, name, length, byte length) must equal ours (the
    reference reads every core Python wrote).
(c) fds: one fresh Python process started with the soft RLIMIT_NOFILE lowered
    to 1024 (a common default) opens the N cores of (a) at once (sessions kept
    open, block 0 read from each): the file descriptors used and the limit
    before/after (the store lifts the soft limit to the hard one). Target: it
    works (every core open and read). The reference's fd count is from (a) (it
    keeps a pool of ~512 fds and cycles them).

Each row: median over the runs and (min–max). ratio = reference time / Python
time (> 1: Python is faster). ``--quick``: 100 / 1,000 cores, 1 run (a smoke
test, not a measurement). Nothing binds to the network. The temporary stores
are removed at the end.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from spacecorestore import Corestore  # noqa: E402

REF_SCRIPT = ROOT / "scripts" / "bench_store_ref.js"
REF_CORESTORE = ROOT / "tests" / "interop" / "node_modules" / "corestore"
PRIMARY_KEY = bytes(range(0xB0, 0xD0))

OPEN_CORES = 1000
LIST_CORES = 10_000
OPEN_RATIO_TARGET = 2.0
LIST_TARGET_S = 1.0
RSS_TARGET_MB = 150.0
REF_README_OPEN_S = 1.43
FDS_SOFT_START = 1024


def block(i: int) -> bytes:
    return f"core-{i} block 0".encode()


def count_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # EMFILE: listing /proc/self/fd needs a descriptor too
        return None


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# ------------------------------------------------------------- child processes


async def child_open(d: str, n: int) -> dict:
    t0 = time.perf_counter()
    store = Corestore(d)
    await store.ready()
    t_ready = time.perf_counter()
    sessions = []
    t_first = None
    for i in range(n):
        s = store.get(name=f"core-{i}")
        await s.ready()
        if await s.get(0) != block(i):
            raise AssertionError(f"core-{i}: wrong block 0")
        sessions.append(s)
        if i == 0:
            t_first = time.perf_counter()
    t1 = time.perf_counter()
    fds = count_fds()
    await store.close()
    return {"case": "open", "cores": n, "ready_seconds": t_ready - t0, "first_seconds": t_first - t0,
            "seconds": t1 - t0, "fds": fds}


def record_digest(lines: list[str]) -> str:
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode())
    return h.hexdigest()


async def child_list(d: str) -> dict:
    rss0 = maxrss_bytes()
    async with Corestore(d) as store:
        t0 = time.perf_counter()
        records = [r async for r in store.list_cores()]
        t1 = time.perf_counter()
    lines = [f"{r.key.hex()} {r.name if r.name is not None else '-'} {r.length} {r.byte_length}\n" for r in records]
    return {"case": "list", "cores": len(records), "seconds": t1 - t0, "maxrss_bytes": maxrss_bytes(),
            "maxrss_before_bytes": rss0, "digest": record_digest(lines)}


async def child_fds(d: str, n: int) -> dict:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    fds0 = count_fds()
    store = Corestore(d)
    await store.ready()
    sessions, error = [], None
    try:
        for i in range(n):
            s = store.get(name=f"core-{i}")
            await s.ready()
            if await s.get(0) != block(i):
                raise AssertionError(f"core-{i}: wrong block 0")
            sessions.append(s)
    except Exception as e:  # reported, not raised: the row says what broke
        error = repr(e)
    fds1 = count_fds()
    if fds1 is None and sessions:  # out of descriptors: free one core's files to count
        await sessions.pop().close()
        fds1 = count_fds()
    after = resource.getrlimit(resource.RLIMIT_NOFILE)
    await store.close()
    return {"case": "fds", "cores": len(sessions), "wanted": n, "fds_before": fds0, "fds_open": fds1,
            "fds_after_close": count_fds(), "rlimit_before": list(before), "rlimit_after": list(after),
            "error": error}


def run_child(argv: list[str]) -> None:
    kind, d = argv[0], argv[1]
    if kind == "open":
        out = trio.run(child_open, d, int(argv[2]))
    elif kind == "list":
        out = trio.run(child_list, d)
    elif kind == "fds":
        out = trio.run(child_fds, d, int(argv[2]))
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(out), flush=True)


# ------------------------------------------------------------------ drivers


def _json_out(p: subprocess.CompletedProcess, what: str) -> dict:
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"{what}: no JSON (exit {p.returncode})\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}") from None
    if p.returncode != 0 or "error" in out and out.get("case") is None:
        raise RuntimeError(f"{what} failed: {out}\n{p.stderr[-2000:]}")
    return out


def py(kind: str, *args, soft_nofile: int | None = None) -> dict:
    def lower_limit():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft_nofile, hard), hard))

    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, *map(str, args)],
                       capture_output=True, text=True, timeout=600,
                       preexec_fn=lower_limit if soft_nofile else None)
    return _json_out(p, f"python child {kind}")


def ref(node: str, *args) -> dict:
    p = subprocess.run([node, str(REF_SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=600)
    return _json_out(p, f"bench_store_ref.js {args[0]}")


async def build_py(d: str, n: int) -> float:
    t0 = time.perf_counter()
    async with Corestore(d, primary_key=PRIMARY_KEY) as store:
        for i in range(n):
            async with store.get(name=f"core-{i}") as s:
                await s.append(block(i))
    return time.perf_counter() - t0


def interleave(runs: int, py_fn, ref_fn, label: str) -> tuple[list[dict], list[dict]]:
    pys, refs = [], []
    for r in range(runs):
        order = [("python", py_fn, pys), ("reference", ref_fn, refs)]
        if r % 2:
            order.reverse()
        for who, fn, acc in order:
            if fn is None:
                continue
            print(f"  {label}: run {r + 1}/{runs} {who}", file=sys.stderr, flush=True)
            acc.append(fn())
    return pys, refs


def mmr(xs: list[float]) -> tuple[float, float, float]:
    return statistics.median(xs), min(xs), max(xs)


def fmt_s(xs: list[float]) -> str:
    if not xs:
        return "-"
    m, lo, hi = mmr(xs)
    if m < 1:
        return f"{m * 1000:,.0f} ms ({lo * 1000:,.0f}–{hi * 1000:,.0f})"
    return f"{m:,.2f} s ({lo:,.2f}–{hi:,.2f})"


def fmt_mb(xs: list[float]) -> str:
    m, lo, hi = mmr(xs)
    return f"{m / 1e6:,.1f} MB ({lo / 1e6:,.1f}–{hi / 1e6:,.1f})"


class Table:
    COLS = (("case", 48), ("Python", 26), ("reference", 32), ("ratio", 7), ("target", 20), ("met", 4))

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, *cells) -> None:
        self.rows.append(tuple(cells))

    def print(self) -> None:
        print("  ".join(f"{name:<{w}}" for name, w in self.COLS).rstrip())
        print("  ".join("-" * w for _, w in self.COLS))
        for row in self.rows:
            print("  ".join(f"{str(c):<{w}}" for c, (_, w) in zip(row, self.COLS)).rstrip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="runs per case (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="100 / 1,000 cores, 1 run: a smoke test")
    ap.add_argument("--only", default="open,list,fds", help="comma list of open, list, fds")
    ap.add_argument("--open-cores", type=int, default=None)
    ap.add_argument("--list-cores", type=int, default=None)
    ap.add_argument("--node", default="node")
    ap.add_argument("--json", default=None, help="write the raw figures to this file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args.child)
        return 0

    runs = args.runs or (1 if args.quick else 3)
    n_open = args.open_cores or (100 if args.quick else OPEN_CORES)
    n_list = args.list_cores or (1000 if args.quick else LIST_CORES)
    only = set(args.only.split(","))
    have_ref = shutil.which(args.node) is not None and REF_CORESTORE.exists()
    node_version = subprocess.run([args.node, "--version"], capture_output=True, text=True).stdout.strip() \
        if have_ref else None
    if not have_ref:
        print(f"reference corestore missing ({REF_CORESTORE}) or no `{args.node}`: Python rows only "
              f"(run `cd tests/interop && npm ci`)", file=sys.stderr)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"bench_store: Spacecorestore (Python {platform.python_version()}, trio {trio.__version__}) vs reference "
          f"corestore 6.18.4 (node {node_version or 'n/a'}); {os.cpu_count()} CPUs; {runs} run(s) per case; "
          f"RLIMIT_NOFILE of this process {soft}/{hard}; {datetime.datetime.now().isoformat(timespec='seconds')}",
          flush=True)

    started = time.perf_counter()
    table = Table()
    raw: dict = {"runs": runs, "open_cores": n_open, "list_cores": n_list}
    verdicts: list[bool] = []
    tmp = tempfile.mkdtemp(prefix="bench-store-")
    try:
        store_a = os.path.join(tmp, "open-store")
        if only & {"open", "fds"}:
            print(f"  building {n_open:,} named cores for (a)/(c) with the "
                  f"{'reference' if have_ref else 'Python store'} (untimed)", file=sys.stderr, flush=True)
            if have_ref:
                made = ref(args.node, "make", store_a, n_open, PRIMARY_KEY.hex())
                raw["ref_make_seconds"] = made["seconds"]
            else:
                raw["py_make_seconds"] = trio.run(build_py, store_a, n_open)

        if "open" in only:
            pys, refs = interleave(runs, lambda: py("open", store_a, n_open),
                                   (lambda: ref(args.node, "open", store_a, n_open)) if have_ref else None,
                                   "open")
            raw["open"] = {"python": pys, "reference": refs}
            py_s = [r["seconds"] for r in pys]
            ref_s = [r["seconds"] for r in refs]
            if refs:
                ratio = statistics.median(ref_s) / statistics.median(py_s)
                ok = ratio >= OPEN_RATIO_TARGET
                verdicts.append(ok)
                table.add(f"(a) open {n_open:,} named cores + get(0)", fmt_s(py_s), fmt_s(ref_s), f"{ratio:.2f}x",
                          f">= {OPEN_RATIO_TARGET:g}x reference", "yes" if ok else "NO")
            else:
                ok = statistics.median(py_s) * OPEN_RATIO_TARGET <= REF_README_OPEN_S * n_open / OPEN_CORES
                verdicts.append(ok)
                table.add(f"(a) open {n_open:,} named cores + get(0)", fmt_s(py_s), "(README 1.43 s/1000)", "-",
                          f">= {OPEN_RATIO_TARGET:g}x reference", "yes" if ok else "NO")
            table.add("    first core: store ready + get + get(0)", fmt_s([r["first_seconds"] for r in pys]),
                      fmt_s([r["first_seconds"] for r in refs]), "-", "(info)", "")
            table.add("    fds with every session open", f"{statistics.median([r['fds'] for r in pys]):,.0f}",
                      f"{statistics.median([r['fds'] for r in refs]):,.0f}" if refs else "-", "-", "(info)", "")

        if "list" in only:
            store_b = os.path.join(tmp, "list-store")
            print(f"  building {n_list:,} named cores for (b) with Python (untimed)", file=sys.stderr, flush=True)
            raw["py_build_list_store_seconds"] = trio.run(build_py, store_b, n_list)
            pys, refs = interleave(runs, lambda: py("list", store_b),
                                   (lambda: ref(args.node, "list", store_b)) if have_ref else None, "list")
            raw["list"] = {"python": pys, "reference": refs}
            if any(r["cores"] != n_list for r in pys):
                raise RuntimeError(f"list_cores() listed {[r['cores'] for r in pys]}, expected {n_list}")
            py_s = [r["seconds"] for r in pys]
            ok = statistics.median(py_s) < LIST_TARGET_S
            verdicts.append(ok)
            ref_s = [r["seconds"] for r in refs]
            table.add(f"(b) list_cores() of {n_list:,} cores", fmt_s(py_s),
                      (fmt_s(ref_s) + " *") if refs else "-",
                      f"{statistics.median(ref_s) / statistics.median(py_s):.1f}x" if refs else "-",
                      f"< {LIST_TARGET_S:g} s", "yes" if ok else "NO")
            rss = [r["maxrss_bytes"] for r in pys]
            ok = statistics.median(rss) < RSS_TARGET_MB * 1e6
            verdicts.append(ok)
            table.add("    process peak RSS (ru_maxrss) after listing", fmt_mb(rss),
                      fmt_mb([r["rss_bytes"] for r in refs]) + " *" if refs else "-", "-",
                      f"< {RSS_TARGET_MB:g} MB", "yes" if ok else "NO")
            table.add("    (RSS after imports, before opening)", fmt_mb([r["maxrss_before_bytes"] for r in pys]),
                      "", "", "(info)", "")
            if refs:
                same = {r["digest"] for r in pys} == {r["digest"] for r in refs} and all(
                    r["cores"] == n_list for r in refs)
                verdicts.append(same)
                table.add("    reference reads every core Python wrote", "digest " + pys[0]["digest"][:12],
                          f"{refs[0]['cores']:,} cores, digest " + refs[0]["digest"][:12], "-", "same records",
                          "yes" if same else "NO")
            shutil.rmtree(store_b, ignore_errors=True)

        if "fds" in only:
            print(f"  fds: {n_open:,} cores open at once (soft RLIMIT_NOFILE lowered to {FDS_SOFT_START})",
                  file=sys.stderr, flush=True)
            r = py("fds", store_a, n_open, soft_nofile=FDS_SOFT_START)
            raw["fds"] = r
            ok = r["error"] is None and r["cores"] == n_open and r["fds_after_close"] <= r["fds_before"]
            verdicts.append(ok)
            used = (r["fds_open"] or 0) - r["fds_before"]
            table.add(f"(c) {n_open:,} cores open at once", f"{r['cores']:,} open, {used:,} fds", "-", "-",
                      "works", "yes" if ok else "NO")
            table.add("    RLIMIT_NOFILE soft/hard before -> after",
                      f"{r['rlimit_before'][0]}/{r['rlimit_before'][1]} -> "
                      f"{r['rlimit_after'][0]}/{r['rlimit_after'][1]}", "", "", "(info)", "")
            table.add("    fds after store.close()", f"{r['fds_after_close']} (before open: {r['fds_before']})", "",
                      "", "(info)", "")
            if r["error"]:
                print(f"  fds: {r['error']}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    table.print()
    print()
    if "open" in only:
        print(f"(a) shared/perf/README.md §1, baseline machine: the reference opens 1000 named cores + get(0) "
              f"in {REF_README_OPEN_S} s (1.29–1.55)")
    if "list" in only and have_ref:
        print("* the reference has no listing: it opens every core by discovery key (bench_store_ref.js list); "
              "its RSS is node's, at the end")
    print(f"targets met: {sum(verdicts)}/{len(verdicts)}; total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
        print(f"raw figures written to {args.json}")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
