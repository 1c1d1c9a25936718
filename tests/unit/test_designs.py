"""The two designs of one cluster as Calico resources: YAML rendering, reflector choice, the RR and mesh
variants, the live migration's events, and the cluster resized with its timeline replayed by position."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.errors import ScenarioError
from meshsim.model.cluster import Cluster
from meshsim.model.designs import (
    DEFAULT_CLUSTER_ID,
    RR_PEER,
    design_of,
    full_mesh_design,
    migration_events,
    pick_reflectors,
    reflectors_of,
    route_reflector_design,
)
from meshsim.model.generate import cluster_yaml, resized, timeline_nodes
from meshsim.model.peering import compute_peerings, session_pairs
from meshsim.model.render import scenario_yaml
from meshsim.model.resources import Event, load_scenario
from meshsim.model.sources import Sources, derive
from meshsim.model.timeline import parse_timeline
from tests.conftest import SCENARIOS, node_doc, pool_doc, scenario_doc

ZONE = "topology.kubernetes.io/zone"
TOR = ("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
       "spec: {peerIP: 192.168.1.254, asNumber: 65001}\n")


def _strip(sc):
    """A Scenario without what differs between two files holding the same resources."""
    events = tuple(dataclasses.replace(e, line=None) for e in sc.spec.events)
    return dataclasses.replace(sc, files=(), spec=dataclasses.replace(sc.spec, events=events))


def _reload(tmp_path, scenario, name="x.yaml"):
    path = tmp_path / name
    path.write_text(scenario_yaml(scenario))
    return load_scenario([path])


@pytest.mark.parametrize("path", sorted(SCENARIOS.rglob("*.yaml")), ids=lambda p: p.name)
def test_rendered_yaml_loads_back_to_the_same_scenario(tmp_path, path):
    """The renderer writes every modelled resource (what it read past, such as FelixConfigurations, is not in
    the model, so the load warnings about it are not compared; `meshsim.model.sources` keeps those documents)."""
    sc = load_scenario([path])
    back = _reload(tmp_path, sc)
    assert dataclasses.replace(_strip(back), warnings=()) == dataclasses.replace(_strip(sc), warnings=())


@pytest.fixture
def zoned(write_yaml):
    """Six nodes in zones a, b, c over two subnets; the timeline names w1 and w2."""
    nodes = [node_doc("w1", "192.168.1.11/24", {ZONE: "a"}), node_doc("w2", "192.168.1.12/24", {ZONE: "a"}),
             node_doc("w3", "192.168.1.13/24", {ZONE: "a"}), node_doc("w4", "192.168.2.14/24", {ZONE: "b"}),
             node_doc("w5", "192.168.2.15/24", {ZONE: "b", "rr-candidate": "yes"}),
             node_doc("w6", "192.168.1.16/24", {ZONE: "c", "rr-candidate": "yes"})]
    events = "[{action: add-workloads, node: w2, count: 70}, {action: stop-node, node: w1}]"
    return load_scenario([write_yaml(pool_doc(), TOR, *nodes,
                                     scenario_doc(workloads={f"w{i}": 2 for i in range(1, 7)}, events=events))])


def test_meshsim_spreads_reflectors_over_zones_and_leaves_timeline_nodes_alone(zoned):
    choice = pick_reflectors(zoned, 3, avoid=timeline_nodes(zoned))
    assert timeline_nodes(zoned) == ["w2", "w1"]
    assert choice.names == ("w3", "w4", "w6")  # one per zone a, b, c; w1, w2 are in the timeline
    assert "zones a, b, c" in choice.how


def test_selector_picks_the_reflectors(zoned):
    choice = pick_reflectors(zoned, selector="rr-candidate == 'yes'")
    assert choice.names == ("w5", "w6")
    assert "selector" in choice.how
    with pytest.raises(ScenarioError, match="matches only 2 nodes"):
        pick_reflectors(zoned, 3, selector="rr-candidate == 'yes'")
    with pytest.raises(ScenarioError, match="--reflector-selector"):
        pick_reflectors(zoned, selector="rr-candidate ==")
    with pytest.raises(ScenarioError, match="--reflectors"):
        pick_reflectors(zoned, 6)


def test_rr_design_is_calicos_documented_setup(tmp_path, zoned):
    rr = _reload(tmp_path, route_reflector_design(zoned, ("w5", "w6")))
    assert design_of(rr) == "rr" and reflectors_of(rr) == ("w5", "w6")
    for n in rr.nodes:
        if n.name in ("w5", "w6"):
            assert n.rr_cluster_id == DEFAULT_CLUSTER_ID and n.label_map["route-reflector"] == "true"
        else:
            assert n.rr_cluster_id is None and "route-reflector" not in n.label_map
    assert not rr.bgp.node_to_node_mesh_enabled
    assert {p.name for p in rr.peers} == {"tor", RR_PEER.name}
    peer = next(p for p in rr.peers if p.name == RR_PEER.name)
    assert (peer.node_selector, peer.peer_selector) == ("all()", "route-reflector == 'true'")
    # 1 session between the reflectors + 2 x 4 clients
    assert len(session_pairs(compute_peerings(rr))) == 1 + 2 * 4


def test_full_mesh_of_an_rr_cluster_drops_the_rr_peers_and_keeps_the_tor(tmp_path, zoned):
    rr = route_reflector_design(zoned, ("w5", "w6"))
    mesh = _reload(tmp_path, full_mesh_design(rr))
    assert design_of(mesh) == "mesh" and mesh.bgp.node_to_node_mesh_enabled
    assert [p.name for p in mesh.peers] == ["tor"]
    assert len(session_pairs(compute_peerings(mesh))) == 15


def test_migration_events_follow_the_docs_order_and_validate(zoned):
    rr = route_reflector_design(zoned, ("w5", "w6"))
    rr_docs = derive(Sources.read(zoned.files), zoned, rr)
    events = migration_events(zoned, rr, rr_docs)
    assert [e["label"] for e in events] == ["BGPPeer peer-with-route-reflectors", "w5 becomes a route reflector",
                                           "w6 becomes a route reflector", "turn the mesh off"]
    sc = dataclasses.replace(zoned, spec=dataclasses.replace(zoned.spec, events=tuple(
        Event(i, e["action"], tuple(e.items())) for i, e in enumerate(events))))
    steps = parse_timeline(sc)
    assert steps[1].resource.rr_cluster_id == DEFAULT_CLUSTER_ID
    assert steps[3].resource == rr.bgp  # the whole configuration, not just the mesh flag


def test_resized_cluster_copies_the_users_nodes_and_replays_the_timeline_by_position(tmp_path, zoned):
    r = resized(zoned, 14, first=("w5", "w6"))
    sc = _reload(tmp_path, r.scenario)
    names = [n.name for n in sc.nodes]
    assert names[:6] == ["w1", "w2", "w3", "w4", "w5", "w6"] and len(names) == 14
    by = {n.name: n for n in sc.nodes}
    # the first copy of a user node is that node: same name, address, labels
    assert by["w4"].address == IPv4Address("192.168.2.14") and by["w4"].label_map[ZONE] == "b"
    # further copies cycle over the template order: timeline nodes (w2, w1), then `first`, then the rest
    assert [r.model_of[f"node{k}"] for k in range(7, 15)] == ["w2", "w1", "w5", "w6", "w3", "w4", "w2", "w1"]
    assert by["node7"].subnet == IPv4Network("192.168.1.0/24") and by["node7"].label_map[ZONE] == "a"
    assert by["node9"].subnet == IPv4Network("192.168.2.0/24")
    addresses = {n.address for n in sc.nodes}
    assert len(addresses) == 14 and IPv4Address("192.168.1.254") not in addresses  # the ToR's address is kept free
    assert dict(sc.spec.workloads)["node7"] == 2
    assert [dict(e.fields)["node"] for e in sc.spec.events] == ["w2", "w1"]
    assert [p.name for p in sc.peers] == ["tor"]
    parse_timeline(sc)
    Cluster.build(sc)


def test_smaller_sizes_keep_the_timeline_nodes_first(zoned):
    r = resized(zoned, 3, first=("w5",))
    assert [n.name for n in r.scenario.nodes] == ["w1", "w2", "w5"]
    with pytest.raises(ScenarioError, match="timeline names 2 nodes"):
        resized(load_scenario(zoned.files), 1)


def test_a_small_subnet_is_widened_and_said_so(tmp_path, write_yaml):
    sc = load_scenario([write_yaml(pool_doc(), node_doc("a", "192.168.0.1/29"), node_doc("b", "192.168.0.2/29"),
                                   scenario_doc())])
    r = resized(sc, 20)
    assert r.notes == ("subnet 192.168.0.0/29 widened to 192.168.0.0/27 to hold 20 nodes",)
    assert {n.subnet for n in _reload(tmp_path, r.scenario).nodes} == {IPv4Network("192.168.0.0/27")}


@pytest.mark.parametrize("design,n,sessions", [("mesh", 6, 15), ("rr", 6, 1 + 2 * 4), ("rr", 8, 1 + 2 * 6)])
def test_generated_sizes_count_all_nodes_reflectors_included(tmp_path, design, n, sessions):
    path = tmp_path / "g.yaml"
    path.write_text(cluster_yaml("g", n, design=design))
    sc = load_scenario([path])
    assert len(sc.nodes) == n
    assert len(session_pairs(compute_peerings(sc))) == sessions
