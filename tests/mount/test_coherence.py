"""Readers never see a stale page cache (04-corefs §3 durability and growth, §8 sizes).

Handles that can write bypass the kernel's page cache (FOPEN_DIRECT_IO) while read-only handles
keep it (keep_cache).  A reader that has read up to the end of a core holds the partial last page
in the cache, zero-filled past the old end; after an append through the mount that page must not
be served again, or the reader gets zeros (or stale bytes) where the new record is.  The kernel
drops a file's pages (FUSE auto_inval_data) when its mtime changes, so every append must move
``st_mtime_ns`` forward, also two appends within one clock tick, and a remount reports the last
mtime seen.

The guarantee checked is the one of §3: when ``write(2)`` returns, a following read anywhere sees
the bytes.  No test sleeps: the reader reads right after the writer's ``write(2)`` returned.
Records are random bytes with no zero byte, so a zero-filled read can never pass by chance.

Kernels differ in how much they rely on the mtime: since Linux 6.6 a direct write itself drops the
cached pages it writes over ("fuse: invalidate page cache pages before direct write"), and on
6.18 the reader tests here pass even with an mtime that never moves (tried by mutation); they
matter for older kernels and for the racing reader of
``test_reader_sees_appends_while_another_reader_races_them``.  The mtime tests check the
mtime itself on every kernel.
"""
from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

# a writer in another process: length-prefixed records on stdin, each appended with one write(2)
# on an O_WRONLY|O_APPEND fd; after write(2) returned it answers with the count written
WRITER = r"""
import os, struct, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    hdr = inp.read(4)
    if len(hdr) < 4:
        break
    data = inp.read(struct.unpack("<I", hdr)[0])
    out.write(struct.pack("<q", os.write(fd, data)))
    out.flush()
os.close(fd)
"""


class RemoteWriter:
    """An appender in a separate process (as a logger would be); ``append`` returns once the
    other process's ``write(2)`` has returned."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def append(self, data: bytes) -> int:
        self.proc.stdin.write(struct.pack("<I", len(data)) + data)
        self.proc.stdin.flush()
        ans = self.proc.stdout.read(8)
        if len(ans) < 8:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"the writer process died: {err.decode(errors='replace')}")
        return struct.unpack("<q", ans)[0]

    def close(self) -> None:
        self.proc.stdin.close()
        rc = self.proc.wait(30)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert rc == 0, f"the writer process exited {rc}: {err.decode(errors='replace')}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


class LocalWriter:
    """An appender in the test process: its own O_WRONLY|O_APPEND fd."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def append(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)

    kill = close


WRITERS = {"other-process": RemoteWriter, "same-process": LocalWriter}

# a reader in another process that keeps reading the file's last page until its stdin closes (at
# most argv[2] seconds); it prints how many reads it made
HAMMER = r"""
import os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
deadline = time.monotonic() + float(sys.argv[2])
reads = base = 0
sys.stdout.write("ready\n")
sys.stdout.flush()
while time.monotonic() < deadline:
    for _ in range(32):
        end = base + len(os.pread(fd, 1 << 16, base))
        base = (end - 1) & ~4095 if end else 0
    reads += 32
    if select.select([sys.stdin], [], [], 0)[0]:
        break
print(reads)
"""


