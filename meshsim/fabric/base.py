"""The one contract between a run and the place its nodes run, and what every fabric shares.

Owns the `Fabric` Protocol (what the harness, the observer and the timeline call: start, stop, kill and
talk to nodes, follow their state), `SnapshotSink` (where a fabric delivers node summaries), and
`FabricBase`, the part every fabric has in common: the nodes' configs from the model (the "datastore"),
HTTP get/post with the run's token, and pushing IPAM state and re-rendered peerings to running nodes.
Implementations: `fabric.local.WorkerFabric` (processes on this machine), `fabric.netns.NetnsFabric`
(namespaces, BIRD nodes, ToRs), `fabric.remote.RemoteFabric` (containers, compose).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from meshsim.agent.config import LocalState, NodeConfig
from meshsim.agent.http import request
from meshsim.errors import RunError
from meshsim.model.cluster import Cluster


class SnapshotSink(Protocol):
    """Receives what nodes report (the Observer)."""

    def record(self, name: str, summary: dict[str, Any]) -> None: ...

    def died(self, name: str, why: str) -> None: ...


class Fabric(Protocol):
    cluster: Cluster
    mode: str
    """local | netns | compose: said in reports."""
    token: str

    def configs(self) -> dict[str, NodeConfig]: ...

    def running(self) -> list[str]:
        """Nodes up and answering (not stopped, killed or frozen): what expected tables are computed for."""

    def attach(self, sink: SnapshotSink) -> None:
        """From now on deliver every running node's summaries to `sink`."""

    async def start(self) -> None:
        """Prepare (processes, namespaces): before the first node starts."""

    async def start_node(self, name: str, *, restart: bool = False, hold_bgp: bool = False) -> None:
        """Start a node; `restart`: it ran before and was killed (it keeps its kernel routes); `hold_bgp`:
        its agent serves but its BGP waits for `release`."""

    async def release(self, names: list[str]) -> None:
        """Start BGP on nodes started with `hold_bgp`, as close to the same instant as the fabric can."""

    def was_killed(self, name: str) -> bool:
        """The node was SIGKILLed (not stopped): it restarts with its old kernel routes (graceful restart)."""

    async def stop_node(self, name: str) -> None: ...

    async def kill_node(self, name: str, mode: str = "crash") -> None: ...

    async def push_local(self, name: str) -> None: ...

    async def push_configs(self) -> list[str]: ...

    async def get(self, name: str, path: str, timeout: float = 10.0) -> Any: ...

    async def post(self, name: str, path: str, body: Any = None, timeout: float = 10.0) -> Any: ...

    def tail(self, name: str, lines: int = 5) -> str: ...

    def collect_logs(self, dest: Path) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Processes and how they were measured, for the report."""

    async def close(self) -> None:
        """Stop everything this fabric started; idempotent, bounded in time, also after a failure."""


def config_body(cfg: NodeConfig) -> dict[str, Any]:
    """The body of POST /config: what confd would re-render after a resource change."""
    return {"peers": [p.__dict__ for p in cfg.peers], "pools": list(cfg.pools), "cluster_id": cfg.cluster_id}


class FabricBase:
    """What every fabric shares. A subclass provides `_configs()` (every node's config from the model),
    `http_address(name)`, `running()`, and whatever it needs to start and stop nodes."""

    cluster: Cluster
    run_id: str
    token: str

    def __init__(self, cluster: Cluster, *, token: str | None = None, run_id: str | None = None) -> None:
        """`run_id`: a run id given from outside (compose: the nodes' containers read the same one from the env
        file), else a fresh one."""
        self.cluster = cluster
        self.token = token or secrets.token_urlsafe(24)
        self.run_id = run_id or secrets.token_hex(6)
        self.node_configs: dict[str, NodeConfig] = {}

    # -- configs ---------------------------------------------------------------------------------
    def _configs(self) -> dict[str, NodeConfig]:  # pragma: no cover - provided by each fabric
        raise NotImplementedError

    def _stamp(self, cfg: NodeConfig) -> NodeConfig:
        return replace(cfg, run_id=self.run_id)

    def configs(self) -> dict[str, NodeConfig]:
        if not self.node_configs:
            self.node_configs = {n: self._stamp(c) for n, c in self._configs().items()}
        return self.node_configs

    def running(self) -> list[str]:  # pragma: no cover - provided by each fabric
        raise NotImplementedError

    def http_address(self, name: str) -> tuple[str, int]:
        cfg = self.configs()[name]
        return cfg.http_address or cfg.session_address, cfg.http_port

    # -- HTTP ---------------------------------------------------------------------------------------
    async def get(self, name: str, path: str, timeout: float = 10.0) -> Any:
        host, port = self.http_address(name)
        status, payload = await request(host, port, "GET", path, timeout=timeout)
        if status != 200:
            raise RunError(f"GET {path} answered {status}: {payload}", node=name)
        return payload

    async def post(self, name: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        host, port = self.http_address(name)
        status, payload = await request(host, port, "POST", path, body if body is not None else {},
                                        token=self.token, timeout=timeout)
        if status != 200:
            raise RunError(f"POST {path} answered {status}: {payload}", node=name)
        return payload

    # -- the datastore pushing state ----------------------------------------------------------------
    async def push_local(self, name: str) -> None:
        """Tell a node what IPAM now says about it (blocks, pods, what it originates)."""
        local = LocalState.of(self.cluster, name)
        cfgs = self.configs()
        cfgs[name] = replace(cfgs[name], local=local)
        if name in self.running():
            await self.post(name, "/local", local.to_json())

    def _new_node(self, name: str, cfg: NodeConfig) -> None:
        """A node added at run time (add-node): a fabric may need to prepare for it."""

    async def push_configs(self) -> list[str]:
        """Re-render every node's config from the model (confd after a resource change); POST /config to
        running nodes whose peerings, pools or cluster ID changed."""
        changed = []
        cfgs = self.configs()
        for name, cfg in self._configs().items():
            cfg = self._stamp(cfg)
            old = cfgs.get(name)
            if old is None:
                cfgs[name] = cfg
                self._new_node(name, cfg)
                continue
            cfgs[name] = replace(cfg, local=old.local)
            if (old.peers, old.pools, old.cluster_id) != (cfg.peers, cfg.pools, cfg.cluster_id):
                changed.append(name)
                if name in self.running():
                    await self.post(name, "/config", config_body(cfg))
        return changed
