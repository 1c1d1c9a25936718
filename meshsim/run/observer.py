"""Following running nodes and waiting on conditions.

Owns `Observer`, the `SnapshotSink` every fabric delivers node summaries to (pushed by workers, or
long-polled over HTTP for nodes elsewhere): the latest summary of every running node, peak memory per
node, nodes that died, and `wait_converged(...)`, which waits (on updates, with a deadline, never a
bare sleep loop) until every running node's table equals its expected table and the expected sessions
are up, reporting progress as it goes. `explain()` fetches the tables of nodes that differ, for reports.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from meshsim.errors import RunError
from meshsim.fabric.base import Fabric
from meshsim.report.metrics import COUNTER_KEYS, Convergence, Expected, convergence, table_diff

Progress = Callable[[Convergence, float], None]
REFRESH_CONCURRENCY = 16  # summaries fetched at once by `refresh`
QUIET_PAUSE = 0.1  # `refresh_until_quiet`: the pause between two reads that must agree
QUIET_WITHIN = 2.0  # and how long it keeps reading when messages keep flowing (a flapping session)


def message_counts(snap: dict[str, Any]) -> dict[str, float]:
    """A node summary's cumulative counts of routes and UPDATE messages (what an event's figures subtract)."""
    t = snap["counters"]["totals"]
    out = {k: float(t.get(k, 0)) for k in COUNTER_KEYS}
    out["update_messages_sent"] = float(t.get("messages_sent", {}).get("update", 0))
    out["update_messages_received"] = float(t.get("messages_received", {}).get("update", 0))
    out["routes_changed"] = float(snap["routes"]["changes"])
    return out


class Observer:
    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.updated = asyncio.Event()
        self.dead: dict[str, str] = {}  # node -> why it stopped unexpectedly
        self.peaks: dict[str, int] = {}  # node -> peak memory seen since reset_peaks()
        fabric.attach(self)

    # -- SnapshotSink ------------------------------------------------------------------------------
    def record(self, name: str, summary: dict[str, Any]) -> None:
        old = self.snapshots.get(name)
        if old is not None and old.get("started") == summary.get("started") and \
                summary.get("time", 0.0) < old.get("time", 0.0):
            return  # a push written before a fresher `refresh` answer, arriving after it
        self.snapshots[name] = summary
        rss = summary["counters"]["usage"].get("rss_bytes") or 0
        self.peaks[name] = max(self.peaks.get(name, 0), rss)
        self.updated.set()

    def died(self, name: str, why: str) -> None:
        self.dead[name] = why
        self.updated.set()

    # -- bookkeeping ---------------------------------------------------------------------------------
    def reset_peaks(self) -> None:
        self.peaks = {}

    def forget(self, name: str) -> None:
        """The node was stopped or killed on purpose: its last summary no longer describes it."""
        self.snapshots.pop(name, None)
        self.dead.pop(name, None)

    async def refresh(self, names: list[str]) -> None:
        """Fetch fresh summaries now, the engines' counters read anew (`refresh=1`), a few nodes at a time. A
        pushed summary is sent when a node's table or sessions change, so its message counters can lag behind
        (an UPDATE that changes no table): an event's counts are taken from summaries read this way before and
        after it, else messages of the cold start's tail were counted in the first event. A node that does
        not answer keeps its last summary."""
        gate = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def one(name: str) -> None:
            async with gate:
                try:
                    self.record(name, await self.fabric.get(name, "/state?summary=1&refresh=1", timeout=10))
                except (OSError, asyncio.TimeoutError, RunError):
                    pass

        await asyncio.gather(*(one(n) for n in names))

    async def refresh_until_quiet(self, names: list[str], within: float = QUIET_WITHIN) -> None:
        """`refresh` until the message counters stop moving (two reads `QUIET_PAUSE` apart agree), `within`
        seconds at most: the UPDATEs still in flight when the tables converged (a reflector's second copy)
        belong to the phase that sent them. Keepalives and CPU do not count as moving."""
        deadline = time.monotonic() + within
        await self.refresh(names)
        last = {n: message_counts(self.snapshots[n]) for n in names if n in self.snapshots}
        while time.monotonic() < deadline:
            await asyncio.sleep(QUIET_PAUSE)
            await self.refresh(names)
            now = {n: message_counts(self.snapshots[n]) for n in names if n in self.snapshots}
            if now == last:
                return
            last = now

    async def explain(self, conv: Convergence, expected: dict[str, Expected], limit: int = 20) -> None:
        """Fill `conv.diffs` for the nodes that differ (up to `limit`), from their full tables."""
        for name in sorted(set(expected) - conv.equal)[:limit]:
            try:
                text = await self.fabric.get(name, "/routes?format=ip", timeout=10)
            except (OSError, asyncio.TimeoutError, RunError):
                text = ""
            conv.diffs[name] = table_diff(expected[name].table, text if isinstance(text, str) else "")

    # -- waiting -------------------------------------------------------------------------------------------
    async def wait_converged(self, expected: dict[str, Expected], since: float,
                             want_sessions: set[tuple[str, str]], timeout: float,
                             progress: Progress | None = None, require_sessions: bool = True) -> Convergence:
        deadline = time.monotonic() + timeout
        while True:
            self.updated.clear()
            conv = convergence(expected, self.snapshots, since, want_sessions)
            if progress:
                progress(conv, time.time() - since)
            if self.dead:  # only unexpected deaths land here (a stopped or killed node is forgotten)
                name, why = next(iter(sorted(self.dead.items())))
                raise RunError(f"node died: {why}", node=name)
            done = conv.converged and (not require_sessions or conv.sessions_up == conv.sessions_expected)
            if done:
                return conv
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self.explain(conv, expected)
                return conv
            try:
                await asyncio.wait_for(self.updated.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
