"""Must show 6: ``kill -9`` of the serving process while another process appends through the
mount and fsyncs.  ``corefs mount`` works again (it cleans the dead mount), and every fsync'd
byte is there and verifies: read back through the new mount, and by opening the store with
spacecorestore after unmounting."""
from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
import time

import pytest

from .conftest import corefs, mount_entry, read_core

WRITER = r"""
import os, sys

def record(i):
    return b"%08d " % i + bytes([97 + i % 26]) * (i * 37 % 300) + b"\n"

path, start = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
i = start
while True:
    rec = record(i)
    try:
        os.write(fd, rec)
        os.fsync(fd)
    except OSError as e:
        print("error", e.errno, flush=True)
        break
    i += 1
    print("synced", i, os.fstat(fd).st_size, flush=True)
"""


def record(i: int) -> bytes:
    """Record i of the stream: varying lengths, its number first (the same as in WRITER)."""
    return b"%08d " % i + bytes([97 + i % 26]) * (i * 37 % 300) + b"\n"


def stream(n: int) -> bytes:
    return b"".join(record(i) for i in range(n))


def parse_records(data: bytes) -> int:
    """How many whole records ``data`` holds; fails unless it is exactly a prefix of the stream."""
    n = pos = 0
    while pos < len(data):
        rec = record(n)
        assert data[pos : pos + len(rec)] == rec, f"record {n} at byte {pos} is wrong"
        pos += len(rec)
        n += 1
    return n


def run_writer_then_kill(m, start: int, min_syncs: int = 150) -> tuple[int, int]:
    """Start the writer, kill -9 the daemon once it has fsync'd ``min_syncs`` records; returns
    (records fsync'd, bytes fsync'd) as the writer reported them."""
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(m.path("log")), str(start)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    synced = (start, None)
    buf = b""
    killed = False
    deadline = time.monotonic() + 30
    try:
        while True:
            assert time.monotonic() < deadline, "the writer did not make progress"
            r, _, _ = select.select([w.stdout], [], [], 0.5)
            if not r:
                continue
            chunk = os.read(w.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for ln in lines:
                parts = ln.split()
                if parts[0] == b"synced":
                    synced = (int(parts[1]), int(parts[2]))
            if not killed and synced[0] - start >= min_syncs:
                m.kill9()  # while the writer is in the middle of its loop
                killed = True
        assert killed, f"the writer stopped early: {w.stderr.read()!r}"
        w.wait(10)
        err = w.stderr.read()
        assert b"Traceback" not in err, err
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
        w.stdout.close()
        w.stderr.close()
    return synced


def test_kill9_during_append_loop(mounts):
    m = mounts()
    m.start()
    m.path("log").write_bytes(b"")
    key = bytes.fromhex(os.getxattr(m.path("log"), "user.spacecore.key").decode())
    total = 0
    for round_ in range(3):
        n, nbytes = run_writer_then_kill(m, total)
        assert nbytes == len(stream(n))
        # the mount is dead: the kernel answers ENOTCONN until it is cleaned
        assert mount_entry(m.mnt) is not None
        with pytest.raises(OSError) as info:
            os.listdir(m.mnt)
        assert info.value.errno == errno.ENOTCONN
        # corefs mount cleans the dead mount and mounts again (background mode)
        r = corefs("mount", m.store, m.mnt, "--log-file", m.log)
        assert r.returncode == 0, r.stderr
        assert "dead mount" in r.stderr
        m.adopt()
        data = m.path("log").read_bytes()
        got = parse_records(data)
        assert got >= n and data[:nbytes] == stream(n)  # every fsync'd record, and nothing torn
        total = got
    assert m.umount() is None
    content, length = read_core(m.store, key)  # every block checked against the signed tree
    assert content == stream(total) and length >= 3 * 150


def test_corefs_umount_cleans_a_dead_mount(mounts):
    m = mounts().start()
    m.path("f").write_bytes(b"x")
    m.kill9()
    assert mount_entry(m.mnt) is not None
    r = corefs("umount", m.mnt)
    assert r.returncode == 0, r.stderr
    assert mount_entry(m.mnt) is None and os.listdir(m.mnt) == []
    # and status says the socket is stale (then removes it)
    r = corefs("status", m.mnt)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    m.start()
    assert m.path("f").read_bytes() == b"x"
