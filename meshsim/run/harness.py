"""A running cluster you can drive: the datastore (Cluster model) + the nodes (a Fabric) + observation.

Owns `Harness`, used by `meshsim run`, the timeline, `compare` and the tests: it starts every node, keeps
the model and the nodes in step (pods added or removed, nodes stopped, killed or started), computes the
expected tables of whatever is running, and waits for convergence. It also remembers which killed nodes
their peers still hold as stale (graceful restart after a SIGKILL, RFC 4724) and until when, so the
expected tables keep those routes for the restart time. `async with Harness(cluster, fabric) as h:`
guarantees every process is gone when the block exits.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from meshsim.bgp.timers import BIRD_GRACEFUL_RESTART_TIME
from meshsim.fabric.base import Fabric
from meshsim.model.cluster import Cluster, Pod
from meshsim.model.resources import Node
from meshsim.oracle.expected import expected_tables
from meshsim.report.metrics import Convergence, Expected, expected_digests, expected_sessions
from meshsim.run.observer import Observer, Progress


class Harness:
    def __init__(self, cluster: Cluster, fabric: Fabric | None = None) -> None:
        """`fabric` defaults to worker processes on this machine (fabric.local.WorkerFabric)."""
        if fabric is None:
            from meshsim.fabric.local import WorkerFabric

            fabric = WorkerFabric(cluster)
        self.cluster = cluster
        self.fabric = fabric
        self.observer = Observer(fabric)
        self.started_at = 0.0
        self.stale: dict[str, float] = {}  # killed node -> when its peers drop its stale routes
        # what the cold start should reach, computed while BGP is held (see start())
        self._cold: tuple[tuple[str, ...], dict[str, Expected], set[tuple[str, str]]] | None = None

    async def __aenter__(self) -> "Harness":
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, names: list[str] | None = None) -> None:
        """Start every node's agent with BGP held, then release BGP on all of them at once: the cold start
        is timed from that instant, with every process and agent already up."""
        names = names or [n.name for n in self.cluster.scenario.nodes]
        await self.fabric.start()
        for name in names:
            await self.fabric.start_node(name, hold_bgp=True)
        # The oracle for a large cluster costs the runner seconds of CPU: spent now, not in the timed cold
        # start, where it would take a core from the nodes (the first converge() uses it if nothing changed).
        self._cold = (tuple(sorted(self.running())), self.expected(), self.expected_sessions())
        self.started_at = time.time()
        await self.fabric.release(names)

    async def close(self, keep_files: bool = False) -> None:
        """Stop everything; remove the fabric's temp files too unless `keep_files` (the runner copies the
        logs into its report first, then calls `fabric.remove_files()`)."""
        await self.fabric.close()
        remove = getattr(self.fabric, "remove_files", None)
        if remove is not None and not keep_files:
            remove()

    # -- what should be ----------------------------------------------------------------------------
    def running(self) -> list[str]:
        return self.fabric.running()

    def stale_nodes(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        for name, until in list(self.stale.items()):
            if now >= until or name in self.running():
                del self.stale[name]
        return sorted(self.stale)

    def expected(self, now: float | None = None) -> dict[str, Expected]:
        return expected_digests(expected_tables(self.cluster, self.running(), stale=self.stale_nodes(now)))

    def expected_sessions(self) -> set[tuple[str, str]]:
        return expected_sessions(self.cluster.peerings(), self.running())

    async def converge(self, timeout: float = 60.0, since: float | None = None,
                       progress: Progress | None = None) -> Convergence:
        cold, self._cold = self._cold, None
        if cold is not None and since is None and not self.stale and cold[0] == tuple(sorted(self.running())):
            expected, sessions = cold[1], cold[2]
        else:
            expected, sessions = self.expected(), self.expected_sessions()
        return await self.observer.wait_converged(expected, self.started_at if since is None else since,
                                                  sessions, timeout, progress)

    def snapshot(self, name: str) -> dict[str, Any]:
        return self.observer.snapshots[name]

    # -- driving --------------------------------------------------------------------------------------
    async def add_pods(self, node: str, count: int) -> list[Pod]:
        self._cold = None
        before = {n.name: self.cluster.originated(n.name) for n in self.cluster.scenario.nodes}
        pods = self.cluster.add_pods(node, count)
        await self._push_changed(before, always={node})
        return pods

    async def remove_pods(self, node: str, count: int) -> list[Pod]:
        self._cold = None
        before = {n.name: self.cluster.originated(n.name) for n in self.cluster.scenario.nodes}
        pods = self.cluster.remove_pods(node, count)
        await self._push_changed(before, always={node})
        return pods

    async def _push_changed(self, before: dict[str, frozenset], always: set[str]) -> None:
        for n in self.cluster.scenario.nodes:
            if n.name in always or before.get(n.name) != self.cluster.originated(n.name):
                await self.fabric.push_local(n.name)

    async def apply(self, resource: object) -> str:
        self._cold = None
        what = self.cluster.apply(resource)
        await self.fabric.push_configs()
        for n in self.cluster.scenario.nodes:  # a new IPIP pool gives nodes a tunnel address (and maybe a block)
            await self.fabric.push_local(n.name)
        return what

    async def add_node(self, node: Node, workloads: int = 0) -> None:
        self._cold = None
        self.cluster.add_node(node)
        if workloads:
            self.cluster.add_pods(node.name, workloads)
        await self.fabric.push_configs()
        await self.start_node(node.name)

    async def disconnect(self, node: str, peer: str) -> None:
        await self.fabric.post(node, "/teardown", {"peer": peer})

    async def stop_node(self, name: str) -> None:
        self._cold = None
        self.observer.forget(name)
        self.stale.pop(name, None)
        await self.fabric.stop_node(name)

    async def kill_node(self, name: str, mode: str = "crash") -> float | None:
        """Kill a node; for `sigkill` returns when its peers drop its stale routes (None: no graceful restart)."""
        self._cold = None
        self.observer.forget(name)
        await self.fabric.kill_node(name, mode=mode)
        if mode != "sigkill":
            return None
        cfg = self.fabric.configs()[name]
        restart = max((p.restart_time if p.restart_time is not None else BIRD_GRACEFUL_RESTART_TIME
                       for p in cfg.peers), default=0)
        if restart <= 0:
            return None
        self.stale[name] = time.time() + restart
        return self.stale[name]

    async def start_node(self, name: str) -> None:
        self._cold = None
        restart = name in self.stale or self.fabric.was_killed(name)
        self.stale.pop(name, None)
        await self.fabric.start_node(name, restart=restart)
        await self.fabric.release([name])

    async def wait_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
