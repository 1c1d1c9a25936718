"""The route table every node should hold once BGP has converged, computed from the model alone.

Owns `host_view`, `propagate` and `expected_tables`. `propagate` follows each originated route
through the peering graph with the iBGP rules, independently of the speaker code it is used to
check: a plain iBGP speaker does not re-advertise iBGP routes (RFC 4271 §9.2); a route reflector
reflects client routes to everyone and non-client routes to clients only (RFC 4456 §8), ignores
routes carrying its own cluster id (RFC 4456 §8) and whose ORIGINATOR_ID is its own; Calico's
export filter applies at every hop (pool routes only, not disableBGPExport; calico_aggr rejects
subroutes of the exporter's own confirmed blocks). Only sessions between nodes that are running
and both configured count. Pure: no asyncio, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable

from meshsim.routes.felix import HostView, node_table
from meshsim.model.cluster import Cluster
from meshsim.model.peering import Peering
from meshsim.routes.routetable import RouteTable


def host_view(cluster: Cluster, node_name: str) -> HostView:
    node = cluster.scenario.node(node_name)
    facts = cluster.scenario.host(node_name)
    return HostView(name=node.name, address=node.address, subnet=node.subnet, interface=facts.interface,
                    gateway=facts.gateway_for(node.subnet))


@dataclass(frozen=True)
class Learned:
    """How a node learns one prefix: from which originator, over which peering, with which CLUSTER_LIST."""

    prefix: IPv4Network
    originator: str
    next_hop: IPv4Address
    via_peer: str | None
    cluster_list: tuple[IPv4Address, ...]


def exportable(cluster: Cluster, exporter: str, prefix: IPv4Network) -> bool:
    """calico_export_to_bgp_peers at `exporter` (bird_ipam.cfg.template / bird_aggr.cfg.template)."""
    pool = cluster.pool_of(prefix)
    if pool is None or not pool.exported:
        return False
    for block in cluster.affine_blocks(exporter):
        if prefix == block:
            return True
        if prefix.subnet_of(block):
            return False
    return True


def _sessions(peerings: dict[str, list[Peering]], running: set[str]) -> dict[str, list[Peering]]:
    """Peerings whose session can come up: both ends running and configured to peer with each other."""
    configured = {(p.node, p.peer_node) for lst in peerings.values() for p in lst if p.peer_node}
    out: dict[str, list[Peering]] = {}
    for node, lst in peerings.items():
        if node not in running:
            continue
        out[node] = [p for p in lst if p.peer_node in running and (p.peer_node, node) in configured
                     and not (p.passive and _peer_passive(peerings, p))]
    return out


def _peer_passive(peerings: dict[str, list[Peering]], p: Peering) -> bool:
    """Both ends passive: nobody connects, the session never comes up."""
    for q in peerings.get(p.peer_node or "", []):
        if q.peer_node == p.node and q.peer_address == p.local_address:
            return q.passive
    return False


def propagate(cluster: Cluster, running: Iterable[str] | None = None) -> dict[str, dict[IPv4Network, Learned]]:
    """For every running node, the BGP routes it learns (best path per prefix)."""
    names = [n.name for n in cluster.scenario.nodes]
    running_set = set(names if running is None else running)
    sessions = _sessions(cluster.peerings(), running_set)
    node_by_name = {n.name: n for n in cluster.scenario.nodes}
    learned: dict[str, dict[IPv4Network, Learned]] = {n: {} for n in names if n in running_set}

    for origin in names:
        if origin not in running_set:
            continue
        origin_addr = node_by_name[origin].address
        for prefix in sorted(cluster.originated(origin)):
            if not exportable(cluster, origin, prefix):
                continue
            # Breadth first, so the first arrival has the shortest CLUSTER_LIST (RFC 4456 §9 tie-break);
            # a node re-exports only its best path, i.e. its first arrival.
            best: dict[str, Learned] = {}
            queue: deque[tuple[str, Peering]] = deque((origin, p) for p in sessions.get(origin, []))
            came_from: dict[str, tuple[tuple[IPv4Address, ...], str]] = {origin: ((), "")}
            while queue:
                sender, peering = queue.popleft()
                receiver = peering.peer_node
                assert receiver is not None
                cl, _ = came_from[sender]
                sender_node = node_by_name[sender]
                out_cl = cl
                if sender != origin:
                    # RFC 4456 §8: a reflecting RR prepends its CLUSTER_ID.
                    assert sender_node.rr_cluster_id is not None
                    out_cl = (sender_node.rr_cluster_id, *cl)
                recv_node = node_by_name[receiver]
                if receiver == origin:
                    continue  # RFC 4456 §8: ORIGINATOR_ID is our router id
                if recv_node.rr_cluster_id is not None and recv_node.rr_cluster_id in out_cl:
                    continue  # RFC 4456 §8: our CLUSTER_ID in CLUSTER_LIST
                if receiver in best:
                    continue
                best[receiver] = Learned(prefix, origin, origin_addr, peering.name, out_cl)
                came_from[receiver] = (out_cl, sender)
                if recv_node.rr_cluster_id is None:
                    continue  # RFC 4271 §9.2: iBGP-learned routes are not re-advertised to iBGP peers
                if not exportable(cluster, receiver, prefix):
                    continue
                from_client = _is_client(sessions, receiver, sender)
                for q in sessions.get(receiver, []):
                    if q.peer_node == sender:
                        continue
                    if not q.ibgp:
                        continue
                    # RFC 4456 §8: client routes go to all peers, non-client routes to clients only.
                    if from_client or q.rr_client:
                        queue.append((receiver, q))
            for receiver, entry in best.items():
                prev = learned[receiver].get(prefix)
                if prev is None or (len(entry.cluster_list), int(entry.next_hop)) < (
                        len(prev.cluster_list), int(prev.next_hop)):
                    learned[receiver][prefix] = entry
    return learned


def _is_client(sessions: dict[str, list[Peering]], rr: str, peer: str) -> bool:
    return any(p.peer_node == peer and p.rr_client for p in sessions.get(rr, []))


def expected_table(cluster: Cluster, node: str, learned: dict[IPv4Network, Learned] | None = None) -> RouteTable:
    if learned is None:
        learned = propagate(cluster)[node]
    return node_table(
        host_view(cluster, node),
        blocks=[b.cidr for b in cluster.ipam.blocks_of(node)],
        workloads={p.ip: p.interface for p in cluster.pods_on(node)},
        learned={prefix: entry.next_hop for prefix, entry in learned.items()},
        pools=cluster.scenario.pools,
    )


def expected_tables(cluster: Cluster, running: Iterable[str] | None = None,
                    stale: Iterable[str] = ()) -> dict[str, RouteTable]:
    """Every running node's expected table. `stale`: nodes that are gone but whose routes their peers keep
    as stale (graceful restart, RFC 4724): their routes propagate as if they still ran (a reflector's
    reflections included); they have no table of their own."""
    stale = set(stale)
    present = None if running is None and not stale else set(
        [n.name for n in cluster.scenario.nodes] if running is None else running) | stale
    learned = propagate(cluster, present)
    return {node: expected_table(cluster, node, routes) for node, routes in learned.items() if node not in stale}
