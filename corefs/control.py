"""The control socket of a running mount (04-corefs §1.1): one JSON request per line, one reply.

Requests: ``{"op": "status"}`` -> the status object; ``{"op": "umount"}`` -> asks
the daemon for a clean unmount.  The socket lives at
``$XDG_RUNTIME_DIR/corefs/<id>.sock`` (root: ``/run/corefs/<id>.sock``), with
``<id>`` the first 16 hex digits of SHA-256 of the mountpoint's real path.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Awaitable, Callable

import trio

log = logging.getLogger("corefs")
MAX_REQUEST = 65536


def socket_dir() -> Path:
    if os.getuid() == 0:
        return Path("/run/corefs")
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/corefs-{os.getuid()}"
    return Path(base) / "corefs"


def socket_path(mountpoint: str | os.PathLike) -> Path:
    real = os.path.realpath(mountpoint)
    return socket_dir() / (hashlib.sha256(real.encode()).hexdigest()[:16] + ".sock")


def request(path: str | os.PathLike, req: dict, timeout: float = 5.0) -> dict:
    """Send one request to a mount's socket (blocking; for the command line)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise ConnectionError("no reply")
    return json.loads(buf)


async def serve(path: Path, handlers: dict[str, Callable[[], Awaitable[dict]]],
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``path`` until cancelled; the socket file is removed on exit."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        path.unlink()
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(_handle, stream, handlers)
    finally:
        # first the file (an await here would raise Cancelled before it), then the socket
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        with trio.CancelScope(shield=True):
            await listener.aclose()


async def _handle(stream: trio.SocketStream, handlers) -> None:
    async with stream:
        buf = b""
        with trio.move_on_after(10):
            while b"\n" not in buf and len(buf) < MAX_REQUEST:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
        try:
            req = json.loads(buf.split(b"\n", 1)[0] or b"{}")
            handler = handlers.get(req.get("op")) if isinstance(req, dict) else None
            reply = await handler() if handler else {"error": "unknown request"}
        except (ValueError, AttributeError):
            reply = {"error": "bad request"}
        try:
            await stream.send_all(json.dumps(reply).encode() + b"\n")
        except trio.BrokenResourceError:
            pass
