"""corefs through a real mount, side by side with native files and a minimal pyfuse3 FS.

    .venv/bin/python scripts/bench_mount.py [--quick] [--only read|append|meta] [--runs N] [--json FILE]
                                            [--corefs-from DIR] [--keep]

Three targets serve the same bytes in one run:

* native: plain files on ext4 (this machine's disk), page-cache warm;
* minimal: ``scripts/minimal_fs.py`` (pyfuse3 + trio, os.pread/os.pwrite, attributes
  from memory, entry/attr timeouts 1 s, readdirplus, keep_cache) serving those plain
  files: the ceiling of any pyfuse3 mount;
* corefs: ``corefs mount STORE MNT`` (background daemon) of a store built with the
  Python API.

Both FUSE mounts keep the kernel's default read_ahead_kb (printed).  Test data is
built once per invocation, untimed, in a temporary directory under /var/tmp (ext4):
a core of 64 KiB blocks (256 MiB; appended in batches of 64 blocks) and its bytes as
one plain file; 10,000 cores ``many/cNNNNN`` of one 64-byte block each (one session
at a time, each closed) and the same as 10,000 plain files.

Rows (each timed with time.perf_counter around ``subprocess.run(..., check=True)``):

* read first / second: ``dd bs=1M``, ``cat``, ``dd bs=4k`` of the whole file.  First
  = a fresh mount (nothing of the file in the kernel's page cache; corefs opens the
  core afresh, so every leaf hash is checked); second = the same command again in
  the same mount.  Native: the page-cache-warm file both times.
* append: ``dd if=/dev/zero bs=4k|64k oflag=append conv=notrunc`` of 64 MiB into an
  empty file (corefs: a new empty core per run, created untimed with ``touch``).
  The corefs figure includes close(2), which fsyncs the core (04-corefs §3); the
  others do not fsync.  An extra column, "minimal + xattrs" (``minimal_fs.py
  --xattrs``: GETXATTR answered with ENODATA), shows what a filesystem with extended
  attributes pays on the kernel's cached write path: a GETXATTR(security.capability)
  before every WRITE unless the daemon once answered ENOSYS (FUSE caches no xattrs).
  corefs avoids it by opening writable handles with direct I/O (no such lookup there).
* meta: ``ls -l DIR``, ``find DIR -type f -print0 | xargs -0 stat``, and ``xargs stat
  < names`` (10k LOOKUPs, no listing first) of the 10,000-entry directory, each on a
  fresh mount (native: warm dentry cache).  After ``ls -l`` the corefs daemon is asked
  how many cores have handles (``corefs status --json``) and its /proc fds are counted
  per core directory (= cores it opened).

Each row: median over the runs with (min–max); throughput in MB/s (10^6 B/s),
metadata in ms.  Ratios are always corefs speed / reference speed (for the ms rows:
reference ms / corefs ms), so > 1 means corefs is faster.  Targets are against the
minimal FS: first read >= 0.3x, second read >= 0.8x, appends >= 0.5x, metadata
>= 0.8x.  The targets take turns going first in each run so machine noise hits all.

``--quick``: 32 MiB core, 8 MiB appends, 1,000 cores, 1 run (unless --runs): a smoke
test, not a measurement.  ``--corefs-from DIR`` runs the corefs daemon from another
tree (e.g. a patched copy: A/B a change without touching this checkout); the tree and
its commit are printed, with a warning when corefs/ or spacecorestore/ had uncommitted
changes.  ``--keep`` keeps the temporary directory.  Needs FUSE (/dev/fuse, fusermount3) and
dd, cat, ls, find, xargs, stat, touch.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
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

PY = sys.executable
COREFS = [PY, "-m", "corefs.cli"]
COREFS_ROOT = ROOT  # where the corefs daemon is imported from (--corefs-from: try a patched copy)
ENV = dict(os.environ)


def set_corefs_root(path: Path) -> None:
    global COREFS_ROOT
    COREFS_ROOT = path.resolve()
    ENV["PYTHONPATH"] = str(COREFS_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
BLOCK = 64 * 1024
SMALL = 64
TARGETS = ("native", "minimal", "corefs")
ALL_TARGETS = ("native", "minimal", "minimal_x", "corefs")  # minimal_x: minimal_fs.py --xattrs (appends only)
HEADINGS = {"native": "native", "minimal": "minimal pyfuse3", "minimal_x": "minimal + xattrs", "corefs": "corefs"}
GOALS = {"read1": 0.3, "read2": 0.8, "append": 0.5, "meta": 0.8}


# data -----------------------------------------------------------------------------------

def small_block(i: int) -> bytes:
    return f"core c{i:05d} ".encode().ljust(SMALL - 1, b".") + b"\n"


async def build_store_big(store_dir: Path, plain: Path, nbytes: int) -> None:
    nblocks = nbytes // BLOCK
    async with Corestore(str(store_dir)) as store:
        s = store.get(name="big")
        await s.ready()
        with open(plain, "wb") as f:
            for start in range(0, nblocks, 64):
                batch = [os.urandom(BLOCK) for _ in range(min(64, nblocks - start))]
                await s.append(batch)
                f.write(b"".join(batch))
        await s.close()


async def build_store_many(store_dir: Path, plain_dir: Path, n: int) -> None:
    plain_dir.mkdir(parents=True)
    async with Corestore(str(store_dir)) as store:
        ns = store.namespace("many")
        for i in range(n):
            s = ns.get(name=f"c{i:05d}")
            await s.append([small_block(i)])
            await s.close()
            (plain_dir / f"c{i:05d}").write_bytes(small_block(i))
    write_namespaces(store_dir, [["many"]])


async def build_store_empty(store_dir: Path) -> None:
    async with Corestore(str(store_dir)):
        pass


def write_namespaces(store_dir: Path, paths: list[list[str]]) -> None:
    """corefs' namespaces file (04-corefs §2): the namespaces shown as directories."""
    (store_dir / "corefs").mkdir(mode=0o700, exist_ok=True)
    (store_dir / "corefs" / "namespaces.json").write_text(json.dumps(paths))


