"""Reading Calico's network resources: IPPool, Node, BGPConfiguration, BGPPeer and BGPFilter documents.

Owns one parser per kind (`projectcalico.org/v3` as calicoctl prints it, and `crd.projectcalico.org/v1` as kubectl
prints the same resources in a Kubernetes-datastore cluster: same spec, Calico's metadata in an annotation) and the
helpers every reader shares (`Reading`: the warnings of one load; `metadata`: ObjectMeta with Calico's name rule).
Field names, defaults and validation follow Calico v3.28 (api/pkg/apis/projectcalico/v3/*.go,
libcalico-go/lib/validator/v3/validator.go). A misspelled field is an error; a field only newer Calico releases
have is read past with a warning; IPv6 resources are read past with a warning (meshsim models IPv4 BGP).
Pure: no asyncio, no clock.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from meshsim.errors import SelectorError
from meshsim.model.names import NAME_RULE, name_problem
from meshsim.model.resources import (AFFINITY_STATES, DEFAULT_AS, DEFAULT_BLOCK_SIZE, ENCAP_MODES, BGPConfiguration,
                                     BGPFilter, BGPFilterRule, BGPPeer, IPPool, Node, Origin, PrefixAdvertisement,
                                     SecretKeyRef)
from meshsim.model.selectors import parse as parse_selector
from meshsim.model.yamldoc import Doc

OBJECT_META = frozenset({"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
                         "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
                         "annotations", "ownerReferences", "finalizers", "managedFields", "clusterName"})
TOP = ("apiVersion", "kind", "metadata", "spec", "status")
_ = AFFINITY_STATES  # re-exported for callers that read them from here


@dataclass
class Reading:
    """What one load reads past, gathered so `load_scenario` can say it once per topic (LoadWarning)."""

    skipped_kinds: Counter = field(default_factory=Counter)
    ipv6: Counter = field(default_factory=Counter)  # "IPPool" -> count
    newer_fields: set[str] = field(default_factory=set)  # "BGPPeer spec.keepaliveTime"
    no_bgp_nodes: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # topic -> messages

    def note(self, topic: str, message: str) -> None:
        self.notes.setdefault(topic, []).append(message)


def metadata(doc: Doc, *, name_required: bool = True) -> str:
    """metadata.name (checked against Calico's rule for names) after checking metadata's fields."""
    doc.check_fields("metadata", OBJECT_META)
    name = doc.raw("metadata.name")
    if name is None:
        if name_required:
            raise doc.error("metadata.name", "is required", expected=NAME_RULE)
        return ""
    check_name(doc, "metadata.name", name)
    return name


def check_name(doc: Doc, fieldpath: str, name: Any) -> str:
    """A resource name field (metadata.name, spec.node, ...): Calico's DNS-1123 subdomain rule."""
    problem = name_problem(name)
    if problem is not None:
        raise doc.error(fieldpath, f"is not a valid resource name: it {problem}", expected=NAME_RULE, got=name)
    return name


def check_spec(doc: Doc, kind: str, allowed: tuple[str, ...], newer: tuple[str, ...], reading: Reading) -> None:
    """Unknown spec fields are errors; fields only newer Calico releases have are noted and read past."""
    spec = doc.mapping("spec")
    for key in spec:
        if key in newer:
            reading.newer_fields.add(f"{kind} spec.{key}")
    doc.check_fields("spec", (*allowed, *newer))


def selector_text(doc: Doc, fieldpath: str) -> str | None:
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


def is_ipv6(value: Any) -> bool:
    """An IPv6 address or CIDR (an IPv4 one never has two colons)."""
    return isinstance(value, str) and value.count(":") >= 2


def secret_ref(doc: Doc, fieldpath: str) -> SecretKeyRef | None:
    """`password: {secretKeyRef: {name, key}}` (a BGPPassword)."""
    if doc.raw(fieldpath) is None:
        return None
    doc.check_fields(fieldpath, ("secretKeyRef",))
    ref = f"{fieldpath}.secretKeyRef"
    if doc.raw(ref) is None:
        return None
    doc.check_fields(ref, ("name", "key", "optional"))
    name = doc.string(f"{ref}.name", required=True)
    key = doc.string(f"{ref}.key", required=True)
    assert name is not None and key is not None
    check_name(doc, f"{ref}.name", name)
    return SecretKeyRef(name=name, key=key)


# ----------------------------------------------------------------------------------------------
# IPPool


def ippool(doc: Doc, origin: Origin, reading: Reading) -> IPPool | None:
    name = metadata(doc)
    doc.check_fields("", TOP)
    check_spec(doc, "IPPool", ("cidr", "blockSize", "ipipMode", "vxlanMode", "natOutgoing", "disabled",
                               "nodeSelector", "disableBGPExport", "allowedUses", "ipip", "nat-outgoing"),
               ("assignmentMode", "namespaceSelector"), reading)
    if is_ipv6(doc.raw("spec.cidr")):
        reading.ipv6[f"IPPool {name}"] += 1
        return None
    cidr = doc.network("spec.cidr", required=True)
    assert cidr is not None
    block_size = doc.integer("spec.blockSize", DEFAULT_BLOCK_SIZE, 20, 32)
    assert block_size is not None
    if block_size < cidr.prefixlen:
        raise doc.error("spec.blockSize", f"blocks of /{block_size} do not fit in the pool {cidr}",
                        expected=f"a block size between {max(20, cidr.prefixlen)} and 32", got=block_size)
    ipip = doc.choice("spec.ipipMode", ENCAP_MODES, "")
    if not ipip:
        # The deprecated v1 form, still in the v3 API: `ipip: {enabled: true, mode: cross-subnet}`.
        doc.check_fields("spec.ipip", ("enabled", "mode"))
        enabled = doc.boolean("spec.ipip.enabled", False)
        mode = doc.choice("spec.ipip.mode", ("always", "cross-subnet"), "always")
        ipip = ("CrossSubnet" if mode == "cross-subnet" else "Always") if enabled else "Never"
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
    nat = doc.boolean("spec.natOutgoing", False) or doc.boolean("spec.nat-outgoing", False)
    return IPPool(
        name=name, cidr=cidr, block_size=block_size, ipip_mode=ipip, vxlan_mode=vxlan, nat_outgoing=nat,
        disabled=doc.boolean("spec.disabled", False),
        node_selector=selector_text(doc, "spec.nodeSelector") or "all()",
        disable_bgp_export=doc.boolean("spec.disableBGPExport", False), origin=origin,
    )


# ----------------------------------------------------------------------------------------------
# Node


def node(doc: Doc, origin: Origin, reading: Reading) -> Node | None:
    name = metadata(doc)
    doc.check_fields("", TOP)
    doc.check_fields("spec", ("bgp", "orchRefs", "addresses", "ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr",
                              "ipv6VXLANTunnelAddr", "vxlanTunnelMACAddrV6", "interfaces", "wireguard"))
    doc.check_fields("spec.bgp", ("ipv4Address", "ipv6Address", "asNumber", "routeReflectorClusterID",
                                  "ipv4IPIPTunnelAddr"))
    iface = doc.interface("spec.bgp.ipv4Address")
    if iface is None:
        reading.no_bgp_nodes.append(name)
        return None
    address, subnet = iface
    return Node(name=name, address=address, subnet=subnet, labels=tuple(sorted(doc.labels("metadata.labels").items())),
                asn=doc.integer("spec.bgp.asNumber", None, 1, 4294967295),
                rr_cluster_id=doc.address("spec.bgp.routeReflectorClusterID"),
                ipip_tunnel_address=tunnel_address(doc, "spec.bgp.ipv4IPIPTunnelAddr"), origin=origin)


def tunnel_address(doc: Doc, fieldpath: "str | tuple[str, ...]") -> IPv4Address | None:
    """ipv4IPIPTunnelAddr: an address (Calico also writes it as a /32)."""
    value = doc.raw(fieldpath)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.endswith("/32"):
        value = value[:-3]
    return doc.parse_address(fieldpath, value)


# ----------------------------------------------------------------------------------------------
# BGPConfiguration

_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^(\d+):(\d+):(\d+)$")


def community_problem(value: str) -> str | None:
    """None for a valid community value: `aa:nn` with 16-bit parts or `aa:nn:mm` with 32-bit parts
    (validator.go isValidCommunity / validateCommunityValue)."""
    m = _COMMUNITY.match(value)
    if m:
        return None if all(int(p) < 1 << 16 for p in m.groups()) else "a part is over 16 bits"
    m = _LARGE_COMMUNITY.match(value)
    if m:
        return None if all(int(p) < 1 << 32 for p in m.groups()) else "a part is over 32 bits"
    return "is not aa:nn or aa:nn:mm"


def _service_blocks(doc: Doc, fieldpath: str, reading: Reading) -> tuple[IPv4Network, ...]:
    out = []
    for i, item in enumerate(doc.sequence(fieldpath)):
        doc.check_fields(f"{fieldpath}.{i}", ("cidr",))
        cidr = doc.raw(f"{fieldpath}.{i}.cidr")
        if is_ipv6(cidr):
            reading.ipv6[f"BGPConfiguration {fieldpath.split('.')[-1]}"] += 1
            continue
        net = doc.network(f"{fieldpath}.{i}.cidr", required=True, strict=False)
        assert net is not None
        out.append(net)
    return tuple(out)


def _prefix_advertisements(doc: Doc, reading: Reading) -> tuple[PrefixAdvertisement, ...]:
    defined: dict[str, str] = {}
    for i, _c in enumerate(doc.sequence("spec.communities")):
        base = f"spec.communities.{i}"
        doc.check_fields(base, ("name", "value"))
        cname = doc.string(f"{base}.name", required=True)
        value = doc.string(f"{base}.value", required=True)
        assert cname is not None and value is not None
        problem = community_problem(value)
        if problem:
            raise doc.error(f"{base}.value", f"is not a valid community: it {problem}",
                            expected="aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)", got=value)
        defined.setdefault(cname, value)
    advertisements = doc.sequence("spec.prefixAdvertisements")
    if defined and not advertisements:
        raise doc.error("spec.communities", "communities are defined but not used in spec.prefixAdvertisements",
                        expected="prefixAdvertisements that use them (Calico's validation rule)")
    out = []
    for i, _p in enumerate(advertisements):
        base = f"spec.prefixAdvertisements.{i}"
        doc.check_fields(base, ("cidr", "communities"))
        if is_ipv6(doc.raw(f"{base}.cidr")):
            reading.ipv6["BGPConfiguration prefixAdvertisements"] += 1
            continue
        cidr = doc.network(f"{base}.cidr", required=True, strict=False)
        assert cidr is not None
        values: set[str] = set()
        for j, c in enumerate(doc.sequence(f"{base}.communities")):
            if not isinstance(c, str):
                raise doc.error(f"{base}.communities.{j}", "must be a community or a community name", got=c)
            if community_problem(c) is None:
                values.add(c)
            elif c in defined:
                values.add(defined[c])
            elif _COMMUNITY.match(c) or _LARGE_COMMUNITY.match(c):
                raise doc.error(f"{base}.communities.{j}", f"is not a valid community: it {community_problem(c)}",
                                expected="aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)", got=c)
            else:
                raise doc.error(f"{base}.communities.{j}", "names no community of spec.communities",
                                expected="a community value (aa:nn, aa:nn:mm) or one of "
                                         + (", ".join(sorted(defined)) or "(none defined)"), got=c)
        out.append(PrefixAdvertisement(cidr=cidr, communities=tuple(sorted(values))))
    return tuple(out)


BGPCONFIG_FIELDS = ("nodeToNodeMeshEnabled", "asNumber", "listenPort", "logSeverityScreen", "serviceClusterIPs",
                    "serviceExternalIPs", "serviceLoadBalancerIPs", "communities", "prefixAdvertisements", "bindMode",
                    "nodeMeshMaxRestartTime", "nodeMeshPassword", "ignoredInterfaces")
BGPCONFIG_NEWER = ("ipv4NormalRoutePriority", "ipv6NormalRoutePriority", "localWorkloadPeeringIPV4",
                   "localWorkloadPeeringIPV6", "programClusterRoutes", "serviceLoadBalancerAggregation",
                   "nodeMeshKeepaliveTime")


def bgpconfig(doc: Doc, origin: Origin, reading: Reading) -> BGPConfiguration:
    name = metadata(doc)
    doc.check_fields("", TOP)
    if name != "default" and not name.startswith("node."):
        raise doc.error("metadata.name", "Calico reads the BGPConfiguration `default` and per-node ones named "
                        "node.<node name>", expected="'default' or 'node.<node name>'", got=name)
    check_spec(doc, "BGPConfiguration", BGPCONFIG_FIELDS, BGPCONFIG_NEWER, reading)
    mesh = doc.boolean("spec.nodeToNodeMeshEnabled", True)
    restart = doc.duration("spec.nodeMeshMaxRestartTime", None, go=True)
    password = secret_ref(doc, "spec.nodeMeshPassword")
    explicit_mesh = doc.raw("spec.nodeToNodeMeshEnabled") is not None
    if explicit_mesh and not mesh and password is not None:
        raise doc.error("spec.nodeMeshPassword", "cannot be set if spec.nodeToNodeMeshEnabled is false",
                        expected="no nodeMeshPassword, or the mesh enabled (Calico's validation rule)")
    if explicit_mesh and not mesh and restart is not None:
        raise doc.error("spec.nodeMeshMaxRestartTime", "cannot be set if spec.nodeToNodeMeshEnabled is false",
                        expected="no nodeMeshMaxRestartTime, or the mesh enabled (Calico's validation rule)")
    ignored = []
    for i, item in enumerate(doc.sequence("spec.ignoredInterfaces")):
        if not isinstance(item, str) or not item or any(c.isspace() or c in "\"\\," for c in item):
            raise doc.error(f"spec.ignoredInterfaces.{i}", "is not an interface name or glob",
                            expected="an interface name like eth1 or a glob like tap*", got=item)
        ignored.append(item)
    return BGPConfiguration(
        name=name,
        node_to_node_mesh_enabled=mesh,
        as_number=doc.integer("spec.asNumber", DEFAULT_AS, 1, 4294967295) or DEFAULT_AS,
        listen_port=doc.integer("spec.listenPort", 179, 1, 65535) or 179,
        log_severity_screen=doc.choice("spec.logSeverityScreen",
                                       ("Debug", "Info", "Warning", "Error", "Fatal", "None"), "Info"),
        service_cluster_ips=_service_blocks(doc, "spec.serviceClusterIPs", reading),
        service_external_ips=_service_blocks(doc, "spec.serviceExternalIPs", reading),
        service_loadbalancer_ips=_service_blocks(doc, "spec.serviceLoadBalancerIPs", reading),
        prefix_advertisements=_prefix_advertisements(doc, reading),
        node_mesh_password_ref=password,
        node_mesh_max_restart_time=restart,
        bind_mode=doc.choice("spec.bindMode", ("None", "NodeIP"), "None"),
        ignored_interfaces=tuple(ignored),
        fields_set=frozenset(doc.mapping("spec")),
        origin=origin,
    )


# ----------------------------------------------------------------------------------------------
# BGPPeer

BGPPEER_FIELDS = ("node", "nodeSelector", "peerIP", "asNumber", "peerSelector", "keepOriginalNextHop", "password",
                  "sourceAddress", "maxRestartTime", "numAllowedLocalASNumbers", "ttlSecurity", "reachableBy",
                  "filters")
BGPPEER_NEWER = ("keepaliveTime", "localASNumber", "localWorkloadSelector", "nextHopMode", "reversePeering")


def _peer_ip(doc: Doc) -> tuple[IPv4Address | None, int | None, bool]:
    """spec.peerIP: `ip`, `ip:port` or `[ipv6]:port`; (address, port, is_ipv6)."""
    value = doc.raw("spec.peerIP")
    if value is None or value == "":
        return None, None, False
    if not isinstance(value, str):
        raise doc.error("spec.peerIP", "is not an IP address", expected="ip or ip:port", got=value)
    if value.startswith("[") or value.count(":") > 1:
        return None, None, True
    text, port = value, None
    if ":" in value:
        text, port_text = value.split(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise doc.error("spec.peerIP", "has an invalid port", expected="ip or ip:port", got=value)
        port = int(port_text)
    try:
        return IPv4Address(text), port, False
    except ValueError:
        raise doc.error("spec.peerIP", "is not a valid IPv4 address", expected="ip or ip:port", got=value) from None


def bgppeer(doc: Doc, origin: Origin, reading: Reading) -> BGPPeer | None:
    name = metadata(doc)
    doc.check_fields("", TOP)
    check_spec(doc, "BGPPeer", BGPPEER_FIELDS, BGPPEER_NEWER, reading)
    node_name = doc.string("spec.node") or None
    if node_name is not None:
        check_name(doc, "spec.node", node_name)
    node_selector = selector_text(doc, "spec.nodeSelector") or None
    peer_selector = selector_text(doc, "spec.peerSelector") or None
    if node_name is not None and node_selector is not None:
        raise doc.error("spec.nodeSelector", "node and nodeSelector cannot both be set",
                        expected="only one of node, nodeSelector")
    peer_ip, peer_port, v6 = _peer_ip(doc)
    if v6:
        reading.ipv6[f"BGPPeer {name}"] += 1
        return None
    if (peer_ip is None) == (peer_selector is None):
        raise doc.error("spec.peerIP" if peer_ip is None else "spec.peerSelector",
                        "a BGPPeer needs exactly one of peerIP and peerSelector",
                        expected="peerIP or peerSelector")
    asn = doc.integer("spec.asNumber", None, 0, 4294967295) or None
    if peer_ip is not None and asn is None:
        raise doc.error("spec.asNumber", "is required with peerIP", expected="an AS number")
    reachable = doc.address("spec.reachableBy") if doc.raw("spec.reachableBy") not in (None, "") else None
    filters = []
    for i, f in enumerate(doc.sequence("spec.filters")):
        filters.append(check_name(doc, f"spec.filters.{i}", f))
    return BGPPeer(
        name=name, node=node_name, node_selector=node_selector, peer_selector=peer_selector, peer_ip=peer_ip,
        peer_port=peer_port, as_number=asn, keep_original_next_hop=doc.boolean("spec.keepOriginalNextHop", False),
        password_ref=secret_ref(doc, "spec.password"),
        source_address=doc.choice("spec.sourceAddress", ("UseNodeIP", "None"), "UseNodeIP"),
        max_restart_time=doc.duration("spec.maxRestartTime", None, go=True),
        num_allowed_local_as=doc.integer("spec.numAllowedLocalASNumbers", None, 0, 2147483647),
        ttl_security=doc.integer("spec.ttlSecurity", None, 0, 255),
        reachable_by=reachable, filters=tuple(filters), origin=origin,
    )


# ----------------------------------------------------------------------------------------------
# BGPFilter

FILTER_ACTIONS = ("Accept", "Reject")
MATCH_OPERATORS = ("Equal", "NotEqual", "In", "NotIn")


def _filter_rules(doc: Doc, fieldpath: str) -> tuple[BGPFilterRule, ...]:
    rules = []
    for i, _r in enumerate(doc.sequence(fieldpath)):
        base = f"{fieldpath}.{i}"
        doc.check_fields(base, ("action", "cidr", "matchOperator", "source", "interface"))
        action = doc.choice(f"{base}.action", FILTER_ACTIONS, "")
        if not action:
            raise doc.error(f"{base}.action", "is required", expected=" | ".join(FILTER_ACTIONS))
        cidr = doc.network(f"{base}.cidr", strict=False) if doc.raw(f"{base}.cidr") not in (None, "") else None
        op = doc.choice(f"{base}.matchOperator", MATCH_OPERATORS, "") or None
        if cidr is not None and op is None:
            raise doc.error(f"{base}.matchOperator", "is required with cidr (confd: \"operator not included in "
                            "BGPFilter\")", expected=" | ".join(MATCH_OPERATORS))
        if cidr is None and op is not None:
            raise doc.error(f"{base}.cidr", "is required with matchOperator", expected="an IPv4 CIDR")
        source = doc.choice(f"{base}.source", ("RemotePeers",), "") or None
        iface = doc.raw(f"{base}.interface")
        if iface in ("", None):
            iface = None
        elif not isinstance(iface, str) or any(c.isspace() or c in "\"\\" for c in iface):
            raise doc.error(f"{base}.interface", "is not an interface name or glob",
                            expected="an interface name or glob like eth0, cali*, *.calico", got=iface)
        rules.append(BGPFilterRule(action=action, cidr=cidr, match_operator=op, source=source, interface=iface))
    return tuple(rules)


def bgpfilter(doc: Doc, origin: Origin, reading: Reading) -> BGPFilter:
    name = metadata(doc)
    doc.check_fields("", TOP)
    doc.check_fields("spec", ("exportV4", "importV4", "exportV6", "importV6"))
    if doc.sequence("spec.exportV6") or doc.sequence("spec.importV6"):
        reading.ipv6[f"BGPFilter {name} rules"] += 1
    return BGPFilter(name=name, export_v4=_filter_rules(doc, "spec.exportV4"),
                     import_v4=_filter_rules(doc, "spec.importV4"), origin=origin)


__all__ = ["Reading", "metadata", "check_name", "ippool", "node", "bgpconfig", "bgppeer", "bgpfilter",
           "community_problem", "selector_text", "secret_ref", "is_ipv6", "tunnel_address", "OBJECT_META", "TOP"]
