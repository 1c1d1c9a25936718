"""A typed Scenario back to the YAML it came from: one document per resource, then the meshsim Scenario document
(hosts, workloads, timers, events).

Owns `resource_dict(resource, api=...)` (any resource of the model as the mapping Calico, Kubernetes or meshsim
prints: IPPool, Node, BGPConfiguration (`default` and `node.<name>`), BGPPeer, BGPFilter, IPAMConfiguration,
BlockAffinity, IPAMBlock, IPAMHandle, IPReservation, WorkloadEndpoint, v1 Service, Endpoints and Secret; the
IPAM state, workload and Kubernetes writers are meshsim.model.render_state), `scenario_dict(scenario)`,
`scenario_yaml(scenario)` and `yaml_text(doc)` (the one YAML writer: a string that meshsim's reader would take
for something else, such as `0o17`, is quoted). Field names and defaults are Calico's
(api/pkg/apis/projectcalico/v3); a field at its default is left out unless the document it came from set it
(BGPConfiguration.fields_set, which per-node configurations depend on), so the output reads like what
`calicoctl get -o yaml` users write. What the model does not keep is not written: a v1 Pod comes back as the
WorkloadEndpoint meshsim made of it, a Secret as `data` (base64), community names as their values, an
IPAMBlock's attributes one per allocation. `load_scenario` on the text gives back an equal Scenario
(tests/unit/test_designs.py checks every shipped scenario and dump). A variant of the user's own files is
`meshsim.model.sources`, which keeps the user's documents and uses this module only for what it adds or
rewrites. Pure: returns text.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any, Sequence

import yaml

from meshsim.model.resources import (
    CALICO_API_VERSIONS,
    DEFAULT_BLOCK_SIZE,
    MESHSIM_API_VERSION,
    BGPConfiguration,
    BGPFilter,
    BGPFilterRule,
    BGPPeer,
    BlockAffinity,
    IPAMBlock,
    IPAMConfiguration,
    IPAMHandle,
    IPPool,
    IPReservation,
    Node,
    Scenario,
    ScenarioSpec,
    Secret,
    SecretKeyRef,
    Service,
    ServiceEndpoints,
    WorkloadEndpoint,
)
from meshsim.model.render_state import (CORE_API, affinity_dict, block_dict, endpoint_dict, handle_dict, ipam_dict,
                                        reservation_dict, secret_dict, service_dict, service_endpoints_dict)
from meshsim.model.yamldoc import resolve_plain

API = CALICO_API_VERSIONS[0]
_DEFAULT_BGP = BGPConfiguration()


# ----------------------------------------------------------------------------------------------
# Values


def _duration(seconds: float) -> str:
    """meshsim's own timers ("9s", "500ms")."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000):d}ms"


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() ("2m0s", "1h0m0s", "1.5s", "300ms"), what metav1.Duration fields print."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _fraction(ns, 1000) + "\u00b5s"
    if ns < 1_000_000_000:
        return _fraction(ns, 1_000_000) + "ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _fraction(rest, 10**9) + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def _secret_ref(ref: SecretKeyRef) -> dict[str, Any]:
    return {"secretKeyRef": {"name": ref.name, "key": ref.key}}


def _cidrs(nets: Sequence[IPv4Network]) -> list[dict[str, str]]:
    return [{"cidr": str(n)} for n in nets]


# ----------------------------------------------------------------------------------------------
# Calico resources


def _doc(kind: str, name: str, spec: dict[str, Any], api: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}


def pool_dict(p: IPPool, api: str = API) -> dict[str, Any]:
    spec: dict[str, Any] = {"cidr": str(p.cidr)}
    if p.block_size != DEFAULT_BLOCK_SIZE:
        spec["blockSize"] = p.block_size
    spec["ipipMode"] = p.ipip_mode
    if p.vxlan_mode != "Never":
        spec["vxlanMode"] = p.vxlan_mode
    spec["natOutgoing"] = p.nat_outgoing
    if p.disabled:
        spec["disabled"] = True
    if p.node_selector != "all()":
        spec["nodeSelector"] = p.node_selector
    if p.disable_bgp_export:
        spec["disableBGPExport"] = True
    return _doc("IPPool", p.name, spec, api)


def node_dict(n: Node, api: str = API) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": n.name}
    if n.labels:
        meta["labels"] = dict(n.labels)
    bgp: dict[str, Any] = {"ipv4Address": n.interface_address}
    if n.asn is not None:
        bgp["asNumber"] = n.asn
    if n.rr_cluster_id is not None:
        bgp["routeReflectorClusterID"] = str(n.rr_cluster_id)
    if n.ipip_tunnel_address is not None:
        bgp["ipv4IPIPTunnelAddr"] = str(n.ipip_tunnel_address)
    return {"apiVersion": api, "kind": "Node", "metadata": meta, "spec": {"bgp": bgp}}


