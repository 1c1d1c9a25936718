"""Talking to a running BIRD: its control socket (what birdc does) and the clock-dependent parts of reading it.

Owns `BirdControl` (one connection per command, replies as birdc prints them), `bird_binary()`, and
`since_timestamp()` (BIRD's `Since` column as a Unix time: it needs today's date, so it lives here, not
in the pure parser meshsim/engines/bird/confd.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time

from meshsim.engines.bird import confd as bird
from meshsim.errors import RunError

_IP_DST_RE = re.compile(r"^(?:(?:blackhole|unreachable|prohibit|unicast|local|broadcast|throw)\s+)?(?P<dst>\S+)")


def since_timestamp(since: str, now: float | None = None) -> float | None:
    """BIRD 2's `Since` column ("09:39:45.606" today, "2024-05-01" older, or ISO long) as a Unix time."""
    now = time.time() if now is None else now
    try:
        if re.fullmatch(r"\d\d:\d\d:\d\d(\.\d+)?", since):
            hms, _, frac = since.partition(".")
            day = time.localtime(now)
            h, m, s = (int(x) for x in hms.split(":"))
            ts = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, h, m, s, 0, 0, -1)) + float("0." + (frac or "0"))
            if ts > now + 60:  # logged just before midnight, read just after
                ts -= 86400
            return ts
        if re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", since):
            main, _, frac = since.partition(".")
            return time.mktime(time.strptime(main, "%Y-%m-%d %H:%M:%S")) + float("0." + (frac or "0"))
        if re.fullmatch(r"\d{4}-\d\d-\d\d", since):
            return time.mktime(time.strptime(since, "%Y-%m-%d"))
    except (ValueError, OverflowError):
        return None
    return None



def bird_binary() -> str | None:
    return shutil.which("bird") or (("/usr/sbin/bird") if os.path.exists("/usr/sbin/bird") else None)


class BirdControl:
    """BIRD's control socket, spoken directly (what birdc does): one connection per command."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def command(self, cmd: str, timeout: float = 10.0) -> tuple[str, int | None]:
        async def go() -> tuple[str, int | None]:
            reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 24)
            try:
                await reader.readline()  # "0001 BIRD 2.0.12 ready."
                writer.write(cmd.encode() + b"\n")
                await writer.drain()
                lines = []
                while True:
                    raw = await reader.readline()
                    if not raw:
                        break
                    line = raw.decode(errors="replace").rstrip("\n")
                    lines.append(line)
                    if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                        break
                return bird.split_reply(lines)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        return await asyncio.wait_for(go(), timeout)

    async def text(self, cmd: str, timeout: float = 10.0) -> str:
        out, code = await self.command(cmd, timeout)
        if code is not None and code >= 8000:
            raise RunError(f"birdc {cmd!r}: {out.strip()}")
        return out


def _dst_of(line: str) -> str | None:
    if not line.strip() or line[0].isspace():
        return None
    m = _IP_DST_RE.match(line)
    if not m:
        return None
    dst = m.group("dst")
    if dst == "default":
        return "0.0.0.0/0"
    return dst if "/" in dst else f"{dst}/32"
