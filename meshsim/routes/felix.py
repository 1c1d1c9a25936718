"""What ends up in a Calico node's main routing table, and the Felix-like agent that keeps it.

Owns
- `HostView`: a node's host facts (address, subnet, interface, gateway);
- `host_routes`, `workload_route`, `blackhole_route`, and `bgp_route`: BIRD's kernel protocol with
  Calico's `calico_kernel_programming` filter (bird_ipam.cfg.template, v3.28): ipipMode Always ->
  `via NH dev tunl0 onlink` (krt_tunnel, Calico's BIRD patch sets RTNH_F_ONLINK); CrossSubnet ->
  same as Always unless the next hop is inside the node's subnet; Never -> a plain route, resolved
  recursively (`gateway recursive`) through the default gateway when the next hop is off-subnet;
- `FelixAgent`: desired table = host routes + local workloads + own block blackholes + BGP best
  paths, kept incrementally; `apply(now)` returns the delta and records it in a `RouteHistory`.
Caveat (as in real Calico): BGP-learned routes reach the kernel through BIRD's kernel protocol, not
Felix; Felix programs workload routes. This agent plays both parts for a meshsim node.
Pure: no asyncio, no clock (time is a parameter).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Mapping

from meshsim.model.resources import IPPool
from meshsim.routes.history import RouteHistory
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


def _bird(route: Route | None) -> bool:
    return route is not None and route.proto == "bird"


class FelixAgent:
    """Keeps one node's route table: give it the parts, `apply(now)` programs what changed.

    Incremental: each input change marks the destinations it can affect, and `apply` recomputes only
    those (the same precedence as `node_table`: a local workload, then an own-block blackhole, then a
    host route, then a BGP best path), so a node learning one route does O(1) work, not O(table).
    `recovering`: the node starts as calico-node starts BIRD (`bird -R`): BIRD's kernel protocol (with
    `persist` and `graceful restart`) leaves the `proto bird` routes already in the kernel (`kept`, from the
    node's previous life) untouched and programs no BGP route and no blackhole until the graceful-restart
    recovery ends (`end_recovery()`: BIRD krt_start / krt_got_route / graceful_restart_done); Felix's own
    routes (workloads) are programmed as usual meanwhile.
    """

    def __init__(self, host: HostView, pools: Iterable[IPPool], *, history: RouteHistory | None = None,
                 kept: Mapping[IPv4Network, Route] | None = None, recovering: bool = False,
                 now: float = 0.0) -> None:
        self.host = host
        self.pools = tuple(pools)
        self.blocks: frozenset[IPv4Network] = frozenset()
        self.static_routes: frozenset[IPv4Network] = frozenset()  # confd's service routes on this node
        self.reject: tuple[IPv4Network, ...] = ()  # confd's reject CIDRs (the service ranges)
        self.workloads: dict[IPv4Network, Route] = {}
        self.learned: dict[IPv4Network, IPv4Address] = {}
        self.history = history if history is not None else RouteHistory()
        self.recovering = recovering
        self._host = {r.dst: r for r in host_routes(host)}
        self._routes: dict[IPv4Network, Route] = dict(kept or {})
        self._dirty: set[IPv4Network] = set(self._host) | set(self._routes)
        if kept:  # the kernel holds these already: the history starts from them
            self.history.apply({str(d): r.render_ip() for d, r in kept.items()}, now)

    # -- inputs ---------------------------------------------------------------------------------
    def set_local(self, blocks: Iterable[IPv4Network], workloads: Mapping[IPv4Address, str]) -> None:
        new_blocks = frozenset(b for b in blocks if b.prefixlen < 32)
        new_wl = {IPv4Network(ip): workload_route(ip, iface) for ip, iface in workloads.items()}
        self._dirty |= self.blocks ^ new_blocks
        self._dirty |= {d for d in set(self.workloads) | set(new_wl) if self.workloads.get(d) != new_wl.get(d)}
        self.blocks = new_blocks
        self.workloads = new_wl

    def set_services(self, static_routes: Iterable[IPv4Network], reject: Iterable[IPv4Network]) -> None:
        """confd's service routes (`route X blackhole` in bird_aggr.cfg) and its reject CIDRs."""
        new_static = frozenset(static_routes)
        new_reject = tuple(reject)
        self._dirty |= self.static_routes ^ new_static
        if new_reject != self.reject:
            self._dirty |= set(self.learned) | new_static
        self.static_routes = new_static
        self.reject = new_reject

    def set_learned(self, prefix: IPv4Network, next_hop: IPv4Address | None) -> None:
        if next_hop is None:
            if self.learned.pop(prefix, None) is not None:
                self._dirty.add(prefix)
        elif self.learned.get(prefix) != next_hop:
            self.learned[prefix] = next_hop
            self._dirty.add(prefix)

    def set_pools(self, pools: Iterable[IPPool]) -> None:
        self.pools = tuple(pools)
        self._dirty |= set(self.learned)

    def end_recovery(self) -> None:
        """Graceful-restart recovery is over: routes nobody wants any more go now."""
        if self.recovering:
            self.recovering = False
            self._dirty |= (set(self._routes) | set(self.learned) | set(self.blocks) | set(self.workloads)
                            | set(self.static_routes))

    # -- programming ------------------------------------------------------------------------------
    def route_for(self, dst: IPv4Network) -> Route | None:
        if dst in self.workloads:
            return self.workloads[dst]
        if dst in self.blocks:
            return blackhole_route(dst)
        if dst in self._host:
            return self._host[dst]
        rejected = bool(self.reject) and any(dst.subnet_of(r) for r in self.reject)
        if dst in self.static_routes and not rejected:
            return blackhole_route(dst)
        nh = self.learned.get(dst)
        if nh is None or rejected:
            return None  # "Don't program static routes into kernel." (bird_ipam.cfg /rejectcidrs)
        pool = next((p for p in self.pools if dst.subnet_of(p.cidr)), None)
        return bgp_route(dst, nh, pool, self.host)

    def apply(self, now: float) -> RouteDelta:
        """Program what changed (RouteTable.SetRoutes + Apply in Felix's terms); returns the delta."""
        if not self._dirty:
            return RouteDelta()
        added: list[Route] = []
        removed: list[Route] = []
        changes: dict[str, str | None] = {}
        for dst in sorted(self._dirty):
            old = self._routes.get(dst)
            new = self.route_for(dst)
            if self.recovering and (_bird(old) or _bird(new)):
                continue  # BIRD's routes wait for the end of the recovery; the kernel keeps what it has
            if new == old:
                continue
            if old is not None:
                removed.append(old)
            if new is None:
                del self._routes[dst]
                changes[str(dst)] = None
            else:
                self._routes[dst] = new
                added.append(new)
                changes[str(dst)] = new.render_ip()
        self._dirty.clear()
        self.history.apply(changes, now)
        return RouteDelta(added=tuple(added), removed=tuple(removed))

    def desired(self) -> RouteTable:
        return node_table(self.host, blocks=self.blocks, workloads={IPv4Address(d.network_address): r.dev or ""
                                                                    for d, r in self.workloads.items()},
                          learned=self.learned, pools=self.pools, static_routes=self.static_routes,
                          reject=self.reject)

    @property
    def table(self) -> RouteTable:
        return RouteTable(self._routes.values())

    @property
    def routes(self) -> dict[IPv4Network, Route]:
        return dict(self._routes)
