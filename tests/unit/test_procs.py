"""Every process a run starts dies with the process that started it (issue 12, item 3): a runner killed with
`kill -9` takes its workers along, a worker takes its BIRD daemons and `ip monitor`s, though each child runs in a
session of its own (so a terminal's Ctrl-C reaches the runner only). On asyncio and on uvloop (workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

PARENT = """
import asyncio, sys
from meshsim.host import procs

async def main():
    child = await procs.spawn(["sleep", "300"])
    print(child.pid, flush=True)
    await asyncio.sleep(300)

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def _gone(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it: killed either way."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_child_dies_with_the_process_that_spawned_it(loop):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, loop], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        assert os.getsid(child) == child, "the child leads a session of its own"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        for _ in range(100):
            if _gone(child):
                break
            time.sleep(0.05)
        assert _gone(child), "the child outlived the process that started it"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if child and not _gone(child):
            os.kill(child, signal.SIGKILL)
