"""A cluster's IPAM state taken from its dump: blocks, affinities, addresses, pods and tunnel addresses exactly as
the datastore holds them, so the emulated tables equal the real nodes' tables.

Owns `load_ipam_state(cluster)`, used by `Cluster.build` when the scenario carries IPAMBlocks:
- every IPAMBlock becomes an AllocationBlock with its affinity (`host:<node>`), its allocations and its order of
  free ordinals; its state is its BlockAffinity's (`state: ""` is confd's "implicitly confirmed"), confirmed when
  the dump has no BlockAffinity for it. A BlockAffinity without an IPAMBlock is an empty claimed block.
- Pods come from the WorkloadEndpoints / v1 Pods of the dump when it has any (an allocation with no pod is a
  leaked address: no workload route); otherwise from the allocations' `namespace`/`pod` attributes. A pod's
  address that IPAM does not hold still gets its workload route (and, outside the node's blocks, its /32).
- A node's tunnel address is its `ipv4IPIPTunnelAddr` (or the allocation of type ipipTunnelAddress for it);
  when IPAM holds no allocation for it, it is an address on tunl0 and nothing more: no block is claimed for it
  (Cluster.originated exports its /32 when it lies in none of the node's blocks).
- Nothing is allocated on top of this state except the Scenario's `spec.workloads` pods.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from meshsim.model.names import veth_name

if TYPE_CHECKING:
    from meshsim.model.cluster import Cluster


def load_ipam_state(cluster: "Cluster") -> None:
    from meshsim.model.cluster import Pod, tunnel_handle

    scenario, ipam = cluster.scenario, cluster.ipam
    node_names = {n.name for n in scenario.nodes}
    states = {a.cidr: a for a in scenario.affinities}
    by_ip: dict[IPv4Address, str] = {}  # address -> the allocation's handle key
    pod_attrs: dict[str, tuple[str, str, str]] = {}  # handle key -> (namespace, pod, node)
    for block in scenario.ipam_blocks:
        aff = states.get(block.cidr)
        state = aff.state if aff is not None and aff.node == block.affinity else "confirmed"
        allocations = []
        for a in block.allocations:
            ip = block.address(a.ordinal)
            node = a.node or block.affinity or "?"
            if a.type == "ipipTunnelAddress" and a.node:
                key = tunnel_handle(a.node)
            elif a.namespace and a.pod:
                key = f"{a.namespace}/{a.pod}"
                if key in pod_attrs or key in ipam.allocations:
                    key = f"{key}#{ip}"
                pod_attrs[key] = (a.namespace, a.pod, node)
            else:
                key = f"{a.handle or 'handle'}@{ip}"
            if key in ipam.allocations:
                key = f"{key}@{ip}"
            allocations.append((a.ordinal, key, node))
            by_ip[ip] = key
        ipam.load_block(block.cidr, block.affinity, state, block.unallocated, allocations)
    for aff in scenario.affinities:
        if aff.cidr not in ipam.blocks and aff.state != "pendingDeletion":
            ipam.load_block(aff.cidr, aff.node, aff.state, None, ())

    if scenario.endpoints:
        for wep in scenario.endpoints:
            for i, net in enumerate(wep.ip_networks):
                ip = net.network_address
                handle = f"{wep.namespace}/{wep.pod}" + (f"#{i}" if i else "")
                old = by_ip.get(ip)
                if old is not None:
                    ipam.rekey(old, handle, wep.node)
                    by_ip[ip] = handle
                if i == 0:
                    iface = wep.interface_name or veth_name(wep.namespace, wep.pod)
                    cluster.pods[handle] = Pod(wep.namespace, wep.pod, wep.node, ip, iface, pinned=True)
    else:
        for key, (namespace, pod, node) in pod_attrs.items():
            if node not in node_names or key.split("#")[0] in cluster.pods:
                continue
            alloc = ipam.allocations[key]
            cluster.pods[key] = Pod(namespace, pod, node, alloc.ip, veth_name(namespace, pod), pinned=True)

    for node in scenario.nodes:
        handle = tunnel_handle(node.name)
        pinned = node.ipip_tunnel_address
        if pinned is None:
            continue  # IPAM's own tunnel allocation for the node, if any, is already under its handle
        old = by_ip.get(pinned)
        if handle in ipam.allocations and ipam.allocations[handle].ip != pinned:
            ipam.rekey(handle, f"{handle}@stale")  # the Node names another address: the Node wins
        if old is not None and old != handle:
            ipam.rekey(old, handle, node.name)
        elif old is None:
            cluster.tunnels[node.name] = pinned


__all__ = ["load_ipam_state"]
