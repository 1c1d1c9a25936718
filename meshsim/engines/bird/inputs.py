"""What confd reads from the datastore to render one node's BIRD configuration.

Owns `BirdInput` and its parts (`BirdPeer`, `BirdHost`, `BirdBlock`, `BirdPool`, `BirdFilter`), built from the
cluster model (`bird_input(cluster, node)`, every node and filter known, as confd sees the datastore) or from the
config a node process is handed (`bird_input_from_config`, its own peers and the filters only). The keys and
values follow confd v3.28's (pkg/backends/calico/client.go: `bgpPeer` fields, `/bgp/v1/global/...` and
`/bgp/v1/host/<node>/...` keys, `/staticroutes`, `/rejectcidrs`). Pure: no asyncio, no subprocess, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Sequence

FilterRuleTuple = tuple[str, IPv4Network | None, str | None, str | None, str | None]
"""(action, cidr, matchOperator, source, interface) of one BGPFilterRuleV4."""


@dataclass(frozen=True)
class BirdPeer:
    """One `protocol bgp` block."""

    name: str  # Mesh_192_168_0_82, Node_..., Global_...[_port_N]
    kind: str  # Mesh | Node | Global
    address: IPv4Address
    asn: int
    port: int | None = None  # rendered as `port N` when set
    passive: bool = False
    rr_client: bool = False
    peer_node: str | None = None  # the Calico node behind the address, None for an external peer
    source_address: bool = True  # BGPPeer sourceAddress UseNodeIP (the default)
    restart_time: str = ""  # seconds, as confd writes them ("" : not set)
    keep_next_hop: bool = False
    password: str | None = None
    num_allow_local_as: int = 0
    ttl_security: int = 0
    reachable_by: IPv4Address | None = None
    filters: tuple[str, ...] = ()

    def key(self, node: str) -> str:
        """The datastore key confd prints in `# For peer KEY`."""
        suffix = f"-{self.port}" if self.port else ""
        if self.kind == "Global":
            return f"/bgp/v1/global/peer_v4/{self.address}{suffix}"
        if self.kind == "Node":
            return f"/bgp/v1/host/{node}/peer_v4/{self.address}{suffix}"
        return f"/bgp/v1/host/{self.peer_node}/ip_addr_v4"


@dataclass(frozen=True)
class BirdHost:
    """A node as the mesh section of bird.cfg walks them (`lsdir /bgp/v1/host`)."""

    name: str
    address: IPv4Address | None
    cluster_id: IPv4Address | None = None


@dataclass(frozen=True)
class BirdBlock:
    cidr: IPv4Network
    state: str | None = "confirmed"  # confirmed | pending | None ("implicitly confirmed")


@dataclass(frozen=True)
class BirdPool:
    cidr: IPv4Network
    ipip_mode: str = "Never"  # Always | CrossSubnet | Never
    vxlan_mode: str = "Never"
    disable_bgp_export: bool = False


@dataclass(frozen=True)
class BirdFilter:
    """A BGPFilter as `bgpFilterBIRDFuncs` reads it."""

    name: str
    import_v4: tuple[FilterRuleTuple, ...] = ()
    export_v4: tuple[FilterRuleTuple, ...] = ()


@dataclass(frozen=True)
class BirdInput:
    """What confd reads from the datastore to render one node's BIRD configuration."""

    name: str
    address: IPv4Address
    network: IPv4Network  # /bgp/v1/host/<node>/network_v4
    asn: int
    cluster_id: IPv4Address | None = None
    router_id: IPv4Address | None = None  # default: the node address
    listen_port: int | None = None  # BGPConfiguration listenPort, when not 179
    listen_port_scope: str = "global"  # "node": a node.<name> BGPConfiguration sets it
    bind_address: IPv4Address | None = None  # bindMode NodeIP: `listen bgp address <node IP>`
    log_severity: str = "Info"
    mesh_enabled: bool = True
    mesh_password: str | None = None  # nodeMeshPassword
    mesh_restart_time: str = ""  # nodeMeshMaxRestartTime, seconds
    hosts: tuple[BirdHost, ...] | None = None  # every node, for the mesh section's comments; None: mesh peers only
    peers: tuple[BirdPeer, ...] = ()
    skipped_peer_keys: tuple[str, ...] = ()  # explicit peer keys at our own address: "# Skipping ourselves"
    blocks: tuple[BirdBlock, ...] = ()
    pools: tuple[BirdPool, ...] = ()
    hold_time: float | None = None
    keepalive_time: float | None = None
    restart_wait: float | None = None  # BIRD's global `graceful restart wait` (meshsim: spec.timers.restartWait)
    tunnel_device: str = "tunl0"
    communities: tuple[tuple[IPv4Network, tuple[str, ...]], ...] = ()  # prefixAdvertisements, values string-sorted
    filters: tuple[BirdFilter, ...] = ()  # every BGPFilter of the datastore
    static_routes: tuple[IPv4Network, ...] = ()  # /staticroutes (service routes)
    reject_cidrs: tuple[IPv4Network, ...] = ()  # /rejectcidrs
    lb_ips: tuple[IPv4Network, ...] = ()  # svc_loadbalancer_ips, in the BGPConfiguration's order
    ignored_interfaces: tuple[str, ...] = ()

    @property
    def mesh_peers(self) -> list[BirdPeer]:
        return [p for p in self.peers if p.kind == "Mesh"]


