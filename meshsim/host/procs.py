"""Child processes a run starts: spawned in their own process group, stopped with a deadline, then killed.

Owns `spawn()`, `stop()` (SIGTERM, wait, SIGKILL, wait: never hangs) and `kill_group_now()` (synchronous,
for a `finally` that may run while being cancelled). Every process meshsim starts goes through here, and
dies with the process that started it (PR_SET_PDEATHSIG, set in the child before it runs anything): a
runner killed with `kill -9` takes its workers along, a worker takes its BIRD daemons and `ip monitor`s, so
nothing is left holding a run's addresses or namespaces.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from collections.abc import Callable, Sequence
from typing import IO, Any


LINE_LIMIT = 64 << 20  # a worker's state line for hundreds of nodes can be long
PR_SET_PDEATHSIG = 1  # prctl(2)

try:
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the children then rely on their stdin closing
    _prctl = None


def _die_with(parent: int) -> Callable[[], None]:
    """The child's first act (between fork and exec): be killed when `parent` dies, and if it already has
    (the race before prctl), die now. Only async-signal-safe work here: one prctl, one getppid."""

    def arm() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


async def spawn(argv: Sequence[str], *, stdin: Any = asyncio.subprocess.DEVNULL, stdout: Any = None,
                stderr: Any = None, env: dict[str, str] | None = None, cwd: str | None = None) -> asyncio.subprocess.Process:
    """Start `argv` in a session of its own (so a terminal's Ctrl-C reaches the runner only, and the whole
    group can be signalled), killed by the kernel when this process dies."""
    return await asyncio.create_subprocess_exec(*argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd,
                                                start_new_session=True, limit=LINE_LIMIT,
                                                preexec_fn=_die_with(os.getpid()))


def signal_group(pid: int | None, sig: int) -> bool:
    """Signal the process group led by `pid`; False if it is gone."""
    if not pid:
        return False
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_group_now(pid: int | None) -> None:
    signal_group(pid, signal.SIGKILL)


async def stop(proc: asyncio.subprocess.Process | None, *, grace: float = 5.0) -> int | None:
    """SIGTERM the process group, wait up to `grace` s, then SIGKILL and reap. Returns the exit code."""
    if proc is None:
        return None
    if proc.returncode is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if not signal_group(proc.pid, sig):
                break
            try:
                await asyncio.wait_for(proc.wait(), wait)
                break
            except asyncio.TimeoutError:
                continue
    signal_group(proc.pid, signal.SIGKILL)  # whatever is left of the group
    return proc.returncode


def open_log(path: str) -> IO[bytes]:
    return open(path, "ab")
