"""The ``corefs`` command (04-corefs §1): init, mount, umount, status, info.

Every user error is one line on stderr and a non-zero exit, never a traceback.
``mount`` without ``-f`` re-executes ``corefs mount -f`` as a detached child
(a fresh interpreter: never fork inside a running trio loop) and waits on a
readiness pipe: exit 0 only once the mount is live.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import control

PROG = "corefs"


class UserError(Exception):
    """One line for the user, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of usage + error
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)", 2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Show a Spacecorestore (Hypercore 10 / Corestore 6 store) as files: "
                "namespaces are directories, named cores are append-only files.")
    sub = p.add_subparsers(dest="cmd", parser_class=_Parser, metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("init", help="create a new store directory", description="Create STORE (mode 0700) "
                       "with its primary-key (0600). Refuses a non-empty directory that is not a store.")
    s.add_argument("store")

    s = sub.add_parser("mount", help="mount a store", description="Mount STORE on MOUNTPOINT (creating the store "
                       "if missing or empty). Returns once the mount is live and keeps serving in the background, "
                       "unless -f.")
    s.add_argument("store")
    s.add_argument("mountpoint")
    s.add_argument("-f", "--foreground", action="store_true", help="stay attached, log to stderr; Ctrl-C unmounts")
    s.add_argument("--read-only", action="store_true", help="refuse every change (EROFS)")
    s.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long a read waits for a block not held locally before EIO (default 30)")
    s.add_argument("--direct-io", action="store_true", help="bypass the kernel page cache")
    s.add_argument("--no-spin", action="store_true",
                   help="never busy-wait for the next write (by default, after a write that followed "
                        "the one before within 150 µs, the daemon polls for the next one for at most "
                        "twice that gap; off with fewer than two CPUs)")
    s.add_argument("--allow-other", action="store_true", help="let other users see the mount")
    s.add_argument("--log-file", metavar="PATH", help="log file (default when detached: STORE/corefs.log)")
    s.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    s.add_argument("--debug-fuse", action="store_true", help="pass libfuse's debug option")
    s.add_argument("--listen", metavar="HOST:PORT", help="accept replication connections (not available yet)")
    s.add_argument("--peer", metavar="HOST:PORT", action="append", help="replicate with a peer (not available yet)")
    s.add_argument("--sparse", action="store_true", help="download blocks on demand (not available yet)")
    s.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)

    s = sub.add_parser("umount", help="unmount", description="Flush and unmount MOUNTPOINT, and wait for the "
                       "serving process to exit. Also cleans up a dead mount.")
    s.add_argument("mountpoint")
    s.add_argument("--lazy", action="store_true", help="detach even if files are open")

    s = sub.add_parser("status", help="show cores, handles and peers of a mount",
                       description="One line per core: path, key, length, bytes, downloaded share, open handles, "
                       "peers. Without MOUNTPOINT: every live corefs mount of this user.")
    s.add_argument("mountpoint", nargs="?")
    s.add_argument("--json", action="store_true", help="print the status object as JSON")
    s.add_argument("--watch", action="store_true", help="repeat every second until interrupted")

    s = sub.add_parser("info", help="everything known about one core file",
                       description="The user.spacecore.* attributes of PATH, human-readable.")
    s.add_argument("path")
    return p


# commands -----------------------------------------------------------------------------

def _create_store(root: Path) -> None:
    import trio

    from spacecorestore import Corestore
    from spacecorestore.errors import SpacecoreError

    root.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def go():
        async with Corestore(str(root)):
            pass

    try:
        trio.run(go)
    except SpacecoreError as e:
        if getattr(e, "code", None) == "ELOCKED":
            raise UserError(f"{PROG}: {root} is in use by another process") from None
        raise UserError(f"{PROG}: {root}: {e.message or e}") from None
    os.chmod(root, 0o700)


def cmd_init(a) -> int:
    root = Path(a.store)
    if root.exists() and not root.is_dir():
        raise UserError(f"{PROG} init: {root} is not a directory")
    if root.exists() and (root / "primary-key").exists():
        raise UserError(f"{PROG} init: {root} is already a store")
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{PROG} init: {root} is not empty and is not a store")
    _create_store(root)
    print(f"created store {root}")
    return 0


def _mount_entry(mnt: str) -> tuple[str, str] | None:
    """(type, source) of what is mounted on ``mnt``, from the mount table (no access to ``mnt``
    itself, which may be a dead mount)."""
    import re

    real = os.path.realpath(mnt)
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None

    def unescape(s: str) -> str:
        return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)

    for line in lines:
        fields = line.split()
        if len(fields) > 4 and unescape(fields[4]) == real and "-" in fields:
            sep = fields.index("-")
            return fields[sep + 1], unescape(fields[sep + 2]) if len(fields) > sep + 2 else ""
    return None


def _is_dead_mount(mnt: str) -> bool:
    """A FUSE mount whose server is gone.  statfs always reaches the server (stat may be answered
    from the kernel's attribute cache for a while after the server died)."""
    try:
        os.statvfs(mnt)
        return False
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)


