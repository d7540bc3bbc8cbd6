"""Starting and stopping (04-corefs §1, §6): clean unmount on SIGTERM, SIGINT, ``corefs umount``
and ``fusermount3 -u``; the background mode; ``corefs status``; user errors as one line."""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import time

import pytest

from corefs import control

from .conftest import FUSERMOUNT, PY, corefs, mount_entry, pid_alive, populate, read_core, wait_for


def _write_some(m) -> bytes:
    data = b"".join(b"line %d\n" % i for i in range(50))
    with open(m.path("log"), "ab") as f:
        for i in range(0, len(data), 70):
            f.write(data[i : i + 70])
            f.flush()
    os.mkdir(m.path("app"))
    with open(m.path("app", "x"), "wb") as f:
        f.write(b"x" * 100000)
    return data


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "corefs umount", "fusermount3 -u", "control umount"])
def test_clean_unmount(mounts, how):
    m = mounts().start()
    data = _write_some(m)
    key = bytes.fromhex(os.getxattr(m.path("log"), "user.spacecore.key").decode())
    entry = mount_entry(m.mnt)
    assert entry["fstype"] == "fuse.corefs" and entry["source"] == str(m.store)
    held = os.open(m.path("log"), os.O_RDONLY)  # an open file does not stop a signal-driven unmount
    assert os.read(held, 10) == data[:10]
    if how in ("SIGTERM", "SIGINT"):
        m.proc.send_signal(getattr(signal, how))
    elif how == "control umount":
        assert control.request(control.socket_path(m.mnt), {"op": "umount"}) == {"ok": True}
    else:
        os.close(held)  # these refuse a busy mount
        held = None
    if held is not None:
        wait_for(lambda: mount_entry(m.mnt) is None, 10, "the unmount")
        try:
            os.close(held)  # the connection is gone: ECONNABORTED is allowed here
        except OSError:
            pass
    if how == "corefs umount":
        r = corefs("umount", m.mnt)
        assert r.returncode == 0, r.stderr
    elif how == "fusermount3 -u":
        subprocess.run([FUSERMOUNT, "-u", str(m.mnt)], check=True, timeout=20)
    rc = m.wait_exit(20)
    assert rc == 0, m.log_tail()
    assert mount_entry(m.mnt) is None and os.listdir(m.mnt) == []
    assert not control.socket_path(m.mnt).exists()
    lines = m.log_lines()
    assert any("unmounting" in ln for ln in lines), m.log_tail()
    # flushed and closed: the lock is free and everything is there
    content, length = read_core(m.store, key)
    assert content == data and length == -(-len(data) // 70)
    m.start()  # and it mounts again
    assert m.path("log").read_bytes() == data and len(m.path("app", "x").read_bytes()) == 100000


def test_background_mode(mounts):
    m = mounts()
    m.start(background=True)
    assert m.proc is None and pid_alive(m.pid)
    st = json.loads(corefs("status", "--json", m.mnt).stdout)
    assert st["pid"] == m.pid and st["mountpoint"] == str(m.mnt) and st["store"] == str(m.store)
    assert st["read_only"] is False and st["cores"] == [] and st["peers"] == []
    (m.mnt / "log").write_bytes(b"hello\n")
    st = json.loads(corefs("status", "--json", m.mnt).stdout)
    assert st["cores"] == [{"path": "/log", "key": st["cores"][0]["key"], "length": 1, "byte_length": 6,
                            "contiguous_length": 1, "handles": 0, "replication_sessions": 0, "peers": 0}]
    text = corefs("status", m.mnt).stdout
    assert "/log" in text and "handles 0" in text
    every = json.loads(corefs("status", "--json").stdout)
    assert any(s["mountpoint"] == str(m.mnt) for s in every)
    info = corefs("info", m.path("log"))
    assert info.returncode == 0 and "byte_length: 6" in info.stdout and "writable: 1" in info.stdout
    # the detached server: own session, no terminal, stdio away from us
    assert os.getsid(m.pid) == m.pid
    assert stat.S_ISSOCK(os.stat(control.socket_path(m.mnt)).st_mode)
    assert stat.S_IMODE(os.stat(control.socket_path(m.mnt)).st_mode) == 0o600
    pid = m.pid
    t = time.monotonic()
    assert m.umount() is None
    assert time.monotonic() - t < 5
    assert not pid_alive(pid) and mount_entry(m.mnt) is None


def test_background_default_log_file(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    r = corefs("mount", store, mnt)
    try:
        assert r.returncode == 0, r.stderr
        assert "mounted" in r.stdout
        assert (store / "corefs.log").exists()
        assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(store / "primary-key").st_mode) == 0o600
    finally:
        pid = json.loads(corefs("status", "--json", mnt).stdout)["pid"] if mount_entry(mnt) else None
        r2 = corefs("umount", mnt)
        if pid is not None:
            wait_for(lambda: not pid_alive(pid), 10, "the server to exit")
    assert r2.returncode == 0, r2.stderr
    assert "mounted" in (store / "corefs.log").read_text()


# user errors: one line on stderr, non-zero exit, no traceback ---------------------------------------

def one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    assert r.returncode != 0, r
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w.lower() in err.lower(), err
    return err


@pytest.mark.parametrize("args,words", [
    (["mount", "--bogus", "S", "M"], ["unrecognized arguments: --bogus"]),
    (["mount", "S"], ["mountpoint"]),
    (["mount", "S", "M", "--listen", "127.0.0.1:1"], ["not available"]),
    (["mount", "S", "M", "--peer", "127.0.0.1:1"], ["not available"]),
    (["mount", "S", "M", "--sparse"], ["not available"]),
    (["mount", "S", "M", "--read-timeout", "-1"], ["read-timeout"]),
    (["mount", "S", "M", "--read-timeout", "soon"], ["read-timeout"]),
    (["mount", "S", "M", "--read-only"], ["not a store", "--read-only"]),
    (["mount", "-f", "S", "M", "--read-only"], ["not a store", "--read-only"]),
    (["frobnicate"], ["invalid choice"]),
    ([], ["required"]),
])
def test_usage_errors(tmp_path, args, words):
    (tmp_path / "M").mkdir()
    args = [str(tmp_path / a) if a in ("S", "M") else a for a in args]
    r = corefs(*args)
    one_line_error(r, *words)
    assert not (tmp_path / "S").exists()


def test_missing_and_bad_mountpoints(tmp_path, mount):
    one_line_error(corefs("mount", tmp_path / "s1", tmp_path / "nowhere"), "nowhere", "no such file")
    (tmp_path / "file").write_text("x")
    one_line_error(corefs("mount", tmp_path / "s2", tmp_path / "file"), "not a directory")
    # already a mount: in both modes
    one_line_error(corefs("mount", tmp_path / "s3", mount.mnt), "already a mount")
    one_line_error(corefs("mount", "-f", tmp_path / "s3", mount.mnt), "already a mount")
    one_line_error(corefs("umount", tmp_path), "not mounted")
    one_line_error(corefs("umount", tmp_path / "nowhere"), "no such file")
    one_line_error(corefs("status", tmp_path), "not a corefs mount")
    one_line_error(corefs("info", tmp_path / "file"), "not on a corefs mount")
    assert not (tmp_path / "s3").exists()


def test_non_store_directory_refused(tmp_path):
    d = tmp_path / "notastore"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    (tmp_path / "mnt").mkdir()
    for fg in ([], ["-f"]):
        one_line_error(corefs("mount", *fg, d, tmp_path / "mnt"), "not empty", "not a store")
    one_line_error(corefs("init", d), "not empty")
    assert os.listdir(d) == ["precious.txt"]
    one_line_error(corefs("mount", d / "precious.txt", tmp_path / "mnt"), "not a directory")
    assert mount_entry(tmp_path / "mnt") is None


def test_store_locked_by_another_process(tmp_path, mounts):
    store = tmp_path / "store"
    populate(store, {((), "log"): [b"x"]})
    holder = subprocess.Popen(
        [PY, "-c", "import sys, trio\nfrom spacecorestore import Corestore\n"
                   "async def main():\n"
                   "    async with Corestore(sys.argv[1]):\n"
                   "        print('ready', flush=True)\n"
                   "        await trio.sleep(60)\n"
                   "trio.run(main)\n", str(store)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        (tmp_path / "mnt").mkdir()
        for fg in ([], ["-f"]):
            one_line_error(corefs("mount", *fg, store, tmp_path / "mnt"), "in use by another process")
        assert mount_entry(tmp_path / "mnt") is None
    finally:
        holder.kill()
        holder.wait()
    # and locked by a mount of the same store elsewhere
    m = mounts(store).start()
    (tmp_path / "mnt2").mkdir()
    one_line_error(corefs("mount", store, tmp_path / "mnt2"), "in use by another process")
    assert mount_entry(tmp_path / "mnt2") is None
    assert m.path("log").read_bytes() == b"x"


def test_help_documents_the_commands():
    r = corefs("--help")
    assert r.returncode == 0
    for w in ("init", "mount", "umount", "status", "info"):
        assert w in r.stdout
    r = corefs("mount", "--help")
    assert r.returncode == 0
    for w in ("--foreground", "--read-only", "--read-timeout", "--direct-io", "--allow-other", "--log-file",
              "--verbose", "--debug-fuse", "--listen", "--peer", "--sparse"):
        assert w in r.stdout, w
    for cmd in ("init", "umount", "status", "info"):
        assert corefs(cmd, "--help").returncode == 0


def test_umount_of_a_busy_mount(mount):
    fd = os.open(mount.path("f"), os.O_CREAT | os.O_WRONLY)
    cwd = subprocess.Popen(["sleep", "30"], cwd=mount.mnt)  # a process inside the mount
    try:
        r = corefs("umount", mount.mnt)
        one_line_error(r, "busy", "--lazy")
        assert os.path.ismount(mount.mnt)
    finally:
        cwd.kill()
        cwd.wait()
        os.close(fd)
    assert mount.umount() == 0


CRASH = r"""
import logging, sys, trio
from corefs import daemon, fuse_ops

real_serve = fuse_ops.serve

async def crashing_serve():  # the FUSE loop fails once the mount is live
    async with trio.open_nursery() as n:
        n.start_soon(real_serve)
        await trio.sleep(0.3)
        raise RuntimeError("injected failure of the file system loop")

fuse_ops.serve = crashing_serve
logging.basicConfig(filename=sys.argv[3], level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
trio.run(lambda: daemon.run_mount(sys.argv[1], sys.argv[2], on_ready=lambda: print("ready", flush=True)))
"""


def test_a_crash_leaves_a_dead_mount_not_an_empty_directory(mounts):
    m = mounts()
    populate(m.store, {((), "log"): [b"kept"]})
    p = subprocess.Popen([PY, "-c", CRASH, str(m.store), str(m.mnt), str(m.log)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        assert p.wait(20) != 0
        assert "injected failure" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    m.allow_log(r"ERROR corefs: the file system loop failed: leaving .* as a dead mount")
    # still in the mount table, answering ENOTCONN: `rsync --delete` from it fails instead of deleting
    assert mount_entry(m.mnt) is not None
    with pytest.raises(OSError) as info:
        os.listdir(m.mnt)
    assert info.value.errno == errno.ENOTCONN
    r = corefs("mount", m.store, m.mnt, "--log-file", m.log)
    assert r.returncode == 0 and "dead mount" in r.stderr, r.stderr
    m.adopt()
    assert m.path("log").read_bytes() == b"kept"


def test_no_spin_reaches_the_detached_server(mounts):
    m = mounts()
    m.start("--no-spin", background=True)
    with open(f"/proc/{m.pid}/cmdline", "rb") as f:
        assert b"--no-spin" in f.read().split(b"\0")
    with open(m.path("log"), "ab") as f:
        for i in range(200):
            f.write(b"line %d\n" % i)
            f.flush()
    assert m.path("log").read_bytes() == b"".join(b"line %d\n" % i for i in range(200))