def warm(*paths: Path) -> None:
    for p in paths:
        for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())):
            with open(f, "rb") as fh:
                while fh.read(1 << 20):
                    pass


# mounts -----------------------------------------------------------------------------------

def bdi_read_ahead(mnt: Path) -> str:
    dev = os.stat(mnt).st_dev
    p = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    try:
        return p.read_text().strip()
    except OSError:
        return "?"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our own child: reap it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.02)
    return False


def _stop_pid(pid: int | None) -> None:
    if pid is None or _wait_gone(pid, 10):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, 5):
            return


def _lazy_unmount(mnt: Path) -> None:
    if os.path.ismount(mnt) or _dead(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


def _dead(mnt: Path) -> bool:
    try:
        os.stat(mnt)
        return False
    except OSError:
        return True


def corefs_status(mnt: Path) -> dict:
    r = subprocess.run(COREFS + ["status", "--json", str(mnt)], check=True, capture_output=True, env=ENV, text=True,
                       cwd=COREFS_ROOT)
    return json.loads(r.stdout)


@contextlib.contextmanager
def corefs_mount(store: Path, mnt: Path):
    pid = None
    try:
        t = time.perf_counter()
        r = subprocess.run(COREFS + ["mount", str(store), str(mnt)], capture_output=True, env=ENV, text=True,
                           cwd=COREFS_ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"corefs mount failed: {r.stderr.strip()}")
        mount_s = time.perf_counter() - t
        pid = corefs_status(mnt)["pid"]
        yield {"pid": pid, "mount_s": mount_s, "read_ahead_kb": bdi_read_ahead(mnt)}
    finally:
        if os.path.ismount(mnt) or _dead(mnt):
            r = subprocess.run(COREFS + ["umount", str(mnt)], capture_output=True, env=ENV, text=True,
                               cwd=COREFS_ROOT)
            if r.returncode != 0:
                print(f"  corefs umount failed ({r.stderr.strip()}); lazy unmount", file=sys.stderr)
                _lazy_unmount(mnt)
        _stop_pid(pid)


@contextlib.contextmanager
def minimal_mount(src: Path, mnt: Path, log: Path, xattrs: bool = False):
    t = time.perf_counter()
    with open(log, "ab") as err:
        p = subprocess.Popen([PY, str(ROOT / "scripts" / "minimal_fs.py"), *(["--xattrs"] if xattrs else []),
                              str(src), str(mnt)],
                             stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    try:
        line = p.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"minimal_fs did not start (see {log})")
        yield {"pid": p.pid, "mount_s": time.perf_counter() - t, "read_ahead_kb": bdi_read_ahead(mnt)}
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                _lazy_unmount(mnt)
                p.kill()
                p.wait()
        _lazy_unmount(mnt)
        p.stdout.close()


# timing ----------------------------------------------------------------------------------

def timed(cmd, *, cwd=None, stdin=None, shell=False) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   shell=shell, executable="/bin/bash" if shell else None)
    return time.perf_counter() - t


