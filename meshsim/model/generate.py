"""Generated clusters of any size, as Calico YAML: a full mesh, or route reflectors set up the way
Calico's docs do it (designated nodes with a routeReflectorClusterID and the label
route-reflector=true, one BGPPeer `nodeSelector: all()` / `peerSelector: route-reflector == 'true'`,
nodeToNodeMeshEnabled false). Pure: returns text.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network


def cluster_yaml(name: str, nodes: int, *, design: str = "mesh", reflectors: int = 2, pods: int = 2,
                 hold: str = "9s", keepalive: str = "3s", subnet: str = "192.168.0.0/22",
                 pool: str = "10.244.0.0/16", ipip: str = "Always", cluster_id: str = "244.0.0.1",
                 implementation: str | None = None) -> str:
    """`nodes` worker nodes (node1..), plus `reflectors` RR nodes (rr1..) when design == 'rr'.
    `implementation: bird` runs every node as real BIRD (`meshsim run --isolation netns`)."""
    if design not in ("mesh", "rr"):
        raise ValueError(f"unknown design {design!r}; expected mesh or rr")
    net = IPv4Network(subnet)
    rr = reflectors if design == "rr" else 0
    if nodes + rr + 2 > net.num_addresses:
        raise ValueError(f"{nodes + rr} nodes do not fit in {subnet}")
    docs = []
    if design == "rr":
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
                    "spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}\n")
        docs.append("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-with-route-reflectors}\n"
                    "spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}\n")
    docs.append(f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: default-ipv4-ippool}}\n"
                f"spec: {{cidr: {pool}, blockSize: 26, ipipMode: {ipip}, natOutgoing: true}}\n")
    first = net.network_address + 10

    def addr(i: int) -> IPv4Address:
        return first + i

    for i in range(rr):
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: rr{i + 1}\n"
                    f"  labels: {{route-reflector: 'true'}}\nspec:\n  bgp:\n"
                    f"    ipv4Address: {addr(i)}/{net.prefixlen}\n    routeReflectorClusterID: {cluster_id}\n")
    for i in range(nodes):
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: node{i + 1}}}\n"
                    f"spec: {{bgp: {{ipv4Address: {addr(rr + i)}/{net.prefixlen}}}}}\n")
    workloads = ", ".join(f"node{i + 1}: {pods}" for i in range(nodes))
    hosts = f"  hosts:\n    default: {{implementation: {implementation}}}\n" if implementation else ""
    docs.append(f"apiVersion: meshsim/v1\nkind: Scenario\nmetadata: {{name: {name}}}\n"
                f"spec:\n{hosts}  workloads: {{{workloads}}}\n  timers: {{holdTime: {hold}, keepaliveTime: {keepalive}}}\n")
    return "---\n".join(docs)
