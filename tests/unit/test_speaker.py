"""The sans-IO Speaker, alone and wired into meshes and route-reflector topologies in memory
(tests/unit/speakernet.py's `Fabric`). ADD-PATH topologies: tests/unit/test_addpath.py.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from meshsim.bgp.types import PathAttrs
from meshsim.bgp.rib import Path, PeerInfo, Reason
from meshsim.bgp.speaker import (
    Announce,
    BestChanged,
    Dropped,
    Originate,
    PeerCounters,
    PeerDown,
    PeerUp,
    RouteReceived,
    RouteWithdrawn,
    Speaker,
    SpeakerConfig,
    Withdraw,
)
from tests.unit.speakernet import AS, CLUSTER, CLUSTER2, POOL, Fabric, block, ip, mesh, net, rr_fabric



# --------------------------------------------------------------------------------------
# One speaker
# --------------------------------------------------------------------------------------

ME = ip("192.168.0.1")
MY_BLOCK = net("10.244.1.0/26")
P2 = PeerInfo("Mesh_192_168_0_2", ip("192.168.0.2"), ip("192.168.0.2"), AS)
P3 = PeerInfo("Mesh_192_168_0_3", ip("192.168.0.3"), ip("192.168.0.3"), AS)
BLOCK2 = net("10.244.2.0/26")


def solo(*peers: PeerInfo, cluster_id: IPv4Address | None = None) -> Speaker:
    return Speaker(SpeakerConfig(ME, AS, cluster_id, (POOL,), (MY_BLOCK,)), peers or (P2, P3))


def attrs(nh: IPv4Address, **kw: object) -> PathAttrs:
    return PathAttrs(next_hop=nh, **kw)  # type: ignore[arg-type]


def test_route_from_unknown_or_down_peer_is_dropped() -> None:
    s = solo()
    assert s.handle(RouteReceived("Mesh_9_9_9_9", BLOCK2, attrs(P2.address)), 0) == [
        Dropped("Mesh_9_9_9_9", BLOCK2, "unknown peer")
    ]
    assert s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 0) == [
        Dropped(P2.name, BLOCK2, "peer not established")
    ]
    assert s.handle(RouteWithdrawn(P2.name, BLOCK2), 0) == [Dropped(P2.name, BLOCK2, "peer not established")]
    assert s.loc_rib() == {}


def test_import_check_drop_is_an_implicit_withdraw() -> None:
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 1)
    assert BLOCK2 in s.loc_rib()
    out = s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address, originator_id=ME)), 2)
    assert isinstance(out[0], Dropped) and "RFC 4456 §8" in out[0].reason
    assert isinstance(out[1], BestChanged) and out[1].new is None
    assert s.adj_rib_in(P2.name) == {} and s.loc_rib() == {}
    assert s.counters()[P2.name] == PeerCounters(updates_received=2, dropped=1)


def test_no_duplicate_announcements() -> None:
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    s.handle(PeerUp(P3.name), 0)
    first = s.handle(Originate(frozenset({MY_BLOCK})), 1)
    assert [o for o in first if isinstance(o, Announce)] == [
        Announce(P2.name, MY_BLOCK, attrs(ME)),
        Announce(P3.name, MY_BLOCK, attrs(ME)),
    ]
    assert s.handle(Originate(frozenset({MY_BLOCK})), 2) == []
    # the same UPDATE twice changes nothing and sends nothing
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 3)
    assert s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 4) == []
    assert s.adj_rib_out(P2.name) == {MY_BLOCK: attrs(ME)}
    assert s.counters()[P3.name].updates_sent == 1


def test_withdraw_only_what_was_announced() -> None:
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    s.handle(PeerUp(P3.name), 0)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 1)  # not re-advertised (split horizon)
    out = s.handle(RouteWithdrawn(P2.name, BLOCK2), 2)
    assert [type(o) for o in out] == [BestChanged]  # no Withdraw to P3: it was never told
    assert s.handle(RouteWithdrawn(P2.name, BLOCK2), 3) == []  # nothing to withdraw
    assert s.counters()[P2.name].withdrawals_received == 2


def test_peer_up_replays_the_table() -> None:
    s = solo(cluster_id=CLUSTER)  # as an RR it also reflects what it learned
    client = PeerInfo("Node_192_168_0_4", ip("192.168.0.4"), ip("192.168.0.4"), AS, rr_client=True)
    s.set_peers([P2, client])
    s.handle(Originate(frozenset({MY_BLOCK, net("10.244.9.9/32")})), 0)
    s.handle(PeerUp(P2.name), 1)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 2)
    out = s.handle(PeerUp(client.name), 3)
    assert out == [
        Announce(client.name, MY_BLOCK, attrs(ME)),
        Announce(client.name, BLOCK2, attrs(P2.address, originator_id=P2.router_id, cluster_list=(CLUSTER,))),
        Announce(client.name, net("10.244.9.9/32"), attrs(ME)),
    ]
    assert s.established_peers() == (P2.name, client.name)
    assert s.established_since(client.name) == 3


def test_peer_down_clears_ribs_without_messages_to_it() -> None:
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    s.handle(Originate(frozenset({MY_BLOCK})), 0)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 1)
    out = s.handle(PeerDown(P2.name, "notification received"), 2)
    assert out == [BestChanged(BLOCK2, Path(BLOCK2, attrs(P2.address), P2), None, None)]
    assert s.adj_rib_out(P2.name) == {} and s.adj_rib_in(P2.name) == {}
    assert s.established_peers() == () and s.established_since(P2.name) is None
    assert s.handle(PeerDown(P2.name, "again"), 3) == []


def test_second_peer_up_resets_the_session() -> None:
    s = solo()
    s.handle(Originate(frozenset({MY_BLOCK})), 0)
    s.handle(PeerUp(P2.name), 0)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 1)
    out = s.handle(PeerUp(P2.name), 2)
    assert [type(o) for o in out] == [BestChanged, Announce]
    assert s.loc_rib().keys() == {MY_BLOCK}


def test_originate_replaces_previous_set() -> None:
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    borrowed = net("10.244.7.3/32")
    s.handle(Originate(frozenset({MY_BLOCK, borrowed})), 1)
    out = s.handle(Originate(frozenset({MY_BLOCK})), 2)
    assert [o for o in out if not isinstance(o, BestChanged)] == [Withdraw(P2.name, borrowed)]
    assert s.originated() == frozenset({MY_BLOCK})
    assert s.loc_rib()[MY_BLOCK][1] is Reason.ONLY_PATH


def test_set_config_new_affine_block_reevaluates_exports() -> None:
    # A borrowed /32 inside what becomes our own affine block is no longer exported (calico_aggr).
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    slash32 = net("10.244.5.7/32")
    s.handle(Originate(frozenset({MY_BLOCK, slash32})), 1)
    assert slash32 in s.adj_rib_out(P2.name)
    out = s.set_config(SpeakerConfig(ME, AS, None, (POOL,), (MY_BLOCK, net("10.244.5.0/26"))))
    assert out == [Withdraw(P2.name, slash32)]
    assert s.set_config(s.config) == []


def test_set_config_pool_disabled_withdraws() -> None:
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    s.handle(Originate(frozenset({MY_BLOCK})), 1)
    # disableBGPExport: reject_disabled_pools() rejects before calico_aggr would accept the block
    out = s.set_config(SpeakerConfig(ME, AS, None, (), (MY_BLOCK,), rejected_pools=(POOL,)))
    assert out == [Withdraw(P2.name, MY_BLOCK)]
    assert MY_BLOCK in s.loc_rib()  # still our route, just not exported


def test_block_of_a_deleted_pool_is_still_exported_by_calico_aggr() -> None:
    """BIRD's order: calico_aggr's `net = BLOCK accept` comes before the pool rules, so an affine block whose
    pool is gone (not disabled, gone) is still exported; a /32 inside it is not."""
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    s.set_config(SpeakerConfig(ME, AS, None, (), (MY_BLOCK,)))
    out = s.handle(Originate(frozenset({MY_BLOCK, net("10.244.1.5/32")})), 1)
    assert [o for o in out if isinstance(o, Announce)] == [Announce(P2.name, MY_BLOCK, PathAttrs(next_hop=ME))]


def test_set_config_becoming_rr_rechecks_imports() -> None:
    client = replace(P2, rr_client=True)  # BIRD checks CLUSTER_LIST on sessions to its clients only
    s = solo(client, P3)
    s.handle(PeerUp(P2.name), 0)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address, originator_id=ip("192.168.0.9"), cluster_list=(CLUSTER,))), 1)
    out = s.set_config(SpeakerConfig(ME, AS, CLUSTER, (POOL,), (MY_BLOCK,)))
    assert isinstance(out[0], Dropped) and "CLUSTER_LIST" in out[0].reason
    assert s.loc_rib() == {}


def test_set_peers_removed_peer_behaves_like_peer_down() -> None:
    s = solo()
    s.handle(PeerUp(P2.name), 0)
    s.handle(PeerUp(P3.name), 0)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 1)
    out = s.set_peers([P3])
    assert [type(o) for o in out] == [BestChanged]
    assert s.peers() == {P3.name: P3} and s.loc_rib() == {}
    with pytest.raises(KeyError):
        s.adj_rib_in(P2.name)


def test_set_peers_rr_client_toggle_reevaluates_exports() -> None:
    # RR with two non-clients: nothing is reflected between them until one becomes a client.
    s = solo(cluster_id=CLUSTER)
    s.handle(PeerUp(P2.name), 0)
    s.handle(PeerUp(P3.name), 0)
    s.handle(RouteReceived(P2.name, BLOCK2, attrs(P2.address)), 1)
    assert s.adj_rib_out(P3.name) == {}
    out = s.set_peers([P2, PeerInfo(P3.name, P3.address, P3.router_id, AS, rr_client=True)])
    assert out == [Announce(P3.name, BLOCK2, attrs(P2.address, originator_id=P2.router_id, cluster_list=(CLUSTER,)))]
    assert s.established_peers() == (P2.name, P3.name)
    assert s.adj_rib_in(P2.name)[BLOCK2].source.rr_client is False  # type: ignore[union-attr]


def test_ebgp_peer_gets_prepended_path_and_loops_are_dropped() -> None:
    tor = PeerInfo("Node_10_0_0_254", ip("10.0.0.254"), ip("10.0.0.254"), 65001)
    s = solo(P2, tor)
    s.handle(PeerUp(tor.name), 0)
    s.handle(PeerUp(P2.name), 0)
    s.handle(Originate(frozenset({MY_BLOCK})), 1)
    assert s.adj_rib_out(tor.name) == {MY_BLOCK: attrs(ME, as_path=(AS,))}
    looped = s.handle(RouteReceived(tor.name, BLOCK2, attrs(tor.address, as_path=(65001, AS))), 2)
    assert isinstance(looped[0], Dropped) and "AS_PATH" in looped[0].reason
    # an eBGP-learned pool route goes to iBGP peers unchanged (RFC 4271 §5.1.3)
    s.handle(RouteReceived(tor.name, BLOCK2, attrs(tor.address, as_path=(65001,), local_pref=999)), 3)
    assert s.adj_rib_out(P2.name)[BLOCK2] == attrs(tor.address, as_path=(65001,))


def test_unknown_event_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        solo().handle("PeerUp", 0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Full mesh: RFC 4271 §9.2 iBGP split horizon
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("originate_first", [True, False])
def test_full_mesh_of_four_every_node_gets_every_block_no_readvertisement(originate_first: bool) -> None:
    fab = mesh(4)
    if originate_first:
        fab.originate_blocks()
        fab.up_all()
    else:
        fab.up_all()
        fab.originate_blocks()
    for a in fab.nodes.values():
        rib = a.speaker.loc_rib()
        assert set(rib) == {b.block for b in fab.nodes.values()}
        for b in fab.nodes.values():
            p, reason = rib[b.block]  # type: ignore[index]
            if a is b:
                assert p.source is None and reason is Reason.ONLY_PATH
            else:
                assert p.attrs.next_hop == b.address and p.source.address == b.address  # type: ignore[union-attr]
                assert reason is Reason.ONLY_PATH  # nobody re-advertised it: one path only
                assert p.attrs.originator_id is None and p.attrs.cluster_list == ()
        for peer_name in a.speaker.established_peers():
            assert a.speaker.adj_rib_out(peer_name) == {a.block: attrs(a.address)}
    assert len(fab.outputs(Announce)) == 4 * 3
    assert fab.outputs(Dropped) == [] and fab.outputs(Withdraw) == []


def test_mesh_originate_removal_withdraws_everywhere() -> None:
    fab = mesh(4)
    fab.up_all()
    fab.originate_blocks()
    fab.clear_log()
    fab.originate("node2")  # node2 no longer originates anything
    gone = block(fab, "node2")
    assert all(gone not in n.speaker.loc_rib() for n in fab.nodes.values())
    assert sorted(o.peer for o in fab.outputs(Withdraw)) == ["Mesh_192_168_0_1", "Mesh_192_168_0_3", "Mesh_192_168_0_4"]


def test_mesh_peer_down_removes_paths_without_downstream_messages() -> None:
    fab = mesh(3)
    fab.up_all()
    fab.originate_blocks()
    fab.clear_log()
    fab.bring_down("node1", "node2")
    assert block(fab, "node2") not in fab.nodes["node1"].speaker.loc_rib()
    assert block(fab, "node1") not in fab.nodes["node2"].speaker.loc_rib()
    assert block(fab, "node2") in fab.nodes["node3"].speaker.loc_rib()
    assert fab.outputs(Announce) == [] and fab.outputs(Withdraw) == []  # split horizon: nothing to tell node3
    fab.bring_up("node1", "node2")  # PeerUp replays the tables
    assert block(fab, "node2") in fab.nodes["node1"].speaker.loc_rib()


def test_mesh_borrowed_slash32_inside_other_nodes_block() -> None:
    # calico#3246: node2 hosts a pod with an IP borrowed from node1's block. node2 announces
    # the /32; node1 learns it but does not export it (calico_aggr: inside its own block).
    fab = mesh(3)
    fab.up_all()
    fab.originate_blocks()
    borrowed = net("10.244.1.9/32")
    fab.originate("node2", block(fab, "node2"), borrowed)
    for n in ("node1", "node3"):
        p = fab.best(n, borrowed)
        assert p is not None and p.attrs.next_hop == fab.nodes["node2"].address


# --------------------------------------------------------------------------------------
# Route reflection: RFC 4456
# --------------------------------------------------------------------------------------


def test_rfc4456_s8_client_route_reflected_to_all_clients_with_rr_attrs() -> None:
    fab = rr_fabric({"a": ("rr1",), "b": ("rr1",), "c": ("rr1",)}, {"rr1": CLUSTER})
    fab.up_all()
    fab.originate_blocks("a", "b", "c")
    for x in ("a", "b", "c"):
        for y in ("a", "b", "c"):
            if x == y:
                continue
            p = fab.best(x, block(fab, y))
            assert p is not None
            assert p.attrs.next_hop == fab.nodes[y].address  # RFC 4456 §10: next hop kept
            assert p.attrs.originator_id == fab.nodes[y].address  # RFC 4456 §8: set when absent
            assert p.attrs.cluster_list == (CLUSTER,)  # RFC 4456 §8: cluster id prepended
    # clients are plain iBGP speakers: they re-advertise nothing (RFC 4271 §9.2)
    for x in ("a", "b", "c"):
        sp = fab.nodes[x].speaker
        assert sp.adj_rib_out(fab.name_of(x, "rr1")) == {block(fab, x): attrs(fab.nodes[x].address)}


def test_rfc4456_s8_client_route_reflected_to_non_clients_non_client_route_to_clients_only() -> None:
    # rr1 has client a and two non-clients n1, n2 (plain iBGP peers, e.g. a BGPPeer).
    fab = Fabric()
    fab.node("rr1", 101, cluster_id=CLUSTER)
    fab.node("a", 1)
    fab.node("n1", 2)
    fab.node("n2", 3)
    fab.rr_client("rr1", "a")
    fab.session("rr1", "n1", kind="Node")
    fab.session("rr1", "n2", kind="Node")
    fab.up_all()
    fab.originate_blocks("a", "n1", "n2")
    # client -> all peers
    for n in ("n1", "n2"):
        p = fab.best(n, block(fab, "a"))
        assert p is not None and p.attrs.cluster_list == (CLUSTER,)
    # non-client -> clients only
    assert fab.best("a", block(fab, "n1")) is not None
    assert fab.best("n2", block(fab, "n1")) is None
    assert fab.best("n1", block(fab, "n2")) is None


def test_rfc4456_s9_same_cluster_rrs_redundant_no_loop_all_clients_get_all_routes() -> None:
    # Two RRs with one cluster id, non-clients of each other; every client peers with both.
    fab = rr_fabric({c: ("rr1", "rr2") for c in ("a", "b", "c", "d")}, {"rr1": CLUSTER, "rr2": CLUSTER})
    fab.up_all()
    fab.originate_blocks()  # RR nodes originate their own blocks too
    clients = ("a", "b", "c", "d")
    for x in clients:
        sp = fab.nodes[x].speaker
        for y in clients:
            if x == y:
                continue
            prefix = block(fab, y)
            assert len(sp.candidates(prefix)) == 2  # one via each RR
            p, reason = sp.loc_rib()[prefix]
            assert p.attrs.next_hop == fab.nodes[y].address
            assert p.source.name == "Node_192_168_0_101" and reason is Reason.PEER_ADDRESS  # type: ignore[union-attr]
        # an RR's own block: direct from that RR beats the copy reflected by the other (RFC 4456 §9)
        p, reason = sp.loc_rib()[block(fab, "rr2")]
        assert p.source.name == "Node_192_168_0_102" and reason is Reason.CLUSTER_LIST  # type: ignore[union-attr]
    # each RR keeps the other's reflections of client routes as second paths (BIRD checks CLUSTER_LIST only on
    # sessions to its clients; tests/golden/birdc/rr shows rr1's `from 192.168.0.12` copies), never the best
    for rr, other in (("rr1", "Node_192_168_0_102"), ("rr2", "Node_192_168_0_101")):
        assert fab.outputs(Dropped, rr) == []
        for c in clients:
            copies = [p for p in fab.nodes[rr].speaker.candidates(block(fab, c)) if p.source and p.source.name == other]
            assert len(copies) == 1 and copies[0].attrs.cluster_list == (CLUSTER,)
            assert fab.best(rr, block(fab, c)).source.name != other  # type: ignore[union-attr]


def test_rfc4456_s8_drop_on_own_cluster_id_calico_2735_split_clients_get_nothing() -> None:
    # calico#2735: same cluster id, a peers only rr1, b only rr2: routes never cross.
    fab = rr_fabric({"a": ("rr1",), "b": ("rr2",)}, {"rr1": CLUSTER, "rr2": CLUSTER})
    fab.up_all()
    fab.originate_blocks("a", "b")
    assert fab.best("a", block(fab, "b")) is None
    assert fab.best("b", block(fab, "a")) is None
    # rr2 holds a's block as rr1 reflected it (no check on a non-client session), but does not pass it to its
    # client b: the CLUSTER_LIST holds rr2's cluster id (BIRD bgp_import_control -> bgp_cluster_list_loopy)
    via_rr1 = fab.best("rr2", block(fab, "a"))
    assert via_rr1 is not None and via_rr1.attrs.cluster_list == (CLUSTER,)
    assert block(fab, "a") not in fab.nodes["rr2"].speaker.adj_rib_out(fab.name_of("rr2", "b"))


def test_rfc4456_s8_different_cluster_ids_split_clients_do_exchange() -> None:
    fab = rr_fabric({"a": ("rr1",), "b": ("rr2",)}, {"rr1": CLUSTER, "rr2": CLUSTER2})
    fab.up_all()
    fab.originate_blocks("a", "b")
    p = fab.best("b", block(fab, "a"))
    assert p is not None
    assert p.attrs.cluster_list == (CLUSTER2, CLUSTER) and p.attrs.originator_id == fab.nodes["a"].address
    assert p.attrs.next_hop == fab.nodes["a"].address


def test_rfc4456_s8_drop_on_own_originator_id() -> None:
    # Different cluster ids, a is a client of both. While a-rr2 is still down, rr2 learns a's
    # block only via rr1 (ORIGINATOR_ID a). When a-rr2 comes up, rr2 replays that best path to
    # a, which must ignore it; then a's direct announcement wins at rr2 and the copy is withdrawn.
    fab = rr_fabric({"a": ("rr1", "rr2"), "b": ("rr1", "rr2")}, {"rr1": CLUSTER, "rr2": CLUSTER2})
    for x, y in (("rr1", "rr2"), ("a", "rr1"), ("b", "rr1"), ("b", "rr2")):
        fab.bring_up(x, y)
    fab.originate_blocks("a", "b")
    a_block = block(fab, "a")
    via_rr1 = fab.best("rr2", a_block)
    assert via_rr1 is not None and via_rr1.attrs.originator_id == fab.nodes["a"].address
    fab.clear_log()
    fab.bring_up("a", "rr2")
    drops = [d for d in fab.outputs(Dropped, "a") if d.prefix == a_block]  # type: ignore[union-attr]
    assert len(drops) == 1 and "ORIGINATOR_ID" in drops[0].reason  # type: ignore[union-attr]
    assert fab.best("a", a_block).source is None  # type: ignore[union-attr]
    assert fab.nodes["a"].speaker.adj_rib_in(fab.name_of("a", "rr2")).keys() == {block(fab, "b")}
    # rr2 now prefers the direct path (RFC 4456 §9: same originator, shorter CLUSTER_LIST)
    assert fab.best("rr2", a_block).source.name == fab.name_of("rr2", "a")  # type: ignore[union-attr]
    assert a_block not in fab.nodes["rr2"].speaker.adj_rib_out(fab.name_of("rr2", "a"))
    # b still sees a's block via both RRs; the shorter CLUSTER_LIST copies win
    p = fab.best("b", a_block)
    assert p is not None and len(p.attrs.cluster_list) == 1


def test_rfc4456_s8_looped_copy_not_sent_when_direct_path_is_best() -> None:
    # With every session up first, rr2's best for a's block is the direct one, so only that
    # (never back to a) is exported: BIRD exports the best route only.
    fab = rr_fabric({"a": ("rr1", "rr2")}, {"rr1": CLUSTER, "rr2": CLUSTER2})
    fab.up_all()
    fab.originate_blocks("a")
    assert fab.outputs(Dropped) == []
    assert fab.nodes["a"].speaker.adj_rib_in(fab.name_of("a", "rr2")) == {}


def test_rr_originate_removal_withdraws_everywhere() -> None:
    fab = rr_fabric({c: ("rr1", "rr2") for c in ("a", "b", "c")}, {"rr1": CLUSTER, "rr2": CLUSTER})
    fab.up_all()
    fab.originate_blocks()
    fab.originate("a")
    gone = block(fab, "a")
    for n in fab.nodes.values():
        assert gone not in n.speaker.loc_rib()
        for peer_name in n.speaker.established_peers():
            assert gone not in n.speaker.adj_rib_out(peer_name)


def test_rr_redundancy_peer_down_withdraws_downstream_and_falls_back() -> None:
    fab = rr_fabric({c: ("rr1", "rr2") for c in ("a", "b", "c")}, {"rr1": CLUSTER, "rr2": CLUSTER})
    fab.up_all()
    fab.originate_blocks("a", "b", "c")
    a_block = block(fab, "a")
    assert fab.best("b", a_block).source.name == "Node_192_168_0_101"  # type: ignore[union-attr]
    fab.clear_log()
    fab.bring_down("a", "rr1")
    # rr1 lost its direct path to a's block; the copy rr2 reflected to it is not sent on (not back to rr2, not to
    # clients: its CLUSTER_LIST holds rr1's cluster id), so rr1 withdrew the block from its other peers
    fallback = fab.best("rr1", a_block)
    assert fallback is not None and fallback.source.name == "Node_192_168_0_102"  # type: ignore[union-attr]
    assert sorted(w.peer for w in fab.outputs(Withdraw, "rr1") if w.prefix == a_block) == [  # type: ignore[union-attr]
        "Node_192_168_0_102", "Node_192_168_0_2", "Node_192_168_0_3",
    ]
    # b and c fall back to the copy reflected by rr2
    for x in ("b", "c"):
        changes = [o for o in fab.outputs(BestChanged, x) if o.prefix == a_block]  # type: ignore[union-attr]
        assert len(changes) == 1 and changes[0].new.source.name == "Node_192_168_0_102"  # type: ignore[union-attr]
        assert changes[0].reason is Reason.ONLY_PATH  # type: ignore[union-attr]
        assert fab.best(x, a_block).attrs.next_hop == fab.nodes["a"].address  # type: ignore[union-attr]
    # and a still gets everything via rr2
    assert fab.best("a", block(fab, "b")) is not None
    # session back: rr1 relearns a's block and b/c prefer it again (lower peer address)
    fab.bring_up("a", "rr1")
    assert fab.best("b", a_block).source.name == "Node_192_168_0_101"  # type: ignore[union-attr]


def test_rr_single_client_down_withdraws_from_other_clients() -> None:
    fab = rr_fabric({c: ("rr1",) for c in ("a", "b", "c")}, {"rr1": CLUSTER})
    fab.up_all()
    fab.originate_blocks("a", "b", "c")
    fab.clear_log()
    fab.bring_down("a", "rr1")
    assert fab.best("b", block(fab, "a")) is None and fab.best("c", block(fab, "a")) is None
    assert sorted(w.peer for w in fab.outputs(Withdraw, "rr1")) == ["Node_192_168_0_2", "Node_192_168_0_3"]  # type: ignore[union-attr]


def test_rr_counters_count_per_prefix_messages() -> None:
    fab = rr_fabric({"a": ("rr1",), "b": ("rr1",)}, {"rr1": CLUSTER})
    fab.up_all()
    fab.originate_blocks("a", "b")
    counters = fab.nodes["rr1"].speaker.counters()
    assert counters[fab.name_of("rr1", "a")] == PeerCounters(updates_received=1, updates_sent=1)
    assert counters[fab.name_of("rr1", "b")] == PeerCounters(updates_received=1, updates_sent=1)
