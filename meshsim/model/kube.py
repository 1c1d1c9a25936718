"""Reading the Kubernetes objects Calico reads in a Kubernetes-datastore cluster: v1 Node, Pod, Service, Endpoints and
Secret, as `kubectl get ... -o yaml` prints them.

Owns one lenient reader per kind: the fields meshsim uses are checked (type and shape), everything else in the
object (status conditions, managedFields, images, volumes, ...) is ignored, since kubectl prints far more than
Calico reads. What each reads, after Calico v3.28:
- Node: libcalico-go lib/backend/k8s/resources/node.go K8sNodeToCalico: the `projectcalico.org/IPv4Address`,
  `IPv4IPIPTunnelAddr`, `RouteReflectorClusterID` and `ASNumber` annotations; labels are the Calico labels of
  the `projectcalico.org/labels` annotation overlaid with the Kubernetes labels (mergeCalicoAndK8sLabels).
- Pod: lib/backend/k8s/conversion (podToDefaultWorkloadEndpoint, getPodIPs, IsFinished): host-network and
  unscheduled pods have no endpoint, finished pods (Succeeded, Failed, Completed) hold no address; the addresses
  come from status.podIPs, status.podIP, then the `cni.projectcalico.org/podIPs` / `podIP` annotations; the
  host-side veth is named from namespace and pod (VethNameForWorkload).
- Service and Endpoints: confd pkg/backends/calico/routes.go (the route generator): type, clusterIP,
  externalIPs, loadBalancerIP, status.loadBalancer.ingress, externalTrafficPolicy; ready addresses and their
  nodeName.
- Secret: data (base64) and stringData, for BGP passwords (confd secret_watcher.go).
Pure: no asyncio, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from meshsim.model.calico import Reading, check_name, is_ipv6, metadata, tunnel_address
from meshsim.model.names import veth_name
from meshsim.model.resources import Node, Origin, Secret, Service, ServiceEndpoints, WorkloadEndpoint
from meshsim.model.yamldoc import Doc

ANNOTATION_IPV4 = "projectcalico.org/IPv4Address"
ANNOTATION_TUNNEL = "projectcalico.org/IPv4IPIPTunnelAddr"
ANNOTATION_CLUSTER_ID = "projectcalico.org/RouteReflectorClusterID"
ANNOTATION_ASN = "projectcalico.org/ASNumber"
ANNOTATION_LABELS = "projectcalico.org/labels"
ANNOTATION_POD_IP = "cni.projectcalico.org/podIP"
ANNOTATION_POD_IPS = "cni.projectcalico.org/podIPs"
FINISHED_PHASES = ("Succeeded", "Failed", "Completed")


def _annotations(doc: Doc) -> dict[str, Any]:
    return doc.mapping("metadata.annotations")


def k8s_node(doc: Doc, origin: Origin, reading: Reading) -> Node | None:
    name = metadata(doc)
    annotations = _annotations(doc)
    field = ("metadata", "annotations", ANNOTATION_IPV4)  # annotation keys hold dots: tuple paths
    if annotations.get(ANNOTATION_IPV4) in (None, ""):
        reading.no_bgp_nodes.append(name)
        return None
    address, subnet = doc.parse_interface(field, annotations[ANNOTATION_IPV4])
    labels: dict[str, str] = {}
    calico_labels = annotations.get(ANNOTATION_LABELS)
    if calico_labels not in (None, ""):
        try:
            parsed = json.loads(calico_labels) if isinstance(calico_labels, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise doc.error(("metadata", "annotations", ANNOTATION_LABELS), "is not a JSON object of labels",
                            expected='{"key": "value", ...}', got=calico_labels)
        labels.update(parsed)
    labels.update(doc.labels("metadata.labels"))
    asn = None
    if annotations.get(ANNOTATION_ASN) not in (None, ""):
        text = annotations[ANNOTATION_ASN]
        asn = _asn(text)
        if asn is None:
            raise doc.error(("metadata", "annotations", ANNOTATION_ASN), "is not an AS number",
                            expected="an integer 1..4294967295 or the dotted form 1.10", got=text)
    cluster_id = None
    if annotations.get(ANNOTATION_CLUSTER_ID) not in (None, ""):
        cluster_id = doc.parse_address(("metadata", "annotations", ANNOTATION_CLUSTER_ID),
                                       annotations[ANNOTATION_CLUSTER_ID])
    tunnel = tunnel_address(doc, ("metadata", "annotations", ANNOTATION_TUNNEL))
    return Node(name=name, address=address, subnet=subnet, labels=tuple(sorted(labels.items())), asn=asn,
                rr_cluster_id=cluster_id, ipip_tunnel_address=tunnel, origin=origin)


def _asn(text: Any) -> int | None:
    """numorstring.ASNumberFromString: "64512" or the dotted "1.10" (1 * 65536 + 10)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.isdigit() and len(text) <= 10:
        value = int(text)
    elif isinstance(text, str) and text.count(".") == 1 and all(p.isdigit() and len(p) <= 5 for p in text.split(".")):
        hi, lo = (int(p) for p in text.split("."))
        if hi >= 1 << 16 or lo >= 1 << 16:
            return None
        value = (hi << 16) + lo
    else:
        return None
    return value if 1 <= value <= 4294967295 else None


