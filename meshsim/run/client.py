"""Reading a running scenario's nodes from the command line (`meshsim status`, `routes --live`)."""

from __future__ import annotations

import asyncio
from typing import Sequence

from meshsim.errors import RunError
from meshsim.agent.http import request
from meshsim.model.cluster import Cluster
from meshsim.agent.config import loopback_map
from meshsim.model.resources import load_scenario
from meshsim.fabric.local import DEFAULT_HTTP_PORT


def _address(files: Sequence[str], node: str) -> str:
    cluster = Cluster.build(load_scenario(files))
    cluster.scenario.node(node)  # NotFoundError for an unknown node
    return str(loopback_map(cluster)[node])


def _get(files: Sequence[str], node: str, path: str) -> object:
    host = _address(files, node)
    try:
        status, payload = asyncio.run(request(host, DEFAULT_HTTP_PORT, "GET", path, timeout=5))
    except (OSError, asyncio.TimeoutError) as exc:
        raise RunError(f"no running meshsim node at {host}:{DEFAULT_HTTP_PORT} ({exc}); "
                       "start the scenario with `meshsim run ... --keep-running`", node=node) from None
    if status != 200:
        raise RunError(f"{path} answered {status}", node=node)
    return payload


def live_status(files: Sequence[str], node: str) -> str:
    payload = _get(files, node, "/status")
    assert isinstance(payload, dict)
    return str(payload["text"])


def live_routes(files: Sequence[str], node: str | None, fmt: str) -> str:
    if node is None:
        raise RunError("--live needs --node NAME")
    payload = _get(files, node, "/routes?format=" + ("ip" if fmt == "ip" else "route"))
    return str(payload)
