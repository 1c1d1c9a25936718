"""Following nodes that run elsewhere: one long poll per node, delivering its summaries to a sink.

Owns `Watchers`: for every node it is told to watch, a task long-polls the node's API
(`GET /state?after=V&timeout=5&summary=1`, meshsim/agent/agent.py) and hands each new summary to the
attached `SnapshotSink` (the Observer), as a worker pushes its nodes' summaries over its pipe
(fabric/local.py). Polls are at least `min_interval` apart, so a node changing on every event-loop turn costs
at most 1/min_interval requests a second; convergence times do not suffer, since they are read from the
nodes' own change timestamps in the summaries, not from when they arrive. A node that stops answering for
`dead_after` seconds (and at least 3 polls in a row) is reported dead once, with the last error; a node whose
process was replaced (its `started` time changed) keeps being followed (its counters restart from zero,
which steps.py handles). `stop(name)` ends a node's poll before it is stopped or frozen on purpose, so no
summary of it arrives after that. Any fabric whose nodes answer HTTP can use it (compose: fabric/remote.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from meshsim.errors import RunError
from meshsim.fabric.base import SnapshotSink
from meshsim.logs import get_logger

Get = Callable[[str, str, float], Awaitable[Any]]
"""`await get(node, path, timeout)` -> the reply's JSON (FabricBase.get); raises OSError, TimeoutError,
ConnectionError or RunError when the node does not answer 200."""

POLL_SECONDS = 5  # how long a node holds a poll open when nothing changes
SLACK = 5.0  # on top of POLL_SECONDS before the client gives up on a poll (a busy machine answers late)
MIN_INTERVAL = 0.02  # between two polls of one node (the worker pipe's push interval too)
DEAD_AFTER = 15.0  # seconds without an answer before a node is reported dead
RETRY = 1.0  # seconds between polls of a node that does not answer


class Watchers:
    """One long-poll task per watched node (see the module docstring)."""

    def __init__(self, get: Get, *, min_interval: float = MIN_INTERVAL, dead_after: float = DEAD_AFTER,
                 poll_seconds: int = POLL_SECONDS, retry: float = RETRY) -> None:
        self.get = get
        self.min_interval = min_interval
        self.dead_after = dead_after
        self.poll_seconds = poll_seconds
        self.retry = retry
        self.sink: SnapshotSink | None = None
        self.tasks: dict[str, asyncio.Task] = {}
        self.last: dict[str, dict[str, Any]] = {}  # node -> the latest summary delivered
        self.log = get_logger(component="watch")

    def attach(self, sink: SnapshotSink) -> None:
        self.sink = sink

    def watching(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done()

    def start(self, name: str) -> None:
        """Follow `name` from now on (idempotent)."""
        if not self.watching(name):
            self.tasks[name] = asyncio.create_task(self._follow(name), name=f"watch-{name}")

    async def stop(self, name: str) -> None:
        """Stop following `name`: no summary of it is delivered once this returns."""
        task = self.tasks.pop(name, None)
        self.last.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def resend(self, name: str) -> None:
        """Deliver the latest summary of `name` again (the sink forgot it, but the node still runs)."""
        summary = self.last.get(name)
        if summary is not None and self.sink is not None and self.watching(name):
            self.sink.record(name, summary)

    async def close(self) -> None:
        for name in list(self.tasks):
            await self.stop(name)

    async def _follow(self, name: str) -> None:
        version = -1
        started: float | None = None
        failures = 0
        last_answer = time.monotonic()
        while True:
            path = f"/state?after={version}&timeout={self.poll_seconds if version >= 0 else 0}&summary=1"
            try:
                summary = await self.get(name, path, self.poll_seconds + SLACK)
                if not isinstance(summary, dict) or not isinstance(summary.get("version"), int):
                    raise ConnectionError(f"GET /state answered {str(summary)[:100]!r}, not a node summary")
            except (OSError, asyncio.TimeoutError, ConnectionError, RunError) as exc:
                failures += 1
                silent = time.monotonic() - last_answer
                if failures >= 3 and silent >= self.dead_after:
                    error = str(exc) or type(exc).__name__
                    why = f"stopped answering GET /state for {silent:.0f} s: {error}"
                    self.log.error("node_silent", node=name, seconds=round(silent, 1), error=error)
                    if self.sink is not None:
                        self.sink.died(name, why)
                    return
                await asyncio.sleep(self.retry)
                continue
            failures = 0
            last_answer = time.monotonic()
            if started is not None and summary.get("started") != started:
                self.log.warning("node_restarted", node=name, detail="its process was replaced; counters restart")
                version = -1
            started = summary.get("started")
            if summary["version"] != version:
                version = summary["version"]
                self.last[name] = summary
                if self.sink is not None:
                    self.sink.record(name, summary)
                await asyncio.sleep(self.min_interval)
