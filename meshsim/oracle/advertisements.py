"""How many prefix advertisements BGP sends, counted from the model by a stated rule.

Owns `advertisements(cluster) -> Advertisements` and `new_prefix_copies(cluster, node)`. The rule (what
`meshsim compare` reports next to the measured UPDATE messages, which pack several prefixes each):

- one advertisement = one prefix sent over one session, once, in the converged state;
- each node sends its best path per prefix to every peer its export rules allow (the origin to every
  peer; a route reflector reflects client routes to every peer but the sender and non-client routes to
  clients only, RFC 4456 §8; a plain iBGP speaker re-advertises nothing it learned over iBGP, RFC 4271
  §9.2; Calico's export filter at every hop), so every reflector's copy to every client counts;
- copies the receiver drops count as sent (its own ORIGINATOR_ID, or its cluster ID in CLUSTER_LIST,
  RFC 4456 §8): `dropped` says how many;
- End-of-RIB markers, keepalives, withdrawals and the transient best-path changes of a real cold start
  are not counted;
- a peer outside the cluster (a ToR) receives every prefix the node holds over eBGP, and the node's own
  prefixes over iBGP (all of them from a route reflector, whose client it is); what it sends back is
  not counted.
Routes follow `meshsim.oracle.expected.propagate`: only sessions both ends configure. Pure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from meshsim.model.cluster import Cluster
from meshsim.model.peering import Peering
from meshsim.model.peering import sessions as _sessions
from meshsim.oracle.expected import exportable


def _is_client(sessions: dict[str, list[Peering]], rr: str, peer: str) -> bool:
    """`peer` is a route-reflector client of `rr` (rr renders `rr client` toward it)."""
    return any(p.peer_node == peer and p.rr_client for p in sessions.get(rr, []))

RULE = ("one prefix over one session counts once; each node sends its best path to every peer its export "
        "rules allow (every route reflector's copy to every client counts); copies the receiver drops by "
        "ORIGINATOR_ID or CLUSTER_LIST (RFC 4456 §8) count as sent; End-of-RIB, keepalives and withdrawals "
        "are not counted; peers outside the cluster get every prefix over eBGP, the node's own over iBGP")


@dataclass(frozen=True)
class Copies:
    """The copies of one prefix: sent inside the cluster (`dropped` of them by the receiver) and to
    peers outside it."""

    sent: int
    dropped: int = 0
    external: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.external

    def __add__(self, other: "Copies") -> "Copies":
        return Copies(self.sent + other.sent, self.dropped + other.dropped, self.external + other.external)

    def times(self, k: int) -> "Copies":
        return Copies(self.sent * k, self.dropped * k, self.external * k)


@dataclass(frozen=True)
class Advertisements:
    """Cold start (every prefix every node originates) and one new prefix (a new block) per node, with
    the figures the closed forms of `meshsim.report.scaling` take: sessions, exported prefixes per node,
    and peers outside the cluster per node (eBGP, iBGP)."""

    cold: Copies
    prefixes: int
    sessions: int = 0  # node-to-node sessions both ends configure, plus sessions to peers outside
    sessions_by_node: dict[str, int] = field(default_factory=dict)
    per_new_block: dict[str, Copies] = field(default_factory=dict)
    prefixes_by_node: dict[str, int] = field(default_factory=dict)
    external_by_node: dict[str, tuple[int, int]] = field(default_factory=dict)


class _Graph:
    """The sessions of a cluster, prepared once for many prefixes."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.names = [n.name for n in cluster.scenario.nodes]
        self.nodes = {n.name: n for n in cluster.scenario.nodes}
        peerings = cluster.peerings()
        self.sessions: dict[str, list[Peering]] = _sessions(peerings, set(self.names))
        self.external: dict[str, list[Peering]] = {
            node: list({p.peer_address: p for p in lst if p.peer_node is None}.values())
            for node, lst in peerings.items()}

    def copies(self, origin: str, prefix: IPv4Network, check_filter: bool = True) -> Copies:
        """Copies of `prefix` originated by `origin` (breadth first, as `propagate`)."""
        if check_filter and not exportable(self.cluster, origin, prefix):
            return Copies(0)
        sent = dropped = 0
        queue: deque[tuple[str, Peering, tuple[IPv4Address, ...]]] = deque(
            (origin, p, ()) for p in self.sessions.get(origin, []))
        reached = {origin}
        while queue:
            sender, peering, cl = queue.popleft()
            sent += 1
            receiver = peering.peer_node
            assert receiver is not None
            sender_node = self.nodes[sender]
            out_cl = cl if sender == origin else (sender_node.rr_cluster_id, *cl)
            recv = self.nodes[receiver]
            if receiver == origin or (recv.rr_cluster_id is not None and recv.rr_cluster_id in out_cl):
                dropped += 1  # RFC 4456 §8: own ORIGINATOR_ID / own CLUSTER_ID in CLUSTER_LIST
                continue
            if receiver in reached:
                continue  # a second path; only the best one is re-advertised
            reached.add(receiver)
            if recv.rr_cluster_id is None:
                continue  # RFC 4271 §9.2: no iBGP re-advertisement without reflection
            if check_filter and not exportable(self.cluster, receiver, prefix):
                continue
            from_client = _is_client(self.sessions, receiver, sender)
            for q in self.sessions.get(receiver, []):
                if q.peer_node != sender and q.ibgp and (from_client or q.rr_client):
                    queue.append((receiver, q, out_cl))  # RFC 4456 §8
        external = 0
        for node in reached:
            for q in self.external.get(node, []):
                reflector = self.nodes[node].rr_cluster_id is not None
                if not q.ibgp or node == origin or reflector:
                    external += 1
        return Copies(sent, dropped, external)


def advertisements(cluster: Cluster) -> Advertisements:
    """Count the cold start's prefix advertisements and those one new block on each node causes."""
    graph = _Graph(cluster)
    cold = Copies(0)
    by_node: dict[str, int] = {}
    for origin in graph.names:
        by_node[origin] = 0
        for prefix in sorted(cluster.originated(origin)):
            if not exportable(cluster, origin, prefix):
                continue
            by_node[origin] += 1
            cold = cold + graph.copies(origin, prefix, check_filter=False)
    pools = [p for p in cluster.scenario.pools if p.exported]
    per_block: dict[str, Copies] = {}
    if pools:
        # a new block of this node is its own affine block: exported by it, and inside no other node's block
        per_block = {n: graph.copies(n, pools[0].cidr, check_filter=False) for n in graph.names}
    pairs = {frozenset((node, p.peer_node)) for node, lst in graph.sessions.items() for p in lst}
    external = {n: (sum(1 for q in graph.external[n] if not q.ibgp), sum(1 for q in graph.external[n] if q.ibgp))
                for n in graph.names}
    per_node = {n: len({p.peer_node for p in graph.sessions.get(n, [])}) + sum(external[n]) for n in graph.names}
    return Advertisements(cold=cold, prefixes=sum(by_node.values()), sessions_by_node=per_node,
                          sessions=len(pairs) + sum(a + b for a, b in external.values()), per_new_block=per_block,
                          prefixes_by_node=by_node, external_by_node=external)
