"""A running cluster you can drive: the datastore (Cluster model) + the node processes + observation.

Owns `Harness`, an async context manager used by `meshsim run`, the timeline and the tests: it starts
every node, keeps the model and the processes in step (pods added or removed, nodes stopped, killed
or started), computes the expected tables of whatever is running, and waits for convergence.
`async with Harness(cluster) as h:` guarantees every process is gone when the block exits.
"""

from __future__ import annotations

import time
from typing import Any

from meshsim.oracle.expected import expected_tables
from meshsim.report.metrics import Convergence, expected_sessions
from meshsim.model.cluster import Cluster, Pod
from meshsim.routes.routetable import RouteTable
from meshsim.fabric.local import LocalFabric
from meshsim.run.observer import Observer, Progress


class Harness:
    def __init__(self, cluster: Cluster, *, bgp_port: int | None = None, http_port: int | None = None,
                 log_level: str = "info", fabric: Any = None) -> None:
        """`fabric` defaults to a LocalFabric (processes on this machine); any object with the same methods
        (start_node, wait_ready, stop_node, kill_node, push_local, push_configs, get, post, running, tail,
        collect_logs, close) can drive nodes elsewhere, e.g. containers."""
        self.cluster = cluster
        kwargs: dict[str, Any] = {"bgp_port": bgp_port, "log_level": log_level}
        if http_port is not None:
            kwargs["http_port"] = http_port
        self.fabric = fabric if fabric is not None else LocalFabric(cluster, **kwargs)
        self.observer = Observer(self.fabric)
        self.started_at = 0.0

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
        names = names or [n.name for n in self.cluster.scenario.nodes]
        self.started_at = time.time()
        for name in names:
            await self.fabric.start_node(name)
        await self.fabric.wait_ready(names)
        for name in names:
            self.observer.watch(name)

    async def close(self) -> None:
        await self.observer.close()
        await self.fabric.close()

    # -- what should be --------------------------------------------------------------------------
    def running(self) -> list[str]:
        return self.fabric.running()

    def expected(self) -> dict[str, RouteTable]:
        return expected_tables(self.cluster, self.running())

    def expected_sessions(self) -> set[tuple[str, str]]:
        return expected_sessions(self.cluster.peerings(), self.running())

    async def converge(self, timeout: float = 60.0, since: float | None = None,
                       progress: Progress | None = None) -> Convergence:
        return await self.observer.wait_converged(self.expected(), self.started_at if since is None else since,
                                                  self.expected_sessions(), timeout, progress)

    def snapshot(self, name: str) -> dict[str, Any]:
        return self.observer.snapshots[name]

    # -- driving -----------------------------------------------------------------------------------
    async def add_pods(self, node: str, count: int) -> list[Pod]:
        before = {n.name: self.cluster.originated(n.name) for n in self.cluster.scenario.nodes}
        pods = self.cluster.add_pods(node, count)
        await self._push_changed(before, always={node})
        return pods

    async def remove_pods(self, node: str, count: int) -> list[Pod]:
        before = {n.name: self.cluster.originated(n.name) for n in self.cluster.scenario.nodes}
        pods = self.cluster.remove_pods(node, count)
        await self._push_changed(before, always={node})
        return pods

    async def _push_changed(self, before: dict[str, frozenset], always: set[str]) -> None:
        for n in self.cluster.scenario.nodes:
            if n.name in always or before.get(n.name) != self.cluster.originated(n.name):
                await self.fabric.push_local(n.name)

    async def apply(self, resource: object) -> str:
        what = self.cluster.apply(resource)
        await self.fabric.push_configs()
        for n in self.cluster.scenario.nodes:  # a new IPIP pool gives nodes a tunnel address (and maybe a block)
            await self.fabric.push_local(n.name)
        return what

    async def add_node(self, node: object, workloads: int = 0) -> None:
        self.cluster.add_node(node)  # type: ignore[arg-type]
        if workloads:
            self.cluster.add_pods(node.name, workloads)  # type: ignore[attr-defined]
        await self.fabric.push_configs()
        await self.start_node(node.name)  # type: ignore[attr-defined]

    async def disconnect(self, node: str, peer: str) -> None:
        await self.fabric.post(node, "/teardown", {"peer": peer})

    async def stop_node(self, name: str) -> None:
        self.observer.unwatch(name)
        await self.fabric.stop_node(name)

    async def kill_node(self, name: str, mode: str = "crash") -> None:
        self.observer.unwatch(name)
        await self.fabric.kill_node(name, mode=mode)

    async def start_node(self, name: str) -> None:
        await self.fabric.start_node(name)
        await self.fabric.wait_ready([name])
        self.observer.watch(name)