def _prefix_advertisements(c: BGPConfiguration) -> list[dict[str, Any]]:
    return [{"cidr": str(p.cidr), "communities": list(p.communities)} for p in c.prefix_advertisements]


# spec field -> (attribute, how it is written); the order is the order of the output
BGPCONFIG_SPEC: dict[str, tuple[str, Any]] = {
    "nodeToNodeMeshEnabled": ("node_to_node_mesh_enabled", lambda c: c.node_to_node_mesh_enabled),
    "asNumber": ("as_number", lambda c: c.as_number),
    "listenPort": ("listen_port", lambda c: c.listen_port),
    "logSeverityScreen": ("log_severity_screen", lambda c: c.log_severity_screen),
    "bindMode": ("bind_mode", lambda c: c.bind_mode),
    "ignoredInterfaces": ("ignored_interfaces", lambda c: list(c.ignored_interfaces)),
    "serviceClusterIPs": ("service_cluster_ips", lambda c: _cidrs(c.service_cluster_ips)),
    "serviceExternalIPs": ("service_external_ips", lambda c: _cidrs(c.service_external_ips)),
    "serviceLoadBalancerIPs": ("service_loadbalancer_ips", lambda c: _cidrs(c.service_loadbalancer_ips)),
    "communities": ("prefix_advertisements", lambda c: []),  # names are resolved to values in the model
    "prefixAdvertisements": ("prefix_advertisements", _prefix_advertisements),
    "nodeMeshPassword": ("node_mesh_password_ref",
                         lambda c: _secret_ref(c.node_mesh_password_ref) if c.node_mesh_password_ref else None),
    "nodeMeshMaxRestartTime": ("node_mesh_max_restart_time",
                               lambda c: go_duration(c.node_mesh_max_restart_time)
                               if c.node_mesh_max_restart_time is not None else None),
}


def bgpconfig_dict(c: BGPConfiguration, api: str = API) -> dict[str, Any]:
    """A field is written when the configuration's document set it (`fields_set`: a per-node configuration
    overrides exactly those) or when it is not at Calico's default."""
    spec: dict[str, Any] = {}
    for key, (attr, value) in BGPCONFIG_SPEC.items():
        if key == "communities":
            if key in c.fields_set:
                spec[key] = []
            continue
        if key in c.fields_set or getattr(c, attr) != getattr(_DEFAULT_BGP, attr):
            v = value(c)
            if v is not None:
                spec[key] = v
    return _doc("BGPConfiguration", c.name, spec, api)


# spec field -> attributes it holds (BGPPeer.password, the secret's value, is read from the Secret)
BGPPEER_SPEC: dict[str, tuple[str, ...]] = {
    "node": ("node",), "nodeSelector": ("node_selector",), "peerSelector": ("peer_selector",),
    "peerIP": ("peer_ip", "peer_port"), "asNumber": ("as_number",),
    "keepOriginalNextHop": ("keep_original_next_hop",), "password": ("password_ref",),
    "sourceAddress": ("source_address",), "maxRestartTime": ("max_restart_time",),
    "numAllowedLocalASNumbers": ("num_allowed_local_as",), "ttlSecurity": ("ttl_security",),
    "reachableBy": ("reachable_by",), "filters": ("filters",),
}


def bgppeer_dict(p: BGPPeer, api: str = API) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if p.node is not None:
        spec["node"] = p.node
    if p.node_selector is not None:
        spec["nodeSelector"] = p.node_selector
    if p.peer_selector is not None:
        spec["peerSelector"] = p.peer_selector
    if p.peer_ip is not None:
        spec["peerIP"] = f"{p.peer_ip}:{p.peer_port}" if p.peer_port else str(p.peer_ip)
    if p.as_number is not None:
        spec["asNumber"] = p.as_number
    if p.keep_original_next_hop:
        spec["keepOriginalNextHop"] = True
    if p.password_ref is not None:
        spec["password"] = _secret_ref(p.password_ref)
    if p.source_address != "UseNodeIP":
        spec["sourceAddress"] = p.source_address
    if p.max_restart_time is not None:
        spec["maxRestartTime"] = go_duration(p.max_restart_time)
    if p.num_allowed_local_as is not None:
        spec["numAllowedLocalASNumbers"] = p.num_allowed_local_as
    if p.ttl_security is not None:
        spec["ttlSecurity"] = p.ttl_security
    if p.reachable_by is not None:
        spec["reachableBy"] = str(p.reachable_by)
    if p.filters:
        spec["filters"] = list(p.filters)
    return _doc("BGPPeer", p.name, spec, api)


def _rule(r: BGPFilterRule) -> dict[str, Any]:
    out: dict[str, Any] = {"action": r.action}
    if r.cidr is not None:
        out["cidr"] = str(r.cidr)
    if r.match_operator is not None:
        out["matchOperator"] = r.match_operator
    if r.source is not None:
        out["source"] = r.source
    if r.interface is not None:
        out["interface"] = r.interface
    return out


