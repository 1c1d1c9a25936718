"""The cluster's IPAM state, its workloads and the Kubernetes objects Calico reads, back to YAML: IPAMConfiguration,
BlockAffinity, IPAMBlock, IPAMHandle, IPReservation, WorkloadEndpoint (crd.projectcalico.org/v1 or
projectcalico.org/v3, as the user's files use), v1 Service, Endpoints and Secret.

Owns one writer per kind, the inverse of meshsim.model.calico_ipam and meshsim.model.kube for what the model
keeps: an IPAMBlock's `allocations` index its `attributes` (one attribute per allocation), a Secret is written
as `data` (base64). `meshsim.model.render.resource_dict` dispatches to them. Pure: returns mappings.
"""

from __future__ import annotations

import base64
from typing import Any

from meshsim.model.resources import (CALICO_API_VERSIONS, BlockAffinity, IPAMBlock, IPAMConfiguration, IPAMHandle,
                                     IPReservation, Secret, Service, ServiceEndpoints, WorkloadEndpoint)

API = CALICO_API_VERSIONS[0]
CORE_API = "v1"


def _doc(kind: str, name: str, spec: dict[str, Any], api: str, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}


def ipam_dict(c: IPAMConfiguration, api: str = API) -> dict[str, Any]:
    kind = "IPAMConfig" if api == CALICO_API_VERSIONS[1] else "IPAMConfiguration"
    return _doc(kind, "default", {"strictAffinity": c.strict_affinity, "maxBlocksPerHost": c.max_blocks_per_host}, api)


def affinity_dict(a: BlockAffinity, api: str = API) -> dict[str, Any]:
    return _doc("BlockAffinity", a.name, {"node": a.node, "cidr": str(a.cidr), "state": "" if a.implicit else a.state},
                api)


def block_dict(b: IPAMBlock, api: str = API) -> dict[str, Any]:
    """An IPAMBlock as the datastore holds it: `allocations` indexes `attributes` (one attribute per allocation)."""
    allocations: list[int | None] = [None] * b.cidr.num_addresses
    attributes = []
    for i, a in enumerate(b.allocations):
        allocations[a.ordinal] = i
        secondary = {k: v for k, v in (("node", a.node), ("namespace", a.namespace), ("pod", a.pod),
                                       ("type", a.type)) if v is not None}
        attr: dict[str, Any] = {}
        if a.handle is not None:
            attr["handle_id"] = a.handle
        if secondary:
            attr["secondary"] = secondary
        attributes.append(attr)
    spec: dict[str, Any] = {"cidr": str(b.cidr)}
    if b.affinity is not None:
        spec["affinity"] = f"host:{b.affinity}"
    spec["allocations"] = allocations
    if b.unallocated is not None:
        spec["unallocated"] = list(b.unallocated)
    spec["attributes"] = attributes
    return _doc("IPAMBlock", b.name, spec, api)


def handle_dict(h: IPAMHandle, api: str = API) -> dict[str, Any]:
    return _doc("IPAMHandle", h.name, {"handleID": h.handle_id, "block": dict(h.blocks)}, api)


def reservation_dict(r: IPReservation, api: str = API) -> dict[str, Any]:
    return _doc("IPReservation", r.name, {"reservedCIDRs": [str(c) for c in r.reserved_cidrs]}, api)


def endpoint_dict(w: WorkloadEndpoint, api: str = API) -> dict[str, Any]:
    spec: dict[str, Any] = {"node": w.node, "pod": w.pod}
    if w.interface_name is not None:
        spec["interfaceName"] = w.interface_name
    spec["ipNetworks"] = [str(n) for n in w.ip_networks]
    return _doc("WorkloadEndpoint", w.name, spec, api, namespace=w.namespace)


# ----------------------------------------------------------------------------------------------
# Kubernetes v1 objects Calico reads


def service_dict(s: Service) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": s.type}
    if s.cluster_ip is not None:
        spec["clusterIP"] = s.cluster_ip
    if s.external_ips:
        spec["externalIPs"] = [str(a) for a in s.external_ips]
    if s.load_balancer_ip is not None:
        spec["loadBalancerIP"] = str(s.load_balancer_ip)
    if s.external_traffic_policy != "Cluster":
        spec["externalTrafficPolicy"] = s.external_traffic_policy
    out = {"apiVersion": CORE_API, "kind": "Service", "metadata": {"name": s.name, "namespace": s.namespace},
           "spec": spec}
    if s.ingress_ips:
        out["status"] = {"loadBalancer": {"ingress": [{"ip": str(a)} for a in s.ingress_ips]}}
    return out


def service_endpoints_dict(e: ServiceEndpoints) -> dict[str, Any]:
    addresses = [{"ip": ip, **({"nodeName": node} if node is not None else {})} for ip, node in e.addresses]
    return {"apiVersion": CORE_API, "kind": "Endpoints", "metadata": {"name": e.name, "namespace": e.namespace},
            "subsets": [{"addresses": addresses}] if addresses else []}


def secret_dict(s: Secret) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in s.data}
    return {"apiVersion": CORE_API, "kind": "Secret", "metadata": {"name": s.name, "namespace": s.namespace},
            "type": "Opaque", "data": data}


__all__ = ["ipam_dict", "affinity_dict", "block_dict", "handle_dict", "reservation_dict", "endpoint_dict",
           "service_dict", "service_endpoints_dict", "secret_dict"]
