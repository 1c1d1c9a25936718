"""The BGP peerings of every node, as calico-node's confd computes them.

Owns `Peering` and `compute_peerings(scenario)`, which follows
- the mesh: confd `bird.cfg.template` (v3.28) / `bgp_processor.go` processMeshPeers: every node with
  an IPv4 address peers with every other, unless nodeToNodeMeshEnabled is false; nodes with a
  routeReflectorClusterID neither mesh nor are meshed with; `passive on` when the peer IP is
  greater than ours *as a string*;
- BGPPeer resources: confd `client.go` updatePeersV1: a peer with neither node nor nodeSelector is
  global (`Global_<ip>`), otherwise node specific (`Node_<ip>`); peerSelector expands to the
  selected nodes; a second pass adds the reverse peerings; a node-specific peering that duplicates
  a global one is dropped;
- `rr client; rr cluster id` when the peer is iBGP, we have a cluster ID and the peer has none or a
  different one (bird.cfg.template; bgp_processor.go buildPeerFromData).
This module owns the protocol name format (`Mesh_192_168_0_81`). Pure: no asyncio, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from meshsim.model.resources import BGPPeer, Node, Scenario
from meshsim.model.selectors import parse as parse_selector

MESH, GLOBAL, NODE = "Mesh", "Global", "Node"
PEER_TYPES = {MESH: "node-to-node mesh", GLOBAL: "global", NODE: "node specific"}


def protocol_name(prefix: str, ip: IPv4Address, port: int | None = None) -> str:
    """Calico's BIRD protocol name: Mesh_192_168_0_81, Global_10_0_0_1_port_1790."""
    name = f"{prefix}_{str(ip).replace('.', '_')}"
    if port:
        name += f"_port_{port}"
    return name


@dataclass(frozen=True)
class PeerOptions:
    """What a BGPPeer (or the mesh settings of BGPConfiguration) adds to a peering: confd's `bgpPeer` fields
    (client.go) other than address, AS and port."""

    password: str | None = field(default=None, repr=False)  # `password "..."`; mismatched ends: no session
    source_address: str = "UseNodeIP"  # `source address <node IP>` unless "None"
    restart_time: int | None = None  # `graceful restart time N` (seconds, rounded)
    keep_next_hop: bool = False  # `next hop keep` (eBGP peers only)
    allow_local_as: int = 0  # `allow local as N`
    ttl_security: int = 0  # `ttl security on; multihop N` when set
    reachable_by: IPv4Address | None = None  # a static /32 route to the peer via this gateway (bird_aggr.cfg)
    filters: tuple[str, ...] = ()  # BGPFilter names, in order
    calico_node: bool = False  # a peerIP peer that is a Calico node (Global peers: `passive on` when its IP is greater)
    rr_cluster_id: IPv4Address | None = None  # known for selector-made peers only (nodeAsBGPPeers)


def _restart(seconds: float | None) -> int | None:
    # confd: fmt.Sprintf("%v", int(math.Round(d.Seconds()))); Go rounds half away from zero.
    return None if seconds is None else int(seconds + 0.5)


@dataclass(frozen=True)
class Peering:
    """One BGP protocol of one node (one `protocol bgp` block of its bird.cfg)."""

    node: str  # the local node
    name: str  # Mesh_192_168_0_82
    prefix: str  # Mesh | Global | Node
    local_address: IPv4Address
    local_as: int
    peer_address: IPv4Address
    peer_as: int
    peer_port: int | None  # None: the default BGP port
    peer_node: str | None  # the Calico node on the other side, None for an external peer
    passive: bool
    rr_client: bool  # the peer is our route-reflector client (`rr client`)
    cluster_id: IPv4Address | None  # our `rr cluster id` when rr_client
    options: PeerOptions = PeerOptions()

    @property
    def type(self) -> str:
        """The PEER TYPE column of `calicoctl node status`."""
        return PEER_TYPES[self.prefix]

    @property
    def ibgp(self) -> bool:
        return self.local_as == self.peer_as

    @property
    def password(self) -> str | None:
        return self.options.password


def _labels(node: Node) -> dict[str, str]:
    return node.label_map


