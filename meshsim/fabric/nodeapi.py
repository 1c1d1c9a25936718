"""Talking to node processes over their HTTP JSON API, for every kind of fabric (local, netns, compose)."""

from __future__ import annotations

from typing import Any

from dataclasses import replace

from meshsim.errors import RunError
from meshsim.agent.http import request
from meshsim.agent.config import LocalState, NodeConfig


def config_body(cfg: NodeConfig) -> dict[str, Any]:
    """The body of POST /config: what confd would re-render after a resource change."""
    return {"peers": [p.__dict__ for p in cfg.peers], "pools": list(cfg.pools), "cluster_id": cfg.cluster_id}


class NodeApi:
    """Mixin for fabrics: `get`/`post` a node's endpoint and push it what the datastore says. The fabric provides
    `http_address(name) -> (host, port)`, `cluster`, `nodes` (name -> object with `.config`), `running()`,
    `_configs()` (every node's config from the model) and `_new_node(name, cfg)` (an entry for a node added
    at run time); `_stamp(cfg)` may mark configs as its own (the local fabric adds its run id)."""

    def _stamp(self, cfg: NodeConfig) -> NodeConfig:
        return cfg

    def http_address(self, name: str) -> tuple[str, int]:  # pragma: no cover - provided by the fabric
        raise NotImplementedError

    async def get(self, name: str, path: str, timeout: float = 10.0) -> Any:
        host, port = self.http_address(name)
        status, payload = await request(host, port, "GET", path, timeout=timeout)
        if status != 200:
            raise RunError(f"GET {path} answered {status}: {payload}", node=name)
        return payload

    async def post(self, name: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        host, port = self.http_address(name)
        status, payload = await request(host, port, "POST", path, body, timeout=timeout)
        if status != 200:
            raise RunError(f"POST {path} answered {status}: {payload}", node=name)
        return payload

    async def push_local(self, name: str) -> None:
        """Tell a node what IPAM now says about it (blocks, pods, what it originates)."""
        local = LocalState.of(self.cluster, name)  # type: ignore[attr-defined]
        node = self.nodes[name]  # type: ignore[attr-defined]
        node.config = replace(node.config, local=local)
        if name in self.running():  # type: ignore[attr-defined]
            await self.post(name, "/local", local.to_json())

    async def push_configs(self) -> list[str]:
        """Re-render every node's config from the model (confd after a resource change); add entries for new
        nodes and POST /config to running nodes whose peerings, pools or cluster ID changed."""
        changed = []
        for name, cfg in self._configs().items():  # type: ignore[attr-defined]
            cfg = self._stamp(cfg)
            node = self.nodes.get(name)  # type: ignore[attr-defined]
            if node is None:
                self.nodes[name] = self._new_node(name, cfg)  # type: ignore[attr-defined]
                continue
            old = node.config
            node.config = replace(cfg, local=old.local)
            if (old.peers, old.pools, old.cluster_id) != (cfg.peers, cfg.pools, cfg.cluster_id):
                changed.append(name)
                if name in self.running():  # type: ignore[attr-defined]
                    await self.post(name, "/config", config_body(cfg))
        return changed
