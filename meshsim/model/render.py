"""A typed Scenario back to the Calico YAML it came from: one document per resource, then the meshsim
Scenario document (hosts, workloads, timers, events).

Owns `scenario_yaml(scenario) -> str` and `resource_dict(resource)`. Field names and defaults are
Calico's (api/pkg/apis/projectcalico/v3); a field at its default is left out, so the output reads like
what `calicoctl get -o yaml` users write. `load_scenario` on the text gives back an equal Scenario (the
tests check this for every shipped scenario), which is what lets `meshsim compare` write the designs it
builds (route reflectors, full mesh, resized clusters) as files that `meshsim validate`, `peers` and
`run` read like any other. Pure: returns text.
"""

from __future__ import annotations

from typing import Any

import yaml

from meshsim.model.resources import (
    CALICO_API_VERSIONS,
    DEFAULT_BLOCK_SIZE,
    MESHSIM_API_VERSION,
    BGPConfiguration,
    BGPPeer,
    BlockAffinity,
    IPAMConfiguration,
    IPPool,
    Node,
    Scenario,
    WorkloadEndpoint,
)

API = CALICO_API_VERSIONS[0]


def _duration(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000):d}ms"


def _pool(p: IPPool) -> dict[str, Any]:
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
    return {"apiVersion": API, "kind": "IPPool", "metadata": {"name": p.name}, "spec": spec}


def node_dict(n: Node) -> dict[str, Any]:
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
    return {"apiVersion": API, "kind": "Node", "metadata": meta, "spec": {"bgp": bgp}}


def bgpconfig_dict(c: BGPConfiguration) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeToNodeMeshEnabled": c.node_to_node_mesh_enabled, "asNumber": c.as_number}
    if c.listen_port != 179:
        spec["listenPort"] = c.listen_port
    if c.log_severity_screen != "Info":
        spec["logSeverityScreen"] = c.log_severity_screen
    return {"apiVersion": API, "kind": "BGPConfiguration", "metadata": {"name": c.name}, "spec": spec}


def bgppeer_dict(p: BGPPeer) -> dict[str, Any]:
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
    return {"apiVersion": API, "kind": "BGPPeer", "metadata": {"name": p.name}, "spec": spec}


def _ipam(c: IPAMConfiguration) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "IPAMConfiguration", "metadata": {"name": "default"},
            "spec": {"strictAffinity": c.strict_affinity, "maxBlocksPerHost": c.max_blocks_per_host}}


def _affinity(a: BlockAffinity) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "BlockAffinity", "metadata": {"name": a.name},
            "spec": {"node": a.node, "cidr": str(a.cidr), "state": a.state}}


def _endpoint(w: WorkloadEndpoint) -> dict[str, Any]:
    spec: dict[str, Any] = {"node": w.node, "pod": w.pod}
    if w.interface_name is not None:
        spec["interfaceName"] = w.interface_name
    spec["ipNetworks"] = [str(n) for n in w.ip_networks]
    return {"apiVersion": API, "kind": "WorkloadEndpoint",
            "metadata": {"name": w.name, "namespace": w.namespace}, "spec": spec}


def resource_dict(resource: Any) -> dict[str, Any]:
    """One typed resource as the mapping Calico's YAML holds (what a timeline's `apply` carries)."""
    match resource:
        case IPPool():
            return _pool(resource)
        case Node():
            return node_dict(resource)
        case BGPConfiguration():
            return bgpconfig_dict(resource)
        case BGPPeer():
            return bgppeer_dict(resource)
        case IPAMConfiguration():
            return _ipam(resource)
        case BlockAffinity():
            return _affinity(resource)
        case WorkloadEndpoint():
            return _endpoint(resource)
    raise TypeError(f"not a Calico resource: {type(resource).__name__}")


def scenario_dict(scenario: Scenario) -> dict[str, Any]:
    spec = scenario.spec
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
    out["events"] = [dict(ev.fields) for ev in spec.events]
    return {"apiVersion": MESHSIM_API_VERSION, "kind": "Scenario", "metadata": {"name": spec.name}, "spec": out}


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)


def scenario_yaml(scenario: Scenario, header: str = "") -> str:
    """The whole scenario as multi-document YAML, `header` (comment lines) first."""
    docs: list[dict[str, Any]] = [bgpconfig_dict(scenario.bgp)]
    if scenario.ipam != IPAMConfiguration():
        docs.append(_ipam(scenario.ipam))
    docs += [_pool(p) for p in scenario.pools]
    docs += [bgppeer_dict(p) for p in scenario.peers]
    docs += [node_dict(n) for n in scenario.nodes]
    docs += [_affinity(a) for a in scenario.affinities]
    docs += [_endpoint(w) for w in scenario.endpoints]
    docs.append(scenario_dict(scenario))
    head = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return head + "---\n".join(_dump(d) for d in docs)
