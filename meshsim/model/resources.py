"""Calico v3 resources and the meshsim Scenario document, parsed and validated.

Owns: the typed resources (IPPool, Node, BGPConfiguration, BGPPeer, IPAMConfiguration,
BlockAffinity, WorkloadEndpoint), the Scenario document (hosts, workloads, timers, events),
and `load_scenario(paths) -> Scenario`. Field names and defaults follow Calico's API
(api/pkg/apis/projectcalico/v3, docs reference/resources/*.mdx). Unknown kinds, fields
and values are errors that name the file, document, field and what was expected.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Sequence

from meshsim.errors import ScenarioError, SelectorError
from meshsim.model.selectors import Selector, parse as parse_selector
from meshsim.model.yamldoc import Doc, read_documents

CALICO_API_VERSIONS = ("projectcalico.org/v3", "crd.projectcalico.org/v1")
MESHSIM_API_VERSION = "meshsim/v1"
ENCAP_MODES = ("Always", "CrossSubnet", "Never")
DEFAULT_AS = 64512
DEFAULT_BLOCK_SIZE = 26
DEFAULT_MAX_BLOCKS_PER_HOST = 20
AFFINITY_STATES = ("confirmed", "pending", "pendingDeletion")
IMPLEMENTATIONS = ("meshsim", "bird")


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
class BGPConfiguration:
    name: str = "default"
    node_to_node_mesh_enabled: bool = True
    as_number: int = DEFAULT_AS
    listen_port: int = 179
    log_severity_screen: str = "Info"
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
    origin: Origin | None = field(default=None, compare=False)

    @property
    def is_global(self) -> bool:
        """Calico renders a peer with no node and no selectors as Global_<ip>."""
        return self.node is None and self.node_selector is None and self.peer_selector is None


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
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class WorkloadEndpoint:
    name: str
    namespace: str
    node: str
    pod: str
    interface_name: str | None
    ip_networks: tuple[IPv4Network, ...]
    origin: Origin | None = field(default=None, compare=False)


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
    """BGP timers. Defaults are BIRD's (what Calico runs): hold 240 s, keepalive hold/3."""

    hold_time: float = 240.0
    keepalive_time: float = 80.0


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

    @property
    def name(self) -> str:
        return self.spec.name

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

    def pool_for(self, address: IPv4Address | IPv4Network) -> IPPool | None:
        net = address if isinstance(address, IPv4Network) else IPv4Network(address)
        for pool in self.pools:
            if net.subnet_of(pool.cidr):
                return pool
        return None

    def replace(self, **changes: Any) -> "Scenario":
        from dataclasses import replace

        return replace(self, **changes)


# ----------------------------------------------------------------------------------
# Parsing one document per kind


def _meta(doc: Doc, *, name_required: bool = True) -> str:
    doc.check_fields("metadata", ["name", "namespace", "labels", "annotations", "uid", "resourceVersion",
                                  "creationTimestamp", "generation", "managedFields"])
    name = doc.string("metadata.name", required=name_required)
    return name or ""


def _selector_text(doc: Doc, fieldpath: str) -> str | None:
    text = doc.string(fieldpath)
    if text is None:
        return None
    try:
        parse_selector(text)
    except SelectorError as exc:
        raise doc.error(fieldpath, f"invalid selector: {exc.message} at position {exc.pos}",
                        expected="a Calico selector such as all(), has(k), k == 'v', k in {'a','b'}",
                        got=text) from None
    return text


