"""What the runner (the "datastore") hands one node process: its confd-style configuration.

Owns `NodeConfig` / `PeerConfig` / `LocalState` (JSON round trip) and `node_configs(cluster, ...)`,
which maps the cluster model to one config per node: declared addresses (what route tables and
status show) next to the 127.x session addresses the processes really bind on one machine.
Everything a session engine and the node's speaker need is here, in JSON-friendly form:
- per peer (`PeerConfig`): `password` (TCP-MD5, RFC 2385; None: none), `restart_time` (graceful restart
  time, seconds), `keep_next_hop`, `allow_local_as`, `source_address` ("UseNodeIP" | "None"),
  `ttl_security`, `reachable_by`, and `filters` (BGPFilter names, in order, resolved in
  `NodeConfig.bgp_filters`);
- per node (`NodeConfig`): `communities` (prefixAdvertisements: [{"cidr", "communities": ["a:b", "a:b:c"]}]),
  `bgp_filters` (every BGPFilter: [{"name", "importV4": [rules], "exportV4": [rules]}], rules with Calico's
  field names), `listen_port` (the declared BGPConfiguration listenPort), `bind_mode`, `ignored_interfaces`,
  `log_severity`;
- what changes with IPAM and services (`LocalState`): `static_routes` (service routes), `reject_cidrs`,
  `rr_accept`, `tunnel` (tunl0's address).
`NodeConfig.speaker_config()`, `NodeConfig.peer_infos()` and `LocalState.felix_routes()` turn them into the
pure speaker's and FelixAgent's inputs. Pure: no asyncio, no clock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from meshsim.bgp.filters import Filter, FilterRule, PrefixCommunities
from meshsim.bgp.rib import PeerInfo
from meshsim.bgp.speaker import SpeakerConfig
from meshsim.oracle.expected import host_view
from meshsim.model.cluster import Cluster
from meshsim.model.loopback import loopback_addresses, loopback_peer_addresses
from meshsim.model.names import file_stem
from meshsim.model.resources import IPPool


@dataclass(frozen=True)
class PeerConfig:
    name: str  # Mesh_192_168_0_82
    address: str  # declared peer address
    session_address: str  # where the peer's BGP really listens (127.x or the declared address)
    port: int
    asn: int
    passive: bool
    rr_client: bool
    type: str  # node-to-node mesh | node specific | global
    peer_node: str | None
    password: str | None = field(default=None, repr=False)  # TCP-MD5 key (RFC 2385); None: no password
    restart_time: int | None = None  # `graceful restart time N` (seconds); None: BIRD's default 120 s
    keep_next_hop: bool = False  # `next hop keep` toward an eBGP peer
    allow_local_as: int = 0  # `allow local as N`
    source_address: str = "UseNodeIP"  # "UseNodeIP": bind the node's address; "None": let the kernel pick
    ttl_security: int = 0  # GTSM hop count (0: off)
    reachable_by: str | None = None  # a gateway for a static /32 to the peer
    filters: tuple[str, ...] = ()  # BGPFilter names, in order (NodeConfig.bgp_filters holds their rules)
    calico_node: bool = False  # a peerIP peer that is a Calico node

    def peer_info(self, filters: dict[str, dict[str, Any]] | None = None) -> PeerInfo:
        """The neighbour as the node's speaker knows it (filters: NodeConfig.filter_table())."""
        table = filters or {}
        imports, exports = [], []
        for name in self.filters:
            f = table.get(name)
            if f is None:
                continue
            if f.get("importV4"):
                imports.append(Filter(name, tuple(FilterRule.from_json(r) for r in f["importV4"])))
            if f.get("exportV4"):
                exports.append(Filter(name, tuple(FilterRule.from_json(r) for r in f["exportV4"])))
        return PeerInfo(name=self.name, address=IPv4Address(self.address), router_id=IPv4Address(self.address),
                        asn=self.asn, rr_client=self.rr_client, import_filters=tuple(imports),
                        export_filters=tuple(exports), keep_next_hop=self.keep_next_hop,
                        allow_local_as=self.allow_local_as)