def pod(doc: Doc, origin: Origin, reading: Reading) -> WorkloadEndpoint | None:
    name = metadata(doc)
    namespace = doc.string("metadata.namespace", "default") or "default"
    check_name(doc, "metadata.namespace", namespace)
    if doc.boolean("spec.hostNetwork", False):
        reading.notes.setdefault("host-network pods", []).append(f"{namespace}/{name}")
        return None
    node_name = doc.string("spec.nodeName")
    if not node_name:
        return None  # not scheduled: no endpoint yet
    check_name(doc, "spec.nodeName", node_name)
    annotations = _annotations(doc)
    if doc.raw("metadata.deletionTimestamp") is not None and annotations.get(ANNOTATION_POD_IP) == "":
        return None  # being deleted, Calico CNI already took its address back
    if doc.string("status.phase") in FINISHED_PHASES:
        return None
    texts: list[tuple[str, Any]] = []
    pod_ips = doc.sequence("status.podIPs")
    if pod_ips:
        for i, _entry in enumerate(pod_ips):
            doc.mapping(f"status.podIPs.{i}")
            texts.append((f"status.podIPs.{i}.ip", doc.raw(f"status.podIPs.{i}.ip")))
    elif doc.raw("status.podIP") not in (None, ""):
        texts.append(("status.podIP", doc.raw("status.podIP")))
    elif annotations.get(ANNOTATION_POD_IPS) not in (None, ""):
        value = annotations[ANNOTATION_POD_IPS]
        if not isinstance(value, str):
            raise doc.error(("metadata", "annotations", ANNOTATION_POD_IPS), "must be a string", got=value)
        texts += [(("metadata", "annotations", ANNOTATION_POD_IPS), ip.strip()) for ip in value.split(",")]
    elif annotations.get(ANNOTATION_POD_IP) not in (None, ""):
        texts.append((("metadata", "annotations", ANNOTATION_POD_IP), annotations[ANNOTATION_POD_IP]))
    nets = []
    for fieldpath, text in texts:  # fieldpath: text or a tuple path
        if is_ipv6(text):
            reading.ipv6["Pod address"] += 1
            continue
        if isinstance(text, str) and "/" not in text:
            text = f"{text}/32"
        net = doc.parse_network(fieldpath, text, strict=False)
        nets.append(IPv4Network(f"{net.network_address}/32"))
    if not nets:
        return None
    return WorkloadEndpoint(name=f"{node_name}-k8s-{name}-eth0", namespace=namespace, node=node_name, pod=name,
                            interface_name=veth_name(namespace, name), ip_networks=tuple(nets), origin=origin)


SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def _ipv4_list(doc: Doc, fieldpath: str, reading: Reading, what: str) -> tuple[IPv4Address, ...]:  # noqa: D103
    out = []
    for i, ip in enumerate(doc.sequence(fieldpath)):
        if is_ipv6(ip):
            reading.ipv6[what] += 1
            continue
        out.append(doc.parse_address(f"{fieldpath}.{i}", ip))
    return tuple(out)


def service(doc: Doc, origin: Origin, reading: Reading) -> Service:
    name = metadata(doc)
    namespace = doc.string("metadata.namespace", "default") or "default"
    kind = doc.choice("spec.type", SERVICE_TYPES, "ClusterIP")
    cluster_ip = doc.string("spec.clusterIP") or None
    if cluster_ip is not None and cluster_ip != "None" and not is_ipv6(cluster_ip):
        doc.parse_address("spec.clusterIP", cluster_ip)
    lb_ip = doc.raw("spec.loadBalancerIP")
    ingress = []
    for i, _entry in enumerate(doc.sequence("status.loadBalancer.ingress")):
        ip = doc.raw(f"status.loadBalancer.ingress.{i}.ip")
        if ip in (None, ""):
            continue
        if is_ipv6(ip):
            reading.ipv6["Service address"] += 1
            continue
        if isinstance(ip, str) and ip.endswith("/32"):
            ip = ip[:-3]
        ingress.append(doc.parse_address(f"status.loadBalancer.ingress.{i}.ip", ip))
    return Service(
        name=name, namespace=namespace, type=kind, cluster_ip=cluster_ip,
        external_ips=_ipv4_list(doc, "spec.externalIPs", reading, "Service address"),
        load_balancer_ip=doc.parse_address("spec.loadBalancerIP", lb_ip) if lb_ip not in (None, "") and
        not is_ipv6(lb_ip) else None,
        ingress_ips=tuple(ingress),
        external_traffic_policy=doc.choice("spec.externalTrafficPolicy", ("Cluster", "Local"), "Cluster"),
        origin=origin)


def endpoints(doc: Doc, origin: Origin, reading: Reading) -> ServiceEndpoints:
    name = metadata(doc)
    namespace = doc.string("metadata.namespace", "default") or "default"
    addresses = []
    for i, _subset in enumerate(doc.sequence("subsets")):
        for j, _addr in enumerate(doc.sequence(f"subsets.{i}.addresses")):
            base = f"subsets.{i}.addresses.{j}"
            ip = doc.string(f"{base}.ip", required=True)
            node_name = doc.string(f"{base}.nodeName") or None
            addresses.append((ip or "", node_name))
    return ServiceEndpoints(name=name, namespace=namespace, addresses=tuple(addresses), origin=origin)


def secret(doc: Doc, origin: Origin, reading: Reading) -> Secret:
    name = metadata(doc)
    namespace = doc.string("metadata.namespace", "default") or "default"
    values: dict[str, str] = {}
    for key, value in doc.mapping("data").items():
        if not isinstance(value, str):
            raise doc.error(f"data.{key}", "must be base64 text", got="<hidden>")
        try:
            values[str(key)] = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise doc.error(f"data.{key}", "is not base64 of UTF-8 text (the value is not shown)",
                            expected="base64, as kubectl prints a Secret's data") from None
    for key, value in doc.mapping("stringData").items():
        if not isinstance(value, (str, int)):
            raise doc.error(f"stringData.{key}", "must be a string", got="<hidden>")
        values[str(key)] = str(value)
    return Secret(name=name, namespace=namespace, data=tuple(sorted(values.items())), origin=origin)


__all__ = ["k8s_node", "pod", "service", "endpoints", "secret", "ANNOTATION_IPV4", "ANNOTATION_TUNNEL"]
