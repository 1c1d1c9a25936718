"""What the runner (the "datastore") hands one node process: its confd-style configuration.

Owns `NodeConfig` / `PeerConfig` / `LocalState` (JSON round trip) and `node_configs(cluster, ...)`,
which maps the cluster model to one config per node: declared addresses (what route tables and
status show) next to the 127.x session addresses the processes really bind on one machine.
Pure: no asyncio, no clock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from meshsim.oracle.expected import host_view
from meshsim.model.cluster import Cluster
from meshsim.model.loopback import loopback_addresses
from meshsim.model.resources import IPPool


@dataclass(frozen=True)
class PeerConfig:
    name: str  # Mesh_192_168_0_82
    address: str  # declared peer address
    session_address: str  # where the peer's BGP really listens (127.x or the declared address)
    port: int
    asn: int
    passive: bool
    rr_client: bool
    type: str  # node-to-node mesh | node specific | global
    peer_node: str | None


@dataclass(frozen=True)
class LocalState:
    """What IPAM says about this node: its blocks, its pods, what it originates into BGP."""

    blocks: tuple[str, ...] = ()  # every affine block (blackholed)
    affine: tuple[str, ...] = ()  # confirmed affine blocks (calico_aggr)
    workloads: tuple[tuple[str, str], ...] = ()  # (ip, interface)
    originate: tuple[str, ...] = ()

    @classmethod
    def of(cls, cluster: Cluster, node: str) -> "LocalState":
        return cls(
            blocks=tuple(str(b.cidr) for b in cluster.ipam.blocks_of(node)),
            affine=tuple(str(b) for b in cluster.affine_blocks(node)),
            workloads=tuple((str(p.ip), p.interface) for p in cluster.pods_on(node)),
            originate=tuple(str(p) for p in sorted(cluster.originated(node))),
        )

    def to_json(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "affine": list(self.affine),
                "workloads": [list(w) for w in self.workloads], "originate": list(self.originate)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LocalState":
        return cls(blocks=tuple(data.get("blocks", ())), affine=tuple(data.get("affine", ())),
                   workloads=tuple((str(a), str(b)) for a, b in data.get("workloads", ())),
                   originate=tuple(data.get("originate", ())))


@dataclass(frozen=True)
class NodeConfig:
    name: str
    address: str
    subnet: str
    interface: str
    gateway: str
    session_address: str
    bgp_port: int
    http_port: int
    asn: int
    cluster_id: str | None
    hold_time: int
    keepalive_time: int
    pools: tuple[dict[str, Any], ...]
    peers: tuple[PeerConfig, ...]
    local: LocalState
    workdir: str
    log_level: str = "info"
    run_id: str = ""  # which run started this node: a runner refuses to talk to another run's nodes
    dataplane: str = "sim"  # sim: the route table is simulated; kernel: also programmed into the real kernel
    netns: str | None = None  # program that network namespace instead of our own
    http_address: str | None = None  # serve HTTP here instead of on session_address (netns runner: a 127.x address)
    bgp_netns: str | None = None  # run the BGP engine (ExaBGP, BIRD) in this network namespace (`ip netns exec`)

    def to_json(self) -> str:
        data = asdict(self)
        data["local"] = self.local.to_json()
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "NodeConfig":
        data = json.loads(text)
        data["peers"] = tuple(PeerConfig(**p) for p in data["peers"])
        data["pools"] = tuple(data["pools"])
        data["local"] = LocalState.from_json(data["local"])
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "NodeConfig":
        return cls.from_json(Path(path).read_text())

    def ip_pools(self) -> tuple[IPPool, ...]:
        return tuple(IPPool(name=p["name"], cidr=IPv4Network(p["cidr"]), block_size=p["block_size"],
                            ipip_mode=p["ipip_mode"], vxlan_mode=p["vxlan_mode"], disabled=p["disabled"],
                            disable_bgp_export=p["disable_bgp_export"]) for p in self.pools)


def pool_json(pool: IPPool) -> dict[str, Any]:
    return {"name": pool.name, "cidr": str(pool.cidr), "block_size": pool.block_size, "ipip_mode": pool.ipip_mode,
            "vxlan_mode": pool.vxlan_mode, "disabled": pool.disabled, "disable_bgp_export": pool.disable_bgp_export}


def loopback_map(cluster: Cluster) -> dict[str, IPv4Address]:
    """Declared node address -> a 127.x address of its own: 192.168.0.81 -> 127.168.0.81 (the last three
    octets), distinct for every node (meshsim.model.loopback: a clash takes the next free 127.254.x.y)."""
    return loopback_addresses((n.name, n.address) for n in cluster.scenario.nodes)


def node_configs(cluster: Cluster, *, bgp_port: int, http_port: int, workdir: Path,
                 session_addresses: dict[str, IPv4Address] | None = None, log_level: str = "info"
                 ) -> dict[str, NodeConfig]:
    """One NodeConfig per node. `session_addresses` maps node name -> the address its BGP binds
    (default: the 127.x loopback map; the compose runner passes the declared addresses)."""
    sc = cluster.scenario
    sess = session_addresses or loopback_map(cluster)
    by_name = {n.name: n for n in sc.nodes}
    peerings = cluster.peerings()
    pools = tuple(pool_json(p) for p in sc.pools)
    hold = int(round(sc.spec.timers.hold_time))
    keep = int(round(sc.spec.timers.keepalive_time))
    out = {}
    for node in sc.nodes:
        hv = host_view(cluster, node.name)
        peers = []
        for p in peerings[node.name]:
            if p.peer_node is not None:
                session = str(sess[p.peer_node])
            else:
                session = str(p.peer_address)
            peers.append(PeerConfig(name=p.name, address=str(p.peer_address), session_address=session,
                                    port=bgp_port if p.peer_node else (p.peer_port or 179), asn=p.peer_as, passive=p.passive,
                                    rr_client=p.rr_client, type=p.type, peer_node=p.peer_node))
        out[node.name] = NodeConfig(
            name=node.name, address=str(node.address), subnet=str(node.subnet), interface=hv.interface,
            gateway=str(hv.gateway), session_address=str(sess[node.name]), bgp_port=bgp_port, http_port=http_port,
            asn=sc.asn(by_name[node.name]), cluster_id=str(node.rr_cluster_id) if node.rr_cluster_id else None,
            hold_time=hold, keepalive_time=keep, pools=pools, peers=tuple(peers), local=LocalState.of(cluster, node.name),
            workdir=str(workdir / node.name), log_level=log_level,
        )
    return out


__all__ = ["NodeConfig", "PeerConfig", "LocalState", "node_configs", "loopback_map", "field"]