def _nodes_matching(scenario: Scenario, selector: str) -> list[Node]:
    sel = parse_selector(selector)
    return [n for n in scenario.nodes if sel.matches(_labels(n))]


@dataclass(frozen=True)
class _Target:
    node: Node | None
    asn: int
    options: PeerOptions


def compute_peerings(scenario: Scenario) -> dict[str, list[Peering]]:
    """Every node's peerings, in the order confd writes them: mesh, global, node-specific."""
    by_ip = {n.address: n for n in scenario.nodes}

    def listen_port(node: Node) -> int | None:
        port = scenario.bgp_for(node.name).listen_port
        return port if port != 179 else None

    def resource_options(peer: BGPPeer) -> dict:
        # setPeerConfigFieldsFromV3Resource: password, source address, restart time from the resource.
        return {"password": peer.password, "source_address": peer.source_address,
                "restart_time": _restart(peer.max_restart_time)}

    def node_as_peer(n: Node, peer: BGPPeer) -> tuple[IPv4Address, int | None, _Target]:
        # nodeAsBGPPeers: ttl security, reachableBy and filters from the resource, the node's port, AS and
        # cluster ID; keepOriginalNextHop and numAllowedLocalASNumbers are not carried.
        opts = PeerOptions(ttl_security=peer.ttl_security or 0, reachable_by=peer.reachable_by, filters=peer.filters,
                           rr_cluster_id=n.rr_cluster_id, **resource_options(peer))
        return n.address, listen_port(n), _Target(n, scenario.asn(n), opts)

    # (peer ip, port) -> target; global ones apply to every node.
    global_peers: dict[tuple[IPv4Address, int | None], _Target] = {}
    node_peers: dict[str, dict[tuple[IPv4Address, int | None], _Target]] = {n.name: {} for n in scenario.nodes}

    def targets(peer: BGPPeer) -> list[tuple[IPv4Address, int | None, _Target]]:
        if peer.peer_selector is not None:
            return [node_as_peer(n, peer) for n in _nodes_matching(scenario, peer.peer_selector)]
        assert peer.peer_ip is not None and peer.as_number is not None
        node = by_ip.get(peer.peer_ip)
        port = peer.peer_port
        if not port and node is not None and scenario.asn(node) == peer.as_number:
            port = listen_port(node)  # nodesWithIPPortAndAS: the Calico node's listen port
        opts = PeerOptions(keep_next_hop=peer.keep_original_next_hop, calico_node=node is not None,
                           allow_local_as=peer.num_allowed_local_as or 0, ttl_security=peer.ttl_security or 0,
                           reachable_by=peer.reachable_by, filters=peer.filters, **resource_options(peer))
        return [(peer.peer_ip, port, _Target(node, peer.as_number, opts))]

    # Pass 1: global peers; pass 2: node-specific peers (client.go updatePeersV1); the first emitted wins.
    for peer in scenario.peers:
        if peer.is_global:
            for ip, port, target in targets(peer):
                global_peers.setdefault((ip, port), target)
    for peer in scenario.peers:
        if peer.is_global:
            continue
        local = [scenario.node(peer.node)] if peer.node is not None else _nodes_matching(scenario, peer.node_selector or "")
        for ip, port, target in targets(peer):
            for ln in local:
                node_peers[ln.name].setdefault((ip, port), target)
    # Reverse pass: nodes selected as peers get a peering back to the selecting nodes.
    for peer in scenario.peers:
        if peer.peer_selector is not None:
            local = _nodes_matching(scenario, peer.peer_selector)
        else:
            local = [n for n in scenario.nodes if n.address == peer.peer_ip
                     and scenario.asn(n) == (peer.as_number or scenario.bgp.as_number)
                     and (not peer.peer_port or peer.peer_port == (listen_port(n) or 179))]
        if not local:
            continue
        if peer.node_selector is not None:
            remote = _nodes_matching(scenario, peer.node_selector)
        elif peer.node is not None:
            remote = [scenario.node(peer.node)]
        else:
            remote = list(scenario.nodes)
        for ln in local:
            for rn in remote:
                ip, port, target = node_as_peer(rn, peer)
                node_peers[ln.name].setdefault((ip, port), target)

    mesh_password = scenario.bgp.node_mesh_password
    mesh_restart = _restart(scenario.bgp.node_mesh_max_restart_time)
    result: dict[str, list[Peering]] = {}
    for me in scenario.nodes:
        my_as = scenario.asn(me)
        cid = me.rr_cluster_id
        out: list[Peering] = []

        def add(prefix: str, ip: IPv4Address, port: int | None, target: _Target, passive: bool) -> None:
            # bird.cfg.template: rr client when iBGP, we have a cluster ID and the peer's (known) one differs.
            peer_cid = target.options.rr_cluster_id if prefix != MESH else None
            rr_client = prefix != MESH and target.asn == my_as and cid is not None and peer_cid != cid
            out.append(Peering(
                node=me.name, name=protocol_name(prefix, ip, port if prefix != MESH else None), prefix=prefix,
                local_address=me.address, local_as=my_as, peer_address=ip, peer_as=target.asn, peer_port=port,
                peer_node=target.node.name if target.node else None, passive=passive, rr_client=rr_client,
                cluster_id=cid if rr_client else None, options=target.options,
            ))

        # Mesh (skipped entirely by a route reflector; route reflectors are skipped as mesh peers).
        if scenario.bgp.node_to_node_mesh_enabled and cid is None:
            for other in scenario.nodes:
                if other.address == me.address or other.rr_cluster_id is not None:
                    continue
                opts = PeerOptions(password=mesh_password, restart_time=mesh_restart)
                # "Make the peering unidirectional": string comparison, as the Go template does.
                add(MESH, other.address, listen_port(other), _Target(other, scenario.asn(other), opts),
                    passive=str(other.address) > str(me.address))
        for (ip, port), target in global_peers.items():
            if ip != me.address:
                # `passive on` toward a Calico node with a greater IP (peerIP peers only: calico_node).
                add(GLOBAL, ip, port, target, passive=target.options.calico_node and str(ip) > str(me.address))
        for (ip, port), target in node_peers[me.name].items():
            if ip == me.address or (ip, port) in global_peers:
                continue
            add(NODE, ip, port, target, passive=False)
        # A BGPPeer naming a node we already mesh with gives a second protocol to the same address;
        # BIRD would run both. Keep confd's output as is: duplicates are visible in `meshsim peers`.
        result[me.name] = out
    return result


