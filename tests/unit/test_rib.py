"""Best-path selection (BIRD bgp_rte_better order) and the RIBs' diffs."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.bgp.types import Origin, PathAttrs
from meshsim.bgp.rib import AdjRibIn, BestChanged, LocRib, Path, PeerInfo, Reason, best_path
from meshsim.bgp.sources import RouteSources

AS = 64512
PREFIX = IPv4Network("10.244.1.0/26")


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def peer(addr: str, *, asn: int = AS, router_id: str | None = None, name: str | None = None) -> PeerInfo:
    return PeerInfo(
        name=name or "Mesh_" + addr.replace(".", "_"),
        address=ip(addr),
        router_id=ip(router_id or addr),
        asn=asn,
    )


def path(src: PeerInfo | None, **attrs: object) -> Path:
    attrs.setdefault("next_hop", src.address if src else ip("192.168.0.1"))
    return Path(PREFIX, PathAttrs(**attrs), src)  # type: ignore[arg-type]


P2, P3, P4 = peer("192.168.0.2"), peer("192.168.0.3"), peer("192.168.0.4")


# -- each step decides, with its Reason --------------------------------------------------


def test_no_paths() -> None:
    assert best_path([]) is None


def test_only_path() -> None:
    p = path(P2)
    assert best_path([p]) == (p, Reason.ONLY_PATH)


def test_local_origin_beats_everything() -> None:
    # BIRD nest rte_better: static (preference 200) beats BGP (100), even higher LOCAL_PREF.
    local, learned = path(None), path(P2, local_pref=500)
    assert best_path([learned, local]) == (local, Reason.LOCAL_ORIGIN)


def test_higher_local_pref() -> None:
    # RFC 4271 §9.1.1
    hi, lo = path(P3, local_pref=200), path(P2)
    assert best_path([lo, hi]) == (hi, Reason.LOCAL_PREF)


def test_shorter_as_path() -> None:
    # RFC 4271 §9.1.2.2 a)
    short, long_ = path(P3, as_path=(65001,)), path(P2, as_path=(65001, 65002))
    assert best_path([long_, short]) == (short, Reason.AS_PATH)


def test_lower_origin() -> None:
    # RFC 4271 §9.1.2.2 b)
    igp, inc = path(P3, origin=Origin.IGP), path(P2, origin=Origin.INCOMPLETE)
    assert best_path([inc, igp]) == (igp, Reason.ORIGIN)


def test_lower_med_same_neighbour_as_missing_is_zero() -> None:
    # RFC 4271 §9.1.2.2 c): in iBGP all paths share the neighbour AS; missing MED = 0.
    none_, ten = path(P3), path(P2, med=10)
    assert best_path([ten, none_], AS) == (none_, Reason.MED)


def test_med_not_compared_across_neighbour_as() -> None:
    # RFC 4271 §9.1.2.2 c): different neighbouring AS => MED ignored; falls to router id.
    a = path(P2, as_path=(65001,), med=50)
    b = path(P3, as_path=(65002,), med=0)
    assert best_path([b, a], AS) == (a, Reason.ROUTER_ID)


def test_med_groups_are_order_independent() -> None:
    # The classic non-transitive MED triangle: elimination by neighbour AS gives one answer.
    a = path(P2, as_path=(65001,), med=10)
    b = path(P3, as_path=(65001,), med=5)
    c = path(P4, as_path=(65002,), med=0)
    results = {best_path(list(perm), AS) for perm in itertools.permutations([a, b, c])}
    assert results == {(b, Reason.ROUTER_ID)}


def test_external_over_internal() -> None:
    # RFC 4271 §9.1.2.2 d)
    ext = path(peer("192.168.0.9", asn=65001), as_path=(65001,))
    internal = path(P2, as_path=(65002,))
    assert best_path([internal, ext], AS) == (ext, Reason.EXTERNAL)


def test_lowest_router_id() -> None:
    # RFC 4271 §9.1.2.2 f)
    a, b = path(peer("192.168.0.5", router_id="1.1.1.1")), path(peer("192.168.0.4", router_id="2.2.2.2"))
    assert best_path([b, a]) == (a, Reason.ROUTER_ID)


def test_originator_id_replaces_router_id() -> None:
    # RFC 4456 §9: ORIGINATOR_ID is compared instead of the peer's BGP Identifier.
    via_rr = path(peer("192.168.0.2"), originator_id=ip("192.168.0.9"), cluster_list=(ip("1.0.0.1"),))
    direct = path(peer("192.168.0.8"))
    assert best_path([via_rr, direct]) == (direct, Reason.ROUTER_ID)


def test_shorter_cluster_list() -> None:
    # RFC 4456 §9: same originator, shorter CLUSTER_LIST wins (before peer address).
    o = ip("192.168.0.9")
    one = path(P4, originator_id=o, cluster_list=(ip("1.0.0.1"),))
    two = path(P2, originator_id=o, cluster_list=(ip("1.0.0.2"), ip("1.0.0.1")))
    assert best_path([two, one]) == (one, Reason.CLUSTER_LIST)


def test_direct_beats_reflected_copy_of_same_originator() -> None:
    # Mesh path from 192.168.0.9 and the same route reflected: router id ties, CLUSTER_LIST decides.
    direct = path(peer("192.168.0.9"))
    reflected = path(P2, originator_id=ip("192.168.0.9"), cluster_list=(ip("1.0.0.1"),))
    assert best_path([reflected, direct]) == (direct, Reason.CLUSTER_LIST)


def test_router_id_compared_before_cluster_list_as_bird_does() -> None:
    # BIRD bgp_rte_better: ORIGINATOR_ID (f) before CLUSTER_LIST length (RFC 4456 §9 b).
    low_id_long = path(P2, originator_id=ip("10.0.0.1"), cluster_list=(ip("1.0.0.1"), ip("1.0.0.2")))
    high_id_short = path(P3, originator_id=ip("10.0.0.2"), cluster_list=(ip("1.0.0.1"),))
    assert best_path([high_id_short, low_id_long]) == (low_id_long, Reason.ROUTER_ID)


def test_lowest_peer_address() -> None:
    # RFC 4271 §9.1.2.2 g): two RRs reflecting the same client route.
    o, c = ip("192.168.0.9"), (ip("1.0.0.1"),)
    rr1 = path(peer("192.168.0.11"), originator_id=o, cluster_list=c)
    rr2 = path(peer("192.168.0.12"), originator_id=o, cluster_list=c)
    assert best_path([rr2, rr1]) == (rr1, Reason.PEER_ADDRESS)


def test_reason_is_step_that_beat_the_runner_up() -> None:
    # LOCAL_PREF eliminates c, AS_PATH then decides between a and b.
    a = path(P2, local_pref=200)
    b = path(P3, local_pref=200, as_path=(1, 2))
    c = path(P4)
    assert best_path([c, b, a]) == (a, Reason.AS_PATH)


@pytest.mark.parametrize("seed", range(3))
def test_order_independent(seed: int) -> None:
    o = ip("192.168.0.9")
    paths = [
        path(peer("192.168.0.11"), originator_id=o, cluster_list=(ip("1.0.0.1"),)),
        path(peer("192.168.0.12"), originator_id=o, cluster_list=(ip("1.0.0.1"),)),
        path(peer("192.168.0.13"), local_pref=50),
        path(peer("192.168.0.14"), as_path=(65001,), med=3),
        path(peer("192.168.0.15"), origin=Origin.EGP),
    ]
    expected = best_path(paths, AS)
    for perm in itertools.permutations(paths):
        assert best_path(list(perm), AS) == expected
    assert expected is not None and expected[0] is paths[0]


# -- AdjRibIn ------------------------------------------------------------------------------


def test_adj_rib_in_replaces_and_withdraws() -> None:
    rib = AdjRibIn(P2)
    first, second = path(P2), path(P2, med=5)
    assert rib.update(first) is None
    assert rib.update(second) == first
    assert rib.get(PREFIX) == second and PREFIX in rib and len(rib) == 1
    assert rib.withdraw(PREFIX) == second
    assert rib.withdraw(PREFIX) is None
    rib.update(first)
    assert rib.clear() == [first] and len(rib) == 0


# -- LocRib diffs --------------------------------------------------------------------------


def test_locrib_update_reports_best_changes_only() -> None:
    rib = LocRib(AS)
    a = path(P2)
    assert rib.update(a) == [BestChanged(PREFIX, None, a, Reason.ONLY_PATH)]
    worse = path(P3)  # higher address: not better
    assert rib.update(worse) == []
    assert rib.best(PREFIX) == (a, Reason.ROUTER_ID)  # reason refreshed silently
    better = path(P4, local_pref=200)
    assert rib.update(better) == [BestChanged(PREFIX, a, better, Reason.LOCAL_PREF)]
    assert rib.update(better) == []  # identical: no change


def test_locrib_update_from_same_source_replaces() -> None:
    rib = LocRib(AS)
    a1, a2 = path(P2), path(P2, med=7)
    rib.update(a1)
    assert rib.update(a2) == [BestChanged(PREFIX, a1, a2, Reason.ONLY_PATH)]
    assert rib.candidates(PREFIX) == (a2,)


def test_locrib_withdraw_falls_back() -> None:
    rib = LocRib(AS)
    a, b = path(P2), path(P3)
    rib.update(a)
    rib.update(b)
    assert rib.withdraw(PREFIX, P2) == [BestChanged(PREFIX, a, b, Reason.ONLY_PATH)]
    assert rib.withdraw(PREFIX, P2) == []  # nothing left from P2
    assert rib.withdraw(PREFIX, P3) == [BestChanged(PREFIX, b, None, None)]
    assert PREFIX not in rib and rib.prefixes() == []


def test_locrib_withdraw_of_non_best_is_silent() -> None:
    rib = LocRib(AS)
    a, b = path(P2), path(P3)
    rib.update(a)
    rib.update(b)
    assert rib.withdraw(PREFIX, "Mesh_192_168_0_3") == []
    assert rib.best(PREFIX) == (a, Reason.ONLY_PATH)


def test_locrib_local_paths_keyed_by_none() -> None:
    rib = LocRib(AS)
    local, learned = path(None), path(P2)
    rib.update(learned)
    assert rib.update(local) == [BestChanged(PREFIX, learned, local, Reason.LOCAL_ORIGIN)]
    assert rib.withdraw(PREFIX, None) == [BestChanged(PREFIX, local, learned, Reason.ONLY_PATH)]


def test_locrib_drop_peer() -> None:
    rib = LocRib(AS)
    other = IPv4Network("10.244.2.0/26")
    a, b = path(P2), path(P3)
    a_other = Path(other, PathAttrs(next_hop=P2.address), P2)
    rib.update(a)
    rib.update(b)
    rib.update(a_other)
    changes = rib.drop_peer(P2.name)
    assert changes == [
        BestChanged(PREFIX, a, b, Reason.ONLY_PATH),
        BestChanged(other, a_other, None, None),
    ]
    assert rib.drop_peer(P2.name) == []
    assert rib.snapshot() == {PREFIX: (b, Reason.ONLY_PATH)}


# -- ADD-PATH: several paths per neighbour, by path id (RFC 7911) -----------------------------


def test_two_paths_of_one_peer_that_tie_on_everything_go_by_path_id() -> None:
    low, high = Path(PREFIX, PathAttrs(next_hop=P2.address), P2, 3), Path(PREFIX, PathAttrs(next_hop=P2.address), P2, 8)
    assert best_path([high, low]) == (low, Reason.PEER_ADDRESS)
    assert best_path([low, high]) == (low, Reason.PEER_ADDRESS)


def test_adj_rib_in_keeps_paths_by_path_id() -> None:
    rib = AdjRibIn(P2)
    one, two = Path(PREFIX, PathAttrs(next_hop=ip("192.168.0.7")), P2, 1), Path(PREFIX, PathAttrs(next_hop=P4.address), P2, 2)
    rib.update(one)
    rib.update(two)
    assert rib.paths() == {(PREFIX, 1): one, (PREFIX, 2): two} and len(rib) == 2
    assert PREFIX not in rib and (PREFIX, 1) in rib  # a bare prefix means path id 0
    assert rib.withdraw(PREFIX, 1) == one and rib.get(PREFIX, 2) == two


def test_locrib_keeps_a_candidate_per_source_and_path_id() -> None:
    rib = LocRib(AS)
    via_p2 = Path(PREFIX, PathAttrs(next_hop=ip("192.168.0.9"), originator_id=ip("192.168.0.9")), P2, 4)
    other = Path(PREFIX, PathAttrs(next_hop=ip("192.168.0.8"), originator_id=ip("192.168.0.8")), P2, 5)
    assert rib.update(via_p2) == [BestChanged(PREFIX, None, via_p2, Reason.ONLY_PATH)]
    assert rib.update(other) == [BestChanged(PREFIX, via_p2, other, Reason.ROUTER_ID)]
    assert set(rib.candidates(PREFIX)) == {via_p2, other}
    assert rib.source_id(via_p2) != rib.source_id(other)
    assert [p for _, p in rib.sourced(PREFIX)] == [via_p2, other]  # by route-source id
    assert rib.withdraw(PREFIX, P2, 5) == [BestChanged(PREFIX, other, via_p2, Reason.ONLY_PATH)]
    rib.update(other)
    assert rib.drop_peer(P2.name) == [BestChanged(PREFIX, other, None, None)]
    assert rib.candidates(PREFIX) == () and len(rib.sources) == 0


def test_route_source_ids_lowest_free_never_0_freed_with_the_last_path() -> None:
    sources = RouteSources()
    assert [sources.acquire(k) for k in ((None, 0), ("Mesh_a", 0), ("Mesh_b", 7))] == [1, 2, 3]
    assert sources.acquire(("Mesh_a", 0)) == 2  # a second path of a source keeps its id
    sources.release(("Mesh_a", 0))
    assert sources.id_of(("Mesh_a", 0)) == 2
    sources.release(("Mesh_a", 0))  # its last path: the id is free
    assert sources.acquire(("Mesh_c", 0)) == 2
    assert sources.acquire(("Mesh_d", 1)) == 4


def test_route_sources_carry_over_keeps_ids_of_sources_that_come_back() -> None:
    sources = RouteSources()
    for key in ((None, 0), ("Mesh_a", 0), ("Mesh_b", 0)):
        sources.acquire(key)
    rebuilt = sources.carry_over()
    assert rebuilt.acquire(("Mesh_b", 0)) == 3 and rebuilt.acquire((None, 0)) == 1
    rebuilt.prune()  # Mesh_a did not come back
    assert len(rebuilt) == 2 and rebuilt.acquire(("Mesh_z", 0)) == 2