READ_TOOLS = {
    "dd bs=1M": lambda f: ["dd", f"if={f}", "of=/dev/null", "bs=1M"],
    "cat": lambda f: ["cat", str(f)],
    "dd bs=4k": lambda f: ["dd", f"if={f}", "of=/dev/null", "bs=4k"],
}


class Results:
    def __init__(self) -> None:
        self.rows: dict[tuple, dict] = {}  # (section, name) -> {"unit", "goal", target: [samples]}
        self.notes: list[str] = []

    def add(self, section: str, name: str, target: str, value: float, unit: str, goal: str) -> None:
        row = self.rows.setdefault((section, name), {"unit": unit, "goal": goal, **{t: [] for t in ALL_TARGETS}})
        row[target].append(value)


def order(run: int, targets=TARGETS) -> list[str]:
    k = run % len(targets)
    return list(targets[k:] + targets[:k])


def bench_read(w: Path, res: Results, runs: int, nbytes: int) -> None:
    mb = nbytes / 1e6
    for tool, mk in READ_TOOLS.items():
        for run in range(runs):
            for tgt in order(run):
                mnt = w / "mnt"
                if tgt == "native":
                    ctx = contextlib.nullcontext({})
                    f = w / "plain_read" / "big"
                elif tgt == "minimal":
                    ctx = minimal_mount(w / "plain_read", mnt, w / "minimal.log")
                    f = mnt / "big"
                else:
                    ctx = corefs_mount(w / "store_read", mnt)
                    f = mnt / "big"
                with ctx as info:
                    if info.get("read_ahead_kb"):
                        res.read_ahead[tgt] = info["read_ahead_kb"]
                    assert os.path.getsize(f) == nbytes, (tgt, os.path.getsize(f))
                    res.add("read", f"first read, {tool}", tgt, mb / timed(mk(f)), "MB/s", "read1")
                    res.add("read", f"second read, {tool}", tgt, mb / timed(mk(f)), "MB/s", "read2")
            print(f"  read {tool} run {run + 1}/{runs} done", flush=True)


def bench_append(w: Path, res: Results, runs: int, nbytes: int) -> None:
    """Also measures ``minimal_x`` (the minimal FS answering GETXATTR with ENODATA, as any FS with
    xattrs must): the kernel then sends a GETXATTR(security.capability) before every WRITE."""
    mnts = {t: w / f"mnt_a_{t}" for t in ("minimal", "minimal_x", "corefs")}
    for m in mnts.values():
        m.mkdir(exist_ok=True)
    sizes = {"4k": 4096, "64k": 65536}
    src = w / "plain_append"
    src.mkdir(exist_ok=True)
    for label in sizes:
        for run in range(runs):
            for t in ("minimal", "minimal_x"):  # the minimal FS's empty files (it scans at start)
                (src / f"{t}_{label}_{run}").write_bytes(b"")
    mb = nbytes / 1e6
    targets = ("native", "minimal", "minimal_x", "corefs")
    with minimal_mount(src, mnts["minimal"], w / "minimal.log") as mi, \
            minimal_mount(src, mnts["minimal_x"], w / "minimal.log", xattrs=True), \
            corefs_mount(w / "store_append", mnts["corefs"]) as ci:
        res.read_ahead["minimal"], res.read_ahead["corefs"] = mi["read_ahead_kb"], ci["read_ahead_kb"]
        for label, bs in sizes.items():
            for run in range(runs):
                for tgt in order(run, targets):
                    if tgt == "native":
                        f = src / f"native_{label}_{run}"
                        f.write_bytes(b"")
                    elif tgt.startswith("minimal"):
                        f = mnts[tgt] / f"{tgt}_{label}_{run}"
                    else:
                        f = mnts[tgt] / f"c{label}_{run}"
                        subprocess.run(["touch", str(f)], check=True)  # a new empty core, untimed
                    cmd = ["dd", "if=/dev/zero", f"of={f}", f"bs={bs}", f"count={nbytes // bs}", "oflag=append",
                           "conv=notrunc"]
                    res.add("append", f"append dd bs={label}", tgt, mb / timed(cmd), "MB/s", "append")
                    if os.path.getsize(f) != nbytes:
                        raise RuntimeError(f"{tgt}: {f} has {os.path.getsize(f)} bytes, expected {nbytes}")
                    if tgt == "native":
                        f.unlink()
                print(f"  append {label} run {run + 1}/{runs} done", flush=True)


