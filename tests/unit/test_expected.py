"""Expected tables from the model alone: route shapes per ipipMode, propagation through RRs, trace."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from meshsim.oracle.expected import expected_tables, propagate
from meshsim.routes.felix import HostView, bgp_route
from meshsim.model.cluster import Cluster
from meshsim.model.resources import IPPool, load_scenario
from meshsim.oracle.trace import trace
from tests.conftest import SCENARIOS, node_doc, pool_doc, scenario_doc

HOST = HostView("n1", IPv4Address("192.168.0.81"), IPv4Network("192.168.0.0/24"), "eth0", IPv4Address("192.168.0.1"))
BLOCK = IPv4Network("10.244.103.64/26")


def _pool(mode: str) -> IPPool:
    return IPPool(name="p", cidr=IPv4Network("10.244.0.0/16"), ipip_mode=mode)


def test_ipip_always_goes_through_tunl0_onlink():
    r = bgp_route(BLOCK, IPv4Address("192.168.0.82"), _pool("Always"), HOST)
    assert r.render_ip().rstrip() == "10.244.103.64/26 via 192.168.0.82 dev tunl0 proto bird onlink"


def test_cross_subnet_same_subnet_is_native_other_subnet_is_ipip():
    same = bgp_route(BLOCK, IPv4Address("192.168.0.82"), _pool("CrossSubnet"), HOST)
    other = bgp_route(BLOCK, IPv4Address("10.39.0.5"), _pool("CrossSubnet"), HOST)
    assert same.render_ip().rstrip() == "10.244.103.64/26 via 192.168.0.82 dev eth0 proto bird"
    assert other.render_ip().rstrip() == "10.244.103.64/26 via 10.39.0.5 dev tunl0 proto bird onlink"


def test_never_other_subnet_resolves_through_the_gateway():
    same = bgp_route(BLOCK, IPv4Address("192.168.0.82"), _pool("Never"), HOST)
    other = bgp_route(BLOCK, IPv4Address("10.39.0.5"), _pool("Never"), HOST)
    assert same.render_ip().rstrip() == "10.244.103.64/26 via 192.168.0.82 dev eth0 proto bird"
    assert other.render_ip().rstrip() == "10.244.103.64/26 via 192.168.0.1 dev eth0 proto bird"


def test_three_node_expected_table_has_blackhole_workloads_and_remote_blocks():
    cluster = Cluster.build(load_scenario([SCENARIOS / "three-node-ipip.yaml"]))
    table = expected_tables(cluster)["node1"].render_ip().splitlines()
    own = cluster.affine_blocks("node1")[0]
    assert f"blackhole {own} proto bird " in table
    assert table[0] == "default via 192.168.0.1 dev eth0 "
    assert "192.168.0.0/24 dev eth0 proto kernel scope link src 192.168.0.81 " in table
    for other, addr in (("node2", "192.168.0.82"), ("node3", "192.168.0.83")):
        assert f"{cluster.affine_blocks(other)[0]} via {addr} dev tunl0 proto bird onlink " in table
    pods = cluster.pods_on("node1")
    assert [line for line in table if "scope link" in line and "cali" in line] == \
        [f"{p.ip} dev {p.interface} scope link " for p in pods]


def test_borrowed_addresses_are_32_routes_to_the_borrower_even_at_the_block_owner(write_yaml):
    path = write_yaml(pool_doc(cidr="10.244.0.0/25", ipip="Never"), node_doc("a", "10.0.0.1/24"),
                      node_doc("b", "10.0.0.2/24"),
                      node_doc("c", "10.0.0.3/24"), scenario_doc(workloads={"a": 60, "b": 60, "c": 1}))
    cluster = Cluster.build(load_scenario([path]))
    (borrowed,) = cluster.ipam.borrowed()
    owner = cluster.ipam.blocks[borrowed.block].affinity
    tables = expected_tables(cluster)
    line = f"{borrowed.ip} via 10.0.0.3 dev eth0 proto bird "
    assert line in tables[owner].render_ip().splitlines()  # /32 beats the owner's own blackhole
    assert f"blackhole {borrowed.block} proto bird " in tables[owner].render_ip().splitlines()
    other = ({"a", "b"} - {owner}).pop()
    assert line in tables[other].render_ip().splitlines()
    assert f"{borrowed.ip} dev " in tables["c"].render_ip()


def test_rr_clients_learn_everything_with_cluster_list():
    cluster = Cluster.build(load_scenario([SCENARIOS / "rr-2x6.yaml"]))
    learned = propagate(cluster)
    for client in (f"node{i}" for i in range(1, 7)):
        for other in (f"node{i}" for i in range(1, 7)):
            if other == client:
                continue
            entry = learned[client][cluster.affine_blocks(other)[0]]
            assert entry.originator == other and entry.cluster_list == (IPv4Address("244.0.0.1"),)


def test_same_cluster_id_rrs_with_split_clients_do_not_exchange_routes(write_yaml):
    """calico#2735: clients must peer with every RR of a cluster id; split clients lose routes (RFC 4456 §8)."""
    mesh_off = ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
                "spec: {nodeToNodeMeshEnabled: false}\n")
    peers = "".join(
        f"---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {n}}}\n"
        f"spec: {{nodeSelector: group == '{g}', peerSelector: rr == '{g}'}}\n" for n, g in (("p1", "1"), ("p2", "2")))
    rrpeer = ("---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: rr-rr}\n"
              "spec: {nodeSelector: has(rr), peerSelector: has(rr)}\n")
    path = write_yaml(mesh_off, pool_doc(),
                      node_doc("rr1", "10.0.0.1/24", {"rr": "1"}, cluster_id="244.0.0.1"),
                      node_doc("rr2", "10.0.0.2/24", {"rr": "2"}, cluster_id="244.0.0.1"),
                      node_doc("a", "10.0.0.11/24", {"group": "1"}), node_doc("b", "10.0.0.12/24", {"group": "2"}),
                      scenario_doc(workloads={"a": 1, "b": 1}) + peers + rrpeer)
    cluster = Cluster.build(load_scenario([path]))
    learned = propagate(cluster)
    assert cluster.affine_blocks("b")[0] not in learned["a"]
    assert cluster.affine_blocks("a")[0] not in learned["b"]


