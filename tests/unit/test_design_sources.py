"""Design variants of the user's own files (meshsim.model.sources): a variant is the user's documents with only the
design's changes made, so what the files say beyond the design (services, communities, filters, passwords, IPAM
state, kinds meshsim reads past, fields it does not model) is still there, and loads as the design's model."""

from __future__ import annotations

import dataclasses

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
from meshsim.model.generate import resized
from meshsim.model.loader import load_scenario_text
from meshsim.model.resources import Event, SecretKeyRef, load_scenario
from meshsim.model.sources import ADDED, Sources, derive
from meshsim.model.timeline import parse_timeline
from meshsim.model.yamldoc import document_texts
from meshsim.oracle.expected import expected_tables
from meshsim.run.compare import plan
from tests.conftest import SCENARIOS, node_doc, pool_doc, scenario_doc

ALL = sorted(SCENARIOS.rglob("*.yaml"))
CTL = SCENARIOS / "dumps" / "calicoctl-v3.yaml"
KDD = SCENARIOS / "dumps" / "kubectl-kdd.yaml"


def _strip(sc):
    events = tuple(dataclasses.replace(e, line=None) for e in sc.spec.events)
    return dataclasses.replace(sc, files=(), spec=dataclasses.replace(sc.spec, events=events))


def _load(docs: Sources):
    return load_scenario_text(docs.text("a variant"), "variant.yaml")


def _variant(path, design):
    user = load_scenario([path])
    model = design(user)
    docs = derive(Sources.read([path]), user, model)
    return user, model, docs, _load(docs)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_a_variant_with_no_change_is_the_users_cluster(path):
    user = load_scenario([path])
    docs = derive(Sources.read([path]), user, user)
    assert _strip(_load(docs)) == _strip(user)  # load warnings included: every document is still there
    assert docs.changes in ((), ("added the Scenario document",))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_the_other_design_loads_as_the_designs_model(path):
    def other(sc):
        if design_of(sc) == "rr":
            return full_mesh_design(sc)
        return route_reflector_design(sc, pick_reflectors(sc, 1).names)

    user, model, docs, back = _variant(path, other)
    assert _strip(back) == _strip(model)
    assert design_of(back) != design_of(user)
    assert docs.changes and all(d.notes for d in docs.docs if d.path == ADDED)


def test_rr_variant_of_the_kubectl_dump_keeps_services_filters_passwords_and_ipam_state():
    user, _, docs, rr = _variant(KDD, lambda sc: route_reflector_design(sc, ("k8s-cp-1",)))
    assert design_of(rr) == "rr" and reflectors_of(rr) == ("k8s-cp-1",)
    assert not rr.bgp.node_to_node_mesh_enabled
    assert rr.bgp.service_cluster_ips == user.bgp.service_cluster_ips != ()
    assert rr.bgp.service_loadbalancer_ips == user.bgp.service_loadbalancer_ips != ()
    assert rr.bgp.prefix_advertisements == user.bgp.prefix_advertisements != ()
    tor = next(p for p in rr.peers if p.name == "tor-a")
    assert tor.password == "s3cr3t-tor" and tor.filters == ("no-node-pod-routes-to-tor",)
    assert rr.filters == user.filters != () and rr.secrets == user.secrets != ()
    assert rr.services == user.services != () and rr.service_endpoints == user.service_endpoints != ()
    assert rr.ipam_blocks == user.ipam_blocks != () and rr.ipam_handles == user.ipam_handles != ()
    assert rr.endpoints == user.endpoints != () and rr.warnings == user.warnings
    # Calico refuses nodeMeshMaxRestartTime with the mesh off: it moves to the peering that replaces the mesh
    assert rr.bgp.node_mesh_max_restart_time is None
    assert next(p for p in rr.peers if p.name == RR_PEER.name).max_restart_time == 120.0
    # the Kubernetes Node gets the cluster ID where calico-node reads it, and keeps what meshsim does not model
    node, original = docs.resource(("Node", "k8s-cp-1")), Sources.read([KDD]).resource(("Node", "k8s-cp-1"))
    assert node["apiVersion"] == "v1"
    assert node["metadata"]["annotations"]["projectcalico.org/RouteReflectorClusterID"] == str(DEFAULT_CLUSTER_ID)
    assert node["metadata"]["labels"]["route-reflector"] == "true"
    assert node["status"] == original["status"] and node["spec"] == original["spec"]
    pool = docs.resource(("IPPool", "loadbalancer-pool"))
    assert pool["spec"]["allowedUses"] == ["LoadBalancer"]  # not modelled, still as printed
    assert "meshsim: Node k8s-cp-1: annotation projectcalico.org/RouteReflectorClusterID 244.0.0.1" in docs.text()


