"""Peerings as confd computes them: mesh pairs, passive side, RR clients, protocol names, peer types."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from meshsim.model.cluster import Cluster
from meshsim.model.peering import compute_peerings, protocol_name, session_pairs
from meshsim.model.resources import load_scenario
from tests.conftest import SCENARIOS, node_doc, pool_doc

RR_PEER = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-with-rrs}\n"
           "spec: {nodeSelector: all(), peerSelector: route-reflector == 'true'}\n")
MESH_OFF = ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
            "spec: {nodeToNodeMeshEnabled: false}\n")


def _peerings(write_yaml, *docs):
    return compute_peerings(load_scenario([write_yaml(*docs)]))


def test_protocol_names():
    assert protocol_name("Mesh", IPv4Address("192.168.0.81")) == "Mesh_192_168_0_81"
    assert protocol_name("Global", IPv4Address("10.0.0.1"), 1790) == "Global_10_0_0_1_port_1790"


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_mesh_of_n_gives_n_n_minus_1_over_2_pairs(write_yaml, n):
    nodes = [node_doc(f"n{i}", f"10.0.0.{i + 1}/24") for i in range(n)]
    peerings = _peerings(write_yaml, pool_doc(), *nodes)
    assert len(session_pairs(peerings)) == n * (n - 1) // 2
    for name, lst in peerings.items():
        assert len(lst) == n - 1
        assert all(p.type == "node-to-node mesh" and p.name.startswith("Mesh_") for p in lst)


def test_mesh_passive_side_is_the_string_greater_address(write_yaml):
    # "passive on" when the peer IP is greater than ours, compared as strings (bird.cfg.template)
    peerings = _peerings(write_yaml, pool_doc(), node_doc("a", "10.0.0.9/24"), node_doc("b", "10.0.0.10/24"))
    a_to_b = peerings["a"][0]
    b_to_a = peerings["b"][0]
    assert a_to_b.name == "Mesh_10_0_0_10" and b_to_a.name == "Mesh_10_0_0_9"
    # "10.0.0.9" > "10.0.0.10" as strings, so b is passive toward a and a connects
    assert b_to_a.passive and not a_to_b.passive


def test_route_reflector_design_two_rrs_six_clients():
    sc = load_scenario([SCENARIOS / "rr-2x6.yaml"])
    peerings = compute_peerings(sc)
    rrs = {"rr1", "rr2"}
    clients = {f"node{i}" for i in range(1, 7)}
    pairs = session_pairs(peerings)
    assert len(pairs) == 13  # 2 x 6 client sessions + rr1-rr2
    assert not any(pair <= clients for pair in pairs)  # no client peers with another client
    for c in clients:
        lst = peerings[c]
        assert {p.peer_node for p in lst} == rrs
        assert all(p.name.startswith("Node_") and p.type == "node specific" and not p.rr_client for p in lst)
    for rr in rrs:
        lst = {p.peer_node: p for p in peerings[rr]}
        assert set(lst) == (rrs - {rr}) | clients
        for c in clients:
            assert lst[c].rr_client and lst[c].cluster_id == IPv4Address("244.0.0.1")
        other = lst[(rrs - {rr}).pop()]
        assert not other.rr_client  # same cluster id: plain iBGP non-clients
    assert all(not p.passive for lst in peerings.values() for p in lst)  # only Mesh_ peers are passive in v3.28


def test_route_reflectors_leave_the_mesh(write_yaml):
    peerings = _peerings(write_yaml, pool_doc(), node_doc("rr", "10.0.0.1/24", cluster_id="1.0.0.1"),
                         node_doc("a", "10.0.0.2/24"), node_doc("b", "10.0.0.3/24"))
    assert peerings["rr"] == []
    assert [p.peer_node for p in peerings["a"]] == ["b"]


def test_global_peer_with_peer_ip_and_reverse_peering(write_yaml):
    tor = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
           "spec: {peerIP: 10.0.0.254, asNumber: 65001}\n")
    peerings = _peerings(write_yaml, pool_doc(), MESH_OFF, node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"),
                         tor)
    for name in "ab":
        (p,) = peerings[name]
        assert p.name == "Global_10_0_0_254" and p.type == "global" and p.peer_as == 65001
        assert p.peer_node is None and not p.ibgp


def test_node_specific_peer_and_its_reverse(write_yaml):
    peer = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: a-b}\n"
            "spec: {node: a, peerIP: 10.0.0.2, asNumber: 64512}\n")
    peerings = _peerings(write_yaml, pool_doc(), MESH_OFF, node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"),
                         peer)
    assert [p.name for p in peerings["a"]] == ["Node_10_0_0_2"]
    assert [p.name for p in peerings["b"]] == ["Node_10_0_0_1"]  # reverse peering (client.go second pass)


def test_selector_based_rr_peer_with_labels(write_yaml):
    peerings = _peerings(write_yaml, pool_doc(), MESH_OFF,
                         node_doc("rr", "10.0.0.1/24", {"route-reflector": "true"}, cluster_id="244.0.0.1"),
                         node_doc("a", "10.0.0.2/24"), RR_PEER)
    assert [(p.name, p.rr_client) for p in peerings["rr"]] == [("Node_10_0_0_2", True)]
    assert [(p.name, p.rr_client) for p in peerings["a"]] == [("Node_10_0_0_1", False)]


def test_node_as_number_overrides_global(write_yaml):
    peerings = _peerings(write_yaml, pool_doc(), node_doc("a", "10.0.0.1/24", asn=65010), node_doc("b", "10.0.0.2/24"))
    assert peerings["a"][0].local_as == 65010 and peerings["a"][0].peer_as == 64512
    assert peerings["b"][0].peer_as == 65010 and not peerings["b"][0].ibgp


def test_cluster_peerings_match(write_yaml):
    cluster = Cluster.build(load_scenario([SCENARIOS / "three-node-ipip.yaml"]))
    assert len(session_pairs(cluster.peerings())) == 3
