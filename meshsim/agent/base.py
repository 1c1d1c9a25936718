"""What every node agent shares, whichever BGP engine it runs (meshsim's speaker in node.py, BIRD in birdnode.py).

Owns `VersionedState` (a version bumped on every state change and the long poll runners use on it) and
`serve_until_signalled(agent)` (the process entry: SIGTERM/SIGINT ask the agent to shut down gracefully).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from meshsim.agent.http import wait_for_version


class VersionedState:
    """Mixin: `version` grows on every change (`await self._bump()`); `await self.wait_newer(v, s)` returns
    once it is past `v` or after `s` seconds. Call `_init_versioned()` in `__init__`."""

    version: int
    changed: asyncio.Condition

    def _init_versioned(self) -> None:
        self.version = 0
        self.changed = asyncio.Condition()

    async def _bump(self) -> None:
        async with self.changed:
            self.version += 1
            self.changed.notify_all()

    async def wait_newer(self, after: int, timeout: float) -> None:
        await wait_for_version(self.changed, lambda: self.version, after, timeout)


async def serve_until_signalled(agent: Any) -> int:
    """Run an agent (anything with `run()` and a `shutdown` event) until it stops or SIGTERM/SIGINT arrives."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.shutdown.set)
    await agent.run()
    return 0