def test_rr_variant_of_the_calicoctl_dump_keeps_service_ips_and_what_meshsim_reads_past():
    user, _, docs, rr = _variant(CTL, lambda sc: route_reflector_design(sc, ("cp-1",)))
    assert rr.bgp.service_cluster_ips == user.bgp.service_cluster_ips != ()
    assert rr.endpoints == user.endpoints != ()
    assert [n.ipip_tunnel_address for n in rr.nodes] == [n.ipip_tunnel_address for n in user.nodes]
    assert rr.warnings == user.warnings != ()  # the FelixConfigurations, Profiles, ... are still in the file
    assert "kind: FelixConfiguration" in docs.text()
    node = docs.resource(("Node", "cp-1"))
    assert node["spec"]["bgp"]["routeReflectorClusterID"] == "244.0.0.1"
    assert node["spec"]["orchRefs"] == [{"nodeName": "cp-1", "orchestrator": "k8s"}]


@pytest.mark.parametrize("path", [CTL, KDD], ids=lambda p: p.name)
def test_the_rr_variant_routes_every_client_as_the_users_cluster_does(path):
    """Route reflection keeps next hops (RFC 4456 §10): a client's table is the same in both designs."""
    user = load_scenario([path])
    reflector = user.nodes[0].name
    _, _, _, rr = _variant(path, lambda sc: route_reflector_design(sc, (reflector,)))
    before, after = expected_tables(Cluster.build(user)), expected_tables(Cluster.build(rr))
    clients = [n.name for n in user.nodes if n.name != reflector]
    for node in clients:
        assert after[node].render_ip() == before[node].render_ip()
        assert "via" in before[node].render_ip()  # it does learn routes from the others


@pytest.fixture
def rr_with_password(write_yaml):
    """Two reflectors whose BGPPeer carries a password and a restart time, two clients, a ToR."""
    nodes = [node_doc("rr1", "192.168.1.1/24", {"route-reflector": "true"}, cluster_id="244.0.0.1"),
             node_doc("rr2", "192.168.1.2/24", {"route-reflector": "true"}, cluster_id="244.0.0.1"),
             node_doc("c1", "192.168.1.3/24"), node_doc("c2", "192.168.1.4/24")]
    docs = ["apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
            "spec: {nodeToNodeMeshEnabled: false, serviceClusterIPs: [{cidr: 10.96.0.0/12}]}\n",
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-with-route-reflectors}\n"
            "spec: {nodeSelector: all(), peerSelector: route-reflector == 'true', maxRestartTime: 90s,\n"
            "       password: {secretKeyRef: {name: bgp, key: mesh}}}\n",
            "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
            "spec: {peerIP: 192.168.1.254, asNumber: 65001}\n",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\n"
            "stringData: {mesh: m3sh}\n"]
    return write_yaml(pool_doc(), *docs, *nodes, scenario_doc())


def test_the_mesh_of_an_rr_cluster_keeps_its_password_and_restart_time(rr_with_password):
    user, model, docs, mesh = _variant(rr_with_password, full_mesh_design)
    assert _strip(mesh) == _strip(model)
    assert mesh.bgp.node_to_node_mesh_enabled and [p.name for p in mesh.peers] == ["tor"]
    assert mesh.bgp.node_mesh_password_ref == SecretKeyRef("bgp", "mesh") and mesh.bgp.node_mesh_password == "m3sh"
    assert mesh.bgp.node_mesh_max_restart_time == 90.0
    assert mesh.bgp.service_cluster_ips == user.bgp.service_cluster_ips
    assert {n.name: n.label_map.get("route-reflector") for n in mesh.nodes}["rr1"] == "true"  # labels stay
    # and back: the reflector peer gets them again
    again = route_reflector_design(mesh, ("rr1", "rr2"))
    peer = next(p for p in again.peers if p.name == RR_PEER.name)
    assert (peer.password, peer.max_restart_time) == ("m3sh", 90.0)
    assert _strip(_load(derive(docs, mesh, again))) == _strip(again)


