"""The route table every node should hold once BGP has converged, and what each external peer should learn,
computed from the model alone.

Owns `host_view`, `export_context`, `peer_info`, `propagate`, `expected_tables` and `expected_external`.
`propagate` follows each originated route through the graph of sessions that come up (both ends configured,
not both passive, same password: meshsim.model.peering.session_comes_up), breadth first, so the first arrival
at a node has the shortest CLUSTER_LIST (RFC 4456 §9). Each hop applies the same pure rules a speaker applies
(meshsim.bgp.policy): at the sender the peer's BGPFilter export rules, Calico's export filter with its
communities, iBGP split horizon (RFC 4271 §9.2) and reflection (RFC 4456 §8); at the receiver the normalisation,
the loop checks and the peer's BGPFilter import rules. A node that originates a prefix itself keeps its own
route (BIRD: a static or kernel route beats a BGP one), and a node re-exports only its best path, its first
arrival. Pure: no asyncio, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable

from meshsim.bgp.filters import Filter, PrefixCommunities
from meshsim.bgp.policy import ExportContext, calico_filter, export, import_check, normalize_import
from meshsim.bgp.rib import Path, PeerInfo
from meshsim.bgp.types import PathAttrs
from meshsim.model.cluster import Cluster
from meshsim.model.peering import Peering, reverse_of, sessions
from meshsim.routes.felix import HostView, node_table
from meshsim.routes.routetable import RouteTable


def host_view(cluster: Cluster, node_name: str) -> HostView:
    node = cluster.scenario.node(node_name)
    facts = cluster.scenario.host(node_name)
    return HostView(name=node.name, address=node.address, subnet=node.subnet, interface=facts.interface,
                    gateway=facts.gateway_for(node.subnet))


def export_context(cluster: Cluster, node_name: str) -> ExportContext:
    """What confd renders into one node's export filter, as the pure policy reads it."""
    sc = cluster.scenario
    node = sc.node(node_name)
    services = cluster.service_routes(node_name)
    local = [(IPv4Network(p.ip), p.interface) for p in cluster.pods_on(node_name)]
    tunnel = cluster.tunnel_address(node_name)
    if tunnel is not None:
        local.append((IPv4Network(tunnel), "tunl0"))
    return ExportContext(
        router_id=node.address, local_as=sc.asn(node), cluster_id=node.rr_cluster_id,
        exportable_pools=tuple(p.cidr for p in sc.pools if p.exported),
        affine_blocks=cluster.affine_blocks(node_name),
        rejected_pools=tuple(p.cidr for p in sc.pools if not p.exported),
        static_routes=services.static, rr_accept=services.rr_accept,
        communities=tuple(PrefixCommunities(a.cidr, a.communities) for a in sc.bgp_for(node_name).prefix_advertisements),
        host_interface=sc.host(node_name).interface, local_interfaces=tuple(local),
    )


def peer_filters(cluster: Cluster, names: Iterable[str]) -> tuple[tuple[Filter, ...], tuple[Filter, ...]]:
    """(import, export) filters of a peering's BGPFilters, in order; a missing filter or an empty direction is
    skipped, as confd's template skips them."""
    imports, exports = [], []
    for name in names:
        f = cluster.scenario.filter(name)
        if f is None:
            continue
        if f.import_v4:
            imports.append(Filter(name, tuple(_rule(r) for r in f.import_v4)))
        if f.export_v4:
            exports.append(Filter(name, tuple(_rule(r) for r in f.export_v4)))
    return tuple(imports), tuple(exports)


def _rule(r):  # BGPFilterRule (model) -> FilterRule (bgp)
    from meshsim.bgp.filters import FilterRule

    return FilterRule(action=r.action, cidr=r.cidr, operator=r.match_operator, source=r.source, interface=r.interface)


def peer_info(cluster: Cluster, p: Peering) -> PeerInfo:
    """A peering as the node's speaker knows its neighbour."""
    imports, exports = peer_filters(cluster, p.options.filters)
    return PeerInfo(name=p.name, address=p.peer_address, router_id=p.peer_address, asn=p.peer_as,
                    rr_client=p.rr_client, import_filters=imports, export_filters=exports,
                    keep_next_hop=p.options.keep_next_hop, allow_local_as=p.options.allow_local_as)


def exportable(cluster: Cluster, exporter: str, prefix: IPv4Network) -> bool:
    """Calico's export filter at `exporter` for `prefix` (no BGPFilter): what a peer without filters gets."""
    return calico_filter(prefix, export_context(cluster, exporter))[0]


@dataclass(frozen=True)
class Learned:
    """How a node learns one prefix: from which originator, over which peering, with which attributes."""

    prefix: IPv4Network
    originator: str
    next_hop: IPv4Address
    via_peer: str | None  # the receiver's protocol it came in on
    cluster_list: tuple[IPv4Address, ...]
    attrs: PathAttrs | None = None

    @property
    def communities(self) -> tuple[str, ...]:
        return self.attrs.communities if self.attrs is not None else ()


class _World:
    """Contexts and peer views of every running node, computed once per propagation."""

    def __init__(self, cluster: Cluster, running: set[str]) -> None:
        self.cluster = cluster
        self.peerings = cluster.peerings()
        self.sessions = sessions(self.peerings, running)
        self.ctx = {n: export_context(cluster, n) for n in running}
        self.originated = {n: cluster.originated(n) for n in running}
        self.info: dict[tuple[str, str], PeerInfo] = {}
        self.back: dict[tuple[str, str], Peering] = {}  # (node, its protocol) -> the peer's protocol back
        for node, lst in self.sessions.items():
            for p in lst:
                self.info[(node, p.name)] = peer_info(cluster, p)
                q = reverse_of(self.peerings, p)
                assert q is not None
                self.back[(node, p.name)] = q
                if (q.node, q.name) not in self.info:
                    self.info[(q.node, q.name)] = peer_info(cluster, q)


