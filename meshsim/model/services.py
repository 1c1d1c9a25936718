"""Service IP advertisement: the static routes confd gives each node's BIRD for Kubernetes Services.

Owns `ServiceRoutes` and `service_routes(scenario, node)`, after confd v3.28 (pkg/backends/calico):
- client.go updateGlobalRoutes: every range of BGPConfiguration `serviceClusterIPs`, `serviceExternalIPs` and
  `serviceLoadBalancerIPs` (the LB ones except single /32s, onLoadBalancerIPsUpdate) becomes a static route
  (`/staticroutes`: `route CIDR blackhole;` in bird_aggr.cfg, accepted by calico_export_to_bgp_peers) on every
  node, and a reject CIDR (`/rejectcidrs`: not programmed into the kernel by calico_kernel_programming) on every
  node; a node labelled `node.kubernetes.io/exclude-from-external-load-balancers=true` keeps the reject CIDRs but
  advertises nothing (ExcludeServiceAdvertisement);
- routes.go (the route generator): a Service of type ClusterIP, NodePort or LoadBalancer with a cluster IP and
  an Endpoints object is advertised as /32s from a node when its externalTrafficPolicy is Local and the node
  runs one of its ready endpoints, or, for a LoadBalancer with policy Cluster whose spec.loadBalancerIP is a
  single-address (/32) entry of serviceLoadBalancerIPs, from every node (advertiseThisService). The /32s are its
  cluster IP (when serviceClusterIPs is set: AdvertiseClusterIPs), its external IPs inside serviceExternalIPs and
  its load-balancer ingress IPs inside serviceLoadBalancerIPs (getAllRoutesForService);
- bird_ipam.cfg.template: on a route reflector, any route inside the serviceLoadBalancerIPs ranges is accepted
  for export (to reflect the other nodes' LB /32s).
Pure: no asyncio, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from meshsim.model.resources import EXCLUDE_FROM_LB_LABEL, Scenario, Service


@dataclass(frozen=True)
class ServiceRoutes:
    """What confd adds to one node's BIRD configuration for services."""

    static: tuple[IPv4Network, ...] = ()  # `route X blackhole;`, exported (sorted)
    reject: tuple[IPv4Network, ...] = ()  # never programmed into the kernel (sorted)
    rr_accept: tuple[IPv4Network, ...] = ()  # a route reflector also exports routes inside these (LB ranges)


def global_ranges(scenario: Scenario) -> tuple[IPv4Network, ...]:
    """The service ranges every node advertises (and rejects for the kernel)."""
    bgp = scenario.bgp
    lb = tuple(c for c in bgp.service_loadbalancer_ips if c.prefixlen != 32)
    return tuple(dict.fromkeys((*bgp.service_cluster_ips, *bgp.service_external_ips, *lb)))


def excluded(scenario: Scenario, node: str) -> bool:
    """ExcludeServiceAdvertisement: the node is labelled out of external load balancers."""
    return scenario.node(node).label_map.get(EXCLUDE_FROM_LB_LABEL) == "true"


def _inside(ip: IPv4Address, ranges: tuple[IPv4Network, ...]) -> bool:
    return any(ip in r for r in ranges)


def service_ips(scenario: Scenario, svc: Service) -> tuple[IPv4Address, ...]:
    """getAllRoutesForService: the addresses of one service that confd may advertise."""
    bgp = scenario.bgp
    out: list[IPv4Address] = []
    if bgp.service_cluster_ips and svc.cluster_ip and svc.cluster_ip != "None" and ":" not in svc.cluster_ip:
        out.append(IPv4Address(svc.cluster_ip))
    out += [ip for ip in svc.external_ips if _inside(ip, bgp.service_external_ips)]
    out += [ip for ip in svc.ingress_ips if _inside(ip, bgp.service_loadbalancer_ips)]
    return tuple(dict.fromkeys(out))


def advertised_here(scenario: Scenario, svc: Service, node: str) -> bool:
    """advertiseThisService for `node` (the caller checked ExcludeServiceAdvertisement)."""
    if svc.type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        return False
    if not svc.cluster_ip or svc.cluster_ip == "None":
        return False
    eps = next((e for e in scenario.service_endpoints if e.key == svc.key), None)
    if eps is None:
        return False  # setRouteForSvc: no Endpoints, nothing to decide
    singles = tuple(c for c in scenario.bgp.service_loadbalancer_ips if c.prefixlen == 32)
    if svc.type == "LoadBalancer" and svc.external_traffic_policy == "Cluster" and svc.load_balancer_ip is not None \
            and _inside(svc.load_balancer_ip, singles):
        return True
    if svc.external_traffic_policy != "Local":
        return False
    return any(n == node and ":" not in ip for ip, n in eps.addresses)


def service_routes(scenario: Scenario, node: str) -> ServiceRoutes:
    bgp = scenario.bgp
    ranges = global_ranges(scenario)
    reject = tuple(sorted(ranges))
    rr = scenario.node(node).rr_cluster_id is not None
    rr_accept = tuple(sorted(bgp.service_loadbalancer_ips)) if rr else ()
    if excluded(scenario, node):
        return ServiceRoutes(static=(), reject=reject, rr_accept=rr_accept)
    static = set(ranges)
    for svc in scenario.services:
        if advertised_here(scenario, svc, node):
            static.update(IPv4Network(ip) for ip in service_ips(scenario, svc))
    return ServiceRoutes(static=tuple(sorted(static)), reject=reject, rr_accept=rr_accept)


__all__ = ["ServiceRoutes", "service_routes", "global_ranges", "service_ips", "advertised_here", "excluded"]
