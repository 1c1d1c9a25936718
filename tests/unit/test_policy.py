"""Import checks and the export rule set (Calico filter, then BGP/RR rules), one path at a time."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from meshsim.bgp.types import PathAttrs
from meshsim.bgp.policy import ExportContext, calico_filter, export, export_decision, import_check, normalize_import
from meshsim.bgp.rib import Path, PeerInfo

AS = 64512
POOL = IPv4Network("10.244.0.0/16")
DISABLED_POOL = IPv4Network("10.99.0.0/16")  # not in exportable_pools
OWN_BLOCK = IPv4Network("10.244.1.0/26")
OTHER_BLOCK = IPv4Network("10.244.2.0/26")
ME = IPv4Address("192.168.0.1")
CLUSTER = IPv4Address("244.0.0.1")


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def peer(addr: str, *, asn: int = AS, rr_client: bool = False, prefix: str = "Mesh_") -> PeerInfo:
    return PeerInfo(prefix + addr.replace(".", "_"), ip(addr), ip(addr), asn, rr_client)


def ctx(*, cluster_id: IPv4Address | None = None) -> ExportContext:
    return ExportContext(
        router_id=ME,
        local_as=AS,
        cluster_id=cluster_id,
        exportable_pools=(POOL,),
        affine_blocks=(OWN_BLOCK,),
    )


def learned(src: PeerInfo, prefix: IPv4Network = OTHER_BLOCK, **attrs: object) -> Path:
    attrs.setdefault("next_hop", src.address)
    return Path(prefix, PathAttrs(**attrs), src)  # type: ignore[arg-type]


def local(prefix: IPv4Network = OWN_BLOCK) -> Path:
    return Path(prefix, PathAttrs(next_hop=ME), None)


A, B = peer("192.168.0.2"), peer("192.168.0.3")
CLIENT1, CLIENT2 = peer("192.168.0.2", rr_client=True), peer("192.168.0.3", rr_client=True)
NONCLIENT = peer("192.168.0.4", prefix="Node_")
EXT = peer("10.0.0.254", asn=65001, prefix="Node_")


# -- import_check ------------------------------------------------------------------------


def test_import_accepts_plain_ibgp_path() -> None:
    assert import_check(learned(A), ctx()) is None


def test_import_drops_own_originator_id_rfc4456_s8() -> None:
    why = import_check(learned(A, originator_id=ME), ctx())
    assert why is not None and "RFC 4456 §8" in why and "ORIGINATOR_ID" in why


def test_import_drops_own_cluster_id_from_a_client_rfc4456_s8() -> None:
    p = learned(CLIENT1, originator_id=ip("192.168.0.9"), cluster_list=(ip("244.0.0.9"), CLUSTER))
    why = import_check(p, ctx(cluster_id=CLUSTER))
    assert why is not None and "CLUSTER_LIST" in why


def test_import_keeps_own_cluster_id_from_a_non_client_reflector() -> None:
    # What real BIRD 1.6.8 and 2.0.12 do (tests/golden/birdc/rr: rr1 holds rr2's reflection of every client
    # block, `from 192.168.0.12`): the check runs only on sessions to our own clients.
    p = learned(NONCLIENT, originator_id=ip("192.168.0.9"), cluster_list=(CLUSTER,))
    assert import_check(p, ctx(cluster_id=CLUSTER)) is None


def test_rr_does_not_send_a_path_looped_through_its_cluster_to_clients() -> None:
    p = learned(NONCLIENT, originator_id=ip("192.168.0.9"), cluster_list=(CLUSTER,))
    d = export_decision(p, CLIENT1, ctx(cluster_id=CLUSTER))
    assert d.attrs is None and "CLUSTER_LIST" in d.reason


def test_import_cluster_list_not_checked_by_non_rr() -> None:
    # BIRD checks only its own cluster id, and a client has none.
    p = learned(A, originator_id=ip("192.168.0.9"), cluster_list=(CLUSTER,))
    assert import_check(p, ctx()) is None


def test_import_drops_ebgp_as_loop_rfc4271_s9_1_2() -> None:
    why = import_check(learned(EXT, as_path=(65001, AS, 65003)), ctx())
    assert why is not None and "AS_PATH" in why
    assert import_check(learned(EXT, as_path=(65001,)), ctx()) is None


def test_import_as_loop_only_for_ebgp() -> None:
    assert import_check(learned(A, as_path=(65001, AS)), ctx()) is None


def test_normalize_import_from_ebgp_rfc4271_s5_1_5() -> None:
    attrs = PathAttrs(next_hop=EXT.address, local_pref=900, as_path=(65001,), originator_id=ip("1.1.1.1"), cluster_list=(CLUSTER,))
    got = normalize_import(attrs, EXT, ctx())
    assert got == PathAttrs(next_hop=EXT.address, as_path=(65001,))
    assert normalize_import(attrs, A, ctx()) is attrs


# -- Calico export filter ----------------------------------------------------------------


def test_prefix_outside_pools_rejected() -> None:
    d = export_decision(local(IPv4Network("172.16.0.0/24")), A, ctx())
    assert d.attrs is None and "no exportable IP pool" in d.reason


def test_disabled_pool_rejected() -> None:
    # Pools with disabled / disableBGPExport are not in exportable_pools (reject_disabled_pools).
    sub = next(DISABLED_POOL.subnets(new_prefix=26))
    assert export(local(sub), A, ctx()) is None
    assert export(learned(CLIENT1, sub), CLIENT2, ctx(cluster_id=CLUSTER)) is None


def test_own_affine_block_accepted_exactly() -> None:
    ok, why = calico_filter(OWN_BLOCK, ctx())
    assert ok and "calico_aggr" in why


def test_subroute_of_own_affine_block_rejected_calico_aggr() -> None:
    # v3.28 calico_aggr: `if net ~ BLOCK then reject` (calico#3246: a borrowed /32 inside our block).
    for sub in (IPv4Network("10.244.1.7/32"), IPv4Network("10.244.1.0/27")):
        d = export_decision(local(sub), A, ctx())
        assert d.attrs is None and "calico_aggr" in d.reason
    # ... also a learned /32 inside our block, even for a reflector.
    d = export_decision(learned(CLIENT1, IPv4Network("10.244.1.9/32")), CLIENT2, ctx(cluster_id=CLUSTER))
    assert d.attrs is None


def test_borrowed_slash32_outside_own_blocks_accepted() -> None:
    assert export(local(IPv4Network("10.244.2.5/32")), A, ctx()) == PathAttrs(next_hop=ME)


# -- BGP rules ---------------------------------------------------------------------------


def test_never_back_to_source() -> None:
    d = export_decision(learned(CLIENT1), CLIENT1, ctx(cluster_id=CLUSTER))
    assert d.attrs is None and "not sent back" in d.reason


def test_local_path_to_every_peer_next_hop_self() -> None:
    p = Path(OWN_BLOCK, PathAttrs(next_hop=ip("9.9.9.9")), None)
    for to in (A, CLIENT1, NONCLIENT):
        assert export(p, to, ctx()) == PathAttrs(next_hop=ME)
        assert export(p, to, ctx(cluster_id=CLUSTER)) == PathAttrs(next_hop=ME)  # not reflected: no RR attrs


def test_ibgp_split_horizon_rfc4271_s9_2() -> None:
    d = export_decision(learned(A), B, ctx())
    assert d.attrs is None and "RFC 4271 §9.2" in d.reason


def test_rr_reflects_client_route_to_all_rfc4456_s8() -> None:
    c = ctx(cluster_id=CLUSTER)
    p = learned(CLIENT1)
    expected = PathAttrs(next_hop=CLIENT1.address, originator_id=CLIENT1.router_id, cluster_list=(CLUSTER,))
    assert export(p, CLIENT2, c) == expected
    assert export(p, NONCLIENT, c) == expected


def test_rr_reflects_nonclient_route_to_clients_only_rfc4456_s8() -> None:
    c = ctx(cluster_id=CLUSTER)
    p = learned(NONCLIENT)
    assert export(p, CLIENT1, c) is not None
    d = export_decision(p, peer("192.168.0.5", prefix="Node_"), c)
    assert d.attrs is None and "non-client" in d.reason


def test_memo_decides_once_per_kind_of_peer_and_still_never_back_to_source() -> None:
    # A reflector exports one path to many peers: the decision depends on the peer only through its kind
    # (iBGP/eBGP, rr client or not) once it is not the source.
    c = ctx(cluster_id=CLUSTER)
    p = learned(CLIENT1)
    memo: dict[object, object] = {}
    to_client = export_decision(p, CLIENT2, c, memo)
    assert export_decision(p, peer("192.168.0.7", rr_client=True), c, memo) is to_client
    assert export_decision(p, CLIENT1, c, memo).attrs is None  # the source, even with the memo
    to_nonclient = export_decision(p, NONCLIENT, c, memo)
    assert to_nonclient.attrs == to_client.attrs and to_nonclient is not to_client
    assert export_decision(p, EXT, c, memo).attrs == export(p, EXT, c)  # eBGP: its own rewrite
    for to in (CLIENT2, NONCLIENT, EXT, CLIENT1):
        assert export_decision(p, to, c, memo) == export_decision(p, to, c)


def test_rr_keeps_next_hop_rfc4456_s10() -> None:
    attrs = export(learned(CLIENT1, next_hop=ip("192.168.0.77")), CLIENT2, ctx(cluster_id=CLUSTER))
    assert attrs is not None and attrs.next_hop == ip("192.168.0.77")


def test_rr_sets_originator_id_only_if_absent_rfc4456_s8() -> None:
    c = ctx(cluster_id=CLUSTER)
    fresh = export(learned(CLIENT1), CLIENT2, c)
    assert fresh is not None and fresh.originator_id == CLIENT1.router_id
    kept = export(learned(NONCLIENT, originator_id=ip("192.168.0.42"), cluster_list=(ip("244.0.0.2"),)), CLIENT1, c)
    assert kept is not None and kept.originator_id == ip("192.168.0.42")


def test_rr_prepends_cluster_id_rfc4456_s8() -> None:
    other = ip("244.0.0.2")
    attrs = export(learned(NONCLIENT, originator_id=ip("192.168.0.42"), cluster_list=(other,)), CLIENT1, ctx(cluster_id=CLUSTER))
    assert attrs is not None and attrs.cluster_list == (CLUSTER, other)


def test_rr_other_attrs_unchanged() -> None:
    p = learned(CLIENT1, local_pref=150, med=20, communities=("64512:100",))
    attrs = export(p, CLIENT2, ctx(cluster_id=CLUSTER))
    assert attrs == replace(p.attrs, originator_id=CLIENT1.router_id, cluster_list=(CLUSTER,))


def test_ebgp_local_path_prepends_as_next_hop_self() -> None:
    attrs = export(local(), EXT, ctx())
    assert attrs == PathAttrs(next_hop=ME, as_path=(AS,))


@pytest.mark.parametrize("cluster_id", [None, CLUSTER])
def test_ebgp_strips_rr_attrs_and_med_rfc4456_s8_rfc4271_s5(cluster_id: IPv4Address | None) -> None:
    p = learned(CLIENT1, local_pref=300, med=7, originator_id=ip("192.168.0.42"), cluster_list=(ip("244.0.0.2"),))
    attrs = export(p, EXT, ctx(cluster_id=cluster_id))
    assert attrs == PathAttrs(next_hop=ME, as_path=(AS,))


def test_ebgp_learned_to_ibgp_unchanged_and_to_other_ebgp() -> None:
    p = learned(EXT, as_path=(65001,), next_hop=EXT.address)
    assert export(p, A, ctx()) == p.attrs  # RFC 4271 §5.1.3: next hop kept toward iBGP
    other_ext = peer("10.0.1.254", asn=65002, prefix="Node_")
    assert export(p, other_ext, ctx()) == PathAttrs(next_hop=ME, as_path=(AS, 65001))


def test_export_context_coerces_sequences() -> None:
    c = ExportContext(router_id=ME, local_as=AS, exportable_pools=[POOL], affine_blocks=[OWN_BLOCK])  # type: ignore[arg-type]
    assert c.exportable_pools == (POOL,) and c.affine_blocks == (OWN_BLOCK,)
    assert not c.is_route_reflector and ctx(cluster_id=CLUSTER).is_route_reflector
