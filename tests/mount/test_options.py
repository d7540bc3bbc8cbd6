"""Mount options and commands not covered elsewhere: ``--allow-other`` (another user reads the
mount only with it) and ``corefs status --watch`` (repeats until interrupted, follows growth)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import Mount, mount_entry

SETPRIV = shutil.which("setpriv")
NOBODY = 65534


def as_nobody(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


@pytest.fixture
def public_dir():
    """A directory another user can traverse (pytest's own tmp dirs are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="corefs-public-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None,
                    reason="needs root and setpriv (util-linux) to read the mount as another user")
@pytest.mark.parametrize("allow", [False, True])
def test_allow_other_lets_another_user_read(tmp_path, public_dir, allow):
    m = Mount(tmp_path / "store", public_dir / "mnt", tmp_path / "m.log")
    try:
        m.start(*(["--allow-other"] if allow else []))
        assert ("allow_other" in mount_entry(m.mnt)["options"]) == allow
        m.path("log").write_bytes(b"shared line\n")
        r = as_nobody("cat", str(m.path("log")))
        if allow:
            assert r.returncode == 0 and r.stdout == "shared line\n", r.stderr
            w = as_nobody("sh", "-c", f"echo more >> {m.path('log')}")
            assert w.returncode != 0 and "Permission denied" in w.stderr  # 0644, owned by the mounting user
            assert m.path("log").read_bytes() == b"shared line\n"
        else:
            assert r.returncode != 0 and "Permission denied" in r.stderr
    finally:
        m.cleanup()
    m.check_log()


def test_status_watch_repeats_follows_growth_and_stops_on_sigint(mount):
    mount.path("log").write_bytes(b"one\n")
    p = subprocess.Popen([sys.executable, "-m", "corefs.cli", "status", "--watch", str(mount.mnt)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def core_line() -> str:
        for _ in range(20):  # a mount line, then one line per core
            line = p.stdout.readline()
            assert line, p.stderr.read()
            if line.strip().startswith("/log "):
                return line
        raise AssertionError("no line for /log")

    try:
        first = core_line()
        assert " 1 blocks " in first and " 4 bytes " in first, first
        with open(mount.path("log"), "ab") as f:
            f.write(b"two\n")
        for _ in range(5):  # one report a second
            if " 2 blocks " in core_line():
                break
        else:
            raise AssertionError("status --watch never showed the second block")
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 130
        assert "Traceback" not in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_status_watch_ends_with_one_line_when_the_mount_goes_away(mounts):
    m = mounts().start()
    p = subprocess.Popen([sys.executable, "-m", "corefs.cli", "status", "--watch", str(m.mnt)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith(str(m.mnt))
        m.umount()
        assert p.wait(10) != 0
        err = p.stderr.read()
        assert err.count("\n") == 1 and "not a corefs mount" in err and "Traceback" not in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