def _pool_of(p: Any) -> BirdPool:
    if isinstance(p, dict):
        return BirdPool(cidr=IPv4Network(p["cidr"]), ipip_mode=p.get("ipip_mode", "Never"),
                        vxlan_mode=p.get("vxlan_mode", "Never"),
                        disable_bgp_export=bool(p.get("disable_bgp_export")) or bool(p.get("disabled")))
    return BirdPool(cidr=p.cidr, ipip_mode=p.ipip_mode, vxlan_mode=p.vxlan_mode,
                    disable_bgp_export=p.disable_bgp_export or p.disabled)


def _rule_tuple(r: Any) -> FilterRuleTuple:
    if isinstance(r, dict):
        cidr = r.get("cidr")
        return (r["action"], IPv4Network(cidr) if cidr else None, r.get("matchOperator"), r.get("source"),
                r.get("interface"))
    return (r.action, r.cidr, r.match_operator, r.source, r.interface)


def _skipped_keys(sc: Any, node: Any) -> tuple[str, ...]:
    """confd emits explicit peerings to our own address too; the template prints `# Skipping ourselves`."""
    keys = []
    for peer in sc.peers:
        if peer.peer_selector is not None:
            from meshsim.model.selectors import parse as parse_selector

            if not parse_selector(peer.peer_selector).matches(node.label_map):
                continue
            port = sc.bgp_for(node.name).listen_port
            port = port if port != 179 else None
        elif peer.peer_ip == node.address:
            port = peer.peer_port
        else:
            continue
        suffix = f"-{port}" if port else ""
        if peer.is_global:
            keys.append(f"/bgp/v1/global/peer_v4/{node.address}{suffix}")
        else:
            from meshsim.model.selectors import parse as parse_selector

            if peer.node == node.name or (peer.node_selector is not None
                                           and parse_selector(peer.node_selector).matches(node.label_map)):
                keys.append(f"/bgp/v1/host/{node.name}/peer_v4/{node.address}{suffix}")
    return tuple(sorted(set(keys)))


def bird_input(cluster: Any, node_name: str, *, blocks: Sequence[BirdBlock] | None = None,
               listen_port: int | None = None) -> BirdInput:
    """confd's view of `node_name` in a meshsim Cluster (meshsim.model.cluster)."""
    sc = cluster.scenario
    node = sc.node(node_name)
    peers = []
    for p in cluster.peerings()[node_name]:
        o = p.options
        peers.append(BirdPeer(name=p.name, kind=p.prefix, address=p.peer_address, asn=p.peer_as, port=p.peer_port,
                              passive=p.passive, rr_client=p.rr_client, peer_node=p.peer_node,
                              source_address=o.source_address == "UseNodeIP",
                              restart_time=str(o.restart_time) if o.restart_time is not None else "",
                              keep_next_hop=o.keep_next_hop, password=o.password,
                              num_allow_local_as=o.allow_local_as, ttl_security=o.ttl_security,
                              reachable_by=o.reachable_by, filters=o.filters))
    if blocks is None:
        blocks = [BirdBlock(b.cidr, b.state) for b in cluster.ipam.blocks_of(node_name)]
    hosts = tuple(BirdHost(n.name, n.address, n.rr_cluster_id) for n in sorted(sc.nodes, key=lambda n: n.name))
    bgp = sc.bgp_for(node_name)
    own = next((c for c in sc.node_bgp if c.node == node_name), None)
    scope = "node" if own is not None and "listenPort" in own.fields_set else "global"
    port = listen_port if listen_port is not None else (bgp.listen_port if bgp.listen_port != 179 else None)
    timers = sc.spec.timers
    services = cluster.service_routes(node_name)
    restart = sc.bgp.node_mesh_max_restart_time
    return BirdInput(
        name=node.name, address=node.address, network=node.subnet, asn=sc.asn(node), cluster_id=node.rr_cluster_id,
        listen_port=port, listen_port_scope=scope,
        bind_address=node.address if bgp.bind_mode == "NodeIP" else None,
        log_severity=bgp.log_severity_screen, mesh_enabled=sc.bgp.node_to_node_mesh_enabled,
        mesh_password=sc.bgp.node_mesh_password, mesh_restart_time=str(int(restart + 0.5)) if restart is not None else "",
        hosts=hosts, peers=tuple(peers), skipped_peer_keys=_skipped_keys(sc, node), blocks=tuple(blocks),
        pools=tuple(_pool_of(p) for p in sc.pools), hold_time=timers.hold_time, keepalive_time=timers.keepalive_time,
        restart_wait=timers.restart_wait,
        communities=tuple((a.cidr, a.communities) for a in bgp.prefix_advertisements),
        filters=tuple(BirdFilter(f.name, tuple(_rule_tuple(r) for r in f.import_v4),
                                 tuple(_rule_tuple(r) for r in f.export_v4))
                      for f in sorted(sc.filters, key=lambda f: f.name)),
        static_routes=services.static, reject_cidrs=services.reject, lb_ips=sc.bgp.service_loadbalancer_ips,
        ignored_interfaces=bgp.ignored_interfaces,
    )


