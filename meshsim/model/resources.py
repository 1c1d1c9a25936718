"""The typed resources of a scenario: Calico v3 resources, the Kubernetes objects Calico reads, and meshsim's own
Scenario document, validated and cross-checked into one `Scenario`.

Owns the frozen dataclasses (IPPool, Node, BGPConfiguration, BGPPeer, BGPFilter, IPAMConfiguration,
BlockAffinity, IPAMBlock, IPAMHandle, IPReservation, WorkloadEndpoint, Service, ServiceEndpoints, Secret; HostFacts,
Timers, Event, ScenarioSpec; LoadWarning) and `Scenario`. Field names and defaults follow Calico's API
(api/pkg/apis/projectcalico/v3, libcalico-go/lib/apis/v3, v3.28). Reading them is `meshsim.model.loader`
(`load_scenario` here is its entry point, kept for the many callers that import it from this module).
Longer than most modules on purpose: it is the one place every resource type is declared, field by field.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Sequence

from meshsim.model.selectors import Selector, parse as parse_selector

CALICO_API_VERSIONS = ("projectcalico.org/v3", "crd.projectcalico.org/v1")
MESHSIM_API_VERSION = "meshsim/v1"
ENCAP_MODES = ("Always", "CrossSubnet", "Never")
DEFAULT_AS = 64512
DEFAULT_BLOCK_SIZE = 26
DEFAULT_MAX_BLOCKS_PER_HOST = 20
AFFINITY_STATES = ("confirmed", "pending", "pendingDeletion")
IMPLEMENTATIONS = ("meshsim", "bird")
EXCLUDE_FROM_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


@dataclass(frozen=True)
class Origin:
    """Where a resource came from: file and 1-based document index."""

    path: str
    doc: int

    def __str__(self) -> str:
        return f"{self.path} document {self.doc}"


@dataclass(frozen=True)
class IPPool:
    name: str
    cidr: IPv4Network
    block_size: int = DEFAULT_BLOCK_SIZE
    ipip_mode: str = "Never"
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    node_selector: str = "all()"
    disable_bgp_export: bool = False
    origin: Origin | None = field(default=None, compare=False)

    @property
    def selector(self) -> Selector:
        return parse_selector(self.node_selector)

    @property
    def exported(self) -> bool:
        """Whether BIRD's calico_export_to_bgp_peers accepts this pool's routes."""
        return not self.disabled and not self.disable_bgp_export

    @property
    def encap(self) -> str:
        if self.ipip_mode != "Never":
            return "ipip"
        if self.vxlan_mode != "Never":
            return "vxlan"
        return "none"


@dataclass(frozen=True)
class Node:
    name: str
    address: IPv4Address
    subnet: IPv4Network  # from spec.bgp.ipv4Address's prefix length
    labels: tuple[tuple[str, str], ...] = ()
    asn: int | None = None
    rr_cluster_id: IPv4Address | None = None
    ipip_tunnel_address: IPv4Address | None = None  # spec.bgp.ipv4IPIPTunnelAddr, to pin tunl0's address
    origin: Origin | None = field(default=None, compare=False)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def interface_address(self) -> str:
        return f"{self.address}/{self.subnet.prefixlen}"


@dataclass(frozen=True)
class SecretKeyRef:
    """A `secretKeyRef` (BGPPeer.password, BGPConfiguration.nodeMeshPassword): which Secret, which key."""

    name: str
    key: str

    def __str__(self) -> str:
        return f"secret {self.name} key {self.key}"


@dataclass(frozen=True)
class PrefixAdvertisement:
    """BGPConfiguration prefixAdvertisements[]: communities (values, names resolved) added to routes in `cidr`."""

    cidr: IPv4Network
    communities: tuple[str, ...]  # "a:b" standard, "a:b:c" large; sorted, as confd's getCommunitiesArray


@dataclass(frozen=True)
class BGPConfiguration:
    """`default` (cluster-wide) or `node.<name>` (per node: listenPort, logSeverityScreen, bindMode,
    ignoredInterfaces, communities / prefixAdvertisements apply; confd reads the rest from `default` only)."""

    name: str = "default"
    node_to_node_mesh_enabled: bool = True
    as_number: int = DEFAULT_AS
    listen_port: int = 179
    log_severity_screen: str = "Info"
    service_cluster_ips: tuple[IPv4Network, ...] = ()
    service_external_ips: tuple[IPv4Network, ...] = ()
    service_loadbalancer_ips: tuple[IPv4Network, ...] = ()
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = ()
    node_mesh_password_ref: SecretKeyRef | None = None
    node_mesh_password: str | None = field(default=None, repr=False)  # the secret's value, when it was given
    node_mesh_max_restart_time: float | None = None  # seconds; rendered rounded (confd getNodeMeshRestartTimeKVPair)
    bind_mode: str = "None"
    ignored_interfaces: tuple[str, ...] = ()
    fields_set: frozenset[str] = frozenset()  # spec fields the document sets (per-node configs override only these)
    origin: Origin | None = field(default=None, compare=False)

    @property
    def node(self) -> str | None:
        """The node a `node.<name>` configuration is for, None for `default`."""
        return self.name[len("node."):] if self.name.startswith("node.") else None


@dataclass(frozen=True)
class BGPFilterRule:
    """One BGPFilterRuleV4: match on cidr (with matchOperator), source, interface; then Accept or Reject."""

    action: str  # Accept | Reject
    cidr: IPv4Network | None = None
    match_operator: str | None = None  # Equal | NotEqual | In | NotIn
    source: str | None = None  # RemotePeers
    interface: str | None = None  # a glob, as BIRD's `ifname ~ "eth*"`


@dataclass(frozen=True)
class BGPFilter:
    name: str
    export_v4: tuple[BGPFilterRule, ...] = ()
    import_v4: tuple[BGPFilterRule, ...] = ()
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class BGPPeer:
    name: str
    node: str | None = None
    node_selector: str | None = None
    peer_selector: str | None = None
    peer_ip: IPv4Address | None = None
    peer_port: int | None = None
    as_number: int | None = None
    keep_original_next_hop: bool = False
    password_ref: SecretKeyRef | None = None
    password: str | None = field(default=None, repr=False)  # the secret's value, when it was given
    source_address: str = "UseNodeIP"  # UseNodeIP | None
    max_restart_time: float | None = None  # seconds
    num_allowed_local_as: int | None = None
    ttl_security: int | None = None
    reachable_by: IPv4Address | None = None
    filters: tuple[str, ...] = ()
    origin: Origin | None = field(default=None, compare=False)

    @property
    def is_global(self) -> bool:
        """Calico renders a peer with no node and no node selector as Global_<ip> (peerSelector peers too)."""
        return self.node is None and self.node_selector is None


@dataclass(frozen=True)
class IPAMConfiguration:
    strict_affinity: bool = False
    max_blocks_per_host: int = DEFAULT_MAX_BLOCKS_PER_HOST
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class BlockAffinity:
    name: str
    node: str
    cidr: IPv4Network
    state: str = "confirmed"
    implicit: bool = False  # `state: ""`: confd says "implicitly confirmed"
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class BlockAllocation:
    """One allocated ordinal of an IPAMBlock with its attributes (handle_id and secondary: node, namespace, pod,
    type)."""

    ordinal: int
    handle: str | None = None
    node: str | None = None
    namespace: str | None = None
    pod: str | None = None
    type: str | None = None  # ipipTunnelAddress | vxlanTunnelAddress | wireguardTunnelAddress | None (a workload)


@dataclass(frozen=True)
class IPAMBlock:
    """An IPAM block as the datastore holds it (crd.projectcalico.org/v1 IPAMBlock, or an AllocationBlock of
    `calicoctl datastore migrate export`)."""

    name: str
    cidr: IPv4Network
    affinity: str | None  # the node of `affinity: host:<node>`, None when the block has no affinity
    allocations: tuple[BlockAllocation, ...] = ()
    unallocated: tuple[int, ...] | None = None  # the free ordinals in Calico's order (None: not given)
    deleted: bool = False
    origin: Origin | None = field(default=None, compare=False)

    def address(self, ordinal: int) -> IPv4Address:
        return self.cidr.network_address + ordinal


@dataclass(frozen=True)
class IPAMHandle:
    name: str
    handle_id: str
    blocks: tuple[tuple[str, int], ...] = ()  # block key ("10.244.1.0/26") -> addresses held in it
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class IPReservation:
    name: str
    reserved_cidrs: tuple[IPv4Network, ...] = ()
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class WorkloadEndpoint:
    """A pod's endpoint: a Calico WorkloadEndpoint, or one made from a Kubernetes v1 Pod (its veth named the way
    the CNI plugin names it)."""

    name: str
    namespace: str
    node: str
    pod: str
    interface_name: str | None
    ip_networks: tuple[IPv4Network, ...]
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Service:
    """The parts of a Kubernetes v1 Service that confd's route generator reads (confd routes.go)."""

    name: str
    namespace: str
    type: str = "ClusterIP"  # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ip: str | None = None  # "None" for a headless service
    external_ips: tuple[IPv4Address, ...] = ()
    load_balancer_ip: IPv4Address | None = None  # spec.loadBalancerIP
    ingress_ips: tuple[IPv4Address, ...] = ()  # status.loadBalancer.ingress[].ip
    external_traffic_policy: str = "Cluster"  # Cluster | Local
    origin: Origin | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServiceEndpoints:
    """A Kubernetes v1 Endpoints object: for each ready address, the node it runs on."""

    name: str
    namespace: str
    addresses: tuple[tuple[str, str | None], ...] = ()  # (ip, nodeName)
    origin: Origin | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Secret:
    """A Kubernetes Secret: only its values are kept (decoded), for BGP passwords."""

    name: str
    namespace: str
    data: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    origin: Origin | None = field(default=None, compare=False)

    def value(self, key: str) -> str | None:
        return dict(self.data).get(key)


