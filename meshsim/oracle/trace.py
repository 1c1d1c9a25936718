"""Follow one packet hop by hop through the nodes' route tables and the underlay.

Owns `trace(cluster, tables, src, dst) -> Trace`. The underlay is what a Calico cluster sits on:
nodes on a subnet reach each other directly; each subnet's gateway is a router that knows the node
subnets only (not pod addresses). IPIP (`dev tunl0 onlink`) encapsulates toward the next hop node,
which decapsulates and looks the inner packet up again. Pure: no asyncio, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from meshsim.errors import NotFoundError
from meshsim.routes.felix import TUNNEL_DEVICE
from meshsim.model.cluster import Cluster, Pod
from meshsim.routes.routetable import RouteTable

MAX_HOPS = 32


@dataclass(frozen=True)
class Hop:
    where: str  # node name or router address
    text: str


@dataclass
class Trace:
    src: str
    dst: IPv4Address
    hops: list[Hop] = field(default_factory=list)
    delivered: bool = False
    verdict: str = ""

    def render(self) -> str:
        lines = [f"trace {self.src} -> {self.dst}"]
        lines += [f"  {h.where}: {h.text}" for h in self.hops]
        lines.append(self.verdict)
        return "\n".join(lines) + "\n"


def resolve_endpoint(cluster: Cluster, text: str) -> tuple[str, IPv4Address, Pod | None]:
    """'ns/pod', 'pod', a pod IP, a node name or a node address -> (start node, address, pod)."""
    for node in cluster.scenario.nodes:
        if text in (node.name, str(node.address)):
            return node.name, node.address, None
    try:
        pod = cluster.find_pod(text)
        return pod.node, pod.ip, pod
    except NotFoundError:
        pass
    try:
        addr = IPv4Address(text)
    except ValueError:
        raise NotFoundError("pod, node or address", text,
                            tuple(p.key for p in cluster.pods.values()) + tuple(n.name for n in cluster.scenario.nodes)
                            ) from None
    return "", addr, None


def trace(cluster: Cluster, tables: dict[str, RouteTable], src: str, dst: str) -> Trace:
    start, src_ip, src_pod = resolve_endpoint(cluster, src)
    if not start:
        raise NotFoundError("pod or node", src, tuple(p.key for p in cluster.pods.values()))
    _, dst_ip, _ = resolve_endpoint(cluster, dst)
    label = f"pod {src_pod.key} ({src_ip}) on {start}" if src_pod else f"node {start} ({src_ip})"
    result = Trace(src=label, dst=dst_ip)
    nodes = {n.name: n for n in cluster.scenario.nodes}
    by_addr = {n.address: n.name for n in cluster.scenario.nodes}
    pods_by_ip = {p.ip: p for p in cluster.pods.values()}
    here = start
    seen: set[str] = set()
    for _ in range(MAX_HOPS):
        if here in seen:
            result.verdict = f"dropped: routing loop at {here}"
            return result
        seen.add(here)
        node = nodes[here]
        if dst_ip == node.address:
            result.delivered = True
            result.verdict = f"delivered to node {here}"
            return result
        table = tables.get(here)
        if table is None:
            result.verdict = f"dropped at {here}: node is not running"
            return result
        route = table.lookup(dst_ip)
        if route is None:
            result.hops.append(Hop(here, "no route"))
            result.verdict = f"dropped at {here}: no route to {dst_ip}"
            return result
        result.hops.append(Hop(here, route.render_ip().rstrip()))
        if route.type == "blackhole":
            result.verdict = f"dropped at {here}: blackhole {route.dst} (no pod has {dst_ip})"
            return result
        if route.dev and route.dev.startswith("cali"):
            pod = pods_by_ip.get(dst_ip)
            if pod and pod.node == here:
                result.delivered = True
                result.verdict = f"delivered to pod {pod.key} on {here}"
            else:
                result.verdict = f"dropped at {here}: {route.dev} has no pod with {dst_ip}"
            return result
        gateway = route.via
        if gateway is None:
            # a connected route: the destination itself is on the link
            if dst_ip in by_addr:
                here = by_addr[dst_ip]
                continue
            result.verdict = f"dropped at {here}: {dst_ip} is on {route.dev} but no host answers"
            return result
        if route.dev == TUNNEL_DEVICE:
            target = by_addr.get(gateway)
            if target is None:
                result.verdict = f"dropped at {here}: IPIP next hop {gateway} is not a node"
                return result
            ok, why = _underlay(cluster, here, gateway)
            if not ok:
                result.verdict = f"dropped: IPIP packet to {gateway} {why}"
                return result
            result.hops.append(Hop(here, f"IPIP encapsulated to {gateway} ({target})"))
            here = target
            continue
        if gateway in by_addr:
            here = by_addr[gateway]
            continue
        # the next hop is a router of the underlay: it knows node subnets only
        router_target = next((n for n in cluster.scenario.nodes if dst_ip in n.subnet), None)
        if router_target is None or dst_ip not in by_addr:
            result.hops.append(Hop(str(gateway), "underlay router: knows node subnets only"))
            result.verdict = f"dropped at {gateway}: no route to {dst_ip}"
            return result
        here = by_addr[dst_ip]
    result.verdict = "dropped: too many hops"
    return result


def _underlay(cluster: Cluster, src_node: str, dst_addr: IPv4Address) -> tuple[bool, str]:
    """Node-to-node reachability over the underlay: same subnet directly, otherwise via gateways."""
    src = cluster.scenario.node(src_node)
    if dst_addr in src.subnet:
        return True, ""
    if any(dst_addr in n.subnet for n in cluster.scenario.nodes):
        return True, ""
    return False, "is outside every node subnet"


__all__ = ["trace", "Trace", "Hop", "resolve_endpoint", "IPv4Network"]
