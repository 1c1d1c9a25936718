"""One Calico node's agent: the HTTP API, its state and counters, around whichever BGP engine it drives.

Owns `NodeAgent`. It serves the node's state over HTTP JSON on its own address (curl-able), keeps a
version that grows on every change (for long polls), and turns API calls into engine calls; it knows
nothing of BGP itself. The engines (meshsim/engines) are meshsim's own sessions or real BIRD.

  GET  /status    sessions as `calicoctl node status` shows them (+ the boxed text in "text")
  GET  /routes    the node's table: routes, `ip route` and `route -n` text, change times (?format=ip|route|kernel)
  GET  /routelog  every route change since ?since=T (what blackouts are measured on)
  GET  /rib       Adj-RIB-In per peer, Loc-RIB with best-path reasons, Adj-RIB-Out per peer
  GET  /config    the configuration files the engine runs with (BIRD nodes: confd's three files)
  GET  /counters  UPDATEs / withdrawals / messages per peer and in total, flaps, CPU and memory
  GET  /state     all of the above; ?after=V&timeout=S waits for version > V; ?summary=1: digests only;
                  ?refresh=1: the engine's counters read anew first (BIRD: birdc)
  POST /local     {"blocks", "affine", "workloads", "originate"}: the node's IPAM state from the datastore
  POST /config    {"peers", "pools", "cluster_id"}: re-rendered peerings (sessions that stay are kept)
  POST /stop      graceful BGP stop (Cease to every peer); POST /start brings it back
  POST /teardown  {"peer": NAME}: drop one session (it comes back by itself)
  POST /shutdown  stop and leave
Every POST needs the run's token (meshsim/agent/http.py checks it); bodies are checked completely
before anything is applied (`meshsim.agent.bodies`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from meshsim.agent import bodies
from meshsim.agent.config import NodeConfig
from meshsim.agent.http import HttpError, serve, wait_for_version
from meshsim.engines.base import COUNTER_KEYS, Engine
from meshsim.report.calicoctl import StatusRow, node_status
from meshsim.routes.routetable import parse_ip_route

ENDPOINTS = ["/status", "/routes", "/routelog", "/rib", "/config", "/counters", "/state", "POST /local", "POST /config",
             "POST /stop", "POST /start", "POST /teardown", "POST /shutdown"]


def hms(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else ""


class NodeAgent:
    """A node: an engine, an HTTP endpoint, a version. `await start()`, then it serves until `close()`."""

    def __init__(self, config: NodeConfig, engine: Engine, *, log: Any, token: str | None,
                 on_shutdown: Callable[[], None] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.log = log
        self.token = token
        self.on_shutdown = on_shutdown
        self.version = 0
        self.changed = asyncio.Condition()
        self.started_at = time.time()
        self.shutdown = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._bump_scheduled = False
        self._watchers: list[Callable[[str], None]] = []

    # -- versions --------------------------------------------------------------------------------
    def touch(self) -> None:
        """Something changed: bump the version once per event-loop turn and wake long polls."""
        if not self._bump_scheduled:
            self._bump_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._bump()))

    async def _bump(self) -> None:
        self._bump_scheduled = False
        async with self.changed:
            self.version += 1
            self.changed.notify_all()
        for w in self._watchers:
            w(self.config.name)

    def watch(self, callback: Callable[[str], None]) -> None:
        """`callback(node)` after every version bump (the worker pushes summaries to its runner)."""
        self._watchers.append(callback)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self, *, hold_bgp: bool = False) -> None:
        host = self.config.http_address or self.config.session_address
        self._server = await serve(host, self.config.http_port, self.handle_http, token=self.token,
                                   names=(self.config.name, self.config.address), log=self.log)
        self.log.info("node_started", http=f"{host}:{self.config.http_port}", engine=self.engine.kind,
                      bgp=f"{self.config.session_address}:{self.config.bgp_port}", peers=len(self.config.peers))
        if not hold_bgp:
            await self.engine.start()
        else:
            await self.engine.prepare()
        self.touch()

    async def close_http(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def close(self, paced: bool = False) -> None:
        """The node goes away (`paced`: stopped in a run, its Ceases at BIRD's pace: Engine.close)."""
        await self.close_http()
        await self.engine.close(paced=paced)
        self.log.info("node_stopped")

    # -- views -----------------------------------------------------------------------------------
    def sessions(self) -> list[dict[str, Any]]:
        out = []
        for s in self.engine.sessions():
            d = s.to_json()
            d["since"] = hms(s.since_ts)
            out.append(d)
        return out

    def status(self) -> dict[str, Any]:
        sessions = self.sessions()
        rows = [StatusRow(s["peer"], s["type"], s["state"], s["since"], s["info"]) for s in sessions]
        extra = getattr(self.engine, "extra_status", None)
        return {"name": self.config.name, "address": self.config.address, "bgp_running": self.engine.running,
                "run_id": self.config.run_id, "implementation": self.engine.kind, "sessions": sessions,
                "text": node_status(rows), **(extra() if extra is not None else {})}

    def table_text(self) -> str:
        return self.engine.table_text()

    def routes(self) -> dict[str, Any]:
        h = self.engine.history
        text = self.table_text()
        try:
            route_n = parse_ip_route(text).render_route_n()
        except ValueError:
            route_n = ""
        return {"version": self.version, "name": self.config.name, "run_id": self.config.run_id,
                "last_change": h.last_change, "changes": h.changes, "digest": h.digest,
                "routes": [{"dst": dst, "line": line, "changed_at": h.changed_at.get(dst)}
                           for dst, line in sorted(h.lines.items())],
                "removed_at": dict(h.removed_at), "ip": text, "route_n": route_n}

    def counters(self) -> dict[str, Any]:
        per_peer = {name: c.to_json() for name, c in self.engine.counters().items()}
        totals = {k: sum(c[k] for c in per_peer.values()) for k in COUNTER_KEYS}
        for key in ("messages_sent", "messages_received"):
            agg: dict[str, int] = {}
            for c in per_peer.values():
                for kind, n in c[key].items():
                    agg[kind] = agg.get(kind, 0) + n
            totals[key] = agg  # type: ignore[assignment]
        return {"peers": per_peer, "totals": totals, "usage": self.engine.usage().to_json()}

    def summary(self) -> dict[str, Any]:
        """What a runner needs to follow a node cheaply: digests and counts, not tables."""
        h = self.engine.history
        sessions, totals = self.engine.brief()
        return {"version": self.version, "name": self.config.name, "run_id": self.config.run_id, "time": time.time(),
                "started": self.started_at, "bgp_running": self.engine.running,
                "routes": {"digest": h.digest, "count": len(h.lines), "changes": h.changes,
                           "last_change": h.last_change},
                "sessions": sessions, "counters": {"totals": totals, "usage": self.engine.usage().to_json()}}

    def state(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.config.name, "run_id": self.config.run_id, "time": time.time(),
                "status": self.status(), "routes": self.routes(), "counters": self.counters()}

    # -- HTTP ----------------------------------------------------------------------------------------
    async def handle_http(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        match method, path:
            case "GET", "/status":
                await self.engine.refresh()
                return 200, self.status()
            case "GET", "/routes":
                fmt = query.get("format")
                if fmt == "kernel":
                    kernel = getattr(self.engine, "kernel_table", None)
                    if kernel is None:
                        raise HttpError(409, "this node runs with the simulated dataplane (--dataplane sim)")
                    return 200, await kernel()
                table = self.routes()
                if fmt in ("ip", "route"):
                    return 200, table["ip"] if fmt == "ip" else table["route_n"]
                if fmt is not None:
                    raise HttpError(400, f"format must be ip, route or kernel, not {fmt!r}")
                return 200, table
            case "GET", "/routelog":
                since = bodies.query_float(query, "since", 0.0)
                return 200, {"entries": self.engine.history.since(since)}
            case "GET", "/rib":  # who answers, so a client can tell another run's node at the same address
                return 200, {**await self.engine.rib(), "name": self.config.name, "run_id": self.config.run_id}
            case "GET", "/config":
                rendered = getattr(self.engine, "rendered_config", None)
                if rendered is None:
                    raise HttpError(404, "this node's engine renders no configuration files (implementation: bird "
                                         "nodes show their bird.cfg, bird_aggr.cfg and bird_ipam.cfg here)")
                return 200, rendered()
            case "GET", "/counters":
                await self.engine.refresh()
                return 200, self.counters()
            case "GET", "/state":
                if query.get("refresh") in ("1", "true"):  # the engine's counters as they are now (BIRD: birdc)
                    await self.engine.refresh()
                after = bodies.query_int(query, "after", -1)
                await wait_for_version(self.changed, lambda: self.version, after,
                                       bodies.query_float(query, "timeout", 0.0))
                return 200, self.summary() if query.get("summary") in ("1", "true") else self.state()
            case "POST", "/local":
                local = bodies.local_state(body)
                await self.engine.set_local(local)
                self.touch()
                return 200, {"ok": True}
            case "POST", "/config":
                config = bodies.node_config_update(self.config, body)
                self.config = config
                await self.engine.reconfigure(config)
                self.touch()
                return 200, {"ok": True}
            case "POST", "/stop":
                await self.engine.stop()
                self.touch()
                return 200, {"ok": True, "bgp_running": self.engine.running}
            case "POST", "/start":
                await self.engine.start()
                self.touch()
                return 200, {"ok": True, "bgp_running": self.engine.running}
            case "POST", "/teardown":
                name = bodies.peer_name(body)
                peer = next((p for p in self.config.peers if p.name == name or p.peer_node == name), None)
                if peer is None:
                    raise HttpError(404, f"no peer {name!r}; peers: {', '.join(p.name for p in self.config.peers)}")
                await self.engine.teardown(peer.name)
                return 200, {"ok": True}
            case "POST", "/shutdown":
                bodies.run_id(body, self.config.run_id)
                self.shutdown.set()
                if self.on_shutdown is not None:
                    self.on_shutdown()
                return 200, {"ok": True}
            case "GET", "/":
                return 200, {"node": self.config.name, "endpoints": ENDPOINTS}
        raise HttpError(404, f"no endpoint {method} {path}")