@dataclass(frozen=True)
class LocalState:
    """What IPAM says about this node: its blocks, its pods, what it originates into BGP."""

    blocks: tuple[str, ...] = ()  # every affine block (blackholed)
    affine: tuple[str, ...] = ()  # confirmed affine blocks (calico_aggr)
    workloads: tuple[tuple[str, str], ...] = ()  # (ip, interface)
    originate: tuple[str, ...] = ()
    static_routes: tuple[str, ...] = ()  # confd's service routes (exported; blackholed unless rejected)
    reject_cidrs: tuple[str, ...] = ()  # the service ranges: never programmed into the kernel
    rr_accept: tuple[str, ...] = ()  # on a route reflector: LB ranges whose routes it exports
    tunnel: str | None = None  # tunl0's address

    @classmethod
    def of(cls, cluster: Cluster, node: str) -> "LocalState":
        services = cluster.service_routes(node)
        tunnel = cluster.tunnel_address(node)
        return cls(
            blocks=tuple(str(b.cidr) for b in cluster.ipam.blocks_of(node)),
            affine=tuple(str(b) for b in cluster.affine_blocks(node)),
            workloads=tuple((str(p.ip), p.interface) for p in cluster.pods_on(node)),
            originate=tuple(str(p) for p in sorted(cluster.originated(node))),
            static_routes=tuple(str(r) for r in services.static),
            reject_cidrs=tuple(str(r) for r in services.reject),
            rr_accept=tuple(str(r) for r in services.rr_accept),
            tunnel=str(tunnel) if tunnel is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "affine": list(self.affine),
                "workloads": [list(w) for w in self.workloads], "originate": list(self.originate),
                "static_routes": list(self.static_routes), "reject_cidrs": list(self.reject_cidrs),
                "rr_accept": list(self.rr_accept), "tunnel": self.tunnel}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LocalState":
        return cls(blocks=tuple(data.get("blocks", ())), affine=tuple(data.get("affine", ())),
                   workloads=tuple((str(a), str(b)) for a, b in data.get("workloads", ())),
                   originate=tuple(data.get("originate", ())),
                   static_routes=tuple(data.get("static_routes", ())), reject_cidrs=tuple(data.get("reject_cidrs", ())),
                   rr_accept=tuple(data.get("rr_accept", ())), tunnel=data.get("tunnel"))

    def felix_routes(self) -> dict[str, tuple[IPv4Network, ...]]:
        """FelixAgent's static_routes and reject (the service routes of routes.felix.node_table)."""
        return {"static_routes": tuple(IPv4Network(r) for r in self.static_routes),
                "reject": tuple(IPv4Network(r) for r in self.reject_cidrs)}

    def local_interfaces(self) -> tuple[tuple[IPv4Network, str], ...]:
        """`ifname` of the node's own /32s (pods' cali devices, tunl0), for BGPFilter interface rules."""
        out = [(IPv4Network(ip), iface) for ip, iface in self.workloads]
        if self.tunnel:
            out.append((IPv4Network(self.tunnel), "tunl0"))
        return tuple(out)


