"""What ends up in a Calico node's main routing table, and the Felix-like agent that keeps it.

Owns
- `HostView`: a node's host facts (address, subnet, interface, gateway);
- `host_routes`, `workload_route`, `blackhole_route`, and `bgp_route`: BIRD's kernel protocol with
  Calico's `calico_kernel_programming` filter (bird_ipam.cfg.template, v3.28): ipipMode Always ->
  `via NH dev tunl0 onlink` (krt_tunnel, Calico's BIRD patch sets RTNH_F_ONLINK); CrossSubnet ->
  same as Always unless the next hop is inside the node's subnet; Never -> a plain route, resolved
  recursively (`gateway recursive`) through the default gateway when the next hop is off-subnet;
- `FelixAgent`: desired table = host routes + local workloads + own block blackholes + BGP best
  paths; `apply(now)` returns the delta and records when each route last changed.
Caveat (as in real Calico): BGP-learned routes reach the kernel through BIRD's kernel protocol, not
Felix; Felix programs workload routes. This agent plays both parts for a meshsim node.
Pure: no asyncio, no clock (time is a parameter).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Mapping

from meshsim.model.resources import IPPool
from meshsim.routes.routetable import Route, RouteDelta, RouteTable

TUNNEL_DEVICE = "tunl0"
DEFAULT = IPv4Network("0.0.0.0/0")


@dataclass(frozen=True)
class HostView:
    name: str
    address: IPv4Address
    subnet: IPv4Network
    interface: str
    gateway: IPv4Address


def host_routes(host: HostView) -> list[Route]:
    """The host's own connected and default routes."""
    return [
        Route(dst=DEFAULT, via=host.gateway, dev=host.interface),
        Route(dst=host.subnet, dev=host.interface, proto="kernel", scope="link", src=host.address),
    ]


def workload_route(ip: IPv4Address, interface: str) -> Route:
    """Felix's route to a local pod: `10.244.42.68 dev cali... scope link` (proto boot, hidden by iproute2)."""
    return Route(dst=IPv4Network(ip), dev=interface, proto="boot", scope="link")


def blackhole_route(block: IPv4Network) -> Route:
    """bird_aggr.cfg: `route BLOCK blackhole` for every affine non-/32 block."""
    return Route(dst=block, type="blackhole", proto="bird")


def bgp_route(prefix: IPv4Network, next_hop: IPv4Address, pool: IPPool | None, host: HostView) -> Route | None:
    """The kernel route BIRD programs for a BGP best path, or None when the filter rejects it."""
    tunnel = False
    if pool is not None:
        if pool.vxlan_mode != "Never":
            return None  # "Don't program VXLAN routes into the kernel - these are handled by Felix."
        if pool.ipip_mode == "Always":
            tunnel = True
        elif pool.ipip_mode == "CrossSubnet":
            tunnel = next_hop not in host.subnet
    if tunnel:
        return Route(dst=prefix, via=next_hop, dev=TUNNEL_DEVICE, proto="bird", onlink=True)
    if next_hop in host.subnet:
        return Route(dst=prefix, via=next_hop, dev=host.interface, proto="bird")
    # `gateway recursive`: an off-subnet next hop resolves through the host's default route.
    return Route(dst=prefix, via=host.gateway, dev=host.interface, proto="bird")


def node_table(host: HostView, *, blocks: Iterable[IPv4Network], workloads: Mapping[IPv4Address, str],
               learned: Mapping[IPv4Network, IPv4Address], pools: Iterable[IPPool],
               static_routes: Iterable[IPv4Network] = (), reject: Iterable[IPv4Network] = ()) -> RouteTable:
    """A node's whole main table from its parts.

    `learned` maps each BGP best-path prefix to its next hop. A learned route for exactly the same
    destination as a local workload loses to the workload route (BIRD's kernel protocol does not
    replace Felix's route), and a learned route equal to an own block loses to the blackhole.
    `static_routes` are confd's service routes (`route X blackhole` in bird_aggr.cfg) and `reject` its
    reject CIDRs: calico_kernel_programming programs neither a static route nor a learned one inside
    a reject CIDR (the service ranges), so only service /32s outside the ranges reach the kernel.
    """
    pools = tuple(pools)
    reject = tuple(reject)
    routes: dict[IPv4Network, Route] = {}
    for r in host_routes(host):
        routes[r.dst] = r
    for block in blocks:
        if block.prefixlen < 32:
            routes[block] = blackhole_route(block)
    for ip, iface in workloads.items():
        routes[IPv4Network(ip)] = workload_route(ip, iface)
    for static in static_routes:
        if static not in routes and not any(static.subnet_of(r) for r in reject):
            routes[static] = blackhole_route(static)
    for prefix, nh in learned.items():
        if prefix in routes:
            continue
        if reject and any(prefix.subnet_of(r) for r in reject):
            continue  # "Don't program static routes into kernel." (bird_ipam.cfg /rejectcidrs)
        pool = next((p for p in pools if prefix.subnet_of(p.cidr)), None)
        r = bgp_route(prefix, nh, pool, host)
        if r is not None:
            routes[prefix] = r
    return RouteTable(routes.values())


@dataclass
class FelixAgent:
    """Keeps one node's route table: feed it parts, `apply(now)` to program and get the delta."""

    host: HostView
    pools: tuple[IPPool, ...]
    blocks: frozenset[IPv4Network] = frozenset()
    static_routes: tuple[IPv4Network, ...] = ()  # confd's service routes on this node
    reject: tuple[IPv4Network, ...] = ()  # confd's reject CIDRs (the service ranges)
    workloads: dict[IPv4Address, str] = field(default_factory=dict)
    learned: dict[IPv4Network, IPv4Address] = field(default_factory=dict)
    table: RouteTable = field(default_factory=RouteTable)
    changed_at: dict[IPv4Network, float] = field(default_factory=dict)  # dst -> when last added/changed
    removed_at: dict[IPv4Network, float] = field(default_factory=dict)  # dst -> when last removed
    last_change: float | None = None
    changes: int = 0
    log: deque = field(default_factory=lambda: deque(maxlen=50_000))  # (time, add|del|chg, dst, line)

    def set_local(self, blocks: Iterable[IPv4Network], workloads: Mapping[IPv4Address, str]) -> None:
        self.blocks = frozenset(blocks)
        self.workloads = dict(workloads)

    def set_learned(self, prefix: IPv4Network, next_hop: IPv4Address | None) -> None:
        if next_hop is None:
            self.learned.pop(prefix, None)
        else:
            self.learned[prefix] = next_hop

    def desired(self) -> RouteTable:
        return node_table(self.host, blocks=self.blocks, workloads=self.workloads, learned=self.learned,
                          pools=self.pools, static_routes=self.static_routes, reject=self.reject)

    def apply(self, now: float) -> RouteDelta:
        """Program the desired table (RouteTable.SetRoutes + Apply in Felix's terms)."""
        new = self.desired()
        delta = self.table.diff(new)
        if delta.added or delta.removed:
            added = {r.dst for r in delta.added}
            removed = {r.dst for r in delta.removed}
            for r in delta.removed:
                if r.dst not in added:
                    self.removed_at[r.dst] = now
                    self.log.append((now, "del", str(r.dst), r.render_ip().rstrip()))
            for r in delta.added:
                self.changed_at[r.dst] = now
                self.log.append((now, "chg" if r.dst in removed else "add", str(r.dst), r.render_ip().rstrip()))
            self.table = new
            self.last_change = now
            self.changes += len(delta.added) + len(delta.removed)
        return delta