def reverse_of(peerings: dict[str, list[Peering]], p: Peering) -> Peering | None:
    """The peer node's protocol toward `p`'s node (the other end of the session), if it has one."""
    for q in peerings.get(p.peer_node or "", []):
        if q.peer_node == p.node and q.peer_address == p.local_address:
            return q
    return None


def session_comes_up(peerings: dict[str, list[Peering]], p: Peering) -> tuple[bool, str]:
    """Whether the session of node-to-node peering `p` can reach Established, and why not: both ends must be
    configured, not both passive (nobody connects), and with the same password (TCP-MD5, RFC 2385: a segment
    whose MD5 option does not verify is dropped, so a mismatch never gets past the TCP handshake)."""
    q = reverse_of(peerings, p)
    if q is None:
        return False, f"{p.peer_node} has no peering back to {p.node}"
    if p.passive and q.passive:
        return False, "both ends are passive"
    if p.password != q.password:
        return False, "the two ends have different BGP passwords (TCP-MD5)"
    return True, "configured at both ends"


def sessions(peerings: dict[str, list[Peering]], running: set[str]) -> dict[str, list[Peering]]:
    """Per running node, its node-to-node peerings whose session can come up among the running nodes."""
    out: dict[str, list[Peering]] = {}
    for node, lst in peerings.items():
        if node not in running:
            continue
        out[node] = [p for p in lst if p.peer_node in running and session_comes_up(peerings, p)[0]]
    return out


def session_pairs(peerings: dict[str, list[Peering]]) -> set[frozenset[str]]:
    """Distinct node-to-node BGP sessions (each counted once), for N(N-1)/2-style checks."""
    pairs: set[frozenset[str]] = set()
    for node, lst in peerings.items():
        for p in lst:
            if p.peer_node is not None:
                pairs.add(frozenset((node, p.peer_node)))
    return pairs
