"""The cluster as the datastore sees it: a Scenario plus IPAM state and the pods placed on nodes.

Owns `Cluster` (built deterministically from a Scenario: pinned BlockAffinities first, then pinned
WorkloadEndpoints, then `spec.workloads` pods node by node), `Pod`, Calico's veth naming, and what
each node originates into BGP (its affine blocks and the borrowed /32s of the pods it runs).
The runner mutates a Cluster as a timeline plays (add/remove pods, add nodes); it stays pure:
no asyncio, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from meshsim.errors import IpamError, NotFoundError, ScenarioError
from meshsim.model.ipam import Allocation, Ipam
from meshsim.model.names import veth_name
from meshsim.model.peering import Peering, compute_peerings
from meshsim.model.resources import IPPool, Node, Scenario
from meshsim.model.services import ServiceRoutes, service_routes


def tunnel_handle(node: str) -> str:
    return f"ipip-tunnel-addr-{node}"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    ip: IPv4Address
    interface: str
    pinned: bool = False  # from a WorkloadEndpoint / Pod resource or the IPAM state

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Cluster:
    scenario: Scenario
    ipam: Ipam
    pods: dict[str, Pod] = field(default_factory=dict)  # key "ns/name" -> Pod, in creation order
    tunnels: dict[str, IPv4Address] = field(default_factory=dict)  # tunl0 addresses IPAM does not hold
    _serial: dict[str, int] = field(default_factory=dict)
    _services: dict[str, tuple[Scenario, ServiceRoutes]] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, scenario: Scenario) -> "Cluster":
        reserved = [c for r in scenario.reservations for c in r.reserved_cidrs]
        ipam = Ipam(scenario.pools, {n.name: n.label_map for n in scenario.nodes}, scenario.ipam, reserved)
        cluster = cls(scenario=scenario, ipam=ipam)
        if scenario.has_ipam_state:
            from meshsim.model.ipamstate import load_ipam_state

            load_ipam_state(cluster)
        else:
            cluster._pin_resources()
        for node_name, count in scenario.spec.workloads:
            try:
                cluster.add_pods(node_name, count)
            except IpamError as exc:
                spec = scenario.spec
                path = spec.origin.path if spec.origin else scenario.files[0]
                raise ScenarioError(path, exc.message, doc=spec.origin.doc if spec.origin else None, kind="Scenario",
                                    name=spec.name, field=f"spec.workloads.{node_name}") from None
        return cluster

    def _pin_resources(self) -> None:
        """Without the datastore's IPAM state: pinned BlockAffinities first, then pinned WorkloadEndpoints, then
        each node's tunnel address (pinned by ipv4IPIPTunnelAddr, else allocated as calico-node does)."""
        scenario, ipam = self.scenario, self.ipam
        for aff in scenario.affinities:
            if aff.state == "pendingDeletion":
                continue
            try:
                ipam.claim(aff.node, aff.cidr, aff.state)
            except IpamError as exc:
                raise _resource_error(aff.origin, "BlockAffinity", aff.name, "spec.cidr", exc.message) from None
        for wep in scenario.endpoints:
            for i, net in enumerate(wep.ip_networks):
                handle = f"{wep.namespace}/{wep.pod}" + (f"#{i}" if i else "")
                try:
                    ipam.assign(handle, wep.node, net.network_address)
                except IpamError as exc:
                    raise _resource_error(wep.origin, "WorkloadEndpoint", wep.name, f"spec.ipNetworks.{i}",
                                          exc.message) from None
                if i == 0:
                    iface = wep.interface_name or veth_name(wep.namespace, wep.pod)
                    self.pods[handle] = Pod(wep.namespace, wep.pod, wep.node, net.network_address, iface, pinned=True)
        for node in scenario.nodes:
            try:
                self.assign_tunnel_address(node.name)
            except IpamError as exc:
                raise _resource_error(node.origin, "Node", node.name, "spec.bgp", exc.message) from None

    # -- tunnel addresses ---------------------------------------------------------------------
    def assign_tunnel_address(self, node: str) -> IPv4Address | None:
        """calico-node's allocateip.go: a node using an IPIP pool takes its tunl0 address from the pool at
        start-up, before any pod (handle `ipip-tunnel-addr-<node>`), so it holds a block even with no pods.
        The address lives on tunl0 (local table only); it adds no line to the main table."""
        handle = tunnel_handle(node)
        if handle in self.ipam.allocations:
            return self.ipam.allocations[handle].ip
        if node in self.tunnels:
            return self.tunnels[node]
        pinned = self.scenario.node(node).ipip_tunnel_address
        if pinned is not None:
            return self.ipam.assign(handle, node, pinned).ip
        pools = self.ipam.pools_for(node)
        if not any(p.ipip_mode != "Never" for p in pools):
            return None
        return self.ipam.auto_assign(handle, node, pools=[p for p in pools if p.ipip_mode != "Never"]).ip

    def tunnel_address(self, node: str) -> IPv4Address | None:
        alloc = self.ipam.allocations.get(tunnel_handle(node))
        return alloc.ip if alloc else self.tunnels.get(node)

    # -- pods -------------------------------------------------------------------------------
    def add_pods(self, node: str, count: int, namespace: str = "default") -> list[Pod]:
        self.scenario.node(node)  # raises NotFoundError
        added = []
        for _ in range(count):
            n = self._serial.get(node, 0) + 1
            self._serial[node] = n
            name = f"{node}-pod-{n}"
            key = f"{namespace}/{name}"
            alloc = self.ipam.auto_assign(key, node)
            pod = Pod(namespace, name, node, alloc.ip, veth_name(namespace, name))
            self.pods[key] = pod
            added.append(pod)
        return added

    def remove_pods(self, node: str, count: int) -> list[Pod]:
        """Remove the `count` most recently added pods of `node` (pinned pods last)."""
        self.scenario.node(node)
        mine = [p for p in self.pods.values() if p.node == node]
        order = [p for p in reversed(mine) if not p.pinned] + [p for p in reversed(mine) if p.pinned]
        victims = order[:count]
        for pod in victims:
            self.ipam.release(pod.key)
            del self.pods[pod.key]
        return victims

    def pods_on(self, node: str) -> list[Pod]:
        return sorted((p for p in self.pods.values() if p.node == node), key=lambda p: p.ip)

    def find_pod(self, text: str) -> Pod:
        """A pod by 'ns/name', 'name' or IP address."""
        for pod in self.pods.values():
            if text in (pod.key, pod.name, str(pod.ip)):
                return pod
        raise NotFoundError("pod", text, tuple(p.key for p in self.pods.values()))

    # -- nodes --------------------------------------------------------------------------------
    def add_node(self, node: Node) -> None:
        if any(n.name == node.name for n in self.scenario.nodes):
            raise IpamError(node.name, "a node with this name already exists")
        self.scenario = replace(self.scenario, nodes=(*self.scenario.nodes, node))
        self.ipam.node_labels[node.name] = node.label_map
        self.assign_tunnel_address(node.name)

    def remove_node(self, name: str) -> None:
        self.scenario.node(name)
        for key in [k for k, p in self.pods.items() if p.node == name]:
            del self.pods[key]
        self.ipam.forget_node(name)
        self.scenario = replace(self.scenario, nodes=tuple(n for n in self.scenario.nodes if n.name != name))

    # -- live changes (a timeline's `apply`) ------------------------------------------------------
    def apply(self, resource: object) -> str:
        """Create or replace one resource, as `calicoctl apply` would. Returns what changed, for logs."""
        from meshsim.model.resources import BGPConfiguration, BGPPeer, IPAMConfiguration, IPPool

        sc = self.scenario
        match resource:
            case IPPool(name=name):
                old = next((p for p in sc.pools if p.name == name), None)
                if old is not None and (old.cidr != resource.cidr or old.block_size != resource.block_size):
                    raise IpamError("-", f"IPPool {name}: cidr and blockSize cannot change once created")
                for p in sc.pools:
                    if p.name != name and p.cidr.overlaps(resource.cidr):
                        raise IpamError("-", f"IPPool {name} overlaps IPPool {p.name}")
                pools = tuple(resource if p.name == name else p for p in sc.pools) if old else (*sc.pools, resource)
                self.scenario = replace(sc, pools=pools)
                self.ipam.pools = pools
                for n in self.scenario.nodes:
                    self.assign_tunnel_address(n.name)
                return f"IPPool {name} {'updated' if old else 'created'}"
            case Node(name=name):
                old = next((n for n in sc.nodes if n.name == name), None)
                if old is None:
                    self.add_node(resource)
                    return f"Node {name} created"
                if old.address != resource.address:
                    raise IpamError(name, "a node's address cannot change in a running scenario")
                self.scenario = replace(sc, nodes=tuple(resource if n.name == name else n for n in sc.nodes))
                self.ipam.node_labels[name] = resource.label_map
                return f"Node {name} updated"
            case BGPConfiguration():
                self.scenario = replace(sc, bgp=resource)
                return "BGPConfiguration default updated"
            case BGPPeer(name=name):
                exists = any(p.name == name for p in sc.peers)
                peers = tuple(resource if p.name == name else p for p in sc.peers) if exists else (*sc.peers, resource)
                self.scenario = replace(sc, peers=peers)
                return f"BGPPeer {name} {'updated' if exists else 'created'}"
            case IPAMConfiguration():
                self.scenario = replace(sc, ipam=resource)
                self.ipam.config = resource
                return "IPAMConfiguration default updated"
        raise IpamError("-", f"cannot apply a {type(resource).__name__}")

    # -- what BGP carries ---------------------------------------------------------------------
    def originated(self, node: str) -> frozenset[IPv4Network]:
        """Routes in the node's BIRD that calico_export_to_bgp_peers may export (its export filter decides):
        - every affine block, pending ones too (calico#6867): `route BLOCK blackhole` in bird_aggr.cfg;
        - the /32 of every local address not inside one of its confirmed blocks (calico_aggr rejects those):
          pods' addresses learned from the kernel (borrowed ones, or pods in a pending block), and the tunl0
          address that `protocol direct` picks up (a tunnel address outside the node's blocks, as on clusters
          moved from host-local IPAM, is exported as a /32);
        - the service routes confd adds (meshsim.model.services)."""
        blocks = {b.cidr for b in self.ipam.blocks_of(node) if b.cidr.prefixlen < 32}
        confirmed = [b.cidr for b in self.ipam.blocks_of(node, include_pending=False)]
        local = [p.ip for p in self.pods_on(node)]
        tunnel = self.tunnel_address(node)
        if tunnel is not None:
            local.append(tunnel)
        singles = {IPv4Network(ip) for ip in local
                   if not any(ip in c and c.prefixlen < 32 for c in confirmed)}
        return frozenset(blocks | singles | set(self.service_routes(node).static))

    def service_routes(self, node: str) -> ServiceRoutes:
        """confd's static and reject routes for services on `node` (meshsim.model.services)."""
        cached = self._services.get(node)
        if cached is None or cached[0] is not self.scenario:  # the scenario is replaced, never mutated
            cached = self._services[node] = (self.scenario, service_routes(self.scenario, node))
        return cached[1]

    def affine_blocks(self, node: str) -> tuple[IPv4Network, ...]:
        return tuple(b.cidr for b in self.ipam.blocks_of(node, include_pending=False))

    def exportable_pools(self) -> tuple[IPv4Network, ...]:
        return tuple(p.cidr for p in self.scenario.pools if p.exported)

    def pool_of(self, net: IPv4Network | IPv4Address) -> IPPool | None:
        return self.scenario.pool_for(net)

    def peerings(self) -> dict[str, list[Peering]]:
        return compute_peerings(self.scenario)

    def allocations(self) -> list[Allocation]:
        return sorted(self.ipam.allocations.values(), key=lambda a: a.ip)


def _resource_error(origin, kind: str, name: str, fieldpath: str, message: str) -> ScenarioError:
    path = origin.path if origin else "<scenario>"
    return ScenarioError(path, message, doc=origin.doc if origin else None, kind=kind, name=name, field=fieldpath)


__all__ = ["Cluster", "Pod", "veth_name", "tunnel_handle", "NotFoundError", "replace"]