@dataclass(frozen=True)
class NodeConfig:
    name: str
    address: str
    subnet: str
    interface: str
    gateway: str
    session_address: str
    bgp_port: int
    http_port: int
    asn: int
    cluster_id: str | None
    hold_time: int
    keepalive_time: int
    pools: tuple[dict[str, Any], ...]
    peers: tuple[PeerConfig, ...]
    local: LocalState
    workdir: str
    log_level: str = "info"
    run_id: str = ""  # which run started this node: a runner refuses to talk to another run's nodes
    dataplane: str = "sim"  # sim: the route table is simulated; kernel: also programmed into the real kernel
    netns: str | None = None  # program that network namespace instead of our own
    http_address: str | None = None  # serve HTTP here instead of on session_address (netns runner: a 127.x address)
    bgp_netns: str | None = None  # the BGP engine's sockets (or BIRD) live in this network namespace
    recovery: bool = True  # start as calico-node starts BIRD (`bird -R`): graceful-restart recovery
    restart_wait: float = 240.0  # BIRD's global `graceful restart wait`: the longest a recovery waits
    implementation: str = "meshsim"  # the node's BGP engine: meshsim (its own sessions) or bird (real BIRD 2)
    communities: tuple[dict[str, Any], ...] = ()  # prefixAdvertisements: [{"cidr", "communities": [...]}]
    bgp_filters: tuple[dict[str, Any], ...] = ()  # every BGPFilter: [{"name", "importV4": [...], "exportV4": [...]}]
    listen_port: int = 179  # the declared BGPConfiguration listenPort (the process binds bgp_port)
    bind_mode: str = "None"  # None | NodeIP (`listen bgp address <node IP>`)
    ignored_interfaces: tuple[str, ...] = ()
    log_severity: str = "Info"  # BGPConfiguration logSeverityScreen

    def to_json(self) -> str:
        data = asdict(self)
        data["local"] = self.local.to_json()
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "NodeConfig":
        data = json.loads(text)
        data["peers"] = tuple(PeerConfig(**{**p, "filters": tuple(p.get("filters", ()))}) for p in data["peers"])
        data["pools"] = tuple(data["pools"])
        data["local"] = LocalState.from_json(data["local"])
        for key in ("communities", "bgp_filters", "ignored_interfaces"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def filter_table(self) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.bgp_filters}

    def peer_infos(self) -> list[PeerInfo]:
        table = self.filter_table()
        return [p.peer_info(table) for p in self.peers]

    def speaker_config(self, local: LocalState | None = None) -> SpeakerConfig:
        """The pure speaker's configuration: what confd renders into this node's BIRD filters."""
        local = local or self.local
        pools = self.ip_pools()
        return SpeakerConfig(
            router_id=IPv4Address(self.address), local_as=self.asn,
            cluster_id=IPv4Address(self.cluster_id) if self.cluster_id else None,
            exportable_pools=tuple(p.cidr for p in pools if p.exported),
            affine_blocks=tuple(IPv4Network(b) for b in local.affine),
            rejected_pools=tuple(p.cidr for p in pools if not p.exported),
            static_routes=tuple(IPv4Network(r) for r in local.static_routes),
            rr_accept=tuple(IPv4Network(r) for r in local.rr_accept),
            communities=tuple(PrefixCommunities.from_json(c) for c in self.communities),
            host_interface=self.interface, local_interfaces=local.local_interfaces(),
        )

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "NodeConfig":
        return cls.from_json(Path(path).read_text())

    def ip_pools(self) -> tuple[IPPool, ...]:
        return tuple(IPPool(name=p["name"], cidr=IPv4Network(p["cidr"]), block_size=p["block_size"],
                            ipip_mode=p["ipip_mode"], vxlan_mode=p["vxlan_mode"], disabled=p["disabled"],
                            disable_bgp_export=p["disable_bgp_export"]) for p in self.pools)


def pool_json(pool: IPPool) -> dict[str, Any]:
    return {"name": pool.name, "cidr": str(pool.cidr), "block_size": pool.block_size, "ipip_mode": pool.ipip_mode,
            "vxlan_mode": pool.vxlan_mode, "disabled": pool.disabled, "disable_bgp_export": pool.disable_bgp_export}


def _rule_json(r: Any) -> dict[str, Any]:
    return FilterRule(action=r.action, cidr=r.cidr, operator=r.match_operator, source=r.source,
                      interface=r.interface).to_json()


def loopback_map(cluster: Cluster) -> dict[str, IPv4Address]:
    """Declared node address -> a 127.x address of its own: 192.168.0.81 -> 127.168.0.81 (the last three
    octets), distinct for every node (meshsim.model.loopback: a clash takes the next free 127.254.x.y)."""
    return loopback_addresses((n.name, n.address) for n in cluster.scenario.nodes)


