"""CPU seconds and memory of a process, from /proc (Linux)."""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_usage(pid: int | None) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a live process; (0, 0) if it is gone or a zombie."""
    if not pid:
        return 0.0, 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode()
        with open(f"/proc/{pid}/statm", "rb") as f:
            statm = f.read().split()
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":
            return 0.0, 0
        return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(statm[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0.0, 0