def open_core_dirs(pid: int) -> int:
    """Cores the daemon has open: distinct cores/<aa>/<bb>/<dk> directories among its fds."""
    dirs = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        parts = target.split("/")
        if "cores" in parts:
            i = parts.index("cores")
            if len(parts) > i + 3:
                dirs.add("/".join(parts[: i + 4]))
    return len(dirs)


def bench_meta(w: Path, res: Results, runs: int, n: int) -> None:
    names = w / "names.txt"
    names.write_text("".join(f"c{i:05d}\n" for i in range(n)))
    rows = {
        "ls -l": lambda d: timed(["ls", "-l", str(d)]),
        "find -type f \\| xargs stat": lambda d: timed(f"set -o pipefail; find '{d}' -type f -print0 | xargs -0 stat",
                                             shell=True),
        "xargs stat < names": lambda d: _stat_names(d, names),
    }
    native_dir = w / "plain_many" / "many"
    for fn in rows.values():  # warm the native dentry/inode cache
        fn(native_dir)
    mnt = w / "mnt"
    for label, fn in rows.items():
        for run in range(runs):
            for tgt in order(run):
                if tgt == "native":
                    ctx, d = contextlib.nullcontext({}), native_dir
                elif tgt == "minimal":
                    ctx, d = minimal_mount(w / "plain_many", mnt, w / "minimal.log"), mnt / "many"
                else:
                    ctx, d = corefs_mount(w / "store_many", mnt), mnt / "many"
                with ctx as info:
                    if info.get("read_ahead_kb"):
                        res.read_ahead[tgt] = info["read_ahead_kb"]
                    if tgt == "corefs" and run == 0 and label == "ls -l":
                        res.notes.append(f"corefs mount of the {n}-core store took {info['mount_s'] * 1e3:.0f} ms "
                                         f"(background start until live)")
                    ms = fn(d) * 1e3
                    res.add("meta", f"{label} ({n} entries)", tgt, ms, "ms", "meta")
                    if tgt == "corefs" and label == "ls -l":
                        st = corefs_status(mnt)
                        with_handles = sum(1 for c in st["cores"] if c["handles"])
                        res.opened.append((with_handles, open_core_dirs(info["pid"]), len(st["cores"])))
            print(f"  meta {label} run {run + 1}/{runs} done", flush=True)


def _stat_names(d: Path, names: Path) -> float:
    with open(names, "rb") as f:
        return timed(["xargs", "stat"], cwd=d, stdin=f)