def _ippool(doc: Doc, origin: Origin) -> IPPool:
    name = _meta(doc)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec"])
    doc.check_fields("spec", ["cidr", "blockSize", "ipipMode", "vxlanMode", "natOutgoing", "disabled",
                              "nodeSelector", "disableBGPExport", "allowedUses", "assignmentMode"])
    cidr = doc.network("spec.cidr", required=True)
    assert cidr is not None
    block_size = doc.integer("spec.blockSize", DEFAULT_BLOCK_SIZE, 20, 32)
    assert block_size is not None
    if block_size < cidr.prefixlen:
        raise doc.error("spec.blockSize", f"blocks of /{block_size} do not fit in the pool {cidr}",
                        expected=f"a block size between {max(20, cidr.prefixlen)} and 32", got=block_size)
    ipip = doc.choice("spec.ipipMode", ENCAP_MODES, "Never")
    vxlan = doc.choice("spec.vxlanMode", ENCAP_MODES, "Never")
    if ipip != "Never" and vxlan != "Never":
        raise doc.error("spec.vxlanMode", "ipipMode and vxlanMode cannot both be enabled",
                        expected="Never when ipipMode is " + ipip, got=vxlan)
    if vxlan != "Never":
        raise doc.error("spec.vxlanMode", "VXLAN is not modelled yet: Calico's Felix programs VXLAN routes from the "
                        "datastore, not BIRD from BGP, and meshsim emulates the BGP path only",
                        expected="Never (use ipipMode Always/CrossSubnet/Never)", got=vxlan)
    uses = doc.raw("spec.allowedUses")
    if uses is not None and (not isinstance(uses, list)
                             or any(u not in ("Workload", "Tunnel", "LoadBalancer") for u in uses)):
        raise doc.error("spec.allowedUses", "is not a valid list", expected="a list of Workload, Tunnel, LoadBalancer",
                        got=uses)
    doc.choice("spec.assignmentMode", ("Automatic", "Manual"), "Automatic")
    return IPPool(
        name=name, cidr=cidr, block_size=block_size, ipip_mode=ipip, vxlan_mode=vxlan,
        nat_outgoing=doc.boolean("spec.natOutgoing", False), disabled=doc.boolean("spec.disabled", False),
        node_selector=_selector_text(doc, "spec.nodeSelector") or "all()",
        disable_bgp_export=doc.boolean("spec.disableBGPExport", False), origin=origin,
    )


def _node(doc: Doc, origin: Origin) -> Node:
    name = _meta(doc)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec", "status"])
    doc.check_fields("spec", ["bgp", "orchRefs", "addresses", "ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr",
                              "interfaces", "wireguard"])
    doc.check_fields("spec.bgp", ["ipv4Address", "ipv6Address", "asNumber", "routeReflectorClusterID",
                                  "ipv4IPIPTunnelAddr"])
    iface = doc.interface("spec.bgp.ipv4Address")
    if iface is None:
        raise doc.error("spec.bgp.ipv4Address", "the node has no IPv4 address",
                        expected="an address with prefix like 192.168.0.81/24 (the node's subnet)")
    address, subnet = iface
    asn = doc.integer("spec.bgp.asNumber", None, 1, 4294967295)
    cluster = doc.address("spec.bgp.routeReflectorClusterID")
    labels = doc.labels("metadata.labels")
    tunnel = doc.address("spec.bgp.ipv4IPIPTunnelAddr")
    return Node(name=name, address=address, subnet=subnet, labels=tuple(sorted(labels.items())), asn=asn,
                rr_cluster_id=cluster, ipip_tunnel_address=tunnel, origin=origin)


def _bgpconfig(doc: Doc, origin: Origin) -> BGPConfiguration:
    name = _meta(doc)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec"])
    if name != "default":
        raise doc.error("metadata.name", "meshsim models the cluster-wide BGPConfiguration only",
                        expected="'default'", got=name)
    doc.check_fields("spec", ["nodeToNodeMeshEnabled", "asNumber", "listenPort", "logSeverityScreen",
                              "serviceClusterIPs", "serviceExternalIPs", "serviceLoadBalancerIPs", "communities",
                              "prefixAdvertisements", "bindMode", "nodeMeshMaxRestartTime", "nodeMeshPassword"])
    for unsupported in ("serviceClusterIPs", "serviceExternalIPs", "serviceLoadBalancerIPs", "communities",
                        "prefixAdvertisements", "nodeMeshPassword"):
        if doc.has(f"spec.{unsupported}"):
            raise doc.error(f"spec.{unsupported}", "is a Calico field meshsim does not model yet",
                            expected="the field to be removed")
    doc.choice("spec.bindMode", ("None", "NodeIP"), "None")
    doc.duration("spec.nodeMeshMaxRestartTime", None)
    return BGPConfiguration(
        name=name,
        node_to_node_mesh_enabled=doc.boolean("spec.nodeToNodeMeshEnabled", True),
        as_number=doc.integer("spec.asNumber", DEFAULT_AS, 1, 4294967295) or DEFAULT_AS,
        listen_port=doc.integer("spec.listenPort", 179, 1, 65535) or 179,
        log_severity_screen=doc.choice("spec.logSeverityScreen",
                                       ("Debug", "Info", "Warning", "Error", "Fatal", "None"), "Info"),
        origin=origin,
    )