def test_migration_of_the_kubectl_dump_applies_the_users_documents():
    user = load_scenario([KDD])
    rr_docs = derive(Sources.read([KDD]), user, route_reflector_design(user, ("k8s-cp-1", "k8s-worker-1")))
    rr = _load(rr_docs)
    events = migration_events(user, rr, rr_docs)
    assert [e["label"] for e in events] == ["BGPPeer peer-with-route-reflectors", "k8s-cp-1 becomes a route reflector",
                                           "k8s-worker-1 becomes a route reflector", "turn the mesh off"]
    assert events[1]["resource"]["apiVersion"] == "v1"  # the user's Kubernetes Node, annotated
    sc = dataclasses.replace(user, spec=dataclasses.replace(user.spec, events=tuple(
        Event(i, e["action"], tuple(e.items())) for i, e in enumerate(events))))
    steps = parse_timeline(sc)
    assert steps[1].resource == rr.node("k8s-cp-1")
    assert steps[3].resource == rr.bgp and steps[3].resource.service_cluster_ips  # services stay advertised


def test_a_resized_kubectl_dump_keeps_every_cluster_wide_resource():
    user = load_scenario([KDD])
    gen = resized(user, 5)
    docs = derive(Sources.read([KDD]), user, gen.scenario)
    sc = _load(docs)
    assert _strip(sc) == _strip(gen.scenario)
    assert len(sc.nodes) == 5 and [n.name for n in sc.nodes][:3] == [n.name for n in user.nodes]
    for attr in ("pools", "bgp", "peers", "filters", "secrets", "services", "service_endpoints", "reservations"):
        assert getattr(sc, attr) == getattr(user, attr), attr
    assert next(p for p in sc.peers if p.name == "tor-a").password == "s3cr3t-tor"
    assert sc.ipam_blocks == () and sc.endpoints == () and sc.affinities == ()
    pods = {n: len([w for w in user.endpoints if w.node == n]) for n in ("k8s-cp-1", "k8s-worker-1", "k8s-worker-2")}
    assert {k: v for k, v in sc.spec.workloads if k in pods} == {k: v for k, v in pods.items() if v}
    assert any("IPAM state" in n for n in gen.notes)
    assert docs.resource(("IPPool", "loadbalancer-pool"))["spec"]["allowedUses"] == ["LoadBalancer"]
    Cluster.build(sc)


def test_a_shrunk_cluster_drops_what_its_missing_nodes_held(write_yaml):
    nodes = [node_doc("w1", "192.168.1.1/24"), node_doc("w2", "192.168.1.2/24"), node_doc("w3", "192.168.1.3/24")]
    per_node = ["apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: w3-tor}\n"
                "spec: {node: w3, peerIP: 192.168.1.254, asNumber: 65001}\n",
                "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: node.w3}\n"
                "spec: {listenPort: 1790}\n",
                "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: to-w2}\n"
                "spec: {node: w1, peerIP: 192.168.1.2, asNumber: 64512}\n"]
    path = write_yaml(pool_doc(), *per_node, *nodes, scenario_doc())
    user = load_scenario([path])
    small = resized(user, 2, first=("w3",))
    assert [n.name for n in small.scenario.nodes] == ["w1", "w3"]
    sc = _load(derive(Sources.read([path]), user, small.scenario))
    assert _strip(sc) == _strip(small.scenario)
    assert [p.name for p in sc.peers] == ["w3-tor"] and [c.name for c in sc.node_bgp] == ["node.w3"]
    assert any("BGPPeer to-w2 dropped" in n for n in small.notes)
    big = resized(user, 5)
    sc = _load(derive(Sources.read([path]), user, big.scenario))
    assert _strip(sc) == _strip(big.scenario)
    copies = [g for g, t in big.model_of.items() if t == "w3"]
    assert [p.name for p in sc.peers] == ["w3-tor", "to-w2", *(f"w3-tor-{g}" for g in copies[1:]),
                                          *(f"to-w2-{g}" for g, t in big.model_of.items() if t == "w1" and g != "w1")]
    assert [c.name for c in sc.node_bgp] == [f"node.{g}" for g in copies]


