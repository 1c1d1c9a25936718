"""A running cluster you can drive: the datastore (Cluster model) + the nodes (a Fabric) + observation.

Owns `Harness`, used by `meshsim run`, the timeline, `compare` and the tests: it starts every node, keeps
the model and the nodes in step (pods added or removed, nodes stopped, killed or started), computes the
expected tables of whatever is running, and waits for convergence. It also remembers which killed nodes
their peers still hold as stale (graceful restart after a SIGKILL, RFC 4724) and until when, so the
expected tables keep those routes for the restart time. `async with Harness(cluster, fabric) as h:`
guarantees every process is gone when the block exits.

The oracle computes the whole cluster (0.2 s of CPU at 50 nodes, 8 s for a 200-node mesh), so the harness keeps its
answer until the model, the running nodes or the stale nodes change, and each event computes the answer it
will wait for before it acts: computed after the act, it would take a core from the nodes inside the very
milliseconds being measured. `acted_at` is the instant the nodes were first told (the event's time zero).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
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
        self._revision = 0  # bumped by every change to the model (pods, resources, nodes)
        # when the last driving method began to change the nodes, its oracle work done: what an event is timed from
        self.acted_at = 0.0
        self._oracle: tuple[tuple[Any, ...], dict[str, Expected], set[tuple[str, str]]] | None = None

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
        self.expected()  # while BGP is held, not in the timed cold start
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
        """Killed nodes whose routes their peers still hold as stale at `now` (default: now)."""
        now = time.time() if now is None else now
        running = set(self.running())
        return sorted(n for n, until in self.stale.items() if now < until and n not in running)

    def expected(self, now: float | None = None) -> dict[str, Expected]:
        """Every running node's expected table (digests), as the oracle computes it for the model now."""
        return self._expect(self.running(), self.stale_nodes(now))[0]

    def expected_sessions(self) -> set[tuple[str, str]]:
        return self._expect(self.running(), self.stale_nodes())[1]

    def _expect(self, running: Iterable[str], stale: Iterable[str]) -> tuple[dict[str, Expected], set[tuple[str, str]]]:
        """The oracle's answer for these running and stale nodes, computed once per state of the model (the
        driving methods below ask for the state they create before they act: `_act`)."""
        up, kept = tuple(sorted(running)), tuple(sorted(stale))
        key = (self._revision, up, kept)
        if self._oracle is None or self._oracle[0] != key:
            tables = expected_digests(expected_tables(self.cluster, up, stale=list(kept)))
            self._oracle = (key, tables, expected_sessions(self.cluster.peerings(), up))
        return self._oracle[1], self._oracle[2]

    def _changed(self) -> None:
        """The model changed (pods, resources, nodes): the oracle's last answer no longer holds."""
        self._revision += 1

    def _act(self, running: Iterable[str] | None = None, stale: Iterable[str] | None = None) -> None:
        """About to tell the nodes: the oracle's answer for the state that follows (these running and stale nodes;
        default: as now) is computed first, then `acted_at` is stamped."""
        self._expect(self.running() if running is None else running, self.stale_nodes() if stale is None else stale)
        self.acted_at = time.time()

    async def converge(self, timeout: float = 60.0, since: float | None = None,
                       progress: Progress | None = None) -> Convergence:
        expected, sessions = self.expected(), self.expected_sessions()
        return await self.observer.wait_converged(expected, self.started_at if since is None else since,
                                                  sessions, timeout, progress)

    def snapshot(self, name: str) -> dict[str, Any]:
        return self.observer.snapshots[name]

    # -- driving --------------------------------------------------------------------------------------
    async def add_pods(self, node: str, count: int) -> list[Pod]:
        before = {n.name: self.cluster.originated(n.name) for n in self.cluster.scenario.nodes}
        pods = self.cluster.add_pods(node, count)
        self._changed()
        self._act()
        await self._push_changed(before, always={node})
        return pods

    async def remove_pods(self, node: str, count: int) -> list[Pod]:
        before = {n.name: self.cluster.originated(n.name) for n in self.cluster.scenario.nodes}
        pods = self.cluster.remove_pods(node, count)
        self._changed()
        self._act()
        await self._push_changed(before, always={node})
        return pods

    async def _push_changed(self, before: dict[str, frozenset], always: set[str]) -> None:
        for n in self.cluster.scenario.nodes:
            if n.name in always or before.get(n.name) != self.cluster.originated(n.name):
                await self.fabric.push_local(n.name)

    async def apply(self, resource: object) -> str:
        what = self.cluster.apply(resource)
        self._changed()
        self._act()
        await self.fabric.push_configs()
        for n in self.cluster.scenario.nodes:  # a new IPIP pool gives nodes a tunnel address (and maybe a block)
            await self.fabric.push_local(n.name)
        return what

    async def add_node(self, node: Node, workloads: int = 0) -> None:
        self.cluster.add_node(node)
        if workloads:
            self.cluster.add_pods(node.name, workloads)
        self._changed()
        self._act(running=[*self.running(), node.name])
        await self.fabric.push_configs()
        await self._start(node.name)

    async def disconnect(self, node: str, peer: str) -> None:
        self._act()
        await self.fabric.post(node, "/teardown", {"peer": peer})

    async def stop_node(self, name: str) -> None:
        self.observer.forget(name)
        self.stale.pop(name, None)
        self._act(running=[n for n in self.running() if n != name])
        await self.fabric.stop_node(name)

    async def kill_node(self, name: str, mode: str = "crash") -> float | None:
        """Kill a node; for `sigkill` returns when its peers drop its stale routes (None: no graceful restart)."""
        self.observer.forget(name)
        restart = 0.0
        if mode == "sigkill" and name in self.running():
            cfg = self.fabric.configs()[name]
            restart = max((p.restart_time if p.restart_time is not None else BIRD_GRACEFUL_RESTART_TIME
                           for p in cfg.peers), default=0)
        self._act(running=[n for n in self.running() if n != name],
                  stale=[*self.stale_nodes(), *([name] if restart > 0 else [])])
        await self.fabric.kill_node(name, mode=mode)
        if restart <= 0:
            return None
        self.stale[name] = self.acted_at + restart
        return self.stale[name]

    async def start_node(self, name: str) -> None:
        self._act(running=[*self.running(), name], stale=[n for n in self.stale_nodes() if n != name])
        await self._start(name)

    async def _start(self, name: str) -> None:
        restart = name in self.stale or self.fabric.was_killed(name)
        self.stale.pop(name, None)
        await self.fabric.start_node(name, restart=restart)
        await self.fabric.release([name])

    async def wait_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
