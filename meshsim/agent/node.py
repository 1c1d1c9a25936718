"""One meshsim node as an OS process: the asyncio glue around the pure core.

Owns `NodeAgent`: it runs the BIRD-like `Speaker`, the `FelixAgent` and one supervised ExaBGP
(through `meshsim.engines.exabgp`, the only module that touches ExaBGP), and serves the node's state over
HTTP JSON on its session address (curl-able):

  GET  /status    sessions as `calicoctl node status` shows them (+ the boxed text in "text")
  GET  /routes    the route table: routes, `ip route` and `route -n` text, change times
  GET  /rib       Adj-RIB-In per peer, Loc-RIB with best-path reasons, Adj-RIB-Out per peer
  GET  /counters  UPDATEs/withdrawals sent and received, flaps, CPU seconds and RSS (node, ExaBGP)
  GET  /state     all of the above in one document; `?after=V&timeout=S` waits for version > V
  POST /local     the node's IPAM state from the datastore: blocks, affine, workloads, originate
  POST /stop      graceful BGP stop (ExaBGP sends Cease, peers withdraw); /start brings it back
  POST /teardown  {"peer": NAME}: drop one session (it comes back by itself)
  POST /shutdown  stop and exit the process

Every state change bumps `version`, so a runner can long-poll instead of busy polling.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from meshsim.engines import exabgp as exa
from meshsim.bgp.types import PathAttrs
from meshsim.routes.felix import FelixAgent, HostView
from meshsim.agent.base import VersionedState, serve_until_signalled
from meshsim.agent.http import HttpError, serve
from meshsim.logs import configure, get_logger
from meshsim.agent.config import LocalState, NodeConfig, PeerConfig
from meshsim.report.calicoctl import StatusRow, node_status
from meshsim.bgp.rib import PeerInfo
from meshsim.bgp.speaker import (Announce, BestChanged, Dropped, Originate, PeerDown, PeerUp, RouteReceived, RouteWithdrawn,
                      Speaker, Withdraw)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a process from /proc; (0, 0) if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        return cpu, rss
    except (OSError, ValueError, IndexError):
        return 0.0, 0


def hms(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else ""


@dataclass
class Session:
    peer: PeerConfig
    state: str = "start"  # BIRD protocol state: up | start | down
    info: str = ""
    since: float = 0.0
    established_at: float | None = None
    flaps: int = 0
    last_error: str | None = None

    def row(self) -> StatusRow:
        return StatusRow(self.peer.address, self.peer.type, self.state, hms(self.since), self.info)


class NodeAgent(VersionedState):
    def __init__(self, config: NodeConfig, hold_bgp: bool = False) -> None:
        self.config = config
        self.hold_bgp = hold_bgp  # serve HTTP but start BGP only on POST /start (the compose controller does)
        self.log = get_logger(node=config.name)
        self.address = IPv4Address(config.address)
        pools = config.ip_pools()
        self.speaker_config = config.speaker_config()  # model-import: filters, communities, service routes
        self.peers_by_session: dict[IPv4Address, PeerConfig] = {}
        self.sessions: dict[str, Session] = {}
        self.speaker = Speaker(self.speaker_config, self._peer_infos(config.peers))
        self._set_peers_state(config.peers)
        host = HostView(name=config.name, address=self.address, subnet=IPv4Network(config.subnet),
                        interface=config.interface, gateway=IPv4Address(config.gateway))
        self.felix = FelixAgent(host=host, pools=pools, **config.local.felix_routes())
        self.local = config.local
        self._init_versioned()
        self.commands: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.bgp_running = False
        self.exabgp_restarts = 0
        self.started_at = time.time()
        self.shutdown = asyncio.Event()
        self.workdir = Path(config.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.exa = self._make_exabgp()
        self.dataplane = None
        self.dataplane_tasks: asyncio.Queue = asyncio.Queue()
        if config.dataplane == "kernel":
            from meshsim.agent.dataplane import KernelDataplane

            self.dataplane = KernelDataplane(self.log, netns=config.netns, host_interface=config.interface)

    # -- configuration -----------------------------------------------------------------------
    def _peer_infos(self, peers: tuple[PeerConfig, ...]) -> list[PeerInfo]:
        table = self.config.filter_table()  # model-import: BGPFilters, next hop keep, allow local as
        return [p.peer_info(table) for p in peers]

    def _set_peers_state(self, peers: tuple[PeerConfig, ...]) -> None:
        self.peers_by_session = {IPv4Address(p.session_address): p for p in peers}
        now = time.time()
        old = self.sessions
        self.sessions = {}
        for p in peers:
            s = old.get(p.name) or Session(p, since=now, info="Passive" if p.passive else "Active")
            s.peer = p
            self.sessions[p.name] = s

    def _neighbors(self) -> list[exa.ExaNeighbor]:
        c = self.config
        return [exa.ExaNeighbor(peer_address=IPv4Address(p.session_address),
                                local_address=IPv4Address(c.session_address), peer_as=p.asn, local_as=c.asn,
                                router_id=self.address, passive=p.passive, connect_port=p.port,
                                hold_time=c.hold_time, description=p.name) for p in c.peers]

    def _make_exabgp(self) -> exa.ExaBGP:
        return exa.ExaBGP(name=self.config.name, bind_address=IPv4Address(self.config.session_address),
                          listen_port=self.config.bgp_port, neighbors=self._neighbors(),
                          workdir=self.workdir / "exabgp", on_event=self.events.put_nowait,
                          log=self.log,
                          argv_prefix=("ip", "netns", "exec", self.config.bgp_netns) if self.config.bgp_netns else ())

    # -- main loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        server = await serve(self.config.http_address or self.config.session_address, self.config.http_port,
                             self.handle_http)
        self.log.info("node_started", session_address=self.config.session_address,
                      http_port=self.config.http_port, bgp_port=self.config.bgp_port, peers=len(self.config.peers))
        self._apply_local(self.local, time.time())
        workers = [asyncio.create_task(self._event_loop(), name="events"),
                   asyncio.create_task(self._command_loop(), name="commands"),
                   asyncio.create_task(self._dataplane_loop(), name="dataplane")]
        try:
            if not self.hold_bgp:
                await self.start_bgp()
            await self.shutdown.wait()
        finally:
            await self.stop_bgp(reason="shutdown")
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            server.close()
            await server.wait_closed()
            self.log.info("node_stopped")

    async def start_bgp(self) -> None:
        if self.bgp_running:
            return
        self.bgp_running = True
        self.exa = self._make_exabgp()  # a fresh supervisor each start; the old one is stopped
        await self.exa.start()
        (self.workdir / "exabgp.pid").write_text(str(self.exa.pid or ""))
        await self._bump()

    async def stop_bgp(self, reason: str) -> None:
        if not self.bgp_running:
            return
        self.bgp_running = False
        await self.exa.stop()
        now = time.time()
        for name, s in self.sessions.items():
            if s.state == "up":
                self._session_down(s, now, "Stopped" if reason != "shutdown" else "Shutdown")
        for s in self.sessions.values():
            s.state, s.info, s.since = "down", "", now
        self._flush_felix(now)
        await self._bump()

    # -- ExaBGP events -> speaker -> commands ----------------------------------------------------
    async def _event_loop(self) -> None:
        while True:
            event = await self.events.get()
            now = time.time()
            try:
                self._on_event(event, now)
                # drain whatever else is queued before programming routes: one table update per burst
                while not self.events.empty():
                    self._on_event(self.events.get_nowait(), time.time())
            except Exception:  # a bug must not kill the node silently
                self.log.exception("event_failed", event=type(event).__name__)
            self._flush_felix(time.time())
            await self._bump()

    def _on_event(self, event: object, now: float) -> None:
        match event:
            case exa.SessionState(peer_address=addr, state=state, reason=reason):
                peer = self.peers_by_session.get(addr)
                if peer is None:
                    return
                s = self.sessions[peer.name]
                if state == "up":
                    s.state, s.info, s.since, s.established_at = "up", "Established", now, now
                    self.log.info("session_established", peer=peer.name)
                    self._outputs(self.speaker.handle(PeerUp(peer.name), now))
                elif state == "down":
                    if s.state == "up":
                        self._session_down(s, now, reason or "down")
                    s.state, s.since = "start", now
                    s.last_error = reason
                    s.info = ("Passive" if peer.passive else "Active") + (f" Socket: {reason}" if reason else "")
                elif state == "connected":
                    s.info = "OpenSent"
            case exa.RouteUpdate(peer_address=addr, announced=announced, withdrawn=withdrawn):
                peer = self.peers_by_session.get(addr)
                if peer is None:
                    return
                for prefix in withdrawn:
                    self._outputs(self.speaker.handle(RouteWithdrawn(peer.name, prefix), now))
                for prefix, attrs in announced:
                    self._outputs(self.speaker.handle(RouteReceived(peer.name, prefix, attrs), now))
            case exa.EndOfRib():
                pass
            case exa.ExaBGPExited(returncode=rc, restarts=n):
                self.log.warning("exabgp_died", returncode=rc, restarts=n)
                for s in self.sessions.values():
                    if s.state == "up":
                        self._session_down(s, now, "ExaBGP exited")
                    s.state, s.since, s.info = "start", now, "ExaBGP restarting"
            case exa.ExaBGPStarted(pid=pid, restarts=n):
                self.exabgp_restarts = n
                (self.workdir / "exabgp.pid").write_text(str(pid))
                if n:
                    self.log.info("exabgp_restarted", pid=pid, restarts=n)
            case _:
                self.log.debug("event_ignored", event=repr(event))

    def _session_down(self, s: Session, now: float, reason: str, flap: bool = True) -> None:
        s.flaps += 1 if flap else 0
        s.established_at = None
        self.log.info("session_lost", peer=s.peer.name, reason=reason)
        self._outputs(self.speaker.handle(PeerDown(s.peer.name, reason), now))

    def _outputs(self, outputs: list) -> None:
        for out in outputs:
            match out:
                case Announce(peer=peer, prefix=prefix, attrs=attrs):
                    self.commands.put_nowait(("announce", (peer, prefix, attrs)))
                case Withdraw(peer=peer, prefix=prefix):
                    self.commands.put_nowait(("withdraw", (peer, prefix)))
                case BestChanged(prefix=prefix, new=new):
                    nh = None if new is None or new.source is None else new.attrs.next_hop
                    self.felix.set_learned(prefix, nh)
                case Dropped(peer=peer, prefix=prefix, reason=reason):
                    self.log.debug("route_dropped", peer=peer, prefix=str(prefix), reason=reason)

    async def _command_loop(self) -> None:
        """Send the speaker's Announce/Withdraw to ExaBGP. Whatever is queued is sent in one go, and the same
        route for several peers becomes one command (`neighbor A , neighbor B announce ...`): ExaBGP handles
        API commands once per reactor turn, so a route reflector would otherwise pay a turn per client."""
        while True:
            batch = [await self.commands.get()]
            while not self.commands.empty():
                batch.append(self.commands.get_nowait())
            if not self.bgp_running:
                continue
            # consecutive commands for the same route (the speaker emits one per peer, in a row) are merged;
            # the order between different routes or kinds is kept
            groups: list[tuple[tuple, list[IPv4Address]]] = []
            for kind, args in batch:
                peer = next((p for p in self.config.peers if p.name == args[0]), None)
                if peer is None:
                    continue
                key = (kind, *args[1:])
                addr = IPv4Address(peer.session_address)
                if groups and groups[-1][0] == key and addr not in groups[-1][1]:
                    groups[-1][1].append(addr)
                else:
                    groups.append((key, [addr]))
            for (kind, *rest), addrs in groups:
                try:
                    if kind == "announce":
                        await self.exa.announce(addrs, rest[0], rest[1])
                    else:
                        await self.exa.withdraw(addrs, rest[0])
                except Exception as exc:  # ExaBGP restarting: the session's `up` replays everything
                    self.log.info("command_not_sent", command=kind, peers=[str(a) for a in addrs], error=str(exc))

    def _flush_felix(self, now: float) -> None:
        delta = self.felix.apply(now)
        if delta.added or delta.removed:
            self.log.debug("routes_programmed", added=len(delta.added), removed=len(delta.removed))
            if self.dataplane is not None:
                self.dataplane_tasks.put_nowait(delta)

    async def _dataplane_loop(self) -> None:
        while True:
            delta = await self.dataplane_tasks.get()
            if self.dataplane is not None:
                await self.dataplane.apply(delta)

    # -- local state from the datastore ---------------------------------------------------------------
    def _apply_local(self, local: LocalState, now: float) -> None:
        self.local = local
        self._outputs(self.speaker.set_config(self.config.speaker_config(local)))  # model-import
        routes = local.felix_routes()
        self.felix.static_routes, self.felix.reject = routes["static_routes"], routes["reject"]
        self._outputs(self.speaker.handle(Originate(frozenset(IPv4Network(p) for p in local.originate)), now))
        self.felix.set_local([IPv4Network(b) for b in local.blocks],
                             {IPv4Address(ip): iface for ip, iface in local.workloads})
        self._flush_felix(now)

    # -- live reconfiguration (confd re-rendering after a resource changed) ------------------------
    async def reconfigure(self, body: dict[str, Any]) -> None:
        """New peerings, pools or cluster ID: sessions that stay are not flapped (ExaBGP reload)."""
        peers = tuple(PeerConfig(**p) for p in body["peers"])
        old_names = {p.session_address: p.name for p in self.config.peers}
        # a protocol replaced by another one to the same address (Mesh_X -> Node_X): BIRD drops the old
        # protocol's session and the new protocol connects afresh; ExaBGP would keep the TCP session, so reset it
        renamed = [p for p in peers if old_names.get(p.session_address) not in (None, p.name)]
        pools = tuple(body.get("pools", self.config.pools))
        cluster_id = body.get("cluster_id", self.config.cluster_id)
        self.config = replace(self.config, peers=peers, pools=pools, cluster_id=cluster_id)
        ip_pools = self.config.ip_pools()
        now = time.time()
        removed = [s for name, s in self.sessions.items() if name not in {p.name for p in peers}]
        for s in removed:
            if s.state == "up":
                self._session_down(s, now, "peer removed", flap=False)  # deconfigured: lost, not a flap
        self._outputs(self.speaker.set_config(self.config.speaker_config(self.local)))  # model-import
        self._outputs(self.speaker.set_peers(self._peer_infos(peers)))
        self._set_peers_state(peers)
        self.felix.pools = ip_pools
        self._flush_felix(now)
        self.log.info("node_reconfigured", peers=len(peers), cluster_id=cluster_id, removed=[s.peer.name for s in removed])
        if self.bgp_running:
            await self.exa.reconfigure(self._neighbors())
            for p in renamed:
                await self.exa.teardown(IPv4Address(p.session_address), code=3)
        await self._bump()

    # -- HTTP ----------------------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        cpu, rss = proc_usage(os.getpid())
        ecpu, erss = self.exa.cpu_seconds(), self.exa.rss_bytes()
        return {"node": {"pid": os.getpid(), "cpu_seconds": round(cpu, 3), "rss_bytes": rss},
                "exabgp": {"pid": self.exa.pid, "cpu_seconds": round(ecpu, 3), "rss_bytes": erss,
                           "restarts": self.exabgp_restarts}}

    def status(self) -> dict[str, Any]:
        rows = [s.row() for s in self.sessions.values()]
        return {
            "name": self.config.name, "address": self.config.address, "bgp_running": self.bgp_running,
            "run_id": self.config.run_id, "pid": os.getpid(),
            "sessions": [{"name": s.peer.name, "peer": s.peer.address, "peer_node": s.peer.peer_node,
                          "type": s.peer.type, "state": s.state, "since": hms(s.since), "since_ts": s.since,
                          "info": s.info, "established_at": s.established_at, "flaps": s.flaps,
                          "passive": s.peer.passive, "rr_client": s.peer.rr_client}
                         for s in self.sessions.values()],
            "text": node_status(rows),
        }

    def routes(self) -> dict[str, Any]:
        table = self.felix.table
        return {
            "version": self.version, "last_change": self.felix.last_change, "changes": self.felix.changes,
            "routes": [{"dst": str(r.dst), "line": r.render_ip(),
                        "changed_at": self.felix.changed_at.get(r.dst)} for r in table.routes],
            "removed_at": {str(k): v for k, v in self.felix.removed_at.items()},
            "ip": table.render_ip(), "route_n": table.render_route_n(),
        }

    def rib(self) -> dict[str, Any]:
        def attrs(a: PathAttrs) -> dict[str, Any]:
            return {"next_hop": str(a.next_hop), "local_pref": a.local_pref, "as_path": list(a.as_path),
                    "origin": a.origin.name.lower(), "med": a.med,
                    "originator_id": str(a.originator_id) if a.originator_id else None,
                    "cluster_list": [str(c) for c in a.cluster_list],
                    "communities": list(a.communities)}  # model-import

        return {
            "adj_rib_in": {name: {str(p): {**attrs(path.attrs)} for p, path in self.speaker.adj_rib_in(name).items()}
                           for name in self.sessions},
            "loc_rib": {str(p): {"from": path.source.name if path.source else "local", "reason": reason.name,
                                 **attrs(path.attrs)} for p, (path, reason) in self.speaker.loc_rib().items()},
            "adj_rib_out": {name: {str(p): attrs(a) for p, a in self.speaker.adj_rib_out(name).items()}
                            for name in self.sessions},
        }

    def counters(self) -> dict[str, Any]:
        per_peer = {}
        totals = {"updates_sent": 0, "updates_received": 0, "withdrawals_sent": 0, "withdrawals_received": 0,
                  "flaps": 0}
        speaker_counters = self.speaker.counters()
        for name, s in self.sessions.items():
            c = speaker_counters.get(name)
            entry = {"updates_sent": c.updates_sent if c else 0, "updates_received": c.updates_received if c else 0,
                     "withdrawals_sent": c.withdrawals_sent if c else 0,
                     "withdrawals_received": c.withdrawals_received if c else 0, "flaps": s.flaps}
            per_peer[name] = entry
            for k in totals:
                totals[k] += entry[k]
        return {"peers": per_peer, "totals": totals, "usage": self.usage()}

    def state(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.config.name, "time": time.time(), "status": self.status(),
                "routes": self.routes(), "counters": self.counters()}

    async def handle_http(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        match method, path:
            case "GET", "/status":
                return 200, self.status()
            case "GET", "/routes":
                fmt = query.get("format")
                if fmt == "kernel":
                    if self.dataplane is None:
                        raise HttpError(409, "this node runs with the simulated dataplane (--dataplane sim)")
                    return 200, await self.dataplane.kernel_table()
                table = self.routes()
                if fmt == "ip":
                    return 200, table["ip"]
                if fmt == "route":
                    return 200, table["route_n"]
                return 200, table
            case "GET", "/routelog":
                since = float(query.get("since", "0"))
                return 200, {"entries": [e for e in self.felix.log if e[0] >= since]}
            case "GET", "/rib":
                return 200, self.rib()
            case "GET", "/counters":
                return 200, self.counters()
            case "GET", "/state":
                await self.wait_newer(int(query.get("after", "-1")), float(query.get("timeout", "0")))
                return 200, self.state()
            case "POST", "/local":
                if not isinstance(body, dict):
                    raise HttpError(400, "expected a JSON object with blocks, affine, workloads, originate")
                self._apply_local(LocalState.from_json(body), time.time())
                await self._bump()
                return 200, {"ok": True, "version": self.version}
            case "POST", "/config":
                if not isinstance(body, dict) or "peers" not in body:
                    raise HttpError(400, "expected a JSON object with peers, pools, cluster_id")
                await self.reconfigure(body)
                return 200, {"ok": True, "version": self.version}
            case "POST", "/stop":
                await self.stop_bgp(reason="stop")
                return 200, {"ok": True}
            case "POST", "/start":
                await self.start_bgp()
                return 200, {"ok": True}
            case "POST", "/teardown":
                name = (body or {}).get("peer")
                peer = next((p for p in self.config.peers if p.name == name or p.peer_node == name), None)
                if peer is None:
                    raise HttpError(404, f"no peer {name!r}")
                await self.exa.teardown(IPv4Address(peer.session_address))
                return 200, {"ok": True}
            case "POST", "/shutdown":
                self.shutdown.set()
                return 200, {"ok": True}
            case "GET", "/":
                return 200, {"endpoints": ["/status", "/routes", "/rib", "/counters", "/state", "POST /local",
                                           "POST /stop", "POST /start", "POST /teardown", "POST /shutdown"]}
        raise HttpError(404, f"no endpoint {method} {path}")


async def _amain(config: NodeConfig, hold_bgp: bool = False) -> int:
    return await serve_until_signalled(NodeAgent(config, hold_bgp=hold_bgp))


def config_from_scenario(files: list[str], name: str, *, bgp_port: int, http_port: int, workdir: str,
                         loopback: bool) -> NodeConfig:
    """A node started on its own (e.g. one container per node) computes its config from the scenario,
    exactly as the runner would; `loopback=False` binds the declared address itself."""
    from meshsim.model.cluster import Cluster
    from meshsim.agent.config import node_configs
    from meshsim.model.resources import load_scenario

    cluster = Cluster.build(load_scenario(files))
    cluster.scenario.node(name)
    sessions = None if loopback else {n.name: n.address for n in cluster.scenario.nodes}
    return node_configs(cluster, bgp_port=bgp_port, http_port=http_port, workdir=Path(workdir),
                        session_addresses=sessions)[name]


def main(args: Any) -> int:
    if args.config:
        config = NodeConfig.load(args.config)
    else:
        if not args.scenario or not args.name:
            from meshsim.errors import RunError

            raise RunError("meshsim node needs --config FILE, or --scenario FILE... --name NODE")
        config = config_from_scenario(args.scenario, args.name, bgp_port=args.bgp_port, http_port=args.http_port,
                                      workdir=args.workdir, loopback=args.loopback)
    if getattr(args, "dataplane", None):
        config = replace(config, dataplane=args.dataplane)
    configure(config.log_level, json=True)
    return asyncio.run(_amain(config, hold_bgp=bool(getattr(args, "hold_bgp", False))))