def _bgppeer(doc: Doc, origin: Origin) -> BGPPeer:
    name = _meta(doc)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec"])
    doc.check_fields("spec", ["node", "nodeSelector", "peerSelector", "peerIP", "asNumber", "keepOriginalNextHop",
                              "sourceAddress", "maxRestartTime", "reversePeering"])
    node = doc.string("spec.node")
    node_selector = _selector_text(doc, "spec.nodeSelector")
    peer_selector = _selector_text(doc, "spec.peerSelector")
    if node is not None and node_selector is not None:
        raise doc.error("spec.nodeSelector", "node and nodeSelector cannot both be set",
                        expected="only one of node, nodeSelector")
    peer_ip_text = doc.raw("spec.peerIP")
    peer_ip = None
    peer_port = None
    if peer_ip_text is not None:
        text = str(peer_ip_text)
        if text.count(":") == 1:
            host, port = text.split(":")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise doc.error("spec.peerIP", "has an invalid port", expected="ip or ip:port", got=peer_ip_text)
            text, peer_port = host, int(port)
        try:
            peer_ip = IPv4Address(text)
        except ValueError:
            raise doc.error("spec.peerIP", "is not a valid IPv4 address", expected="ip or ip:port",
                            got=peer_ip_text) from None
    if (peer_ip is None) == (peer_selector is None):
        raise doc.error("spec.peerIP" if peer_ip is None else "spec.peerSelector",
                        "a BGPPeer needs exactly one of peerIP and peerSelector",
                        expected="peerIP or peerSelector")
    asn = doc.integer("spec.asNumber", None, 1, 4294967295)
    if peer_ip is not None and asn is None:
        raise doc.error("spec.asNumber", "is required with peerIP", expected="an AS number")
    doc.choice("spec.sourceAddress", ("UseNodeIP", "None"), "UseNodeIP")
    doc.choice("spec.reversePeering", ("Auto", "Manual"), "Auto")
    doc.boolean("spec.keepOriginalNextHop", False)
    doc.duration("spec.maxRestartTime", None)
    return BGPPeer(name=name, node=node, node_selector=node_selector, peer_selector=peer_selector,
                   peer_ip=peer_ip, peer_port=peer_port, as_number=asn, origin=origin)


def _ipamconfig(doc: Doc, origin: Origin) -> IPAMConfiguration:
    name = _meta(doc)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec"])
    if name != "default":
        raise doc.error("metadata.name", "Calico's IPAMConfiguration is a singleton", expected="'default'", got=name)
    doc.check_fields("spec", ["strictAffinity", "maxBlocksPerHost", "autoAllocateBlocks"])
    return IPAMConfiguration(
        strict_affinity=doc.boolean("spec.strictAffinity", False),
        max_blocks_per_host=doc.integer("spec.maxBlocksPerHost", DEFAULT_MAX_BLOCKS_PER_HOST, 0, 1 << 20)
        or DEFAULT_MAX_BLOCKS_PER_HOST,
        origin=origin,
    )


def _blockaffinity(doc: Doc, origin: Origin) -> BlockAffinity:
    name = _meta(doc, name_required=False)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec"])
    doc.check_fields("spec", ["node", "cidr", "state", "deleted", "type"])
    node = doc.string("spec.node", required=True)
    cidr = doc.network("spec.cidr", required=True)
    assert node is not None and cidr is not None
    state = doc.choice("spec.state", AFFINITY_STATES, "confirmed")
    return BlockAffinity(name=name or f"{node}-{cidr}".replace("/", "-"), node=node, cidr=cidr, state=state,
                         origin=origin)


def _workloadendpoint(doc: Doc, origin: Origin) -> WorkloadEndpoint:
    name = _meta(doc, name_required=False)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec"])
    doc.check_fields("spec", ["node", "pod", "interfaceName", "ipNetworks", "orchestrator", "workload", "endpoint",
                              "containerID", "profiles", "mac", "serviceAccountName", "ports"])
    node = doc.string("spec.node", required=True)
    pod = doc.string("spec.pod", required=True)
    assert node is not None and pod is not None
    namespace = doc.string("metadata.namespace", "default") or "default"
    iface = doc.string("spec.interfaceName")
    nets_raw = doc.raw("spec.ipNetworks")
    if not isinstance(nets_raw, list) or not nets_raw:
        raise doc.error("spec.ipNetworks", "needs at least one address", expected="a list like ['10.244.42.68/32']",
                        got=nets_raw)
    nets: list[IPv4Network] = []
    for i, item in enumerate(nets_raw):
        try:
            net = IPv4Network(str(item) if "/" in str(item) else f"{item}/32", strict=True)
        except ValueError:
            raise doc.error(f"spec.ipNetworks.{i}", "is not a valid IPv4 address", expected="an address like "
                            "10.244.42.68/32", got=item) from None
        if net.prefixlen != 32:
            raise doc.error(f"spec.ipNetworks.{i}", "a workload address must be a /32", expected="a /32", got=item)
        nets.append(net)
    return WorkloadEndpoint(name=name or f"{node}-k8s-{pod}-eth0", namespace=namespace, node=node, pod=pod,
                            interface_name=iface, ip_networks=tuple(nets), origin=origin)