def bird_input_from_config(config: Any) -> BirdInput:
    """confd's view from a node process's NodeConfig (meshsim.agent.config): no other hosts are known, so the
    mesh section has no `# Skipping ...` comments."""
    kinds = {"node-to-node mesh": "Mesh", "global": "Global", "node specific": "Node"}
    peers = tuple(BirdPeer(name=p.name, kind=kinds.get(p.type, p.name.split("_", 1)[0]), address=IPv4Address(p.address),
                           asn=p.asn, port=p.port if p.port != 179 else None, passive=p.passive,
                           rr_client=p.rr_client, peer_node=p.peer_node,
                           source_address=getattr(p, "source_address", "UseNodeIP") == "UseNodeIP",
                           restart_time=str(p.restart_time) if getattr(p, "restart_time", None) is not None else "",
                           keep_next_hop=getattr(p, "keep_next_hop", False), password=getattr(p, "password", None),
                           num_allow_local_as=getattr(p, "allow_local_as", 0), ttl_security=getattr(p, "ttl_security", 0),
                           reachable_by=IPv4Address(p.reachable_by) if getattr(p, "reachable_by", None) else None,
                           filters=tuple(getattr(p, "filters", ()))) for p in config.peers)
    affine = set(config.local.affine)
    blocks = tuple(BirdBlock(IPv4Network(b), "confirmed" if b in affine else "pending") for b in config.local.blocks)
    local = config.local
    mesh = [p for p in config.peers if p.type == "node-to-node mesh"]
    return BirdInput(
        name=config.name, address=IPv4Address(config.address), network=IPv4Network(config.subnet), asn=config.asn,
        cluster_id=IPv4Address(config.cluster_id) if config.cluster_id else None,
        listen_port=config.bgp_port if config.bgp_port != 179 else None,
        bind_address=IPv4Address(config.address) if getattr(config, "bind_mode", "None") == "NodeIP" else None,
        log_severity=getattr(config, "log_severity", "Info"),
        mesh_enabled=any(p.kind == "Mesh" for p in peers), peers=peers, blocks=blocks,
        mesh_password=getattr(mesh[0], "password", None) if mesh else None,
        mesh_restart_time=str(mesh[0].restart_time) if mesh and getattr(mesh[0], "restart_time", None) is not None
        else "",
        pools=tuple(_pool_of(p) for p in config.pools), hold_time=float(config.hold_time),
        keepalive_time=float(config.keepalive_time), restart_wait=float(config.restart_wait),
        communities=tuple((IPv4Network(c["cidr"]), tuple(sorted(c.get("communities", ()))))
                          for c in getattr(config, "communities", ())),
        filters=tuple(BirdFilter(f["name"], tuple(_rule_tuple(r) for r in f.get("importV4", ())),
                                 tuple(_rule_tuple(r) for r in f.get("exportV4", ())))
                      for f in sorted(getattr(config, "bgp_filters", ()), key=lambda f: f["name"])),
        static_routes=tuple(IPv4Network(r) for r in getattr(local, "static_routes", ())),
        reject_cidrs=tuple(IPv4Network(r) for r in getattr(local, "reject_cidrs", ())),
        lb_ips=tuple(IPv4Network(r) for r in getattr(local, "rr_accept", ())),
        ignored_interfaces=tuple(getattr(config, "ignored_interfaces", ())),
    )


__all__ = ["BirdInput", "BirdPeer", "BirdHost", "BirdBlock", "BirdPool", "BirdFilter", "bird_input",
           "bird_input_from_config"]
