"""Watching running nodes: one long-poll per node on GET /state, and waiting on conditions.

Owns `Observer`: the latest snapshot of every watched node, an event set on each update, and
`wait_converged(...)`, which waits (with a deadline, never a bare sleep loop) until every running
node's table equals its expected table, reporting progress as it goes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from meshsim.errors import RunError
from meshsim.report.metrics import Convergence, convergence
from meshsim.routes.routetable import RouteTable
from meshsim.fabric.local import LocalFabric

Progress = Callable[[Convergence, float], None]


class Observer:
    def __init__(self, fabric: LocalFabric) -> None:
        self.fabric = fabric
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.updated = asyncio.Event()
        self._tasks: dict[str, asyncio.Task] = {}
        self.dead: dict[str, str] = {}  # node -> why it stopped answering unexpectedly
        self.peaks: dict[str, int] = {}  # node -> peak RSS (node + ExaBGP) seen since reset_peaks()

    def reset_peaks(self) -> None:
        self.peaks = {}

    def _record(self, name: str, snap: dict[str, Any]) -> None:
        self.snapshots[name] = snap
        u = snap["counters"]["usage"]
        rss = u["node"]["rss_bytes"] + u["exabgp"]["rss_bytes"]
        self.peaks[name] = max(self.peaks.get(name, 0), rss)

    def watch(self, name: str) -> None:
        if name in self._tasks and not self._tasks[name].done():
            return
        self.dead.pop(name, None)
        self._tasks[name] = asyncio.create_task(self._poll(name), name=f"watch-{name}")

    def unwatch(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def _poll(self, name: str) -> None:
        version = -1
        failures = 0
        while True:
            try:
                snap = await self.fabric.get(name, f"/state?after={version}&timeout=5", timeout=10)
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # 3.11's wait_for drops a cancel that races the answer
                    raise asyncio.CancelledError
                failures = 0
                version = snap["version"]
                self._record(name, snap)
                self.updated.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # node restarting, frozen or dead
                failures += 1
                node = self.fabric.nodes[name]
                if node.proc is not None and node.proc.returncode is not None and not node.frozen:
                    self.dead[name] = f"process exited with code {node.proc.returncode}: {self.fabric.tail(name)}"
                    self.updated.set()
                    return
                await asyncio.sleep(min(0.05 * failures, 1.0))
                if failures > 3:
                    version = -1

    async def refresh(self, names: list[str]) -> None:
        """Fetch a fresh snapshot now (e.g. right after pushing a change)."""
        for name in names:
            try:
                self._record(name, await self.fabric.get(name, "/state", timeout=5))
            except Exception:
                pass

    async def wait_converged(self, expected: dict[str, RouteTable], since: float,
                             want_sessions: set[tuple[str, str]], timeout: float,
                             progress: Progress | None = None, require_sessions: bool = True) -> Convergence:
        deadline = time.monotonic() + timeout
        while True:
            self.updated.clear()
            running = {n: s for n, s in self.snapshots.items() if n in expected}
            conv = convergence(expected, running, since, want_sessions)
            if progress:
                progress(conv, time.time() - since)
            dead = {n: why for n, why in self.dead.items() if n in expected}
            if dead:
                name, why = next(iter(dead.items()))
                raise RunError(f"node died: {why}", node=name)
            done = conv.converged and (not require_sessions or conv.sessions_up == conv.sessions_expected)
            if done:
                return conv
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return conv
            try:
                await asyncio.wait_for(self.updated.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
