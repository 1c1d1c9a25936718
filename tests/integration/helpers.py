"""Helpers for integration tests that start real worker processes and real BGP sessions on 127.x."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

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


def marked_processes(marker: str) -> list[str]:
    """Live processes whose environment holds MESHSIM_TEST_MARK=`marker` (a run started with `marked_env(marker)`
    passes it to every worker it spawns): what a run left behind, whatever its command line."""
    want = f"MESHSIM_TEST_MARK={marker}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if want in env and alive(int(entry)):
            out.append(f"{entry}: {cmd}")
    return out


def marked_env(marker: str) -> dict[str, str]:
    """The environment for a `meshsim` subprocess of this tree whose processes `marked_processes` can find."""
    from tests.conftest import ROOT

    return {**os.environ, "PYTHONPATH": str(ROOT), "MESHSIM_TEST_MARK": marker}


def sockets_on(addresses: set[str], ports: tuple[int, ...] = (179, 9179)) -> list[str]:
    """Listening or connected TCP sockets on these IPv4 addresses and ports (TIME-WAIT and closed ones aside):
    what would make the next run fail to bind."""
    states = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "0A": "LISTEN"}
    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        host, port = fields[1].split(":")
        addr = ".".join(str(int(host[i:i + 2], 16)) for i in (6, 4, 2, 0))
        if addr in addresses and int(port, 16) in ports and fields[3] in states:
            out.append(f"{addr}:{int(port, 16)} {states[fields[3]]}")
    return out


def ctrl_c_when(proc: subprocess.Popen, ready: Callable[[], bool], *, within: float, settle: float = 0.0
                ) -> tuple[Any, Any]:
    """Ctrl-C as a terminal sends it: once `ready()` holds (the process must stay alive, `within` seconds at
    most) and `settle` seconds later, SIGINT to the process group of `proc` (started with
    `start_new_session=True`); returns what it wrote. The process is killed if it outlives the test."""
    try:
        deadline = time.monotonic() + within
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"not ready within {within:.0f} s"
            time.sleep(0.1)
        time.sleep(settle)
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
