"""The plan of an `--isolation netns` run: namespaces, bridges, the router, the ToRs. Pure: no `ip` is run.

Owns `Topology` (names and addresses of everything a netns run creates) and `plan(cluster, run)`:
- a fabric namespace `msim-<run>-fabric` holding one bridge per node subnet (nothing in the host's own);
- a namespace `msim-<run>-<node>` per node, holding its declared address on its interface;
- an underlay router namespace `msim-<run>-router` when nodes sit in several subnets or a ToR sits
  outside them: one leg per subnet holding its gateway address;
- external BGP peers (a BGPPeer whose peerIP is no node: a ToR) as `Tor`s in `msim-<run>-tor<k>`.
MAC addresses are derived from the IPs (`mac`), so permanent neighbour entries can be written up front.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from meshsim.errors import RunError
from meshsim.model.cluster import Cluster
from meshsim.oracle.expected import host_view

PREFIX = "msim-"


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:40]


def mac(run_byte: int, ip: IPv4Address) -> str:
    return ":".join(f"{b:02x}" for b in (0x02, run_byte, *ip.packed))


@dataclass
class Endpoint:
    """An interface with an address on one L2 segment."""

    ns: str
    dev: str
    address: IPv4Address
    mac: str


@dataclass
class Tor:
    index: int
    address: IPv4Address
    asn: int
    ns: str
    neighbors: dict[str, tuple[IPv4Address, int]]  # node -> (address, AS)
    subnet: IPv4Network | None  # the node subnet it sits in; None: behind the router


@dataclass
class Topology:
    run: str
    run_byte: int
    fabric: str
    subnets: list[IPv4Network] = field(default_factory=list)
    gateways: dict[IPv4Network, set[IPv4Address]] = field(default_factory=dict)
    router: str | None = None
    tors: list[Tor] = field(default_factory=list)

    def bridge(self, subnet: IPv4Network) -> str:
        return f"m{self.run}b{self.subnets.index(subnet)}"

    def node_ns(self, node: str) -> str:
        return f"{PREFIX}{self.run}-{safe(node)}"

    def router_gateways(self, cluster: Cluster, subnet: IPv4Network) -> set[IPv4Address]:
        """Gateway addresses on `subnet` the router holds (not taken by a node or a ToR)."""
        taken = {n.address for n in cluster.scenario.nodes} | {tor.address for tor in self.tors}
        return {gw for gw in self.gateways.get(subnet, set()) if gw not in taken and gw in subnet}


def plan(cluster: Cluster, run: str) -> Topology:
    t = Topology(run=run, run_byte=int(run[:2], 16), fabric=f"{PREFIX}{run}-fabric")
    sc = cluster.scenario
    for node in sc.nodes:
        if node.subnet not in t.subnets:
            t.subnets.append(node.subnet)
        t.gateways.setdefault(node.subnet, set()).add(host_view(cluster, node.name).gateway)
    node_addrs = {n.address for n in sc.nodes}
    ext: dict[IPv4Address, Tor] = {}
    for node, peerings in cluster.peerings().items():
        for p in peerings:
            if p.peer_node is not None:
                continue
            tor = ext.get(p.peer_address)
            if tor is None:
                k = len(ext)
                subnet = next((s for s in t.subnets if p.peer_address in s), None)
                tor = ext[p.peer_address] = Tor(index=k, address=p.peer_address, asn=p.peer_as,
                                                ns=f"{PREFIX}{run}-tor{k}", neighbors={}, subnet=subnet)
            tor.neighbors[node] = (p.local_address, p.local_as)
    t.tors = list(ext.values())
    for tor in t.tors:
        if tor.address in node_addrs:
            raise RunError(f"external peer {tor.address} is also a node address")
    if len(t.subnets) > 1 or any(tor.subnet is None for tor in t.tors):
        t.router = f"{PREFIX}{run}-router"
    return t


def segment(cluster: Cluster, t: Topology, subnet: IPv4Network, nodes: set[str]) -> list[Endpoint]:
    """Everything holding an address on the subnet's bridge (among the nodes made so far)."""
    out = []
    for node in cluster.scenario.nodes:
        if node.subnet == subnet and node.name in nodes:
            out.append(Endpoint(t.node_ns(node.name), host_view(cluster, node.name).interface, node.address,
                                mac(t.run_byte, node.address)))
    if t.router:
        i = t.subnets.index(subnet)
        gws = sorted(t.router_gateways(cluster, subnet))
        for gw in gws:  # one leg per subnet: every gateway address on it answers with the leg's MAC
            out.append(Endpoint(t.router, f"eth{i}", gw, mac(t.run_byte, gws[0])))
    for tor in t.tors:
        if tor.subnet == subnet:
            out.append(Endpoint(tor.ns, "eth0", tor.address, mac(t.run_byte, tor.address)))
    return out


def neighbour_lines(members: list[Endpoint]) -> dict[str, list[str]]:
    """Permanent neighbour entries for every address on a segment (the kernel's neighbour table is shared
    by all namespaces and a 50-node mesh overflows its garbage-collected part: calico.md)."""
    by_ns: dict[str, list[str]] = {}
    for me in members:
        for other in members:
            if other.address != me.address:
                by_ns.setdefault(me.ns, []).append(
                    f"neigh replace {other.address} lladdr {other.mac} dev {me.dev} nud permanent")
    return by_ns