def test_stopped_node_routes_leave_expected_tables():
    cluster = Cluster.build(load_scenario([SCENARIOS / "three-node-ipip.yaml"]))
    tables = expected_tables(cluster, running=["node1", "node3"])
    assert set(tables) == {"node1", "node3"}
    assert str(cluster.affine_blocks("node2")[0]) not in tables["node1"].render_ip()


def test_trace_two_subnets_without_ipip_drops_at_the_gateway():
    cluster = Cluster.build(load_scenario([SCENARIOS / "two-subnets-no-ipip.yaml"]))
    result = trace(cluster, expected_tables(cluster), "node1-pod-1", "node3-pod-1")
    dst = cluster.find_pod("node3-pod-1").ip
    assert not result.delivered and result.verdict == f"dropped at 10.39.0.1: no route to {dst}"
    ok = trace(cluster, expected_tables(cluster), "node1-pod-1", "node2-pod-1")
    assert ok.delivered


def test_trace_two_subnets_with_cross_subnet_is_delivered_through_ipip():
    cluster = Cluster.build(load_scenario([SCENARIOS / "two-subnets-crosssubnet.yaml"]))
    result = trace(cluster, expected_tables(cluster), "node1-pod-1", "node3-pod-1")
    assert result.delivered and any("IPIP encapsulated to 10.40.0.13" in h.text for h in result.hops)


def test_trace_to_an_unused_address_hits_the_blackhole():
    cluster = Cluster.build(load_scenario([SCENARIOS / "three-node-ipip.yaml"]))
    block = cluster.affine_blocks("node2")[0]
    result = trace(cluster, expected_tables(cluster), "node1-pod-1", str(block.network_address + 40))
    assert not result.delivered and result.verdict.startswith("dropped at node2: blackhole")
