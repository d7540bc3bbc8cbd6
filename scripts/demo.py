"""Demo: create a store, mount it with corefs, write a few cores through the mount, say what to try."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def main() -> int:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="corefs-demo-"))
    store, mnt = base / "store", base / "mnt"
    if mnt.exists() and os.path.ismount(mnt):
        print(f"demo: {mnt} is already mounted; unmount it first: corefs umount {mnt}", file=sys.stderr)
        return 1
    mnt.mkdir(parents=True, exist_ok=True)
    if not os.path.exists("/dev/fuse"):
        print("demo: /dev/fuse is missing: this machine cannot mount FUSE filesystems", file=sys.stderr)
        return 1
    corefs = str(VENV_BIN / "corefs") if (VENV_BIN / "corefs").exists() else shutil.which("corefs") or "corefs"
    r = subprocess.run([corefs, "mount", str(store), str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr.strip() or r.stdout.strip(), file=sys.stderr)
        return r.returncode
    print(r.stdout.strip())

    with open(mnt / "hello", "a") as f:  # a new core named "hello" in the root namespace
        f.write("hello from corefs\n")
    (mnt / "app").mkdir(exist_ok=True)  # namespace "app"
    for i in range(3):
        with open(mnt / "app" / "log", "a") as f:  # one write(2) = one signed block
            f.write(f"log line {i}\n")
    with open(mnt / "app" / "data.bin", "ab") as f:
        f.write(os.urandom(200_000))

    print()
    print(run("ls", "-lR", str(mnt)))
    print(f"cat {mnt}/app/log:")
    print(run("cat", str(mnt / "app" / "log")))
    print(run(corefs, "status", str(mnt)))
    print("The store is a Corestore 6 directory that Node's corestore can open (when unmounted):", store)
    print()
    print("Try:")
    print(f"  export PATH={VENV_BIN}:$PATH")
    print(f"  ls -l {mnt} {mnt}/app")
    print(f"  cat {mnt}/hello")
    print(f"  tail -f {mnt}/app/log        # and in another shell: echo more >> {mnt}/app/log")
    print(f"  getfattr -d {mnt}/app/log     # key, length, fork, ...")
    print(f"  corefs status {mnt}")
    print(f"  corefs umount {mnt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
