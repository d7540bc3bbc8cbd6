"""Secret-stream throughput and handshake rate: Spacecore (Python) vs the reference.

    .venv/bin/python scripts/bench_transport.py [--runs N] [--quick] [--only bulk|hs]
                                               [--sizes 65536,1024] [--json FILE]

Every endpoint runs in its own process, over TCP on 127.0.0.1 only:

* bulk SIZE A→B: a sink process of implementation B listens (Noise responder),
  a source process of implementation A connects (initiator) and writes COUNT
  messages of SIZE bytes through the secret stream as fast as the stream
  accepts them, then ends.  The sink times from its handshake completing to
  the COUNT-th message arriving and reports MB/s (10^6 bytes of plaintext per
  second).  Pairs: py→py, py→ref, ref→py, ref→ref.  COUNT: 10 000 × 64 KiB
  (655 MB), 200 000 × 1 KiB (205 MB).
* handshakes/s: a server process accepts connections; a client process opens
  COUNT (2000) connections one after the other: TCP connect, Noise XX, both
  stream headers, end, wait for the server's end.  py client/py server and
  ref client/ref server.

Python endpoints are this script re-run with an internal mode
(``_sink``/``_source``/``_hs-server``/``_hs-client``); the reference ones are
``node scripts/bench_transport_ref.js`` (needs ``cd tests/interop && npm ci``).
Runs of the pairs are interleaved (the order rotates per run).  Each row shows
the median over the runs and (min–max); ratio = median / median of the
reference→reference row.  Target: py→py ≥ 1.0x ref→ref at 64 KiB.

Every loop is bounded by a count and a time limit; child processes are
stopped by PID (SIGTERM, then SIGKILL) when they overrun.  ``--quick`` divides
COUNTs by 10 and makes one run: a smoke test, not a measurement.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REF_SCRIPT = ROOT / "scripts" / "bench_transport_ref.js"
REF_MODULES = ROOT / "tests" / "interop" / "node_modules" / "@hyperswarm" / "secret-stream"
HOST = "127.0.0.1"
BULK_COUNTS = {65536: 10_000, 1024: 200_000}
HS_COUNT = 2000
PROC_TIMEOUT = 120.0  # per process, seconds


def out(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- Python endpoints (run in child processes) -----------------------------------------------


async def py_sink(port: int, count: int, size: int) -> None:
    import trio

    from spacecorestore.transport.secret_stream import connect_secret_stream

    listeners = await trio.open_tcp_listeners(port, host=HOST)
    out({"event": "listening", "port": listeners[0].socket.getsockname()[1]})
    stream = await listeners[0].accept()
    for lst in listeners:
        await lst.aclose()
    ss = await connect_secret_stream(stream, False)
    t0 = time.perf_counter()
    n = total = 0
    while n < count:
        m = await ss.receive()
        if m is None:
            out({"event": "error", "message": f"stream ended after {n} messages"})
            sys.exit(1)
        n += 1
        total += len(m)
    t1 = time.perf_counter()
    out({"event": "done", "messages": n, "bytes": total, "seconds": t1 - t0})
    await ss.aclose()


async def py_source(port: int, count: int, size: int, batch: int = 1) -> None:
    import trio

    from spacecorestore.transport.secret_stream import connect_secret_stream

    stream = await trio.open_tcp_stream(HOST, port)
    ss = await connect_secret_stream(stream, True)
    msg = b"a" * size
    if batch <= 1:
        for _ in range(count):
            await ss.send(msg)
    else:
        group = [msg] * batch
        left = count
        while left > 0:
            await ss.send_many(group if left >= batch else group[:left])
            left -= batch
    await ss.send_eof()
    try:
        while await ss.receive() is not None:
            pass
    except Exception:
        pass  # the sink may close at once
    await ss.aclose()
    out({"event": "done", "messages": count})


async def py_hs_server(port: int) -> None:
    import trio

    from spacecorestore.errors import TransportError
    from spacecorestore.transport.secret_stream import connect_secret_stream

    async def handle(stream):
        try:
            ss = await connect_secret_stream(stream, False)
            while await ss.receive() is not None:
                pass
            await ss.aclose()
        except TransportError:
            pass

    listeners = await trio.open_tcp_listeners(port, host=HOST)
    out({"event": "listening", "port": listeners[0].socket.getsockname()[1]})
    await trio.serve_listeners(handle, listeners)


async def py_hs_client(port: int, count: int, seconds: float) -> None:
    import trio

    from spacecorestore.transport.secret_stream import connect_secret_stream

    t0 = time.perf_counter()
    n = 0
    while n < count and (seconds <= 0 or time.perf_counter() - t0 < seconds):
        stream = await trio.open_tcp_stream(HOST, port)
        ss = await connect_secret_stream(stream, True)
        await ss.send_eof()
        while await ss.receive() is not None:
            pass
        await ss.aclose()
        n += 1
    out({"event": "done", "handshakes": n, "seconds": time.perf_counter() - t0})


def child_main(argv: list[str]) -> None:
    import trio

    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--timeout", type=float, default=PROC_TIMEOUT)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args(argv)

    async def main():
        with trio.move_on_after(a.timeout) as cs:
            if a.mode == "_sink":
                await py_sink(a.port, a.count, a.size)
            elif a.mode == "_source":
                await py_source(a.port, a.count, a.size, a.batch)
            elif a.mode == "_hs-server":
                await py_hs_server(a.port)
            elif a.mode == "_hs-client":
                await py_hs_client(a.port, a.count, a.seconds)
        if cs.cancelled_caught and a.mode != "_hs-server":
            out({"event": "timeout"})
            sys.exit(3)

    trio.run(main)


# -- orchestration ---------------------------------------------------------------------------


class Proc:
    """A child endpoint; JSON lines on stdout; always stopped by PID."""

    def __init__(self, impl: str, mode: str, node: str, *args) -> None:
        if impl.startswith("py"):
            extra = ["--batch", impl[len("py*"):]] if impl.startswith("py*") else []
            cmd = [sys.executable, str(Path(__file__).resolve()), "_" + mode, *map(str, args), *extra]
        else:
            cmd = [node, str(REF_SCRIPT), mode, *map(str, args)]
        self.cmd = cmd
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def read_event(self, timeout: float = 30.0) -> dict:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    line = self.p.stdout.readline()
                    if not line:
                        break
                    if line.strip():
                        return json.loads(line)
        finally:
            sel.close()
        self.stop()
        raise RuntimeError(f"no output from {' '.join(self.cmd)}: {self.p.stderr.read()[-2000:]}")

    def wait(self, timeout: float = PROC_TIMEOUT) -> dict:
        try:
            stdout, stderr = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{' '.join(self.cmd)} overran {timeout} s")
        lines = [json.loads(x) for x in stdout.splitlines() if x.strip()]
        done = [x for x in lines if x.get("event") == "done"]
        if self.p.returncode != 0 or not done:
            raise RuntimeError(f"{' '.join(self.cmd)} exited {self.p.returncode}: {stdout[-2000:]} {stderr[-2000:]}")
        return done[-1]

    def stop(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        for f in (self.p.stdout, self.p.stderr):
            if f and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass


def bulk_run(src: str, dst: str, size: int, count: int, node: str) -> float:
    sink = Proc(dst, "sink", node, "--port", 0, "--count", count, "--size", size, "--timeout", PROC_TIMEOUT)
    try:
        port = sink.read_event()["port"]
        source = Proc(src, "source", node, "--port", port, "--count", count, "--size", size, "--timeout", PROC_TIMEOUT)
        try:
            done = sink.wait()
            source.wait()
        finally:
            source.stop()
    finally:
        sink.stop()
    return done["bytes"] / done["seconds"] / 1e6


def hs_run(impl: str, count: int, node: str) -> float:
    server = Proc(impl, "hs-server", node, "--port", 0, "--timeout", PROC_TIMEOUT)
    try:
        port = server.read_event()["port"]
        client = Proc(impl, "hs-client", node, "--port", port, "--count", count, "--seconds", 60,
                      "--timeout", PROC_TIMEOUT)
        try:
            done = client.wait()
        finally:
            client.stop()
    finally:
        server.stop()
    return done["handshakes"] / done["seconds"]


def fmt(values: list[float], unit: str) -> str:
    med = statistics.median(values)
    return f"{med:9.1f} {unit} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main(sys.argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="runs per row (default 3, 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="COUNT/10, one run: a smoke test")
    ap.add_argument("--only", choices=["bulk", "hs"], default=None)
    ap.add_argument("--sizes", default="65536,1024")
    ap.add_argument("--pairs", default="py>py,py>ref,ref>py,ref>ref,py*64>py",
                    help="SRC>DST list; py*N = Python source writing with send_many(N messages)")
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    div = 10 if args.quick else 1
    if not REF_MODULES.exists():
        sys.exit("reference packages missing: run `npm ci` in tests/interop")
    node_version = subprocess.run([args.node, "--version"], capture_output=True, text=True).stdout.strip()
    import nacl
    import trio

    print(f"# bench_transport {datetime.datetime.now().isoformat(timespec='seconds')}  "
          f"python {platform.python_version()} trio {trio.__version__} PyNaCl {nacl.__version__}  "
          f"node {node_version} @hyperswarm/secret-stream 6.9.2  cpus {os.cpu_count()}  runs {runs}"
          f"{'  QUICK' if args.quick else ''}")
    results: dict = {"bulk": {}, "hs": {}}
    pairs = [tuple(p.split(">")) for p in args.pairs.split(",")]

    if args.only in (None, "bulk"):
        for size in [int(s) for s in args.sizes.split(",")]:
            count = max(1, BULK_COUNTS.get(size, 20_000) // div)
            vals: dict = {p: [] for p in pairs}
            for r in range(runs):
                order = pairs[r % len(pairs):] + pairs[: r % len(pairs)]
                for p in order:
                    vals[p].append(bulk_run(p[0], p[1], size, count, args.node))
            ref = statistics.median(vals[("ref", "ref")]) if ("ref", "ref") in vals else None
            print(f"\nbulk {size} B messages × {count} (MB/s of plaintext at the sink)")
            for p in pairs:
                ratio = f"  {statistics.median(vals[p]) / ref:5.2f}x ref→ref" if ref else ""
                print(f"  {p[0]:>6}→{p[1]:<3} {fmt(vals[p], 'MB/s')}{ratio}")
                results["bulk"][f"{size}:{p[0]}>{p[1]}"] = vals[p]

    if args.only in (None, "hs"):
        count = max(10, HS_COUNT // div)
        vals = {"py": [], "ref": []}
        for r in range(runs):
            for impl in (["py", "ref"] if r % 2 == 0 else ["ref", "py"]):
                vals[impl].append(hs_run(impl, count, args.node))
        ref = statistics.median(vals["ref"])
        print(f"\nhandshakes/s ({count} sequential connections: TCP connect + Noise XX + headers + FIN each way)")
        for impl in ("py", "ref"):
            print(f"  {impl:>6}↔{impl:<3} {fmt(vals[impl], '/s  ')}  {statistics.median(vals[impl]) / ref:5.2f}x ref")
        results["hs"] = vals

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