def peer_loopback_map(cluster: Cluster) -> dict[IPv4Address, IPv4Address]:
    """External BGP peers' peerIP -> the 127.x address their sessions use on loopback (never the peerIP itself:
    meshsim sends no traffic to an address a manifest names unless it created it; a test's own BGP speaker
    listens there). Distinct from every node's loopback address."""
    external = {p.peer_address for ps in cluster.peerings().values() for p in ps if p.peer_node is None}
    return loopback_peer_addresses(external, loopback_map(cluster).values())


def node_configs(cluster: Cluster, *, bgp_port: int, http_port: int, workdir: Path,
                 session_addresses: dict[str, IPv4Address] | None = None, log_level: str = "info"
                 ) -> dict[str, NodeConfig]:
    """One NodeConfig per node. `session_addresses` maps node name -> the address its BGP binds
    (default: the 127.x loopback map, external peers included: `peer_loopback_map`; the compose and netns
    fabrics pass the declared addresses, and external peers are then dialled at their peerIP, which those
    fabrics create or refuse)."""
    sc = cluster.scenario
    loopback = not session_addresses
    sess = session_addresses or loopback_map(cluster)
    peer_sess = peer_loopback_map(cluster) if loopback else {}
    by_name = {n.name: n for n in sc.nodes}
    peerings = cluster.peerings()
    pools = tuple(pool_json(p) for p in sc.pools)
    hold = int(round(sc.spec.timers.hold_time))
    keep = int(round(sc.spec.timers.keepalive_time))
    filters = tuple({"name": f.name, "importV4": [_rule_json(r) for r in f.import_v4],
                     "exportV4": [_rule_json(r) for r in f.export_v4]} for f in sc.filters)
    out = {}
    for node in sc.nodes:
        hv = host_view(cluster, node.name)
        bgp = sc.bgp_for(node.name)
        peers = []
        for p in peerings[node.name]:
            if p.peer_node is not None:
                session = str(sess[p.peer_node])
            else:
                session = str(peer_sess.get(p.peer_address, p.peer_address))
            o = p.options
            peers.append(PeerConfig(name=p.name, address=str(p.peer_address), session_address=session,
                                    port=bgp_port if p.peer_node else (p.peer_port or 179), asn=p.peer_as, passive=p.passive,
                                    rr_client=p.rr_client, type=p.type, peer_node=p.peer_node, password=o.password,
                                    restart_time=o.restart_time, keep_next_hop=o.keep_next_hop,
                                    allow_local_as=o.allow_local_as, source_address=o.source_address,
                                    ttl_security=o.ttl_security,
                                    reachable_by=str(o.reachable_by) if o.reachable_by else None,
                                    filters=o.filters, calico_node=o.calico_node))
        out[node.name] = NodeConfig(
            name=node.name, address=str(node.address), subnet=str(node.subnet), interface=hv.interface,
            gateway=str(hv.gateway), session_address=str(sess[node.name]), bgp_port=bgp_port, http_port=http_port,
            asn=sc.asn(by_name[node.name]), cluster_id=str(node.rr_cluster_id) if node.rr_cluster_id else None,
            hold_time=hold, keepalive_time=keep, pools=pools, peers=tuple(peers), local=LocalState.of(cluster, node.name),
            workdir=str(workdir / file_stem(node.name)), log_level=log_level,
            implementation=sc.host(node.name).implementation, restart_wait=sc.spec.timers.restart_wait,
            communities=tuple({"cidr": str(a.cidr), "communities": list(a.communities)}
                              for a in bgp.prefix_advertisements),
            bgp_filters=filters, listen_port=bgp.listen_port, bind_mode=bgp.bind_mode,
            ignored_interfaces=bgp.ignored_interfaces, log_severity=bgp.log_severity_screen,
        )
    return out


__all__ = ["NodeConfig", "PeerConfig", "LocalState", "node_configs", "loopback_map", "peer_loopback_map", "field"]
