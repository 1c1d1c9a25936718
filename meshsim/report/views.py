"""The data behind meshsim's text views, for `-o json|yaml` (and the extra columns of `-o wide`).

Owns `plain()` (a model object as JSON-able data: dataclasses as dicts of their fields, addresses and prefixes
as strings, tuples as lists) and one builder per view, so `meshsim X -o json` prints exactly `X_data(...)` and a
script can load it back: `validate_data`, `routes_data`, `peers_data`, `ipam_data`, `show_data`. `wide_tables`
holds the `calicoctl get -o wide` columns of the resources `validate` reads (IPPool, Node, BGPPeer).
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Mapping, Sequence

from meshsim.model.cluster import Cluster
from meshsim.model.peering import Peering
from meshsim.report.calicoctl import columns

OUTPUTS = ("json", "yaml", "wide")


def plain(obj: Any) -> Any:
    """JSON-able data of a model object (its dataclass fields, recursively)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (IPv4Address, IPv4Network)):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return plain(obj.value)
    if isinstance(obj, Mapping):
        return {str(plain(k)): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [plain(x) for x in obj]
        return sorted(items, key=str) if isinstance(obj, (set, frozenset)) else items
    return obj


def validate_data(cluster: Cluster, events: int) -> dict[str, Any]:
    from meshsim.model.peering import session_pairs

    sc = cluster.scenario
    return {
        "files": list(sc.files), "scenario": sc.name, "events": events,
        "resources": {"IPPool": plain(sc.pools), "Node": plain(sc.nodes), "BGPConfiguration": plain(sc.bgp),
                      "BGPPeer": plain(sc.peers), "IPAMConfiguration": plain(sc.ipam),
                      "BlockAffinity": plain(sc.affinities), "WorkloadEndpoint": plain(sc.endpoints)},
        "blocks": len(cluster.ipam.blocks), "pods": len(cluster.pods),
        "sessions": len(session_pairs(cluster.peerings())),
    }


def routes_data(tables: Mapping[str, Any], names: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each node's expected table: its routes' fields and the `ip route` line."""
    return {name: [{**plain(r), "line": r.render_ip()} for r in tables[name].routes] for name in names}


def _passive_side(peerings: Mapping[str, list[Peering]], p: Peering) -> str:
    if p.passive:
        return "this node"
    back = next((q for q in peerings.get(p.peer_node or "", []) if q.peer_node == p.node
                 and q.peer_address == p.local_address), None)
    return "peer" if back is not None and back.passive else "neither"


def peers_data(peerings: Mapping[str, list[Peering]], only: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every node's peerings as confd computes them, with the PEER TYPE and PASSIVE SIDE columns."""
    return {node: [{**plain(p), "type": p.type, "passive_side": _passive_side(peerings, p)} for p in lst]
            for node, lst in peerings.items() if only is None or node == only}


def peers_wide(peerings: Mapping[str, list[Peering]], only: str | None = None) -> str:
    """The peers table and where each session goes from and to: LOCAL ADDRESS (`source address`) and the
    peer's PORT."""
    rows = []
    for node, lst in peers_data(peerings, only).items():
        for p in lst:
            rows.append([node, p["name"], p["peer_address"], p["peer_node"] or "(external)", p["type"],
                         f"AS {p['local_as']}->{p['peer_as']}", p["passive_side"],
                         f"rr client (cluster {p['cluster_id']})" if p["rr_client"] else "", p["local_address"],
                         str(p["peer_port"] or 179)])
    return columns(["NODE", "PROTOCOL", "PEER ADDRESS", "PEER NODE", "PEER TYPE", "AS", "PASSIVE SIDE", "RR",
                    "LOCAL ADDRESS", "PORT"], rows)


def ipam_data(cluster: Cluster) -> dict[str, Any]:
    """Pools, blocks (affinity, state, use) and borrowed addresses, as `meshsim ipam` prints them."""
    blocks = []
    for b in sorted(cluster.ipam.blocks.values(), key=lambda b: b.cidr):
        blocks.append({"cidr": str(b.cidr), "pool": b.pool, "affinity": b.affinity, "state": b.state, "size": b.size,
                       "in_use": b.in_use, "free": b.free})
    borrowed = []
    for a in cluster.ipam.borrowed():
        block = cluster.ipam.blocks.get(a.block)
        borrowed.append({**plain(a), "block_affinity": block.affinity if block else None,
                         "pod": next((p.key for p in cluster.pods.values() if p.ip == a.ip), None)})
    return {"pools": plain(cluster.scenario.pools), "blocks": blocks, "borrowed": borrowed,
            "pods": plain(list(cluster.pods.values()))}


def ipam_wide(cluster: Cluster) -> str:
    """The block table with the pool and the pods on each block (`calicoctl ipam show --show-blocks` has no
    wide form; these are the columns `calicoctl get blockaffinity -o wide` and WorkloadEndpoints add)."""
    data = ipam_data(cluster)
    pods: dict[str, list[str]] = {}
    for p in data["pods"]:
        for b in data["blocks"]:
            if IPv4Address(p["ip"]) in IPv4Network(b["cidr"]):
                pods.setdefault(b["cidr"], []).append(f"{p['namespace']}/{p['name']}")
    rows = [[b["cidr"], b["pool"], b["affinity"] or "(none)", b["state"], str(b["size"]), str(b["in_use"]),
             str(b["free"]), ",".join(pods.get(b["cidr"], [])) or "-"] for b in data["blocks"]]
    return columns(["CIDR", "POOL", "AFFINITY", "STATE", "IPS TOTAL", "IPS IN USE", "IPS FREE", "PODS"], rows)


def wide_tables(cluster: Cluster) -> str:
    """`calicoctl get ippool|node|bgppeer -o wide` for the scenario's resources."""
    sc = cluster.scenario
    out = columns(["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT", "SELECTOR"],
                  [[p.name, str(p.cidr), str(p.nat_outgoing).lower(), p.ipip_mode, p.vxlan_mode,
                    str(p.disabled).lower(), str(p.disable_bgp_export).lower(), p.node_selector] for p in sc.pools])
    out += "\n" + columns(["NAME", "ASN", "IPV4", "IPV6"],
                          [[n.name, str(n.asn) if n.asn else f"({sc.bgp.as_number})", n.interface_address, ""]
                           for n in sc.nodes])
    if sc.peers:
        out += "\n" + columns(["NAME", "PEERIP", "NODE", "ASN"],
                              [[p.name, str(p.peer_ip or ""),
                                p.node or p.node_selector or "(global)", str(p.as_number or "")] for p in sc.peers])
    return out


def show_data(state: Any, command: Any, dialect: str) -> Any:
    """`meshsim show -o json`: the protocols, the paths (in BIRD's order) or the status of a BirdState."""
    from meshsim.report.birdtable import network_order, path_order

    if command.what == "protocols":
        return [{**plain(p), "stats": plain(p.stats_for(dialect))} for p in state.protocols
                if command.name is None or p.name == command.name]
    if command.what == "route":
        from meshsim.report.birdc import select_networks

        nets = select_networks(state, command)
        return [plain(r) for n in network_order(nets, dialect) for r in path_order(nets[n])
                if (command.protocol is None or r.protocol == command.protocol) and (r.primary or not command.primary)]
    return {"router_id": str(state.facts.router_id), "hostname": state.hostname, "started_at": state.started_at}