def _scenario_spec(doc: Doc, origin: Origin) -> ScenarioSpec:
    name = _meta(doc)
    doc.check_fields("", ["apiVersion", "kind", "metadata", "spec"])
    doc.check_fields("spec", ["hosts", "workloads", "timers", "events"])
    hosts: list[tuple[str, HostFacts]] = []
    raw_hosts = doc.raw("spec.hosts") or {}
    if not isinstance(raw_hosts, dict):
        raise doc.error("spec.hosts", "must be a mapping of node name (or 'default') to host facts", got=raw_hosts)
    for host, facts in raw_hosts.items():
        base = f"spec.hosts.{host}"
        doc.check_fields(base, ["interface", "gateway", "implementation"])
        gw_text = doc.raw(f"{base}.gateway")
        gateway = None if gw_text in (None, "first") else doc.address(f"{base}.gateway")
        if isinstance(facts, dict) and "interface" in facts and not str(facts["interface"]).strip():
            raise doc.error(f"{base}.interface", "must not be empty", expected="an interface name like eth0")
        hosts.append((str(host), HostFacts(
            interface=doc.string(f"{base}.interface", "eth0") or "eth0",
            gateway=gateway,
            implementation=doc.choice(f"{base}.implementation", IMPLEMENTATIONS, "meshsim"),
        )))
    workloads: list[tuple[str, int]] = []
    raw_w = doc.raw("spec.workloads") or {}
    if not isinstance(raw_w, dict):
        raise doc.error("spec.workloads", "must be a mapping of node name to a pod count", got=raw_w)
    for node_name in raw_w:
        count = doc.integer(f"spec.workloads.{node_name}", 0, 0, 1 << 20)
        workloads.append((str(node_name), count or 0))
    doc.check_fields("spec.timers", ["holdTime", "keepaliveTime"])
    hold = doc.duration("spec.timers.holdTime", None)
    keep = doc.duration("spec.timers.keepaliveTime", None)
    if hold is None:
        hold = 240.0
    if hold != 0 and hold < 3:
        raise doc.error("spec.timers.holdTime", "is too short", expected="0 or at least 3s (RFC 4271 §4.2)",
                        got=doc.raw("spec.timers.holdTime"))
    if keep is None:
        keep = hold / 3
    if keep > hold:
        raise doc.error("spec.timers.keepaliveTime", "must not exceed holdTime", expected=f"<= {hold:g}s",
                        got=doc.raw("spec.timers.keepaliveTime"))
    events_raw = doc.raw("spec.events") or []
    if not isinstance(events_raw, list):
        raise doc.error("spec.events", "must be a list of events", expected="a list like [{action: sleep, "
                        "duration: 5s}]", got=events_raw)
    events: list[Event] = []
    for i, ev in enumerate(events_raw):
        if not isinstance(ev, dict) or not isinstance(ev.get("action"), str):
            raise doc.error(f"spec.events.{i}", "each event needs an action", expected="a mapping with 'action'",
                            got=ev)
        events.append(Event(index=i, action=ev["action"], fields=tuple(ev.items()),
                            line=doc.lines.get(("spec", "events", i))))
    return ScenarioSpec(name=name, hosts=tuple(hosts), workloads=tuple(workloads),
                        timers=Timers(hold_time=hold, keepalive_time=keep), events=tuple(events), origin=origin)


PARSERS = {
    "IPPool": _ippool,
    "Node": _node,
    "BGPConfiguration": _bgpconfig,
    "BGPPeer": _bgppeer,
    "IPAMConfiguration": _ipamconfig,
    "BlockAffinity": _blockaffinity,
    "WorkloadEndpoint": _workloadendpoint,
}