def _check_mountpoint(mnt: str) -> None:
    entry = _mount_entry(mnt)
    if entry is not None:
        if entry[0].startswith("fuse") and _is_dead_mount(mnt):
            _cleanup_dead(mnt)
        else:
            raise UserError(f"{PROG} mount: {mnt} is already a mount point ({entry[0]} of {entry[1]})")
    try:
        os.stat(mnt)
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            _cleanup_dead(mnt)
            return
        raise UserError(f"{PROG} mount: mountpoint {mnt}: {e.strerror}") from None
    if not os.path.isdir(mnt):
        raise UserError(f"{PROG} mount: mountpoint {mnt} is not a directory")
    if os.path.ismount(mnt):
        raise UserError(f"{PROG} mount: {mnt} is already a mount point")


def _cleanup_dead(mnt: str) -> None:
    fm = shutil.which("fusermount3") or shutil.which("fusermount")
    if fm is None:
        raise UserError(f"{PROG}: {mnt} is a dead mount and fusermount3 is missing; run: umount -l {mnt}")
    r = subprocess.run([fm, "-u", "-z", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        raise UserError(f"{PROG}: {mnt} is a dead mount that could not be cleaned: {r.stderr.strip()}")
    sock = control.socket_path(mnt)
    if sock.exists():
        sock.unlink()
    print(f"{PROG}: cleaned up a dead mount on {mnt}", file=sys.stderr)


def _check_common(a) -> None:
    if a.listen or a.peer or a.sparse:
        raise UserError(f"{PROG} mount: replication (--listen, --peer, --sparse) is not available yet")
    if not os.path.exists("/dev/fuse"):
        raise UserError(f"{PROG} mount: /dev/fuse is missing (is the fuse module loaded?)")
    root = Path(a.store)
    if root.exists() and not root.is_dir():
        raise UserError(f"{PROG} mount: {root} is not a directory")
    if root.is_dir() and any(root.iterdir()) and not (root / "primary-key").exists():
        raise UserError(f"{PROG} mount: {root} is not empty and is not a store (no primary-key)")
    if a.read_timeout <= 0:
        raise UserError(f"{PROG} mount: --read-timeout must be positive")
    if a.read_only and not (root / "primary-key").exists():
        raise UserError(f"{PROG} mount: {root} is not a store (no primary-key); --read-only does not create one")


def cmd_mount(a) -> int:
    _check_common(a)
    _check_mountpoint(a.mountpoint)
    if a.foreground:
        return _mount_foreground(a)
    return _mount_background(a)


def _mount_background(a) -> int:
    log_file = a.log_file or os.path.join(a.store, "corefs.log")
    root = Path(a.store)
    if not (root / "primary-key").exists():
        _create_store(root)  # before the log file makes the directory non-empty
    r, w = os.pipe()
    args = [sys.executable, "-m", "corefs.cli", "mount", "-f", os.path.abspath(a.store),
            os.path.abspath(a.mountpoint), "--read-timeout", str(a.read_timeout), "--ready-fd", str(w),
            "--log-file", os.path.abspath(log_file)]
    for flag in ("read_only", "direct_io", "no_spin", "allow_other", "verbose", "debug_fuse"):
        if getattr(a, flag):
            args.append("--" + flag.replace("_", "-"))
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(args, pass_fds=(w,), start_new_session=True, stdin=devnull,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    buf = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([r], [], [], 0.5)
            if ready:
                chunk = os.read(r, 4096)
                if not chunk:
                    break
                buf += chunk
                if b"\n" in buf:
                    break
            elif proc.poll() is not None:
                break
    finally:
        os.close(r)
    line = buf.decode(errors="replace").strip()
    if line == "ok":
        print(f"mounted {a.store} on {a.mountpoint} (pid {proc.pid}; log: {log_file})")
        return 0
    if proc.poll() is None and not line:
        proc.kill()
        raise UserError(f"{PROG} mount: the mount did not become ready within 60 s (see {log_file})")
    raise UserError(line.removeprefix("error: ") if line else f"{PROG} mount: failed (see {log_file})")


def _setup_logging(a) -> None:
    level = logging.DEBUG if a.verbose else logging.INFO
    handler: logging.Handler
    if a.log_file:
        handler = logging.FileHandler(a.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _mount_foreground(a) -> int:
    import trio

    from spacecorestore.errors import SpacecoreError

    from .daemon import MountError, run_mount

    _setup_logging(a)
    ready_fd = a.ready_fd

    def report(line: str) -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            try:
                os.write(ready_fd, (line + "\n").encode())
                os.close(ready_fd)
            except OSError:
                pass
            ready_fd = None

    try:
        trio.run(lambda: run_mount(a.store, a.mountpoint, read_only=a.read_only, read_timeout=a.read_timeout,
                                   direct_io=a.direct_io, spin=not a.no_spin, allow_other=a.allow_other,
                                   debug_fuse=a.debug_fuse,
                                   on_ready=lambda: report("ok")))
    except (MountError, SpacecoreError) as e:
        msg = str(e)
        if getattr(e, "code", None) == "ELOCKED":
            msg = f"{a.store} is in use by another process (a mount or a reference program)"
        line = f"{PROG} mount: {msg}"
        if a.log_file:  # logging to stderr would print the line twice
            logging.getLogger("corefs").error(line)
        report("error: " + line)
        raise UserError(line) from None
    report("error: mount ended before it was ready")
    return 0


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs.  A zombie has exited: the detached server's parent is init,
    which may reap it late, and waiting for that would stall ``umount``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def cmd_umount(a) -> int:
    mnt = a.mountpoint
    entry = _mount_entry(mnt)
    if entry is not None and entry[0].startswith("fuse") and _is_dead_mount(mnt):
        _cleanup_dead(mnt)
        return 0
    try:
        os.stat(mnt)
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            _cleanup_dead(mnt)
            return 0
        raise UserError(f"{PROG} umount: {mnt}: {e.strerror}") from None
    if not os.path.ismount(mnt):
        raise UserError(f"{PROG} umount: {mnt} is not mounted")
    pid = None
    sock = control.socket_path(mnt)
    if sock.exists():
        try:
            pid = control.request(sock, {"op": "status"})["pid"]
        except (OSError, ValueError, KeyError):
            pid = None
    fm = shutil.which("fusermount3") or shutil.which("fusermount")
    if fm is None:
        raise UserError(f"{PROG} umount: fusermount3 is missing")
    r = subprocess.run([fm, "-u"] + (["-z"] if a.lazy else []) + [mnt], capture_output=True, text=True)
    if r.returncode != 0:
        err = r.stderr.strip()
        if "busy" in err.lower():
            raise UserError(f"{PROG} umount: {mnt} is busy (files are open); close them or use --lazy")
        raise UserError(f"{PROG} umount: {err or 'fusermount3 failed'}")
    if pid is not None:
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            raise UserError(f"{PROG} umount: unmounted, but the serving process {pid} has not exited yet")
    return 0


def _format_status(st: dict) -> str:
    lines = [f"{st['mountpoint']}  store {st['store']}  pid {st['pid']}" + ("  read-only" if st.get("read_only") else "")]
    for c in st["cores"]:
        share = 100.0 if c["length"] == 0 else 100.0 * c["contiguous_length"] / c["length"]
        lines.append(f"  {c['path'] or '/.keys/' + c['key']}  {c['key'][:16]}  {c['length']} blocks  "
                     f"{c['byte_length']} bytes  {share:.0f}%  handles {c['handles']}  peers {c['peers']}")
    for p in st.get("peers", []):
        lines.append(f"  peer {p['address']}  {p['public_key'][:16]}  cores {p['cores']}")
    return "\n".join(lines)


def _statuses(mountpoint: str | None) -> list[dict]:
    if mountpoint is not None:
        sock = control.socket_path(mountpoint)
        if not sock.exists():
            raise UserError(f"{PROG} status: {mountpoint} is not a corefs mount of this user")
        try:
            return [control.request(sock, {"op": "status"})]
        except (OSError, ValueError):
            sock.unlink(missing_ok=True)
            raise UserError(f"{PROG} status: the mount on {mountpoint} does not answer (stale socket removed)")
    out = []
    d = control.socket_dir()
    for sock in sorted(d.glob("*.sock")) if d.exists() else []:
        try:
            out.append(control.request(sock, {"op": "status"}))
        except (OSError, ValueError):
            sock.unlink(missing_ok=True)
    return out


def cmd_status(a) -> int:
    for n in range(1 if not a.watch else 10**9):
        sts = _statuses(a.mountpoint)
        if a.json:
            print(json.dumps(sts[0] if a.mountpoint else sts, indent=None))
        else:
            print("\n".join(_format_status(s) for s in sts) if sts else "no corefs mounts")
        if not a.watch:
            break
        sys.stdout.flush()
        time.sleep(1)
    return 0


def cmd_info(a) -> int:
    p = a.path
    try:
        names = [n for n in os.listxattr(p) if n.startswith("user.spacecore.")]
    except OSError as e:
        raise UserError(f"{PROG} info: {p}: {e.strerror}") from None
    if not names:
        raise UserError(f"{PROG} info: {p} is not on a corefs mount")
    for n in names:
        print(f"{n.removeprefix('user.spacecore.')}: {os.getxattr(p, n).decode(errors='replace')}")
    return 0


COMMANDS = {"init": cmd_init, "mount": cmd_mount, "umount": cmd_umount, "status": cmd_status, "info": cmd_info}


def main(argv: list[str] | None = None) -> int:
    try:
        a = _parser().parse_args(argv)
        return COMMANDS[a.cmd](a)
    except UserError as e:
        print(str(e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