@dataclass(frozen=True)
class HostFacts:
    """What meshsim needs to know about a node's host beyond Calico's resources."""

    interface: str = "eth0"
    gateway: IPv4Address | None = None  # None = "first": first host address of the node's subnet
    implementation: str = "meshsim"

    def gateway_for(self, subnet: IPv4Network) -> IPv4Address:
        if self.gateway is not None:
            return self.gateway
        if subnet.num_addresses <= 2:
            return subnet.network_address
        return subnet.network_address + 1


@dataclass(frozen=True)
class Timers:
    """BGP timers. Defaults are BIRD's (what Calico runs): hold 240 s, keepalive hold/3, and BIRD's global
    `graceful restart wait` of 240 s: how long a node started with `bird -R` (every calico-node start) waits
    for End-of-RIB from its peers before it programs and advertises routes anyway (calico#7144). Calico does
    not set the last one; meshsim lets a scenario change it for what-ifs and short tests."""

    hold_time: float = 240.0
    keepalive_time: float = 80.0
    restart_wait: float = 240.0


@dataclass(frozen=True)
class Event:
    """One raw timeline entry; its actions are validated by `meshsim.model.timeline`."""

    index: int
    action: str
    fields: tuple[tuple[str, Any], ...]
    line: int | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.fields).get(key, default)


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    hosts: tuple[tuple[str, HostFacts], ...] = ()
    workloads: tuple[tuple[str, int], ...] = ()
    timers: Timers = Timers()
    events: tuple[Event, ...] = ()
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LoadWarning:
    """Something a scenario holds that meshsim reads past on purpose (a kind that does not touch BGP routing, an
    IPv6 resource, a field of a newer Calico), said once per kind of thing."""

    topic: str  # skipped-kinds | ipv6 | newer-fields | no-bgp-address | secrets | ipam
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Scenario:
    """Everything a scenario declares, validated and cross-checked."""

    files: tuple[str, ...]
    spec: ScenarioSpec
    pools: tuple[IPPool, ...]
    nodes: tuple[Node, ...]
    bgp: BGPConfiguration
    peers: tuple[BGPPeer, ...] = ()
    ipam: IPAMConfiguration = IPAMConfiguration()
    affinities: tuple[BlockAffinity, ...] = ()
    endpoints: tuple[WorkloadEndpoint, ...] = ()
    filters: tuple[BGPFilter, ...] = ()
    node_bgp: tuple[BGPConfiguration, ...] = ()  # `node.<name>` BGPConfigurations
    ipam_blocks: tuple[IPAMBlock, ...] = ()
    ipam_handles: tuple[IPAMHandle, ...] = ()
    reservations: tuple[IPReservation, ...] = ()
    services: tuple[Service, ...] = ()
    service_endpoints: tuple[ServiceEndpoints, ...] = ()
    secrets: tuple[Secret, ...] = ()
    warnings: tuple[LoadWarning, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def has_ipam_state(self) -> bool:
        """The scenario carries the datastore's allocation state (IPAMBlocks): it is the truth for blocks and
        addresses, nothing is allocated on top of it except `spec.workloads` pods."""
        return bool(self.ipam_blocks)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        from meshsim.errors import NotFoundError

        raise NotFoundError("node", name, tuple(n.name for n in self.nodes))

    def node_by_address(self, address: IPv4Address) -> Node | None:
        for n in self.nodes:
            if n.address == address:
                return n
        return None

    def host(self, node: str) -> HostFacts:
        hosts = dict(self.spec.hosts)
        return hosts.get(node) or hosts.get("default") or HostFacts()

    def asn(self, node: Node) -> int:
        return node.asn if node.asn is not None else self.bgp.as_number

    def bgp_for(self, node: str) -> BGPConfiguration:
        """The BGP configuration confd applies on `node`: `default`, with the fields its `node.<name>`
        configuration sets laid over it."""
        from dataclasses import replace

        own = next((c for c in self.node_bgp if c.node == node), None)
        if own is None:
            return self.bgp
        overrides = {attr: getattr(own, attr) for spec_field, attr in NODE_BGP_FIELDS.items()
                     if spec_field in own.fields_set}
        if "communities" in own.fields_set and "prefixAdvertisements" not in own.fields_set:
            overrides.pop("prefix_advertisements", None)
        return replace(self.bgp, **overrides)

    def filter(self, name: str) -> BGPFilter | None:
        return next((f for f in self.filters if f.name == name), None)

    def secret(self, ref: SecretKeyRef | None) -> str | None:
        if ref is None:
            return None
        for s in self.secrets:
            if s.name == ref.name:
                value = s.value(ref.key)
                if value is not None:
                    return value
        return None

    def pool_for(self, address: IPv4Address | IPv4Network) -> IPPool | None:
        net = address if isinstance(address, IPv4Network) else IPv4Network(address)
        for pool in self.pools:
            if net.subnet_of(pool.cidr):
                return pool
        return None

    def replace(self, **changes: Any) -> "Scenario":
        from dataclasses import replace

        return replace(self, **changes)


# The spec fields a `node.<name>` BGPConfiguration sets for its node, and the attribute each becomes (confd
# getBGPConfigKey with a NodeBGPConfigKey: listen_port, loglevel, bind_mode, ignored_interfaces,
# prefix_advertisements are read per host by the templates).
NODE_BGP_FIELDS = {
    "listenPort": "listen_port",
    "logSeverityScreen": "log_severity_screen",
    "bindMode": "bind_mode",
    "ignoredInterfaces": "ignored_interfaces",
    "prefixAdvertisements": "prefix_advertisements",
}


def load_scenario(paths: Sequence[str | Path]) -> Scenario:
    """Read, validate and cross-check one scenario made of one or more YAML files (meshsim.model.loader)."""
    from meshsim.model.loader import load_scenario as load

    return load(paths)


def parse_resource(doc: Any) -> Any:
    """One document -> its typed resource (meshsim.model.loader.parse_resource)."""
    from meshsim.model.loader import parse_resource as parse

    return parse(doc)
