"""Helpers for integration tests that start real worker processes and real BGP sessions on 127.x."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from meshsim.run.harness import Harness


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def pids_of(harness: Harness) -> set[int]:
    """Every process the harness's fabric started (workers; BIRD daemons through their nodes)."""
    pids = {w["pid"] for w in harness.fabric.describe().get("workers", []) if w["pid"]}
    for snap in harness.observer.snapshots.values():
        pid = snap["counters"]["usage"].get("pid")
        if pid:
            pids.add(int(pid))
    return pids


def leftover_processes(marker: str) -> list[str]:
    """Command lines of live processes mentioning `marker` (e.g. the run's temp dir)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and alive(int(entry)):
            out.append(f"{entry}: {cmd}")
    return out


async def table(h: Harness, node: str) -> str:
    """The node's actual table, as `ip route` prints it."""
    return await h.fabric.get(node, "/routes?format=ip")


async def routes_view(h: Harness, node: str) -> dict[str, Any]:
    return await h.fabric.get(node, "/routes")
