"""Running out of file descriptors is a typed error with a clear message, and loses nothing."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_too_many_open_cores_is_a_clear_typed_error(tmp_path):
    script = textwrap.dedent(f"""
        import resource, trio
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))  # a low hard limit: the store cannot raise it
        from spacecorestore import Corestore, InvalidOperationError

        async def main():
            async with Corestore({str(tmp_path / "store")!r}) as store:
                opened = []
                try:
                    for i in range(100):
                        s = store.get(name=f"c{{i}}")
                        await s.ready()
                        await s.append(b"x")
                        opened.append(s)
                except InvalidOperationError as e:
                    print("REFUSED", len(opened), e)
                for s in opened:
                    await s.close()
                s = store.get(name="c0")  # everything written before is there
                await s.ready()
                print("BACK", s.length, await s.get(0))
        trio.run(main)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("REFUSED") and "too many open files" in lines[0] and "ulimit -n" in lines[0]
    assert 5 < int(lines[0].split()[1]) < 64
    assert lines[1] == "BACK 1 b'x'"
