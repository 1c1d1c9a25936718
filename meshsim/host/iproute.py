"""iproute2, the one way meshsim runs `ip`: synchronously (network set-up) or from asyncio (nodes).

Owns `ip()` / `batch()` (sync; raise RunError on failure unless told not to check) and `aip()` (async,
returns the exit code and output, never raises). `-n NS` selects a network namespace.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence

from meshsim.errors import RunError

IP = shutil.which("ip") or "ip"


def argv(args: Sequence[str], ns: str | None = None) -> list[str]:
    return [IP] + (["-n", ns] if ns else []) + list(args)


def ip(*args: str, ns: str | None = None, check: bool = True, stdin: str | None = None, timeout: float = 60) -> str:
    # The timeout catches a hung `ip` (a kernel lock), not a slow one: a batch of thousands of lines takes well
    # under a second even on a busy machine.
    cmd = argv(args, ns)
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RunError(f"`{' '.join(cmd)}` failed: {(res.stderr or res.stdout).strip()}")
    return res.stdout


def batch(lines: Sequence[str], ns: str | None = None, force: bool = False) -> None:
    """Many commands in one `ip -batch -` (with -force: go on past errors)."""
    if lines:
        ip(*(["-force", "-batch", "-"] if force else ["-batch", "-"]), ns=ns, stdin="\n".join(lines) + "\n",
           check=not force)


async def aip(*args: str, ns: str | None = None, stdin: str | None = None, timeout: float = 15.0) -> tuple[int, str]:
    """`ip` from asyncio: (exit code, stdout+stderr). Never raises. (The timeout: as for `ip()`.)"""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv(args, ns), stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
        return proc.returncode or 0, out.decode(errors="replace")
    except (OSError, asyncio.TimeoutError) as exc:
        return 1, str(exc)
