"""Helpers for integration tests that start real node processes and ExaBGP."""

from __future__ import annotations

import os
from pathlib import Path

from meshsim.run.harness import Harness


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def pids_of(harness: Harness) -> set[int]:
    """Every node and ExaBGP pid the harness has seen."""
    pids: set[int] = set()
    for node in harness.fabric.nodes.values():
        pids |= node.pids_seen
    for snap in harness.observer.snapshots.values():
        epid = snap["counters"]["usage"]["exabgp"].get("pid")
        if epid:
            pids.add(int(epid))
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
