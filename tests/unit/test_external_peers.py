"""External BGP peers on loopback (issue 12, item 12): meshsim never sends traffic to an address a manifest names
unless it created it. In the default mode a BGPPeer whose peerIP is no node gets a 127.x session address of its own
(where a test's own speaker can listen), distinct from every node's; `meshsim run` refuses such a scenario without
`--isolation netns`; netns and compose (declared addresses) keep the peerIP, which they create or refuse."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from meshsim.agent.config import loopback_map, node_configs, peer_loopback_map
from meshsim.errors import RunError
from meshsim.fabric.local import WorkerFabric
from meshsim.fabric.netns import check_isolation
from meshsim.model.cluster import Cluster
from meshsim.model.loopback import loopback_peer_addresses
from meshsim.model.resources import load_scenario
from tests.conftest import node_doc, pool_doc, scenario_doc


def _peer(name: str, ip: str, asn: int = 65001, extra: str = "") -> str:
    return f"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\n" \
           f"spec: {{peerIP: {ip}, asNumber: {asn}{extra}}}\n"


@pytest.fixture
def cluster(write_yaml) -> Cluster:
    return Cluster.build(load_scenario([write_yaml(
        pool_doc(), node_doc("node1", "10.0.0.1/24"), node_doc("node2", "10.0.0.2/24"),
        node_doc("node3", "11.0.0.5/24"),
        _peer("tor", "192.0.2.1"), _peer("tor-b", "198.51.100.1"),
        _peer("clash", "12.0.0.1"),  # 127.0.0.1 is reserved
        _peer("clash-node", "12.0.0.5"),  # 127.0.0.5 is node3's
        _peer("network-form", "203.0.113.0"),
        scenario_doc())]))


def test_external_peers_get_distinct_127_addresses_apart_from_the_nodes(cluster):
    nodes = set(loopback_map(cluster).values())
    peers = peer_loopback_map(cluster)
    assert set(map(str, peers)) == {"192.0.2.1", "198.51.100.1", "12.0.0.1", "12.0.0.5", "203.0.113.0"}
    assert peers[IPv4Address("192.0.2.1")] == IPv4Address("127.0.2.1")  # the last three octets, as for nodes
    assert all(a.is_loopback for a in peers.values())
    assert len(set(peers.values())) == len(peers) and not set(peers.values()) & nodes
    assert IPv4Address("127.0.0.1") not in peers.values()
    assert str(peers[IPv4Address("12.0.0.5")]).startswith("127.253.")
    assert peers[IPv4Address("203.0.113.0")].packed[3] not in (0, 255)


def test_loopback_node_configs_never_point_a_session_at_a_manifest_address(cluster, tmp_path):
    for cfg in node_configs(cluster, bgp_port=17900, http_port=9179, workdir=tmp_path).values():
        for p in cfg.peers:
            assert IPv4Address(p.session_address).is_loopback, (cfg.name, p)
        tor = next(p for p in cfg.peers if p.name.startswith("Global_192_0_2_1") or p.address == "192.0.2.1")
        assert tor.address == "192.0.2.1" and tor.session_address == "127.0.2.1" and tor.port == 179


def test_the_default_fabric_and_the_harness_use_the_loopback_map(cluster, tmp_path):
    fabric = WorkerFabric(cluster, workdir=tmp_path)
    for cfg in fabric.configs().values():
        assert all(IPv4Address(p.session_address).is_loopback for p in cfg.peers)


def test_declared_addresses_keep_the_peer_ip(cluster, tmp_path):
    """netns (the ToR is a gobgpd in a namespace meshsim made at that address) and compose (refused there)."""
    declared = {n.name: n.address for n in cluster.scenario.nodes}
    cfg = node_configs(cluster, bgp_port=179, http_port=9179, workdir=tmp_path, session_addresses=declared)["node1"]
    assert {p.session_address for p in cfg.peers if p.peer_node is None} >= {"192.0.2.1", "198.51.100.1"}


def test_meshsim_run_refuses_external_peers_without_netns(cluster):
    with pytest.raises(RunError, match=r"meshsim never connects to an address it did not create: .*192\.0\.2\.1"):
        check_isolation(cluster, "loopback")
    check_isolation(cluster, "netns")


def test_the_peer_map_rules_alone():
    got = loopback_peer_addresses([IPv4Address("10.1.2.3"), IPv4Address("10.9.2.3"), IPv4Address("10.1.2.255")],
                                  taken=[IPv4Address("127.1.2.3")])
    assert got[IPv4Address("10.9.2.3")] == IPv4Address("127.9.2.3")
    assert str(got[IPv4Address("10.1.2.3")]).startswith("127.253.")
    assert str(got[IPv4Address("10.1.2.255")]).startswith("127.253.")
    assert len(set(got.values())) == 3
    assert loopback_peer_addresses([], taken=[]) == {}


def test_a_node_never_accepts_a_config_pointing_off_loopback(cluster, tmp_path):
    from meshsim.agent import bodies
    from meshsim.agent.http import HttpError
    from meshsim.fabric.base import config_body

    cfg = node_configs(cluster, bgp_port=17900, http_port=9179, workdir=Path(tmp_path))["node1"]
    body = config_body(cfg)
    body["peers"] = [{**p, "filters": list(p["filters"])} for p in body["peers"]]
    bodies.node_config_update(cfg, body)
    body["peers"][0]["session_address"] = "192.0.2.1"
    with pytest.raises(HttpError) as info:
        bodies.node_config_update(cfg, body)
    assert info.value.status == 400 and "127.x" in str(info.value)
