"""Calico's BGP features in the pure core: BGPFilter rules and communities in the policy the speaker runs, and the
oracle's expected tables and external-peer routes for filters, communities, services and passwords."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.bgp.filters import (Filter, FilterRule, PrefixCommunities, RouteFacts, communities_for, run_filters)
from meshsim.bgp.policy import ExportContext, export, export_decision, import_check
from meshsim.bgp.rib import Path, PeerInfo
from meshsim.bgp.speaker import Announce, Originate, PeerUp, Speaker, SpeakerConfig
from meshsim.bgp.types import PathAttrs
from meshsim.model.cluster import Cluster
from meshsim.model.peering import session_comes_up
from meshsim.model.resources import load_scenario
from meshsim.oracle.expected import expected_external, expected_tables, propagate
from meshsim.report.metrics import expected_sessions
from tests.conftest import node_doc, pool_doc, scenario_doc

AS = 64512
POOL = IPv4Network("10.244.0.0/16")
BLOCK = IPv4Network("10.244.1.0/26")
ME = IPv4Address("192.168.0.1")


def net(s: str) -> IPv4Network:
    return IPv4Network(s)


def rule(action: str, cidr: str | None = None, op: str | None = None, source: str | None = None,
         iface: str | None = None) -> FilterRule:
    return FilterRule(action, net(cidr) if cidr else None, op, source, iface)


# -- BGPFilter rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op,prefix,matches", [
    ("Equal", "10.0.0.0/16", True), ("Equal", "10.0.1.0/24", False),
    ("NotEqual", "10.0.0.0/16", False), ("NotEqual", "10.0.1.0/24", True),
    ("In", "10.0.1.0/24", True), ("In", "10.0.0.0/16", True), ("In", "10.1.0.0/24", False),
    ("NotIn", "10.1.0.0/24", True), ("NotIn", "10.0.5.0/24", False),
])
def test_match_operators_as_bird_reads_them(op, prefix, matches):
    verdict, _ = run_filters([Filter("f", (rule("Reject", "10.0.0.0/16", op),))], RouteFacts(net(prefix), True))
    assert (verdict == "reject") == matches


def test_first_matching_rule_of_the_first_filter_decides_and_no_match_falls_through():
    f1 = Filter("f1", (rule("Accept", "10.0.0.0/16", "In", source="RemotePeers"), rule("Reject", "10.0.0.0/8", "In")))
    f2 = Filter("f2", (rule("Accept"),))
    assert run_filters([f1, f2], RouteFacts(net("10.0.1.0/24"), True))[0] == "accept"
    assert run_filters([f1, f2], RouteFacts(net("10.0.1.0/24"), False))[0] == "reject"  # not from BGP
    assert run_filters([f1, f2], RouteFacts(net("172.16.0.0/24"), False))[0] == "accept"  # f2's catch-all
    assert run_filters([f1], RouteFacts(net("172.16.0.0/24"), False))[0] is None


def test_interface_patterns_and_undefined_ifname():
    f = [Filter("f", (rule("Reject", iface="eth*"), rule("Accept", iface="*.calico"), rule("Reject", iface="tun?0")))]
    assert run_filters(f, RouteFacts(net("10.0.0.0/24"), True, "eth0"))[0] == "reject"
    assert run_filters(f, RouteFacts(net("10.0.0.0/24"), True, "vxlan.calico"))[0] == "accept"
    assert run_filters(f, RouteFacts(net("10.0.0.0/24"), True, "tunl0"))[0] == "reject"
    assert run_filters(f, RouteFacts(net("10.0.0.0/24"), True, None))[0] is None  # defined(ifname) is false
    assert FilterRule.from_json(rule("Reject", "10.0.0.0/8", "NotIn", "RemotePeers", "eth0").to_json()) == \
        rule("Reject", "10.0.0.0/8", "NotIn", "RemotePeers", "eth0")


def test_communities_of_every_advertisement_that_holds_the_prefix():
    ads = [PrefixCommunities(net("10.96.0.0/12"), ("64512:100", "64512:300:1")),
           PrefixCommunities(net("10.96.0.0/16"), ("65000:7",))]
    assert communities_for(net("10.96.0.10/32"), ads) == ("64512:100", "65000:7", "64512:300:1")
    assert communities_for(net("10.100.0.0/16"), ads) == ("64512:100", "64512:300:1")
    assert communities_for(net("10.244.0.0/26"), ads) == ()


# -- the policy -----------------------------------------------------------------------------------------


def ctx(**kw) -> ExportContext:
    base = dict(router_id=ME, local_as=AS, exportable_pools=(POOL,), affine_blocks=(BLOCK,))
    return ExportContext(**{**base, **kw})


TOR = PeerInfo("Global_10_0_0_254", IPv4Address("10.0.0.254"), IPv4Address("10.0.0.254"), 64513)


def test_communities_ride_on_exported_routes_but_not_past_a_filter_accept():
    c = ctx(communities=(PrefixCommunities(POOL, ("64512:1",)),))
    local = Path(BLOCK, PathAttrs(next_hop=ME), None)
    attrs = export(local, TOR, c)
    assert attrs is not None and attrs.communities == ("64512:1",) and attrs.as_path == (AS,)
    # a BGPFilter rule that accepts skips calico_export_to_bgp_peers, and with it apply_communities()
    accepting = PeerInfo(TOR.name, TOR.address, TOR.router_id, TOR.asn, export_filters=(Filter("f", (rule("Accept"),)),))
    assert export(local, accepting, c).communities == ()


def test_an_export_filter_keeps_a_pool_off_a_peer():
    rejecting = PeerInfo(TOR.name, TOR.address, TOR.router_id, TOR.asn,
                         export_filters=(Filter("no-pool", (rule("Reject", "10.244.0.0/16", "In"),)),))
    d = export_decision(Path(BLOCK, PathAttrs(next_hop=ME), None), rejecting, ctx())
    assert d.attrs is None and "BGPFilter no-pool rule 0" in d.reason


def test_an_import_filter_drops_routes_from_its_peer():
    src = PeerInfo(TOR.name, TOR.address, TOR.router_id, TOR.asn,
                   import_filters=(Filter("no-default", (rule("Reject", "0.0.0.0/0", "Equal"),)),))
    why = import_check(Path(net("0.0.0.0/0"), PathAttrs(next_hop=TOR.address, as_path=(64513,)), src), ctx())
    assert why is not None and "BGPFilter no-default" in why
    assert import_check(Path(net("10.9.0.0/16"), PathAttrs(next_hop=TOR.address, as_path=(64513,)), src), ctx()) is None


def test_service_static_routes_and_the_route_reflectors_lb_ranges_are_exported():
    svc = net("10.96.0.0/12")
    assert export(Path(svc, PathAttrs(next_hop=ME), None), TOR, ctx()) is None  # no static route: not a pool
    assert export(Path(svc, PathAttrs(next_hop=ME), None), TOR, ctx(static_routes=(svc,))) is not None
    lb32 = net("172.20.0.10/32")
    client = PeerInfo("Node_192_168_0_2", IPv4Address("192.168.0.2"), IPv4Address("192.168.0.2"), AS, rr_client=True)
    other = PeerInfo("Node_192_168_0_3", IPv4Address("192.168.0.3"), IPv4Address("192.168.0.3"), AS, rr_client=True)
    learned = Path(lb32, PathAttrs(next_hop=client.address), client)
    rr = dict(cluster_id=IPv4Address("244.0.0.1"))
    assert export(learned, other, ctx(**rr)) is None
    assert export(learned, other, ctx(**rr, rr_accept=(net("172.20.0.0/24"),))) is not None


def test_next_hop_keep_and_allow_local_as():
    learned = Path(net("10.244.9.0/26"), PathAttrs(next_hop=IPv4Address("192.168.0.9")),
                   PeerInfo("Mesh_192_168_0_9", IPv4Address("192.168.0.9"), IPv4Address("192.168.0.9"), AS))
    keep = PeerInfo(TOR.name, TOR.address, TOR.router_id, TOR.asn, keep_next_hop=True)
    assert export(learned, keep, ctx()).next_hop == IPv4Address("192.168.0.9")
    assert export(learned, TOR, ctx()).next_hop == ME
    looped = PathAttrs(next_hop=TOR.address, as_path=(64513, AS))
    assert import_check(Path(net("10.5.0.0/16"), looped, TOR), ctx()) is not None
    allow = PeerInfo(TOR.name, TOR.address, TOR.router_id, TOR.asn, allow_local_as=1)
    assert import_check(Path(net("10.5.0.0/16"), looped, allow), ctx()) is None
    twice = PathAttrs(next_hop=TOR.address, as_path=(64513, AS, AS))
    assert import_check(Path(net("10.5.0.0/16"), twice, allow), ctx()) is not None


def test_the_speaker_announces_communities_it_adds():
    sp = Speaker(SpeakerConfig(ME, AS, None, (POOL,), (BLOCK,), communities=(PrefixCommunities(POOL, ("64512:9",)),)),
                 [TOR])
    sp.handle(PeerUp(TOR.name), 0)
    out = sp.handle(Originate(frozenset({BLOCK})), 1)
    [ann] = [o for o in out if isinstance(o, Announce)]
    assert ann.attrs.communities == ("64512:9",) and ann.attrs.as_path == (AS,)


# -- the oracle -------------------------------------------------------------------------------------------

TOR_PEER = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: tor}}\nspec: {{peerIP: 10.0.0.254, " \
           "asNumber: 64513{extra}}}\n"


def test_a_tor_learns_service_ranges_with_communities_and_a_filter_keeps_the_pool_off_it(write_yaml):
    bgp = ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
           "spec:\n  serviceClusterIPs: [{cidr: 10.96.0.0/12}]\n  communities: [{name: svc, value: '64512:100'}]\n"
           "  prefixAdvertisements: [{cidr: 10.96.0.0/12, communities: [svc, '64512:7:7']}]\n")
    filt = ("apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata: {name: no-pool}\n"
            "spec: {exportV4: [{action: Reject, cidr: 10.244.0.0/16, matchOperator: In}]}\n")
    docs = [pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"), bgp,
            scenario_doc(workloads={"a": 1, "b": 1})]
    cluster = Cluster.build(load_scenario([write_yaml(*docs, TOR_PEER.format(extra=""))]))
    tor = expected_external(cluster)[IPv4Address("10.0.0.254")]
    svc = tor[net("10.96.0.0/12")]
    assert {r.node for r in svc} == {"a", "b"}
    assert all(r.attrs.communities == ("64512:100", "64512:7:7") for r in svc)
    assert {p for p in tor if p.subnet_of(POOL)} == {b for n in ("a", "b") for b in cluster.affine_blocks(n)}
    # the same cluster with the ToR peering filtered: no pool route reaches it, the services still do
    cluster = Cluster.build(load_scenario([write_yaml(*docs, filt, TOR_PEER.format(extra=", filters: [no-pool]"))]))
    tor = expected_external(cluster)[IPv4Address("10.0.0.254")]
    assert set(tor) == {net("10.96.0.0/12")}
    # node tables do not change: the service range is a reject CIDR, the pool routes go on inside the cluster
    assert all("10.96." not in t.render_ip() for t in expected_tables(cluster).values())


def test_mismatched_passwords_keep_a_session_down_and_its_routes_absent(write_yaml):
    """Two BGPPeers cover the pair a-b with different secrets (the first emitted peering wins at each end, as in
    confd): that session stays down, the others come up, and what would come only over it is absent."""
    secret = ("apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\n"
              "stringData: {one: alpha, two: beta}\n")
    mesh_off = ("apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
                "spec: {nodeToNodeMeshEnabled: false}\n")
    peers = [
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: a-to-b}\n"
        "spec: {node: a, peerIP: 10.0.0.2, asNumber: 64512, password: {secretKeyRef: {name: bgp, key: one}}}\n",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: b-to-a}\n"
        "spec: {node: b, peerIP: 10.0.0.1, asNumber: 64512, password: {secretKeyRef: {name: bgp, key: two}}}\n",
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: c-to-all}\n"
        "spec: {node: c, peerSelector: all(), password: {secretKeyRef: {name: bgp, key: one}}}\n",
    ]
    path = write_yaml(pool_doc(), node_doc("a", "10.0.0.1/24"), node_doc("b", "10.0.0.2/24"),
                      node_doc("c", "10.0.0.3/24"), mesh_off, secret, *peers, scenario_doc(workloads={"a": 1, "b": 1}))
    cluster = Cluster.build(load_scenario([path]))
    peerings = cluster.peerings()
    ab = next(p for p in peerings["a"] if p.peer_node == "b")
    up, why = session_comes_up(peerings, ab)
    assert not up and "passwords" in why
    assert ab.password == "alpha" and next(p for p in peerings["b"] if p.peer_node == "a").password == "beta"
    sessions = expected_sessions(peerings, ["a", "b", "c"])
    assert ("a", ab.name) not in sessions and len(sessions) == 4  # c-a and c-b, both ends
    learned = propagate(cluster)
    b_block = cluster.affine_blocks("b")[0]
    assert b_block not in learned["a"] and b_block in learned["c"]  # no route reflector: c does not pass it on
