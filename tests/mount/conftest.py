"""Real corefs mounts for the tests in tests/mount/ (04-corefs §8, testing advice).

Every mount is served by a subprocess (``python -m corefs.cli mount -f`` in a Popen,
or the detached background mode); the test process only reads and writes through
the kernel.  Start-up polls the mount table and fails fast if the process died;
teardown ALWAYS unmounts (``corefs umount``, then ``fusermount3 -u -z``) and
kills the serving process by its PID, never by name.  Any WARNING/ERROR/CRITICAL
line or traceback in the mount's log file fails the test unless the test allowed
it (``mount.allow_log(regex)``).

Skipped (with the reason) only when /dev/fuse or fusermount3 is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from corefs import control
from tests.vfs import storeutil

PY = sys.executable
FUSERMOUNT = shutil.which("fusermount3")
START_TIMEOUT = 20.0
BAD_LOG = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) |Traceback \(most recent call last\)")

if not os.path.exists("/dev/fuse"):
    pytest.skip("no /dev/fuse on this machine: corefs mount tests need FUSE", allow_module_level=True)
if FUSERMOUNT is None:
    pytest.skip("fusermount3 is not installed (apt fuse3): corefs mount tests need it", allow_module_level=True)


def corefs(*args: str | os.PathLike, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run the ``corefs`` command (this interpreter, ``-m corefs.cli``)."""
    return subprocess.run([PY, "-m", "corefs.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def sh(cmd: str, *, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """A shell command (bash), output captured as text."""
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd!r} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mount_entry(mnt: str | os.PathLike) -> dict | None:
    """The mount table entry of ``mnt`` (also for a dead FUSE mount, which os.path.ismount misses)."""
    real = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if _unescape(fields[4]) == real:
                return {"fstype": fields[sep + 1], "source": _unescape(fields[sep + 2]),
                        "options": fields[5] + "," + fields[sep + 3]}
    return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def wait_for(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


LIVE: set["Mount"] = set()  # mounts whose serving process may be running (for the watchdog)
WATCHDOG_SECONDS = 90.0


@pytest.fixture(autouse=True)
def watchdog():
    """A test stuck in a syscall on a hung mount fails instead of hanging the suite: after
    WATCHDOG_SECONDS every serving process is killed (by PID), so the kernel answers ENOTCONN."""
    fired = []

    def fire():
        fired.append(True)
        for m in list(LIVE):
            if m.pid is not None and pid_alive(m.pid):
                os.kill(m.pid, signal.SIGKILL)

    t = threading.Timer(WATCHDOG_SECONDS, fire)
    t.daemon = True
    t.start()
    yield
    t.cancel()
    if fired:
        pytest.fail(f"the test took over {WATCHDOG_SECONDS} s: its mounts were killed", pytrace=False)


class Mount:
    """One store mounted on one directory by a corefs subprocess."""

    def __init__(self, store: Path, mnt: Path, log: Path) -> None:
        self.store, self.mnt, self.log = Path(store), Path(mnt), Path(log)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None  # foreground mode: our child
        self.pid: int | None = None  # the serving process
        self.stderr_path = self.log.with_suffix(".stderr")
        self.allowed: list[re.Pattern] = []
        self.log_checked = 0  # lines of the log already checked

    # start and stop -----------------------------------------------------------------------

    def start(self, *opts: str, background: bool = False) -> "Mount":
        """Mount and wait until it is live; ``opts`` are extra mount options."""
        assert self.pid is None or not pid_alive(self.pid), "already mounted"
        LIVE.add(self)
        args = [str(self.store), str(self.mnt), "--log-file", str(self.log), *opts]
        if background:
            r = corefs("mount", *args)
            if r.returncode != 0:
                raise AssertionError(f"corefs mount failed ({r.returncode}): {r.stderr}{self.log_tail()}")
            assert mount_entry(self.mnt), "corefs mount returned 0 but nothing is mounted"
            self.proc = None
            self.pid = self.status()["pid"]
            return self
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([PY, "-m", "corefs.cli", "mount", "-f", *args], stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
        self.pid = self.proc.pid
        sock = control.socket_path(self.mnt)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"the mount process exited {rc} before the mount was live:\n"
                                     f"{self.stderr_path.read_text(errors='replace')}{self.log_tail()}")
            if os.path.ismount(self.mnt) and sock.exists():
                return self
            if time.monotonic() > deadline:
                self.cleanup()
                raise AssertionError(f"the mount was not live within {START_TIMEOUT} s{self.log_tail()}")
            time.sleep(0.02)

    def adopt(self) -> "Mount":
        """Take over a mount started by a ``corefs mount`` run by the test itself."""
        self.proc = None
        self.pid = self.status()["pid"]
        LIVE.add(self)
        return self

    def umount(self, timeout: float = 30) -> int | None:
        """``corefs umount`` (must succeed); returns the serving process's exit status if it is our child."""
        r = corefs("umount", self.mnt, timeout=timeout)
        assert r.returncode == 0, f"corefs umount failed: {r.stderr}{self.log_tail()}"
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 30) -> int | None:
        if self.proc is not None:
            rc = self.proc.wait(timeout)
            self.proc = None
            self.pid = None
            return rc
        if self.pid is not None:
            pid = self.pid
            wait_for(lambda: not pid_alive(pid), timeout, f"the serving process {pid} to exit")
            self.pid = None
        return None

    def kill9(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
            self.proc = None
        else:
            pid = self.pid
            wait_for(lambda: not pid_alive(pid), 10, f"{pid} to die")
        self.pid = None

    def cleanup(self) -> None:
        """Whatever state it is in: unmounted, and the serving process gone."""
        if mount_entry(self.mnt) is not None:
            try:
                r = corefs("umount", self.mnt, timeout=20)
                ok = r.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if not ok or mount_entry(self.mnt) is not None:
                subprocess.run([FUSERMOUNT, "-u", "-z", str(self.mnt)], capture_output=True, timeout=20)
        pid = self.pid
        if pid is not None:
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        self.pid = None
        LIVE.discard(self)

    # talking to it ------------------------------------------------------------------------

    def status(self) -> dict:
        """The status object, straight from the control socket (what ``corefs status --json`` prints)."""
        return control.request(control.socket_path(self.mnt), {"op": "status"})

    def core_status(self, path: str) -> dict:
        for c in self.status()["cores"]:
            if c["path"] == path:
                return c
        raise AssertionError(f"no core {path} in status")

    def path(self, *parts: str) -> Path:
        return self.mnt.joinpath(*parts)

    # the log --------------------------------------------------------------------------------

    def allow_log(self, pattern: str) -> None:
        """Lines matching ``pattern`` (re.search) are expected WARNING/ERROR lines of this test."""
        self.allowed.append(re.compile(pattern))

    def log_lines(self) -> list[str]:
        try:
            return self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def log_mark(self) -> int:
        return len(self.log_lines())

    def log_since(self, mark: int) -> list[str]:
        return self.log_lines()[mark:]

    def wait_log(self, mark: int, pattern: str, timeout: float = 3.0) -> str:
        """The first line after ``mark`` matching ``pattern`` (the daemon logs before it answers)."""
        rx = re.compile(pattern)

        def find():
            return next((ln for ln in self.log_since(mark) if rx.search(ln)), None)

        try:
            return wait_for(find, timeout, f"a log line matching {pattern!r}")
        except AssertionError:
            raise AssertionError(f"no log line matching {pattern!r}; new lines:\n" +
                                 "\n".join(self.log_since(mark))) from None

    def log_tail(self, n: int = 30) -> str:
        lines = self.log_lines()[-n:]
        return ("\n--- log " + str(self.log) + ":\n" + "\n".join(lines)) if lines else ""

    def check_log(self) -> None:
        """Fail on unexpected WARNING/ERROR/CRITICAL lines or tracebacks since the last check."""
        lines = self.log_lines()
        new, self.log_checked = lines[self.log_checked:], len(lines)
        bad = [ln for ln in new if BAD_LOG.search(ln) and not any(p.search(ln) for p in self.allowed)]
        try:
            err = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            err = ""
        if "Traceback" in err:
            bad.append("stderr of the mount process:\n" + err)
        if bad:
            pytest.fail("unexpected WARNING/ERROR in the mount's log:\n" + "\n".join(bad), pytrace=False)


@pytest.fixture
def mounts(tmp_path):
    """A factory ``mounts(store=None, name="m") -> Mount`` (not started); all are cleaned up and
    their logs checked after the test."""
    made: list[Mount] = []

    def make(store: Path | None = None, name: str = "m") -> Mount:
        m = Mount(store or tmp_path / f"{name}-store", tmp_path / f"{name}-mnt", tmp_path / f"{name}.log")
        made.append(m)
        return m

    yield make
    for m in made:
        m.cleanup()
    for m in made:
        m.check_log()


@pytest.fixture
def mount(mounts):
    """A live mount of a new, empty store."""
    return mounts().start()


def shared_mount(store_setup=None, *opts: str):
    """A module-scoped mount fixture (one mount for many tests); ``store_setup(store_path)`` fills
    the store before mounting.  Use it together with ``checked`` (below) per test."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory):
        base = tmp_path_factory.mktemp("shared")
        m = Mount(base / "store", base / "mnt", base / "mount.log")
        if store_setup is not None:
            store_setup(m.store)
        m.start(*opts)
        try:
            yield m
        finally:
            m.cleanup()
        m.check_log()

    return fixture


@pytest.fixture
def checked():
    """``checked(m)`` -> m, and the log lines ``m`` writes during this test are checked after it."""
    used: list[Mount] = []

    def use(m: Mount) -> Mount:
        m.check_log()  # lines of earlier tests are theirs
        m.allowed = []
        used.append(m)
        return m

    yield use
    for m in used:
        m.check_log()
        m.allowed = []


# filling stores without a mount (as a reference program would) -----------------------------------

def populate(store: Path, cores: dict[tuple[tuple[str, ...], str], list[bytes]], namespaces=()) -> dict:
    """Create named cores with spacecorestore; ``namespaces`` become known (namespaces.json).
    Returns {(ns path, name): key}."""
    keys = trio.run(storeutil.populate, store, cores)
    if namespaces:
        (store / "corefs").mkdir(exist_ok=True)
        (store / "corefs" / "namespaces.json").write_text(json.dumps([list(p) for p in namespaces]))
    return keys


def read_core(store: Path, key: bytes) -> tuple[bytes, int]:
    """(content, length) of a core, every block checked against its hash, by opening the store
    with spacecorestore (the store must not be mounted)."""
    from spacecorestore import Corestore

    async def go():
        async with Corestore(str(store)) as s:
            c = s.get(key)
            await c.ready()
            out = b"".join([await c.get(i) for i in range(c.length)])
            n = c.length
            await c.close()
            return out, n

    return trio.run(go)