def corefs_version() -> str:
    """Which corefs was measured: the tree, its commit, and whether corefs/ or spacecorestore/ had
    uncommitted changes (others edit the working tree while benchmarks run)."""
    def git(*args):
        r = subprocess.run(["git", "-C", str(COREFS_ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    head = git("rev-parse", "--short", "HEAD") or "no git"
    dirty = git("status", "--porcelain", "--", "corefs", "spacecorestore")
    return f"{COREFS_ROOT} at {head}" + (" + uncommitted changes in corefs/ or spacecorestore/" if dirty else "")


# report ------------------------------------------------------------------------------------

def fmt(v: float, unit: str) -> str:
    return f"{v:,.0f}" if v >= 100 or unit == "ms" and v >= 10 else f"{v:,.1f}"


def cell(samples: list[float], unit: str) -> str:
    if not samples:
        return "-"
    med = statistics.median(samples)
    if len(samples) == 1:
        return fmt(med, unit)
    return f"{fmt(med, unit)} ({fmt(min(samples), unit)}–{fmt(max(samples), unit)})"


def ratio(row: dict, ref: str) -> float | None:
    if not row["corefs"] or not row[ref]:
        return None
    c, r = statistics.median(row["corefs"]), statistics.median(row[ref])
    return c / r if row["unit"] != "ms" else r / c


def report(res: Results) -> tuple[str, list[dict]]:
    shown = [t for t in ALL_TARGETS if t != "minimal_x" or any(r["minimal_x"] for r in res.rows.values())]
    extra = "minimal_x" in shown
    head = ["row", "unit", *(HEADINGS[t] for t in shown), "corefs/minimal", "corefs/native",
            *(["corefs/(minimal + xattrs)"] if extra else []), "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out = []
    for (section, name), row in res.rows.items():
        rm, rn, rx = ratio(row, "minimal"), ratio(row, "native"), ratio(row, "minimal_x")
        goal = GOALS[row["goal"]]
        met = rm is not None and rm >= goal
        r = lambda v: "-" if v is None else f"{v:.2f}x"  # noqa: E731
        cells = [name, row["unit"], *(cell(row[t], row["unit"]) for t in shown), r(rm), r(rn),
                 *([r(rx)] if extra else []), f"≥ {goal}x minimal", "met" if met else "MISSED"]
        lines.append("| " + " | ".join(cells) + " |")
        out.append({"section": section, "row": name, "unit": row["unit"], "goal_vs_minimal": goal, "met": met,
                    "ratio_vs_minimal": rm, "ratio_vs_native": rn, "ratio_vs_minimal_xattrs": rx,
                    **{t: {"samples": row[t], "median": statistics.median(row[t]) if row[t] else None}
                       for t in ALL_TARGETS if row[t]}})
    return "\n".join(lines), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 run: a smoke test")
    ap.add_argument("--only", choices=("read", "append", "meta"))
    ap.add_argument("--runs", type=int)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (for debugging)")
    ap.add_argument("--corefs-from", metavar="DIR", type=Path, default=ROOT,
                    help="run the corefs daemon from this tree (a patched copy); default: this checkout")
    a = ap.parse_args()
    set_corefs_root(a.corefs_from)
    runs = a.runs or (1 if a.quick else 3)
    read_bytes = (32 if a.quick else 256) << 20
    append_bytes = (8 if a.quick else 64) << 20
    ncores = 1000 if a.quick else 10000
    sections = [a.only] if a.only else ["read", "append", "meta"]
    for tool in ("dd", "cat", "find", "xargs", "stat", "ls", "touch", "fusermount3"):
        if shutil.which(tool) is None:
            print(f"bench_mount: {tool} is missing", file=sys.stderr)
            return 1

    w = Path(tempfile.mkdtemp(prefix="bench_mount.", dir="/var/tmp"))
    res = Results()
    res.read_ahead = {}
    res.opened = []
    t0 = time.perf_counter()
    version = corefs_version()
    try:
        (w / "mnt").mkdir()
        t = time.perf_counter()
        if "read" in sections:
            (w / "plain_read").mkdir()
            trio.run(build_store_big, w / "store_read", w / "plain_read" / "big", read_bytes)
        if "meta" in sections:
            trio.run(build_store_many, w / "store_many", w / "plain_many" / "many", ncores)
        if "append" in sections:
            trio.run(build_store_empty, w / "store_append")
        warm(*(p for p in (w / "store_read", w / "plain_read", w / "store_many", w / "plain_many") if p.exists()))
        res.notes.append(f"test data built in {time.perf_counter() - t:.1f} s (untimed) in {w}")
        print(f"built test data in {time.perf_counter() - t:.1f} s", flush=True)
        if "read" in sections:
            bench_read(w, res, runs, read_bytes)
        if "append" in sections:
            bench_append(w, res, runs, append_bytes)
        if "meta" in sections:
            bench_meta(w, res, runs, ncores)
    finally:
        for m in w.glob("mnt*"):
            _lazy_unmount(m)
        if not a.keep:
            shutil.rmtree(w, ignore_errors=True)

    table, rows = report(res)
    print()
    print(f"bench_mount: {runs} run(s); read {read_bytes >> 20} MiB core of 64 KiB blocks, appends of "
          f"{append_bytes >> 20} MiB, {ncores} cores; {datetime.datetime.now().isoformat(timespec='seconds')}; "
          f"{platform.node()} {platform.release()}, {os.cpu_count()} CPUs; wall {time.perf_counter() - t0:.0f} s")
    print(f"corefs: {version}")
    print(f"FUSE read_ahead_kb (kernel default, untouched): {res.read_ahead}")
    print("median (min–max); ratios = corefs speed / reference speed (ms rows: reference ms / corefs ms)")
    print()
    print(table)
    if res.opened:
        h = max(o[0] for o in res.opened)
        c = max(o[1] for o in res.opened)
        res.notes.append(f"after `ls -l` of {res.opened[0][2]} cores: at most {h} cores with handles "
                         f"(corefs status), at most {c} cores open in the daemon (its fds per core dir)")
    for note in res.notes:
        print("- " + note)
    missed = [r["row"] for r in rows if not r["met"]]
    print("targets missed: " + (", ".join(missed) if missed else "none"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "runs": runs,
                       "read_bytes": read_bytes, "append_bytes": append_bytes, "cores": ncores,
                       "corefs": version, "read_ahead_kb": res.read_ahead, "notes": res.notes, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