def propagate(cluster: Cluster, running: Iterable[str] | None = None) -> dict[str, dict[IPv4Network, Learned]]:
    """For every running node, the BGP routes it learns (best path per prefix)."""
    names = [n.name for n in cluster.scenario.nodes]
    running_set = set(names if running is None else running)
    world = _World(cluster, running_set)
    learned: dict[str, dict[IPv4Network, Learned]] = {n: {} for n in names if n in running_set}
    for origin in names:
        if origin not in running_set:
            continue
        origin_addr = cluster.scenario.node(origin).address
        for prefix in sorted(world.originated[origin]):
            local = Path(prefix, PathAttrs(next_hop=origin_addr), None)
            best: dict[str, Learned] = {}
            queue: deque[tuple[str, Peering, Path]] = deque((origin, p, local) for p in world.sessions.get(origin, []))
            while queue:
                sender, peering, path = queue.popleft()
                receiver = peering.peer_node
                assert receiver is not None
                if receiver == origin or receiver in best or prefix in world.originated[receiver]:
                    continue  # RFC 4456 §8 ORIGINATOR_ID; already has its best path; its own route wins
                attrs = export(path, world.info[(sender, peering.name)], world.ctx[sender])
                if attrs is None:
                    continue
                back = world.back[(sender, peering.name)]
                source = world.info[(receiver, back.name)]
                stored = Path(prefix, normalize_import(attrs, source, world.ctx[receiver]), source)
                if import_check(stored, world.ctx[receiver]) is not None:
                    continue
                best[receiver] = Learned(prefix, origin, stored.attrs.next_hop, back.name, stored.attrs.cluster_list,
                                         stored.attrs)
                # Only a route reflector, or a route going to or coming from another AS, travels on (RFC 4271
                # §9.2: export() would refuse the rest; skipping them keeps a mesh O(N^2) per prefix).
                reflector = world.ctx[receiver].cluster_id is not None
                from_ebgp = source.asn != world.ctx[receiver].local_as
                for q in world.sessions.get(receiver, []):
                    if q.peer_node != sender and (reflector or from_ebgp or not q.ibgp):
                        queue.append((receiver, q, stored))
            for receiver, entry in best.items():
                prev = learned[receiver].get(prefix)
                if prev is None or (len(entry.cluster_list), int(entry.next_hop)) < (
                        len(prev.cluster_list), int(prev.next_hop)):
                    learned[receiver][prefix] = entry
    return learned


def expected_table(cluster: Cluster, node: str, learned: dict[IPv4Network, Learned] | None = None) -> RouteTable:
    if learned is None:
        learned = propagate(cluster)[node]
    services = cluster.service_routes(node)
    return node_table(
        host_view(cluster, node),
        blocks=[b.cidr for b in cluster.ipam.blocks_of(node)],
        workloads={p.ip: p.interface for p in cluster.pods_on(node)},
        learned={prefix: entry.next_hop for prefix, entry in learned.items()},
        pools=cluster.scenario.pools,
        static_routes=services.static,
        reject=services.reject,
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


@dataclass(frozen=True)
class ExternalRoute:
    """One path an external peer (a ToR) receives: from which node, with which attributes."""

    prefix: IPv4Network
    node: str
    attrs: PathAttrs


def expected_external(cluster: Cluster, running: Iterable[str] | None = None
                      ) -> dict[IPv4Address, dict[IPv4Network, list[ExternalRoute]]]:
    """What every external peer (a BGPPeer address that is no node) receives from every running node that peers
    with it: each node's best paths (its own routes and what it learned) through the node's export rules for
    that peer. The session to an external peer is assumed to come up."""
    names = [n.name for n in cluster.scenario.nodes]
    running_set = set(names if running is None else running)
    learned = propagate(cluster, running_set)
    peerings = cluster.peerings()
    out: dict[IPv4Address, dict[IPv4Network, list[ExternalRoute]]] = {}
    for node in names:
        if node not in running_set:
            continue
        externals = [p for p in peerings[node] if p.peer_node is None]
        if not externals:
            continue
        ctx = export_context(cluster, node)
        address = cluster.scenario.node(node).address
        paths = [Path(prefix, PathAttrs(next_hop=address), None) for prefix in sorted(cluster.originated(node))]
        for prefix, entry in sorted(learned[node].items()):
            source = next((PeerInfo(name=p.name, address=p.peer_address, router_id=p.peer_address, asn=p.peer_as,
                                    rr_client=p.rr_client) for p in peerings[node] if p.name == entry.via_peer), None)
            paths.append(Path(prefix, entry.attrs or PathAttrs(next_hop=entry.next_hop), source))
        for p in externals:
            info = peer_info(cluster, p)
            table = out.setdefault(p.peer_address, {})
            for path in paths:
                attrs = export(path, info, ctx)
                if attrs is not None:
                    table.setdefault(path.prefix, []).append(ExternalRoute(path.prefix, node, attrs))
    return out


__all__ = ["host_view", "export_context", "peer_info", "peer_filters", "propagate", "expected_table",
           "expected_tables", "expected_external", "Learned", "ExternalRoute"]