class Hammer:
    """A concurrent reader of the last page (see HAMMER): it asks for the page at the end again
    and again, also between a direct write's dropping of that page and the WRITE's reply, so the
    page can be cached with the content from before the append."""

    MAX = 30.0

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HAMMER, str(path), str(self.MAX)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if self.proc.stdout.readline() != b"ready\n":
            self.stop()

    def stop(self) -> int:
        """The number of reads it made."""
        out, err = self.proc.communicate(timeout=self.MAX + 10)
        assert self.proc.returncode == 0, f"the reading process exited {self.proc.returncode}: {err.decode()}"
        return int(out.split()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


def record(rng: random.Random, n: int) -> bytes:
    """``n`` random bytes, none of them zero."""
    return rng.randbytes(n).replace(b"\0", b"\x01")


def small(rng: random.Random) -> int:
    return rng.randint(1, 100)


def mixed(rng: random.Random) -> int:
    """Sizes that cross page boundaries and the 64 KiB block size, with small ones between."""
    return rng.choice([1, 4095, 4096, 4097, 5000, 70000, 131072 + 3, rng.randint(1, 100),
                       rng.randint(100, 20000)])


def read_all(fd: int) -> bytes:
    """The whole file through ``fd`` (pread from 0 to EOF)."""
    parts, off = [], 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            return b"".join(parts)
        parts.append(b)
        off += len(b)


def describe(got: bytes, want: bytes, off: int) -> str:
    if len(got) != len(want):
        what = f"{len(got)} bytes instead of {len(want)}"
    else:
        i = next(i for i in range(len(want)) if got[i] != want[i])
        what = f"first difference at offset {off + i}"
    zeros = len(got) - len(got.lstrip(b"\0"))
    return f"{what}; the read began with {zeros} zero bytes (a stale cached page reads as zeros)"


def follow(path: Path, writer, n: int, size, seed: int, *, fresh: bool = False) -> bytes:
    """``writer`` appends ``n`` random records of ``size(rng)`` bytes to ``path``; after each
    ``write(2)`` returned, a reader must read exactly the new bytes at the old end (never zeros,
    never short) and see the new size:

    * a long-lived O_RDONLY fd that read the whole file first (``pread`` at the old end and
      ``fstat``), or, with ``fresh``, a new O_RDONLY open for every record;
    * a tail-like fd reading on from its position with ``read``.

    Both fds read up to the end each time, so the partial last page is always in the cache when
    the next append comes.  Returns the content."""
    rng = random.Random(seed)
    want = bytearray(path.read_bytes())
    rfd = os.open(path, os.O_RDONLY)
    tfd = os.open(path, os.O_RDONLY)
    try:
        assert read_all(rfd) == want
        assert os.read(tfd, len(want) + 1) == want
        for i in range(n):
            rec = record(rng, size(rng))
            end = len(want)
            assert writer.append(rec) == len(rec)
            want += rec
            where = f"append {i} of {len(rec)} bytes at {end} (seed {seed})"
            fd = os.open(path, os.O_RDONLY) if fresh else rfd
            try:
                got = os.pread(fd, len(rec) + 1, end)
                assert got == rec, f"{where}: pread at the old end: {describe(got, rec, end)}"
                st = os.fstat(fd)
                assert st.st_size == len(want), f"{where}: fstat of the reader says {st.st_size}"
            finally:
                if fresh:
                    os.close(fd)
            got = os.read(tfd, len(rec) + 1)
            assert got == rec, f"{where}: read on from the old end: {describe(got, rec, end)}"
            if i % 97 == 0:
                assert read_all(rfd) == want, f"{where}: the whole file differs"
        assert read_all(rfd) == want
        assert os.read(tfd, 1) == b""
    finally:
        os.close(rfd)
        os.close(tfd)
    assert path.read_bytes() == want
    assert os.stat(path).st_size == len(want)
    return bytes(want)


def run_follow(path: Path, kind: str, n: int, size, seed: int, **kw) -> bytes:
    w = WRITERS[kind](path)
    try:
        out = follow(path, w, n, size, seed, **kw)
    except BaseException:
        w.kill()
        raise
    w.close()
    return out


def seed_core(path: Path, rng_seed: int, n: int = 3000) -> None:
    """A non-empty core whose end is inside a page (one write: one block)."""
    path.write_bytes(record(random.Random(rng_seed), n))


# 1. a long-lived reader against small appends ---------------------------------------------------

@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_long_lived_reader_sees_small_appends(mount, kind):
    log = mount.path("log")
    seed_core(log, 1)
    n = 800 if kind == "other-process" else 2000
    run_follow(log, kind, n, small, seed=11)


def test_reader_of_an_empty_core_sees_the_first_appends(mount):
    log = mount.path("log")
    log.write_bytes(b"")
    run_follow(log, "same-process", 300, small, seed=12)


# 2. a fresh open per read, and big appends across pages -------------------------------------------

@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_fresh_open_reader_sees_small_appends(mount, kind):
    log = mount.path("log")
    seed_core(log, 2)
    run_follow(log, kind, 500, small, seed=21, fresh=True)


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("fresh", [False, True], ids=["long-lived", "fresh-open"])
def test_reader_sees_appends_across_pages(mount, kind, fresh):
    log = mount.path("log")
    seed_core(log, 3)
    run_follow(log, kind, 80, mixed, seed=31, fresh=fresh)


@pytest.mark.parametrize("size", [5000, 70000])
def test_reader_sees_large_appends_of_one_size(mount, size):
    log = mount.path("log")
    seed_core(log, 4, n=100)
    run_follow(log, "same-process", 40, lambda rng: size, seed=41 + size)


def test_two_cores_followed_at_once(mount):
    """Appends alternate between two cores: each reader's pages belong to its own core."""
    rng = random.Random(5)
    paths = [mount.path("a"), mount.path("b")]
    for i, p in enumerate(paths):
        seed_core(p, 50 + i)
    want = [bytearray(p.read_bytes()) for p in paths]
    writers = [LocalWriter(p) for p in paths]
    readers = [os.open(p, os.O_RDONLY) for p in paths]
    try:
        for r, w in zip(readers, want):
            assert read_all(r) == w
        for i in range(600):
            k = rng.randrange(2)
            rec = record(rng, small(rng))
            end = len(want[k])
            assert writers[k].append(rec) == len(rec)
            want[k] += rec
            got = os.pread(readers[k], len(rec) + 1, end)
            assert got == rec, f"append {i} to {paths[k].name} at {end}: {describe(got, rec, end)}"
        for r, w in zip(readers, want):
            assert read_all(r) == w
    finally:
        for fd in readers:
            os.close(fd)
        for w in writers:
            w.close()
    for p, w in zip(paths, want):
        assert p.read_bytes() == w


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_reader_sees_appends_while_another_reader_races_them(mount, kind):
    """Two other processes read the last page without a pause while the appends go on.  A direct
    write makes the kernel drop the cached pages it writes over (Linux >= 6.6), but such a reader
    can read the old last page in again before the WRITE is answered (a --debug-fuse trace shows
    READs answered with the old length between a WRITE and its reply); then the moved mtime is
    what makes the kernel drop that copy before our read right after write(2) returned."""
    log = mount.path("log")
    seed_core(log, 10)
    hammers = [Hammer(log) for _ in range(2)]
    try:
        run_follow(log, kind, 1000, small, seed=101)
    except BaseException:
        for h in hammers:
            h.kill()
        raise
    for h in hammers:
        reads = h.stop()
        assert reads > 1000, f"the racing reader made only {reads} reads"


# 3. a read-write handle reads back what it wrote ---------------------------------------------------

@pytest.mark.parametrize("create", [False, True], ids=["existing", "created"])
def test_rdwr_append_handle_reads_back_its_writes(mount, create):
    rng = random.Random(6)
    log = mount.path("log")
    if create:
        fd = os.open(log, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        want = bytearray()
    else:
        seed_core(log, 60)
        want = bytearray(log.read_bytes())
        fd = os.open(log, os.O_RDWR | os.O_APPEND)
    rfd = os.open(log, os.O_RDONLY)
    try:
        assert read_all(fd) == want
        assert read_all(rfd) == want
        for i in range(600):
            rec = record(rng, mixed(rng) if i % 10 == 0 else small(rng))
            end = len(want)
            assert os.write(fd, rec) == len(rec)
            want += rec
            assert os.lseek(fd, 0, os.SEEK_CUR) == len(want), f"append {i}: position after write"
            got = os.pread(fd, len(rec) + 1, end)
            assert got == rec, f"append {i} at {end}, read back on the same fd: {describe(got, rec, end)}"
            assert os.read(fd, 1) == b"", f"append {i}: read at the position after the write"
            got = os.pread(rfd, len(rec) + 1, end)
            assert got == rec, f"append {i} at {end}, the O_RDONLY reader: {describe(got, rec, end)}"
            assert os.fstat(fd).st_size == os.fstat(rfd).st_size == len(want)
        os.lseek(fd, 0, os.SEEK_SET)
        got = bytearray()
        while chunk := os.read(fd, 65536):
            got += chunk
        assert got == want
    finally:
        os.close(fd)
        os.close(rfd)
    assert log.read_bytes() == want


# 4. every append moves the mtime, and a remount shows the last one ------------------------------------

def test_every_append_moves_the_mtime_and_a_remount_keeps_it(mounts):
    m = mounts().start()
    rng = random.Random(7)
    log = m.path("log")
    seed_core(log, 70)
    last = os.stat(log).st_mtime_ns
    # two handles of the same core, used in turn, and back-to-back appends with no stat between
    w1 = os.open(log, os.O_WRONLY | os.O_APPEND)
    w2 = os.open(log, os.O_WRONLY | os.O_APPEND)
    rfd = os.open(log, os.O_RDONLY)
    try:
        seen = [last]
        for i in range(600):
            fd = (w1, w2)[i % 2]
            os.write(fd, record(rng, small(rng)))
            if i % 3 == 2:
                os.write((w1, w2)[(i + 1) % 2], record(rng, small(rng)))
            st = os.stat(log)
            assert st.st_mtime_ns > last, (f"append {i}: st_mtime_ns {st.st_mtime_ns} did not move "
                                           f"forward from {last}")
            assert st.st_ctime_ns == st.st_mtime_ns
            # every handle of the core shows the same attributes
            assert os.fstat(fd).st_mtime_ns == os.fstat(rfd).st_mtime_ns == st.st_mtime_ns
            last = st.st_mtime_ns
            seen.append(last)
        assert len(set(seen)) == len(seen)
        assert os.stat(log).st_mtime_ns == last  # nothing changed, neither does the mtime
    finally:
        os.close(w1)
        os.close(w2)
        os.close(rfd)
    size = os.stat(log).st_size
    assert os.stat(log).st_mtime_ns == last, "closing the writers changed the mtime"
    assert m.umount() == 0
    m.start()
    st = os.stat(log)
    assert st.st_size == size
    assert st.st_mtime_ns == last, f"after a remount st_mtime_ns is {st.st_mtime_ns}, last seen {last}"
    # and appending after the remount moves it on from there
    with open(log, "ab") as f:
        f.write(b"after the remount\n")
    assert os.stat(log).st_mtime_ns > last


def test_mtime_moves_for_appends_from_another_process(mount):
    log = mount.path("log")
    seed_core(log, 71)
    rng = random.Random(8)
    w = RemoteWriter(log)
    try:
        last = os.stat(log).st_mtime_ns
        for i in range(400):
            w.append(record(rng, small(rng)))
            now = os.stat(log).st_mtime_ns
            assert now > last, f"append {i}: st_mtime_ns {now} did not move forward from {last}"
            last = now
    except BaseException:
        w.kill()
        raise
    w.close()


# 5. the same on a --direct-io mount ------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_direct_io_mount_reader_sees_appends(mounts, kind):
    m = mounts(name="direct").start("--direct-io")
    log = m.path("log")
    seed_core(log, 9)
    run_follow(log, kind, 500, small, seed=91)
    run_follow(log, kind, 40, mixed, seed=92, fresh=True)


def test_mmap_of_read_handles_follows_appends_and_write_handles_refuse_shared_maps(mount):
    """Read-only handles keep the page cache, so mmap works there and sees what was appended
    before it was mapped; a handle that can write bypasses the cache, and the kernel refuses a
    MAP_SHARED mapping of it with ENODEV (a MAP_PRIVATE one works)."""
    import errno
    import mmap

    path = mount.path("mapped")
    path.write_bytes(b"first\n")
    with open(path, "ab") as w:
        w.write(b"second\n")
        w.flush()
        fd = os.open(path, os.O_RDONLY)
        try:
            with mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                assert m[:] == b"first\nsecond\n"
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        with pytest.raises(OSError) as ei:
            mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        assert ei.value.errno == errno.ENODEV
        with mmap.mmap(fd, 0, mmap.MAP_PRIVATE, mmap.PROT_READ) as m:
            assert m[:] == b"first\nsecond\n"
    finally:
        os.close(fd)
