"""Must show 5: open handles per core in ``corefs status --json``; after close they drop to 0
within a bounded wait and the core is released (no file of it open in the daemon any more)."""
from __future__ import annotations

import json
import os

from spacecorestore import crypto
from spacecorestore.listing import core_dir

from .conftest import corefs, wait_for

N = 7


def status_json(m) -> dict:
    r = corefs("status", "--json", m.mnt)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def handles(m, path: str) -> int:
    return next(c["handles"] for c in status_json(m)["cores"] if c["path"] == path)


def core_fds(m, path: str) -> list[str]:
    """The daemon's open files inside the core's directory in the store (from /proc/PID/fd)."""
    key = bytes.fromhex(os.getxattr(m.path(path.lstrip("/")), "user.spacecore.key").decode())
    d = str(m.store / core_dir(crypto.discovery_key(key))) + "/"
    out = []
    for fd in os.listdir(f"/proc/{m.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{m.pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(d):
            out.append(target)
    return out


def test_handles_counted_and_released(mount):
    m = mount
    os.mkdir(m.path("app"))
    m.path("app", "log").write_bytes(b"x" * 1000)
    m.path("other").write_bytes(b"y")
    wait_for(lambda: handles(m, "/app/log") == 0 and not core_fds(m, "/app/log"), 5, "the writer's release")
    assert not core_fds(m, "/other")

    fds = [os.open(m.path("app", "log"), os.O_RDONLY) for _ in range(N - 2)]
    fds += [os.open(m.path("app", "log"), os.O_WRONLY | os.O_APPEND), os.open(m.path("app", "log"), os.O_RDWR)]
    other = os.open(m.path("other"), os.O_RDONLY)
    try:
        st = status_json(m)
        by_path = {c["path"]: c for c in st["cores"]}
        assert by_path["/app/log"]["handles"] == N
        assert by_path["/app/log"]["replication_sessions"] == 0
        assert by_path["/other"]["handles"] == 1
        assert "handles 7" in corefs("status", m.mnt).stdout
        open_files = core_fds(m, "/app/log")
        assert any(f.endswith("/oplog") for f in open_files) and any(f.endswith("/data") for f in open_files)
        # the N sessions share one open core: each file of it is open once
        assert len(open_files) == len(set(open_files))
        os.write(fds[N - 2], b"more")
        assert os.pread(fds[0], 10, 1000) == b"more"  # every handle sees the append
    finally:
        for fd in fds:
            os.close(fd)
    wait_for(lambda: handles(m, "/app/log") == 0, 5, "handles to drop to 0")
    wait_for(lambda: not core_fds(m, "/app/log"), 5, "the core to be released")
    assert handles(m, "/other") == 1 and core_fds(m, "/other")
    os.close(other)
    wait_for(lambda: handles(m, "/other") == 0 and not core_fds(m, "/other"), 5, "the other core's release")
    assert all(c["handles"] == 0 for c in status_json(m)["cores"])
    # a process that dies with files open releases them too
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-c", "import os, sys, time\n"
                          "fds = [os.open(sys.argv[1], os.O_RDONLY) for _ in range(3)]\n"
                          "print('open', flush=True); time.sleep(60)", str(m.path("app", "log"))],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    assert handles(m, "/app/log") == 3
    p.kill()
    p.wait()
    p.stdout.close()
    wait_for(lambda: handles(m, "/app/log") == 0 and not core_fds(m, "/app/log"), 5, "release after a kill")
