"""Must show 4: growth is seen live (04-corefs §3): a real ``tail -f -s 0.2`` process on a core
sees appends made by another process through the mount within 2 s."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time


def read_until(proc: subprocess.Popen, want: bytes, timeout: float, got: bytearray) -> float:
    """Read tail's stdout until ``want`` has appeared; returns the seconds it took."""
    t = time.monotonic()
    fd = proc.stdout.fileno()
    while want not in got:
        left = t + timeout - time.monotonic()
        if left <= 0:
            raise AssertionError(f"tail did not show {want!r} within {timeout} s; it showed {bytes(got)!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"tail exited: {proc.stderr.read()!r}")
            got += chunk
    return time.monotonic() - t


def test_tail_follows_appends_from_another_process(mount):
    log = mount.path("log")
    log.write_bytes(b"first line\n")
    tail = subprocess.Popen(["tail", "-f", "-s", "0.2", "-n", "+1", str(log)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    got = bytearray()
    try:
        read_until(tail, b"first line\n", 2, got)
        delays = []
        for i in range(6):
            line = b"appended %d by another process\n" % i
            # a separate process appends through the mount (as a logger would)
            subprocess.run([sys.executable, "-c",
                            "import sys; f = open(sys.argv[1], 'ab'); f.write(sys.argv[2].encode()); f.close()",
                            str(log), line.decode()], check=True)
            delays.append(read_until(tail, line, 2, got))
            time.sleep(0.05 * i)
        # a shell append and a bigger one (several blocks) too
        subprocess.run(["bash", "-c", f"echo from the shell >> {log}"], check=True)
        read_until(tail, b"from the shell\n", 2, got)
        big = b"".join(b"%06d\n" % i for i in range(30000))  # 210 KB: four blocks
        subprocess.run(["dd", f"of={log}", "oflag=append", "conv=notrunc", "status=none"], input=big, check=True)
        read_until(tail, b"029999\n", 2, got)
        assert bytes(got) == log.read_bytes()
        assert max(delays) < 2
    finally:
        tail.kill()
        tail.wait()
        tail.stdout.close()
        tail.stderr.close()


def test_stat_sees_growth_at_once(mount):
    """No stat ever reports a smaller size than before; appends from another process show at once."""
    log = mount.path("log")
    log.write_bytes(b"")
    fd = os.open(log, os.O_RDONLY)  # an open reader
    try:
        last = 0
        for i in range(20):
            subprocess.run(["bash", "-c", f"printf 'line {i}\\n' >> {log}"], check=True)
            size = os.fstat(fd).st_size
            assert size > last
            assert os.stat(log).st_size == size
            last = size
        assert os.pread(fd, 1000, 0) == b"".join(b"line %d\n" % i for i in range(20))
    finally:
        os.close(fd)
