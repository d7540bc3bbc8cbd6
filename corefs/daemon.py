"""The mount's lifecycle (04-corefs §6, §8): open store, mount, readiness, serve, clean exit.

Order (S3QL's): open the store (its lock refuses a second writer), list it,
``pyfuse3.init`` (mount), report readiness, then one nursery runs the FUSE
loop, the control socket and the signal watcher.  SIGTERM/SIGINT and the
control socket's ``umount`` call ``terminate``; afterwards handles are
released, the store is closed (flushed) and the filesystem unmounted.
A crash leaves the mount dead (ENOTCONN) rather than an empty directory.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import signal

import trio

from spacecorestore import Corestore

from . import control, fuse_ops
from .invalidator import Invalidator
from .spinner import WriteSpinner
from .vfs import Vfs

log = logging.getLogger("corefs")


class MountError(Exception):
    """A reason the mount could not start, as one line for the user."""


async def run_mount(store_dir: str, mountpoint: str, *, read_only: bool = False, read_timeout: float = 30.0,
                    direct_io: bool = False, spin: bool = True, allow_other: bool = False, debug_fuse: bool = False,
                    on_ready=None) -> None:
    faulthandler.register(signal.SIGUSR1)
    sock = control.socket_path(mountpoint)  # realpath() stats the mountpoint: never after mounting it
    store = Corestore(store_dir, writable=not read_only)
    await store.ready()
    vfs = Vfs(store, store_dir, read_only=read_only, read_timeout=read_timeout)
    mounted = False
    clean = False  # a crash leaves a dead mount (ENOTCONN), never an empty directory (04-corefs §8)
    try:
        await vfs.load()
        ops = fuse_ops.Operations(vfs, direct_io=direct_io, spinner=WriteSpinner(None if spin else False))
        ops.warm()
        try:
            fuse_ops.mount(ops, mountpoint, store_dir, read_only=read_only, allow_other=allow_other,
                           debug=debug_fuse)
        except RuntimeError as e:
            raise MountError(f"cannot mount {mountpoint}: {e}") from None
        mounted = True
        log.info("mounted %s on %s (%d cores)", store_dir, mountpoint, len(vfs.cores))

        async def status() -> dict:
            return {"pid": os.getpid(), "store": os.path.abspath(store_dir),
                    "mountpoint": os.path.abspath(mountpoint), "read_only": read_only,
                    "cores": vfs.status(), "peers": []}

        async def umount() -> dict:
            log.info("unmount requested through the control socket")
            fuse_ops.terminate()
            return {"ok": True}

        async with trio.open_nursery() as nursery:
            await nursery.start(control.serve, sock, {"status": status, "umount": umount})
            invalidator = Invalidator(fuse_ops.invalidate)
            await nursery.start(invalidator.run)
            await nursery.start(vfs.run_settler)
            await nursery.start(ops.spinner.run)
            vfs.on_growth = lambda ino, attr_only: invalidator.queue(ino, attr_only=attr_only)
            nursery.start_soon(_watch_signals)
            if on_ready is not None:
                on_ready()
            await fuse_ops.serve()
            nursery.cancel_scope.cancel()
        clean = True
        log.info("unmounting %s", mountpoint)
    finally:
        await vfs.close()
        await store.close()
        if mounted:
            if not clean:
                log.error("the file system loop failed: leaving %s as a dead mount (corefs umount cleans it)",
                          mountpoint)
            fuse_ops.unmount(clean=clean)


async def _watch_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for sig in signals:
            log.info("received %s: unmounting", signal.Signals(sig).name)
            fuse_ops.terminate()