def _expand_lists(doc: Doc) -> list[Doc]:
    """`kind: List` / `IPPoolList` (what `calicoctl get -o yaml` prints) -> one Doc per item."""
    kind = doc.data.get("kind")
    if not (isinstance(kind, str) and kind.endswith("List")):
        return [doc]
    doc.check_fields("", ["apiVersion", "kind", "metadata", "items"])
    items = doc.data.get("items") or []
    if not isinstance(items, list):
        raise doc.error("items", "must be a list", got=items)
    out: list[Doc] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise doc.error(f"items.{i}", "must be a mapping")
        item = dict(item)
        item.setdefault("apiVersion", doc.data.get("apiVersion"))
        if "kind" not in item and kind != "List":
            item["kind"] = kind[: -len("List")]
        lines = {k[2:]: v for k, v in doc.lines.items() if len(k) >= 2 and k[0] == "items" and k[1] == i}
        out.append(Doc(doc.path, doc.index, item, lines))
    return out


@dataclass
class _Collected:
    pools: list[IPPool] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    bgp: list[BGPConfiguration] = field(default_factory=list)
    peers: list[BGPPeer] = field(default_factory=list)
    ipam: list[IPAMConfiguration] = field(default_factory=list)
    affinities: list[BlockAffinity] = field(default_factory=list)
    endpoints: list[WorkloadEndpoint] = field(default_factory=list)
    specs: list[ScenarioSpec] = field(default_factory=list)
    docs: dict[int, Doc] = field(default_factory=dict)  # id(resource) -> doc for cross-check errors


def parse_resource(doc: Doc) -> Any:
    """One document -> its typed resource (IPPool, Node, ..., ScenarioSpec)."""
    if not isinstance(doc.data, dict):
        raise doc.error(None, "a document must be a mapping with apiVersion and kind", got=doc.data)
    kind = doc.data.get("kind")
    api = doc.data.get("apiVersion")
    doc.kind = kind if isinstance(kind, str) else None
    meta = doc.data.get("metadata")
    doc.name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    if kind is None:
        raise doc.error("kind", "is required", expected="one of " + ", ".join([*PARSERS, "Scenario"]))
    if api is None:
        raise doc.error("apiVersion", "is required", expected=" or ".join((*CALICO_API_VERSIONS, MESHSIM_API_VERSION)))
    origin = Origin(doc.path, doc.index)
    if kind == "Scenario":
        if api != MESHSIM_API_VERSION:
            raise doc.error("apiVersion", "is not the meshsim API version", expected=MESHSIM_API_VERSION, got=api)
        return _scenario_spec(doc, origin)
    if kind not in PARSERS:
        raise doc.error("kind", "is not a kind meshsim knows", expected="one of " + ", ".join([*PARSERS, "Scenario"]),
                        got=kind)
    if api not in CALICO_API_VERSIONS:
        raise doc.error("apiVersion", "is not a Calico API version", expected=" or ".join(CALICO_API_VERSIONS), got=api)
    return PARSERS[kind](doc, origin)


def load_scenario(paths: Sequence[str | Path]) -> Scenario:
    """Read, validate and cross-check one scenario made of one or more YAML files."""
    if not paths:
        raise ScenarioError("<command line>", "no scenario file given", expected="one or more YAML files")
    got = _Collected()
    for path in paths:
        for top in read_documents(path):
            for doc in _expand_lists(top):
                res = parse_resource(doc)
                got.docs[id(res)] = doc
                match res:
                    case IPPool():
                        got.pools.append(res)
                    case Node():
                        got.nodes.append(res)
                    case BGPConfiguration():
                        got.bgp.append(res)
                    case BGPPeer():
                        got.peers.append(res)
                    case IPAMConfiguration():
                        got.ipam.append(res)
                    case BlockAffinity():
                        got.affinities.append(res)
                    case WorkloadEndpoint():
                        got.endpoints.append(res)
                    case ScenarioSpec():
                        got.specs.append(res)
    return _cross_check(got, tuple(str(p) for p in paths))


def _dup(got: _Collected, items: Sequence[Any], key: Any, what: str, fieldpath: str) -> None:
    seen: dict[Any, Any] = {}
    for item in items:
        k = key(item)
        if k in seen:
            first = seen[k]
            raise got.docs[id(item)].error(fieldpath, f"duplicate {what} {k}; first declared in {first.origin}",
                                           expected=f"a unique {what}")
        seen[k] = item


