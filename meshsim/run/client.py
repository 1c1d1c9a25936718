"""Reading a running scenario's nodes from the command line (`meshsim status`, `routes --live`, `show`).

`fetch_views` is the one place that finds a node and asks it for its JSON views; it finds the node from the
scenario files (the node's 127.x address, as `meshsim run` maps it) until run state records exist. `birdc`
speaks a BIRD control socket (what birdc does) for `implementation: bird` nodes, whose GET /status names it
(`control_socket`).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Sequence

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


def fetch_views(files: Sequence[str], node: str, views: Sequence[str] = ("status", "rib", "routes")) -> dict[str, Any]:
    """GET /<view> of a running node for each view: {"status": {...}, "rib": {...}, "routes": {...}}."""
    out = {}
    for view in views:
        payload = _get(files, node, f"/{view}")
        if not isinstance(payload, dict):
            raise RunError(f"/{view} answered {type(payload).__name__}, expected a JSON object", node=node)
        out[view] = payload
    name = out.get("status", {}).get("name")
    if name not in (None, node):
        raise RunError(f"the node answering at {_address(files, node)} is {name!r}, not {node!r} (another run?)",
                       node=node)
    return out


def birdc(path: str, command: str, timeout: float = 10.0) -> tuple[str, str]:
    """(banner, reply) of one command on a BIRD control socket, both as birdc prints them."""
    from meshsim.engines.bird.confd import split_reply

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            f = s.makefile("rwb")
            hello = f.readline().decode(errors="replace").rstrip("\n")
            f.write(command.encode() + b"\n")
            f.flush()
            lines = []
            while True:
                raw = f.readline()
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                    break
    except OSError as exc:
        raise RunError(f"cannot reach BIRD's control socket {path}: {exc}") from None
    reply, _ = split_reply(lines)
    return split_reply([hello])[0].rstrip("\n"), reply


def live_status(files: Sequence[str], node: str) -> str:
    return str(fetch_views(files, node, ("status",))["status"]["text"])


def live_routes(files: Sequence[str], node: str | None, fmt: str) -> str:
    if node is None:
        raise RunError("--live needs --node NAME")
    payload = _get(files, node, "/routes?format=" + ("ip" if fmt == "ip" else "route"))
    return str(payload)