def test_compare_plans_every_design_of_a_dump_from_its_own_documents():
    p = plan([str(KDD)], sizes=[4])
    user = p.user
    assert [c.name for c in p.cases] == ["mesh-3", "rr-3", "mesh-to-rr", "mesh-4", "rr-4"]
    for c in p.cases:
        sc = c.scenario
        assert sc.bgp.service_cluster_ips == user.bgp.service_cluster_ips, c.name
        assert sc.bgp.prefix_advertisements == user.bgp.prefix_advertisements, c.name
        assert sc.filters == user.filters and sc.secrets == user.secrets and sc.services == user.services, c.name
        assert next(x for x in sc.peers if x.name == "tor-a").password == "s3cr3t-tor", c.name
    rr3 = p.case("rr", 3)
    assert rr3.scenario.ipam_blocks == user.ipam_blocks and rr3.docs is not None
    text = rr3.docs.text()
    assert "kind: Secret" in text and "kind: BGPFilter" in text and "kind: IPAMBlock" in text
    mig = next(c for c in p.cases if c.kind == "migration")
    assert mig.scenario.ipam_blocks == user.ipam_blocks
    assert [e.action for e in mig.scenario.spec.events] == ["apply"] * 4


def test_a_migrate_export_keeps_its_ipam_part_until_the_ipam_state_changes(tmp_path):
    from tests.unit.test_import import MIGRATE

    path = tmp_path / "etcd-export.yaml"
    path.write_text(MIGRATE)
    user, model, docs, rr = _variant(path, lambda sc: route_reflector_design(sc, ("n1",)))
    assert _strip(rr) == _strip(model) and rr.ipam_blocks == user.ipam_blocks != ()
    assert rr.affinities == user.affinities and rr.warnings == user.warnings
    assert not any("IPAM state rewritten" in c for c in docs.changes)
    gen = resized(user, 3)
    docs = derive(Sources.read([path]), user, gen.scenario)
    assert _strip(_load(docs)) == _strip(gen.scenario)
    assert any("IPAM state rewritten" in c for c in docs.changes)


def test_a_cluster_in_two_files_becomes_one_variant_file(write_yaml):
    """The usual compare input: a dump plus a Scenario file with the timeline; the variant names each source."""
    timeline = scenario_doc(name="prod", workloads={"worker-1": 3},
                            events="[{action: add-workloads, node: worker-2, count: 5}]")
    extra = write_yaml(timeline)
    user = load_scenario([CTL, extra])
    rr_model = route_reflector_design(user, ("cp-1",))
    docs = derive(Sources.read([CTL, extra]), user, rr_model)
    back = _load(docs)
    assert _strip(back) == _strip(rr_model) and back.name == "prod" and dict(back.spec.workloads) == {"worker-1": 3}
    text = docs.text()
    assert f"# from {CTL}, document 1" in text and f"# from {extra}, document 1" in text


def test_unchanged_documents_are_written_as_the_user_printed_them(tmp_path):
    _, _, docs, _ = _variant(KDD, lambda sc: route_reflector_design(sc, ("k8s-cp-1",)))
    original, text = KDD.read_text(), docs.text()
    pods = original[original.index("# kubectl get pods -A -o yaml"):original.index("---\n# kubectl get services")]
    assert pods in text  # comments, key order and quoting as printed
    assert "# kubectl get ippools,bgpconfigurations" in text  # a changed document keeps its opening comments
    # a document whose text does not split cleanly is written from its values instead
    odd = tmp_path / "odd.yaml"
    odd.write_text(pool_doc() + "--- " + "{apiVersion: projectcalico.org/v3, kind: Node, metadata: {name: a}, "
                   "spec: {bgp: {ipv4Address: 192.168.1.1/24}}}\n")
    assert document_texts(odd.read_text()) is None
    user = load_scenario([odd])
    assert _strip(_load(derive(Sources.read([odd]), user, user))) == _strip(user)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_resized_cluster_loads_as_its_model(path):
    """Grown and shrunk (a shrink over two subnets used to fail looking up a subnet no copy used)."""
    user = load_scenario([path])
    mesh = full_mesh_design(user) if design_of(user) == "rr" else user
    mesh_docs = derive(Sources.read([path]), user, mesh)
    for n in sorted({max(2, len(user.nodes) - 1), len(user.nodes) + 3}):
        try:
            gen = resized(mesh, n)
        except ScenarioError as exc:  # a timeline naming more nodes than n
            assert "timeline names" in str(exc)
            continue
        back = _load(derive(mesh_docs, _load(mesh_docs), gen.scenario))
        assert _strip(back) == _strip(gen.scenario), n
        Cluster.build(back)
