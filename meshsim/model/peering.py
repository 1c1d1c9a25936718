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

from dataclasses import dataclass
from ipaddress import IPv4Address

from meshsim.model.resources import Node, Scenario
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

    @property
    def type(self) -> str:
        """The PEER TYPE column of `calicoctl node status`."""
        return PEER_TYPES[self.prefix]

    @property
    def ibgp(self) -> bool:
        return self.local_as == self.peer_as


def _labels(node: Node) -> dict[str, str]:
    return node.label_map


def _nodes_matching(scenario: Scenario, selector: str) -> list[Node]:
    sel = parse_selector(selector)
    return [n for n in scenario.nodes if sel.matches(_labels(n))]


def compute_peerings(scenario: Scenario) -> dict[str, list[Peering]]:
    """Every node's peerings, in the order confd writes them: mesh, global, node-specific."""
    by_ip = {n.address: n for n in scenario.nodes}
    listen_port = scenario.bgp.listen_port if scenario.bgp.listen_port != 179 else None

    # (peer ip, port) -> (peer node or None, peer AS); global ones apply to every node.
    global_peers: dict[tuple[IPv4Address, int | None], tuple[Node | None, int]] = {}
    node_peers: dict[str, dict[tuple[IPv4Address, int | None], tuple[Node | None, int]]] = {
        n.name: {} for n in scenario.nodes
    }

    def targets(peer) -> list[tuple[IPv4Address, int | None, Node | None, int]]:
        if peer.peer_selector is not None:
            return [(n.address, listen_port, n, scenario.asn(n)) for n in _nodes_matching(scenario, peer.peer_selector)]
        assert peer.peer_ip is not None and peer.as_number is not None
        node = by_ip.get(peer.peer_ip)
        port = peer.peer_port if peer.peer_port else (listen_port if node is not None else None)
        return [(peer.peer_ip, port, node, peer.as_number)]

    # Pass 1: global peers; pass 2: node-specific peers (client.go updatePeersV1).
    for peer in scenario.peers:
        if peer.node is None and peer.node_selector is None:
            for ip, port, node, asn in targets(peer):
                global_peers[(ip, port)] = (node, asn)
    for peer in scenario.peers:
        if peer.node is None and peer.node_selector is None:
            continue
        local = [scenario.node(peer.node)] if peer.node is not None else _nodes_matching(scenario, peer.node_selector or "")
        for ip, port, node, asn in targets(peer):
            for ln in local:
                node_peers[ln.name].setdefault((ip, port), (node, asn))
    # Reverse pass: nodes selected as peers get a peering back to the selecting nodes.
    for peer in scenario.peers:
        if peer.peer_selector is not None:
            local = _nodes_matching(scenario, peer.peer_selector)
        else:
            local = [n for n in scenario.nodes if n.address == peer.peer_ip
                     and scenario.asn(n) == (peer.as_number or scenario.bgp.as_number)]
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
                node_peers[ln.name].setdefault((rn.address, listen_port), (rn, scenario.asn(rn)))

    result: dict[str, list[Peering]] = {}
    for me in scenario.nodes:
        my_as = scenario.asn(me)
        cid = me.rr_cluster_id
        out: list[Peering] = []

        def add(prefix: str, ip: IPv4Address, port: int | None, peer_node: Node | None, peer_as: int,
                passive: bool) -> None:
            peer_cid = peer_node.rr_cluster_id if peer_node is not None else None
            rr_client = prefix != MESH and peer_as == my_as and cid is not None and peer_cid != cid
            out.append(Peering(
                node=me.name, name=protocol_name(prefix, ip, port if prefix != MESH else None), prefix=prefix,
                local_address=me.address, local_as=my_as, peer_address=ip, peer_as=peer_as, peer_port=port,
                peer_node=peer_node.name if peer_node else None, passive=passive, rr_client=rr_client,
                cluster_id=cid if rr_client else None,
            ))

        # Mesh (skipped entirely by a route reflector; route reflectors are skipped as mesh peers).
        if scenario.bgp.node_to_node_mesh_enabled and cid is None:
            for other in scenario.nodes:
                if other.address == me.address or other.rr_cluster_id is not None:
                    continue
                # "Make the peering unidirectional": string comparison, as the Go template does.
                add(MESH, other.address, listen_port, other, scenario.asn(other),
                    passive=str(other.address) > str(me.address))
        for (ip, port), (peer_node, asn) in global_peers.items():
            if ip != me.address:
                add(GLOBAL, ip, port, peer_node, asn, passive=False)
        for (ip, port), (peer_node, asn) in node_peers[me.name].items():
            if ip == me.address or (ip, port) in global_peers:
                continue
            add(NODE, ip, port, peer_node, asn, passive=False)
        # A BGPPeer naming a node we already mesh with gives a second protocol to the same address;
        # BIRD would run both. Keep confd's output as is: duplicates are visible in `meshsim peers`.
        result[me.name] = out
    return result


def session_pairs(peerings: dict[str, list[Peering]]) -> set[frozenset[str]]:
    """Distinct node-to-node BGP sessions (each counted once), for N(N-1)/2-style checks."""
    pairs: set[frozenset[str]] = set()
    for node, lst in peerings.items():
        for p in lst:
            if p.peer_node is not None:
                pairs.add(frozenset((node, p.peer_node)))
    return pairs
