"""`meshsim node`: one node alone in its process, driven over its HTTP API (one container per node).

Owns `main(args)`: the node's config comes from a file the runner wrote, or is computed from the
scenario exactly as the runner would (`--scenario FILE... --name NODE`); the per-run token comes from
`MESHSIM_TOKEN` (compose passes it through an env file only the user can read), so every POST needs it.
The node runs until SIGTERM/SIGINT or POST /shutdown.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from meshsim.agent.agent import NodeAgent
from meshsim.agent.config import NodeConfig, node_configs
from meshsim.agent.netctx import NetContext
from meshsim.agent.worker import run_loop
from meshsim.errors import RunError
from meshsim.logs import configure, get_logger


def config_from_scenario(files: list[str], name: str, *, bgp_port: int, http_port: int, workdir: str,
                         loopback: bool) -> NodeConfig:
    """A node started on its own computes its config from the scenario, exactly as the runner would;
    `loopback=False` binds the declared address itself."""
    from meshsim.model.cluster import Cluster
    from meshsim.model.resources import load_scenario

    cluster = Cluster.build(load_scenario(files))
    cluster.scenario.node(name)
    sessions = None if loopback else {n.name: n.address for n in cluster.scenario.nodes}
    return node_configs(cluster, bgp_port=bgp_port, http_port=http_port, workdir=Path(workdir),
                        session_addresses=sessions)[name]


async def _amain(config: NodeConfig, hold_bgp: bool, token: str | None) -> int:
    from meshsim.engines.native.engine import NativeEngine

    log = get_logger(node=config.name)
    Path(config.workdir).mkdir(parents=True, exist_ok=True)
    agent: NodeAgent
    dataplane = None
    if config.dataplane == "kernel":
        from meshsim.agent.dataplane import KernelDataplane

        dataplane = KernelDataplane(log, netns=config.netns, host_interface=config.interface)
    engine = NativeEngine(config, net=NetContext(config.bgp_netns), log=log, on_change=lambda: agent.touch(),
                          dataplane=dataplane)
    agent = NodeAgent(config, engine, log=log, token=token)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.shutdown.set)
    await agent.start(hold_bgp=hold_bgp)
    try:
        await agent.shutdown.wait()
    finally:
        await agent.close()
    return 0


def main(args: Any) -> int:
    if args.config:
        config = NodeConfig.load(args.config)
    else:
        if not args.scenario or not args.name:
            raise RunError("meshsim node needs --config FILE, or --scenario FILE... --name NODE")
        config = config_from_scenario(args.scenario, args.name, bgp_port=args.bgp_port, http_port=args.http_port,
                                      workdir=args.workdir, loopback=args.loopback)
    if getattr(args, "dataplane", None):
        if args.dataplane == "kernel" and getattr(args, "loopback", False):
            raise RunError("--dataplane kernel with --loopback would program this machine's own routing table: "
                           "use it where the node has a network of its own (a container, a namespace)")
        config = replace(config, dataplane=args.dataplane)
    token = os.environ.get("MESHSIM_TOKEN", "").strip() or None
    configure(config.log_level, json=True)
    if token is None:
        get_logger(node=config.name).warning(
            "node_without_token", detail="MESHSIM_TOKEN is not set: this node answers GETs but refuses every POST "
                                         "(/local, /config, /start, ...), so no controller can drive it")
    return run_loop(_amain(config, bool(getattr(args, "hold_bgp", False)), token))