def _cross_check(got: _Collected, files: tuple[str, ...]) -> Scenario:
    if len(got.specs) > 1:
        raise got.docs[id(got.specs[1])].error("kind", f"a scenario has one Scenario document; the first is in "
                                                       f"{got.specs[0].origin}", expected="a single Scenario")
    spec = got.specs[0] if got.specs else ScenarioSpec(name=Path(files[0]).stem)
    for many, what in ((got.bgp, "BGPConfiguration"), (got.ipam, "IPAMConfiguration")):
        if len(many) > 1:
            raise got.docs[id(many[1])].error("metadata.name", f"{what} 'default' declared twice; first in "
                                                               f"{many[0].origin}", expected="one")
    if not got.nodes:
        raise ScenarioError(files[0], "the scenario declares no Node", expected="at least one Node resource")
    if not got.pools:
        raise ScenarioError(files[0], "the scenario declares no IPPool", expected="at least one IPPool resource")
    _dup(got, got.pools, lambda p: p.name, "IPPool name", "metadata.name")
    _dup(got, got.nodes, lambda n: n.name, "Node name", "metadata.name")
    _dup(got, got.nodes, lambda n: n.address, "node address", "spec.bgp.ipv4Address")
    _dup(got, got.peers, lambda p: p.name, "BGPPeer name", "metadata.name")
    for i, a in enumerate(got.pools):
        for b in got.pools[:i]:
            if a.cidr.overlaps(b.cidr):
                raise got.docs[id(a)].error("spec.cidr", f"overlaps IPPool {b.name} ({b.cidr}, {b.origin})",
                                            expected="a CIDR that overlaps no other pool", got=str(a.cidr))
    node_names = {n.name for n in got.nodes}
    known = ", ".join(sorted(node_names))
    for n in got.nodes:
        for p in got.pools:
            if n.address in p.cidr:
                raise got.docs[id(n)].error("spec.bgp.ipv4Address", f"the node address lies inside IPPool {p.name} "
                                            f"({p.cidr})", expected="a host address outside every pool",
                                            got=str(n.address))
    for peer in got.peers:
        if peer.node is not None and peer.node not in node_names:
            raise got.docs[id(peer)].error("spec.node", "names no Node of the scenario", expected=f"one of {known}",
                                           got=peer.node)
    for aff in got.affinities:
        doc = got.docs[id(aff)]
        if aff.node not in node_names:
            raise doc.error("spec.node", "names no Node of the scenario", expected=f"one of {known}", got=aff.node)
        pool = next((p for p in got.pools if aff.cidr.subnet_of(p.cidr)), None)
        if pool is None:
            raise doc.error("spec.cidr", "lies in no IPPool", expected="a block inside a declared pool",
                            got=str(aff.cidr))
        if aff.cidr.prefixlen != pool.block_size:
            raise doc.error("spec.cidr", f"is not a block of pool {pool.name}", expected=f"a /{pool.block_size}",
                            got=str(aff.cidr))
    _dup(got, got.affinities, lambda a: a.cidr, "BlockAffinity for block", "spec.cidr")
    seen_ips: dict[IPv4Network, WorkloadEndpoint] = {}
    for wep in got.endpoints:
        doc = got.docs[id(wep)]
        if wep.node not in node_names:
            raise doc.error("spec.node", "names no Node of the scenario", expected=f"one of {known}", got=wep.node)
        for i, net in enumerate(wep.ip_networks):
            if not any(net.subnet_of(p.cidr) for p in got.pools):
                raise doc.error(f"spec.ipNetworks.{i}", "lies in no IPPool", expected="an address inside a pool",
                                got=str(net))
            if net in seen_ips:
                raise doc.error(f"spec.ipNetworks.{i}", f"is already used by {seen_ips[net].origin}",
                                expected="a unique workload address", got=str(net))
            seen_ips[net] = wep
    spec_doc = got.docs.get(id(spec)) if got.specs else None
    if spec_doc is not None:
        for host, _ in spec.hosts:
            if host != "default" and host not in node_names:
                raise spec_doc.error(f"spec.hosts.{host}", "names no Node of the scenario",
                                     expected=f"'default' or one of {known}", got=host)
        for node_name, _ in spec.workloads:
            if node_name not in node_names:
                raise spec_doc.error(f"spec.workloads.{node_name}", "names no Node of the scenario",
                                     expected=f"one of {known}", got=node_name)
    return Scenario(
        files=files, spec=spec, pools=tuple(got.pools), nodes=tuple(got.nodes),
        bgp=got.bgp[0] if got.bgp else BGPConfiguration(), peers=tuple(got.peers),
        ipam=got.ipam[0] if got.ipam else IPAMConfiguration(), affinities=tuple(got.affinities),
        endpoints=tuple(got.endpoints),
    )