def bgpfilter_dict(f: BGPFilter, api: str = API) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if f.export_v4:
        spec["exportV4"] = [_rule(r) for r in f.export_v4]
    if f.import_v4:
        spec["importV4"] = [_rule(r) for r in f.import_v4]
    return _doc("BGPFilter", f.name, spec, api)


def resource_dict(resource: Any, api: str = API) -> dict[str, Any]:
    """One typed resource as the mapping its YAML holds (what a timeline's `apply` carries). `api` is the Calico
    API version Calico kinds are written in (projectcalico.org/v3, or crd.projectcalico.org/v1 as kubectl prints
    them); Kubernetes objects are v1."""
    match resource:
        case IPPool():
            return pool_dict(resource, api)
        case Node():
            return node_dict(resource, api)
        case BGPConfiguration():
            return bgpconfig_dict(resource, api)
        case BGPPeer():
            return bgppeer_dict(resource, api)
        case BGPFilter():
            return bgpfilter_dict(resource, api)
        case IPAMConfiguration():
            return ipam_dict(resource, api)
        case BlockAffinity():
            return affinity_dict(resource, api)
        case IPAMBlock():
            return block_dict(resource, api)
        case IPAMHandle():
            return handle_dict(resource, api)
        case IPReservation():
            return reservation_dict(resource, api)
        case WorkloadEndpoint():
            return endpoint_dict(resource, api)
        case Service():
            return service_dict(resource)
        case ServiceEndpoints():
            return service_endpoints_dict(resource)
        case Secret():
            return secret_dict(resource)
        case ScenarioSpec():
            return spec_dict(resource)
    raise TypeError(f"not a resource meshsim models: {type(resource).__name__}")


def spec_dict(spec: ScenarioSpec) -> dict[str, Any]:
    """meshsim's Scenario document."""
    out: dict[str, Any] = {}
    if spec.hosts:
        hosts: dict[str, Any] = {}
        for name, facts in spec.hosts:
            h: dict[str, Any] = {"interface": facts.interface,
                                 "gateway": str(facts.gateway) if facts.gateway is not None else "first"}
            if facts.implementation != "meshsim":
                h["implementation"] = facts.implementation
            hosts[name] = h
        out["hosts"] = hosts
    if spec.workloads:
        out["workloads"] = dict(spec.workloads)
    out["timers"] = {"holdTime": _duration(spec.timers.hold_time),
                     "keepaliveTime": _duration(spec.timers.keepalive_time)}
    if spec.timers.restart_wait != 240.0:
        out["timers"]["restartWait"] = _duration(spec.timers.restart_wait)
    out["events"] = [dict(ev.fields) for ev in spec.events]
    return {"apiVersion": MESHSIM_API_VERSION, "kind": "Scenario", "metadata": {"name": spec.name}, "spec": out}


def scenario_dict(scenario: Scenario) -> dict[str, Any]:
    return spec_dict(scenario.spec)


def scenario_resources(scenario: Scenario) -> list[Any]:
    """Every resource of the scenario in the order it is written: configuration, pools, peers, filters, nodes,
    IPAM state, workloads, Kubernetes objects. The default BGP and IPAM configurations come first when they
    differ from Calico's defaults (or were declared)."""
    out: list[Any] = []
    if scenario.bgp != _DEFAULT_BGP or scenario.bgp.fields_set:
        out.append(scenario.bgp)
    out += list(scenario.node_bgp)
    if scenario.ipam != IPAMConfiguration():
        out.append(scenario.ipam)
    for group in (scenario.pools, scenario.reservations, scenario.peers, scenario.filters, scenario.nodes,
                  scenario.affinities, scenario.ipam_blocks, scenario.ipam_handles, scenario.endpoints,
                  scenario.secrets, scenario.services, scenario.service_endpoints):
        out += list(group)
    return out


# ----------------------------------------------------------------------------------------------
# Writing YAML


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """safe_dump, without anchors, and with every string that meshsim's reader (go-yaml v2 rules) would read as
    something else quoted."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = None
    if value and not isinstance(resolve_plain(value), str):
        style = "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def yaml_text(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


def scenario_yaml(scenario: Scenario, header: str = "", api: str = API) -> str:
    """The whole scenario as multi-document YAML, `header` (comment lines) first."""
    docs = [resource_dict(r, api) for r in scenario_resources(scenario)]
    docs.append(scenario_dict(scenario))
    return comment(header) + "---\n".join(yaml_text(d) for d in docs)


def comment(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines())


__all__ = ["resource_dict", "scenario_dict", "spec_dict", "scenario_yaml", "scenario_resources", "yaml_text",
           "go_duration", "comment", "node_dict", "bgpconfig_dict", "bgppeer_dict", "pool_dict", "bgpfilter_dict",
           "BGPCONFIG_SPEC", "BGPPEER_SPEC", "API", "CORE_API"]
